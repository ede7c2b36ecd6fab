package wshub

import (
	"context"

	"golang.org/x/time/rate"
)

// Typing indicators (cmd 22) are ephemeral: never stored, never queued
// for an offline user, no receipt. A connection may send typingBurst of
// them at once and typingRate a second on average; the rest are dropped
// without an answer.
const (
	typingRate  rate.Limit = 5
	typingBurst            = 5
)

// typing answers cmd 22: it validates the frame and forwards
// {"cmd":22,"userid","dstid","room"} to the local connections of the
// peer (direct) or of the room's members (room; the sender must be one),
// never to the sending connection. A frame over the connection's typing
// rate is dropped silently. It runs on the goroutine reading n.
func (h *Hub) typing(_ context.Context, n *Node, f *Frame) error {
	if err := checkDst(f.DstID); err != nil {
		return err
	}
	if f.Room && !h.isMember(n.user, f.DstID) {
		return ErrNotMember
	}
	if n.typing == nil {
		n.typing = rate.NewLimiter(typingRate, typingBurst)
	}
	if !n.typing.Allow() {
		return nil
	}
	out := &Frame{Cmd: CmdTyping, UserID: n.user, DstID: f.DstID, Room: f.Room}
	data, err := out.Encode()
	if err != nil {
		return err
	}
	of := outFrame{data: data}
	st := h.starters.Get().(*starter)
	if f.Room {
		rs := h.roomShard(f.DstID)
		rs.mu.RLock()
		for m := range rs.rooms[f.DstID] {
			if m != n {
				m.enqueue(of, st)
			}
		}
		rs.mu.RUnlock()
	} else {
		h.pushUser(f.DstID, of, sender{node: n}, st)
	}
	h.writeOut(st) // not counted in Stats.Deliveries: nothing was stored
	return nil
}
