package wshub

import (
	"context"

	"github.com/wshub/wshub/store"
)

// The inbox commands: cmd 18 lists a user's conversations, most recent
// first, with read markers and unread counts; cmd 19 moves the user's read
// marker on one conversation, through the store's store.Inbox methods.

// conversations answers cmd 18 with up to f.Limit of the user's
// conversations (store.DefaultConversations when 0 or less, at most
// store.MaxConversations), most recent first: a cmd 10 item per direct
// conversation, named by the peer, with read, seen and unread; a cmd 11
// item per room, named by the room, with read and unread. More says the
// list was cut. The reply carries the request's cid.
func (h *Hub) conversations(ctx context.Context, n *Node, f *Frame) error {
	ib := h.store
	items, more, err := ib.Conversations(ctx, n.user, max(f.Limit, 0))
	if err != nil {
		return h.storeErr(err)
	}
	reply := &Frame{Cmd: CmdConversations, CID: f.CID, More: more, Items: make([]*Frame, 0, len(items))}
	for i := range items {
		reply.Items = append(reply.Items, convFrame(&items[i]))
	}
	return n.Send(reply)
}

// convFrame turns one entry of store.Inbox.Conversations into its item
// of a cmd 18 reply.
func convFrame(c *store.ConvInfo) *Frame {
	it := &Frame{Cmd: CmdSingle, DstID: c.Peer, Seq: c.Seq, TS: c.TS, Read: c.Read, Seen: c.Seen}
	if c.Kind == store.ConvRoom {
		it.Cmd, it.Seen = CmdRoom, 0
	}
	if c.Seq > c.Read {
		it.Unread = c.Seq - c.Read
	}
	return it
}

// markRead answers cmd 19: it moves the user's read marker on the direct
// conversation with f.DstID, or on room f.DstID when f.Room (the user
// must be a member), forward to f.Seq, capped at the conversation's
// latest seq. When the marker moved it sends
// {"cmd":19,"userid":<reader>,"dstid":f.DstID,"room"?,"seq":<marker>}
// to the reader's other connections and, for a direct conversation, to
// the peer's connections; the reading connection gets nothing. These
// events are live only: not queued for offline users; with a store
// that is a store.Signaler they reach the connections on every hub
// process sharing it, else those of this process. Two reads racing on one
// conversation may announce their markers in either order: a client
// keeps the highest it has seen.
func (h *Hub) markRead(ctx context.Context, n *Node, f *Frame) error {
	ib := h.store
	if err := checkDst(f.DstID); err != nil {
		return err
	}
	conv := store.DirectConv(n.user, f.DstID)
	if f.Room {
		if !h.isMember(n.user, f.DstID) {
			return ErrNotMember
		}
		conv = store.RoomConv(f.DstID)
	}
	if err := ctx.Err(); err != nil {
		return h.storeErr(err)
	}
	// Not cut short by ctx (see Hub.send): a marker the store moved is
	// announced, whatever happens to the reading connection meanwhile.
	ctx = context.WithoutCancel(ctx)
	marker, moved, err := ib.MarkRead(ctx, n.user, conv, f.Seq)
	if err != nil {
		return h.storeErr(err)
	}
	if !moved {
		return nil
	}
	data, err := (&Frame{Cmd: CmdRead, UserID: n.user, DstID: f.DstID, Room: f.Room, Seq: marker}).Encode()
	if err != nil {
		return err
	}
	sig := store.Signal{Users: []string{n.user}, Origin: n.id, Data: data}
	if !f.Room && f.DstID != n.user {
		sig.Users = append(sig.Users, f.DstID)
	}
	return h.signal(ctx, &sig)
}
