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
// A connection's follows are recorded in Node.follows, keyed by room (and
// userKey for its user), under its user's shard lock, where the room
// index changes too: register, unregister, indexJoin and indexLeave each
// record the follows and unfollows of exactly the (connection, room)
// pairs the index gains and loses, however they interleave. The store
// calls are made after the lock is released; a follow dropped while its
// Follow call is still on its way is unfollowed by that call's maker once
// it returned (settle), so that no Unfollow ever reaches the store before
// the Follow it undoes. Were it to, the store's count could fall to zero
// while another connection here still follows the room: the store would
// unsubscribe it, and that connection miss what the room announces
// meanwhile, silently.
//
// Follows belong to one subscription: after the feed broke, the new
// subscription has none, and the connections of the old one (closed by
// runFeed) must not unfollow what the new one's connections followed.
// Node.followBreaks records the subscription a connection follows on,
// as Hub.feedBreaks counted then; it is set before the connection is in
// the indexes, and the store calls of a connection that no longer
// follows the current subscription are not made. An Unfollow is checked
// and made under Hub.unfollowMu, so that none reaches the next
// subscription (where it could undo another connection's follow); a
// Follow checked just before a break could (a count never undone: the
// process receives a room's announcements it no longer needs), which
// costs traffic, never a message.

// followState is where one follow of a connection stands.
type followState uint8

const (
	followCalling followState = iota + 1 // recorded; its Follow call is on its way
	followMade                           // its Follow call returned
	followDropped                        // dropped while followCalling: the call's maker unfollows
)

// userKey is the key of a connection's follow of its own user in
// Node.follows (room ids are never empty).
const userKey = ""

// pendingFollows are the follows of one connection whose Follow call the
// holder makes (Hub.follow).
type pendingFollows struct {
	n    *Node
	keys []string
}

// markFollows records the subscription n's follows belong to, before n is
// in the indexes; it fails when the feed is not subscribed.
func (h *Hub) markFollows(n *Node) error {
	if h.router == nil {
		return nil
	}
	breaks, ready := h.feedState()
	if !ready {
		return fmt.Errorf("%w: feed not subscribed", ErrUnavailable)
	}
	n.followBreaks.Store(breaks + 1) // 0 means "followed nothing"
	return nil
}

// followLocked records that n follows key and reports whether the caller
// is to make the Follow call (Hub.follow). The caller holds n's user
// shard lock.
func (h *Hub) followLocked(n *Node, key string) bool {
	if h.router == nil {
		return false
	}
	st, ok := n.follows[key]
	switch {
	case !ok:
		if n.follows == nil {
			n.follows = make(map[string]followState, 2)
		}
		n.follows[key] = followCalling
		return true
	case st == followDropped:
		n.follows[key] = followCalling // the call on its way stands
	}
	return false
}

// unfollowLocked records that n no longer follows key and reports whether
// the caller is to make the Unfollow call (Hub.unfollow); while the
// Follow call is on its way, its maker does. The caller holds n's user
// shard lock.
func (h *Hub) unfollowLocked(n *Node, key string) bool {
	switch n.follows[key] {
	case followMade:
		delete(n.follows, key)
		return true
	case followCalling:
		n.follows[key] = followDropped
	}
	return false
}

// follow makes the Follow call of fs, with wait waiting for the store's
// confirmation, then settles them: recorded as made, or unfollowed when
// they were dropped meanwhile. The follows count even when the call
// fails (store.Router: the caller unregisters or closes the connections,
// which unfollows them).
func (h *Hub) follow(ctx context.Context, fs []pendingFollows, wait bool) error {
	if h.router == nil || len(fs) == 0 {
		return nil
	}
	var users, rooms []string
	for _, f := range fs {
		if !h.followsCurrent(f.n) {
			continue
		}
		for _, k := range f.keys {
			if k == userKey {
				users = append(users, f.n.user)
			} else {
				rooms = append(rooms, k)
			}
		}
	}
	var err error
	if len(users)+len(rooms) > 0 {
		err = h.router.Follow(ctx, users, rooms, wait)
	}
	for _, f := range fs {
		s := h.userShard(f.n.user)
		var drop []string
		s.mu.Lock()
		for _, k := range f.keys {
			switch f.n.follows[k] {
			case followCalling:
				f.n.follows[k] = followMade
			case followDropped:
				delete(f.n.follows, k)
				drop = append(drop, k)
			}
		}
		s.mu.Unlock()
		h.unfollow(f.n, drop)
	}
	if err != nil {
		return fmt.Errorf("%w: follow: %w", ErrUnavailable, err)
	}
	return nil
}

// unfollow makes the Unfollow call of n's keys, when n follows the
// current subscription.
func (h *Hub) unfollow(n *Node, keys []string) {
	if h.router == nil || len(keys) == 0 {
		return
	}
	h.unfollowMu.RLock()
	defer h.unfollowMu.RUnlock()
	if !h.followsCurrent(n) {
		return
	}
	var users, rooms []string
	for _, k := range keys {
		if k == userKey {
			users = append(users, n.user)
		} else {
			rooms = append(rooms, k)
		}
	}
	h.router.Unfollow(users, rooms)
}

// followsCurrent reports whether n follows the current subscription.
func (h *Hub) followsCurrent(n *Node) bool {
	breaks, _ := h.feedState()
	return n.followBreaks.Load() == breaks+1
}

// followJoined makes the Follow calls of a room's join (indexJoin's
// result). With wait it returns once the store confirmed; without (on
// the feed's goroutine, which must not wait for the store's
// confirmation: it may be the one to read it) once requested, so that
// the follow counts before the next announcement is handled. A failure
// closes the connections with 1013, as a feed break does.
func (h *Hub) followJoined(fs []pendingFollows, room string, wait bool) error {
	err := h.follow(h.ctx, fs, wait)
	if err != nil {
		h.log.Error("wshub: cannot follow a room on the store feed; closing its connections",
			slog.String("room", room), slog.Any("err", err))
		for _, f := range fs {
			f.n.closeWith(CloseTryAgainLater, "hub resynchronizing")
		}
	}
	return err
}
