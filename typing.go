package wshub

import (
	"context"
	"log/slog"

	"golang.org/x/time/rate"

	"github.com/wshub/wshub/store"
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
func (h *Hub) typing(ctx context.Context, n *Node, f *Frame) error {
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
	sig := store.Signal{Origin: n.id, Data: data}
	if f.Room {
		sig.Room = f.DstID
	} else {
		sig.Users = []string{f.DstID}
	}
	return h.signal(ctx, &sig)
}

// signal delivers an ephemeral frame (typing, read markers): through the
// store's feed to every hub process when the store is a store.Signaler,
// else to this hub's connections at once. It is best effort: a signal
// the store cannot take is logged and dropped.
func (h *Hub) signal(ctx context.Context, sig *store.Signal) error {
	if h.signaler == nil {
		h.onSignal(sig)
		return nil
	}
	if err := h.signaler.Signal(ctx, *sig); err != nil {
		h.log.Warn("wshub: signal dropped: the store did not take it", slog.Any("err", err))
	}
	return nil
}

// onSignal queues an ephemeral frame for the local connections of
// sig.Users and of sig.Room's members, except the connection sig.Origin.
// A user in both gets it once per connection.
func (h *Hub) onSignal(sig *store.Signal) {
	of := outFrame{data: sig.Data}
	skip := sender{id: sig.Origin}
	st := h.starters.Get().(*starter)
	if sig.Room != "" {
		rs := h.roomShard(sig.Room)
		rs.mu.RLock()
		for m := range rs.rooms[sig.Room] {
			if !skip.is(m) {
				m.enqueue(of, st)
			}
		}
		rs.mu.RUnlock()
	}
	for _, u := range sig.Users {
		if sig.Room != "" && h.isMember(u, sig.Room) {
			continue // had it as a member
		}
		h.pushUser(u, of, skip, st)
	}
	h.writeOut(st) // not counted in Stats.Deliveries: nothing was stored
}
