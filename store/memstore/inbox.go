package memstore

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/wshub/wshub/store"
)

// inboxShard is one shard of the per-user conversation index and read
// markers.
type inboxShard struct {
	mu sync.Mutex
	m  map[string]*userInbox // guarded by mu
}

// userInbox is one user's direct conversations, least recent first, and
// read markers. It is guarded by its inboxShard's mu.
type userInbox struct {
	order []inboxEntry          // sorted by recency, ascending (the most recent last)
	at    map[string]inboxEntry // conv -> its entry in order
	read  map[string]uint64     // conv -> read marker (no zeros)
}

// inboxEntry is the head of one direct conversation.
type inboxEntry struct {
	conv, peer string
	seq        uint64
	ts         int64
}

// compareRecency orders a before b when a is less recent (see
// store.Inbox.Conversations: TS, then Seq descending, then Conv
// ascending, reversed).
func compareRecency(aTS, bTS int64, aSeq, bSeq uint64, aConv, bConv string) int {
	if c := cmp.Compare(aTS, bTS); c != 0 {
		return c
	}
	if c := cmp.Compare(aSeq, bSeq); c != 0 {
		return c
	}
	return cmp.Compare(bConv, aConv)
}

func compareEntries(a, b inboxEntry) int {
	return compareRecency(a.ts, b.ts, a.seq, b.seq, a.conv, b.conv)
}

// put sets conv's head to e, moving it to its place in order: O(log n)
// comparisons and a copy of the entries between its old and new place
// (usually none when it was the most recent already).
func (ui *userInbox) put(e inboxEntry) {
	if old, ok := ui.at[e.conv]; ok {
		i, found := slices.BinarySearchFunc(ui.order, old, compareEntries)
		if found {
			ui.order = slices.Delete(ui.order, i, i+1)
		}
	}
	i, _ := slices.BinarySearchFunc(ui.order, e, compareEntries)
	ui.order = slices.Insert(ui.order, i, e)
	ui.at[e.conv] = e
}

// inbox returns user's inbox, creating it; its shard is locked.
func (sh *inboxShard) inbox(user string) *userInbox {
	ui := sh.m[user]
	if ui == nil {
		ui = &userInbox{at: make(map[string]inboxEntry), read: make(map[string]uint64)}
		sh.m[user] = ui
	}
	return ui
}

// indexLocked records m, just appended, in the inboxes: the conversation
// head of both users of a direct message, and the sender's read marker.
// The lock of m's conversation is held.
func (s *Store) indexLocked(m *store.Message) {
	a := s.shard(m.From) % numShards
	b := a
	direct := store.IsDirect(m)
	if direct {
		b = s.shard(m.To) % numShards
	}
	lo, hi := min(a, b), max(a, b)
	s.inboxes[lo].mu.Lock()
	defer s.inboxes[lo].mu.Unlock()
	if hi != lo {
		s.inboxes[hi].mu.Lock()
		defer s.inboxes[hi].mu.Unlock()
	}
	from := s.inboxes[a].inbox(m.From)
	from.read[m.Conv] = m.Seq
	if direct {
		from.put(inboxEntry{conv: m.Conv, peer: m.To, seq: m.Seq, ts: m.TS})
		if m.To != m.From {
			s.inboxes[b].inbox(m.To).put(inboxEntry{conv: m.Conv, peer: m.From, seq: m.Seq, ts: m.TS})
		}
	}
}

// MarkRead implements store.Inbox.
func (s *Store) MarkRead(ctx context.Context, user, conv string, seq uint64) (uint64, bool, error) {
	if err := s.check(ctx); err != nil {
		return 0, false, err
	}
	if user == "" || conv == "" {
		return 0, false, fmt.Errorf("%w: empty user or conversation", store.ErrInvalid)
	}
	var last uint64
	if c := s.lookup(conv); c != nil {
		// Held until the marker is written, so that it cannot pass a
		// concurrent Append's seq.
		c.mu.RLock()
		defer c.mu.RUnlock()
		last = c.last
	}
	sh := &s.inboxes[s.shard(user)%numShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	ui := sh.m[user]
	var cur uint64
	if ui != nil {
		cur = ui.read[conv]
	}
	if target := min(seq, last); target > cur {
		sh.inbox(user).read[conv] = target
		return target, true, nil
	}
	return cur, false, nil
}

// Conversations implements store.Inbox. It costs O(limit + R) map look-ups
// and copies plus O((limit + R) log(limit + R)) to sort them, R the rooms
// of user; an Append moves a direct conversation in each user's sorted
// index with O(log n) comparisons and a copy of the entries it jumps (none
// when it was already the most recent).
func (s *Store) Conversations(ctx context.Context, user string, limit int) ([]store.ConvInfo, bool, error) {
	if err := s.check(ctx); err != nil {
		return nil, false, err
	}
	if user == "" {
		return nil, false, fmt.Errorf("%w: empty user", store.ErrInvalid)
	}
	if limit <= 0 {
		limit = store.DefaultConversations
	}
	limit = min(limit, store.MaxConversations)

	us := &s.users[s.shard(user)%numShards]
	us.mu.Lock()
	rooms := setKeys(us.rooms[user])
	us.mu.Unlock()
	items := make([]store.ConvInfo, 0, min(limit+1, 64)+len(rooms))
	for _, room := range rooms {
		it := store.ConvInfo{Conv: store.RoomConv(room), Kind: store.ConvRoom, Peer: room}
		if c := s.lookup(it.Conv); c != nil {
			c.mu.RLock()
			it.Seq, it.TS = c.last, c.ts
			c.mu.RUnlock()
		}
		items = append(items, it)
	}

	sh := &s.inboxes[s.shard(user)%numShards]
	sh.mu.Lock()
	if ui := sh.m[user]; ui != nil {
		for i := range items {
			items[i].Read = ui.read[items[i].Conv]
		}
		for i := len(ui.order) - 1; i >= 0 && len(ui.order)-i <= limit+1; i-- {
			e := ui.order[i]
			items = append(items, store.ConvInfo{Conv: e.conv, Kind: store.ConvDirect, Peer: e.peer,
				Seq: e.seq, TS: e.ts, Read: ui.read[e.conv]})
		}
	}
	sh.mu.Unlock()

	slices.SortFunc(items, func(a, b store.ConvInfo) int {
		return -compareRecency(a.TS, b.TS, a.Seq, b.Seq, a.Conv, b.Conv)
	})
	more := len(items) > limit
	items = items[:min(len(items), limit)]
	for i := range items {
		it := &items[i]
		if it.Kind != store.ConvDirect {
			continue
		}
		ps := &s.inboxes[s.shard(it.Peer)%numShards]
		ps.mu.Lock()
		if ui := ps.m[it.Peer]; ui != nil {
			it.Seen = ui.read[it.Conv]
		}
		ps.mu.Unlock()
	}
	return items, more, nil
}
