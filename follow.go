package wshub

import (
	"context"
	"fmt"
	"log/slog"
)

// Routing by interest (a store that is a store.Router): the hub follows,
// on its feed subscription, each of its connections' user and the rooms
// the user is a member of, and unfollows them when the connection goes
// or leaves the room, so that this process receives what concerns its
// own connections only. Follows are counted by the store, one per
// connection: a user with three connections here is followed three
// times. A connection follows before its pending queue is read (register)
// and before a join's replay (join), so that nothing announced after
// those reads is missed.
//
// Follows belong to one subscription: after the feed broke, the new
// subscription has none, and the connections of the old one (closed by
// runFeed) must not unfollow what the new one's connections followed.
// Node.followBreaks records the subscription a connection followed on,
// as Hub.feedBreaks counted then.

// followNode follows n's user and rooms, waiting for the store's
// confirmation.
func (h *Hub) followNode(ctx context.Context, n *Node, rooms []string) error {
	if h.router == nil {
		return nil
	}
	breaks, ready := h.feedState()
	if !ready {
		return fmt.Errorf("%w: feed not subscribed", ErrUnavailable)
	}
	n.followBreaks.Store(breaks + 1) // 0 means "followed nothing"
	if err := h.router.Follow(ctx, []string{n.user}, rooms, true); err != nil {
		return fmt.Errorf("%w: follow: %w", ErrUnavailable, err)
	}
	return nil
}

// followsCurrent reports whether n followed on the current subscription.
func (h *Hub) followsCurrent(n *Node) bool {
	breaks, _ := h.feedState()
	return n.followBreaks.Load() == breaks+1
}

// unfollowNode undoes followNode and the follows of n's joins, when they
// were made on the current subscription.
func (h *Hub) unfollowNode(n *Node, rooms []string) {
	if h.router == nil || !h.followsCurrent(n) {
		return
	}
	h.router.Unfollow([]string{n.user}, rooms)
}

// followJoined follows room for the connections that joined it here
// (indexJoin's result). With wait it returns once the store confirmed;
// without (on the feed's goroutine, which must not wait for the store's
// confirmation: it may be the one to read it) once requested. A failure
// closes the connections with 1013, as a feed break does.
func (h *Hub) followJoined(nodes []*Node, room string, wait bool) error {
	if h.router == nil || len(nodes) == 0 {
		return nil
	}
	var cur []*Node
	for _, n := range nodes {
		if h.followsCurrent(n) {
			cur = append(cur, n)
		}
	}
	if len(cur) == 0 {
		return nil
	}
	rooms := make([]string, len(cur))
	for i := range rooms {
		rooms[i] = room
	}
	// Without wait (on the feed's goroutine) the follow is counted and
	// requested before the next announcement is handled: an unfollow that
	// comes after cannot undo it.
	if err := h.router.Follow(h.ctx, nil, rooms, wait); err != nil {
		h.log.Error("wshub: cannot follow a room on the store feed; closing its connections",
			slog.String("room", room), slog.Any("err", err))
		for _, n := range cur {
			n.closeWith(CloseTryAgainLater, "hub resynchronizing")
		}
		return fmt.Errorf("%w: follow: %w", ErrUnavailable, err)
	}
	return nil
}

// unfollowLeft undoes the follows of room of the connections that left
// it here.
func (h *Hub) unfollowLeft(nodes []*Node, room string) {
	if h.router == nil {
		return
	}
	var rooms []string
	for _, n := range nodes {
		if h.followsCurrent(n) {
			rooms = append(rooms, room)
		}
	}
	if len(rooms) > 0 {
		h.router.Unfollow(nil, rooms)
	}
}
