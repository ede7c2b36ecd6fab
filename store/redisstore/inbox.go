package redisstore

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/wshub/wshub/store"
)

// The inbox (store.Inbox) is kept in three keys per user, all written by
// the Append script in the same atomic step as the message:
//
//	<prefix>ci:<user>  sorted set: the user's direct conversations, one
//	                   member per conversation: 16 decimal digits of
//	                   2^52 - seq, then the conversation id; score -TS
//	<prefix>ch:<user>  hash: conversation id -> the seq of its member in
//	                   ci (so that Append finds the member to replace)
//	<prefix>rm:<user>  hash: conversation id -> read marker
//
// Ascending ZRANGE order is then the order of store.Inbox.Conversations:
// score ascending is TS descending; members of equal score sort
// byte-wise, the fixed-width 2^52 - seq first (seq descending), then the
// conversation id (Conv ascending). Seqs stay below 2^52 (maxLuaSeq).
// Rooms are not indexed: Conversations reads the user's room set and each
// room's newest message.
//
// The keys have no TTL. A conversation that expired (Options.HistoryTTL)
// or lost its key keeps its entry, with the seq and TS it had, until its
// next message replaces it.

func (s *Store) indexKey(user string) string { return s.opts.Prefix + "ci:" + user }
func (s *Store) headsKey(user string) string { return s.opts.Prefix + "ch:" + user }
func (s *Store) marksKey(user string) string { return s.opts.Prefix + "rm:" + user }

// inboxScore is the index score of a message with timestamp ts: -ts
// (MaxInt64 for MinInt64, which has no negation).
func inboxScore(ts int64) string {
	if ts == math.MinInt64 {
		return strconv.FormatInt(math.MaxInt64, 10)
	}
	return strconv.FormatInt(-ts, 10)
}

var _ store.Inbox = (*Store)(nil)

// MarkRead implements store.Inbox in one script: O(1).
func (s *Store) MarkRead(ctx context.Context, user, conv string, seq uint64) (uint64, bool, error) {
	if err := s.check(ctx); err != nil {
		return 0, false, err
	}
	switch {
	case user == "":
		return 0, false, fmt.Errorf("%w: empty user", store.ErrInvalid)
	case conv == "":
		return 0, false, fmt.Errorf("%w: empty conversation", store.ErrInvalid)
	}
	res, err := markReadScript.Run(ctx, s.client, []string{s.marksKey(user), s.convKey(conv)},
		conv, strconv.FormatUint(min(seq, maxLuaSeq), 10)).Slice()
	if err != nil {
		return 0, false, s.wrap("mark read", err)
	}
	if len(res) != 2 {
		return 0, false, fmt.Errorf("wshub/redisstore: mark read: unexpected reply %v", res)
	}
	marker, _ := res[0].(int64)
	moved, _ := res[1].(int64)
	return uint64(max(marker, 0)), moved == 1, nil
}

// Conversations implements store.Inbox in one read script: limit+1
// entries of the user's index (O(log N + limit)), with the user's and the
// peer's markers, and every room of the user with its newest message
// (O(R)). The rooms and the direct entries are merged here.
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
	res, err := conversationsScript.Run(ctx, s.client,
		[]string{s.indexKey(user), s.marksKey(user), s.userKey(user)},
		limit+1, s.opts.Prefix, user).Slice()
	if err != nil {
		return nil, false, s.wrap("conversations", err)
	}
	bad := func() ([]store.ConvInfo, bool, error) {
		return nil, false, fmt.Errorf("wshub/redisstore: conversations of %q: unexpected reply", user)
	}
	if len(res) < 1 {
		return bad()
	}
	d, _ := res[0].(int64)
	if d < 0 || 1+5*d > int64(len(res)) || (int64(len(res))-1-5*d)%4 != 0 {
		return bad()
	}
	rest := res[1+5*d:]
	items := make([]store.ConvInfo, 0, int(d)+len(rest)/4)
	for i := int64(0); i < d; i++ {
		r := res[1+5*i : 6+5*i]
		conv, _ := r[0].(string)
		seq, _ := r[1].(int64)
		ts, _ := r[2].(int64)
		read, _ := r[3].(int64)
		seen, _ := r[4].(int64)
		items = append(items, store.ConvInfo{Conv: conv, Kind: store.ConvDirect, Peer: directPeer(conv, user),
			Seq: uint64(max(seq, 0)), TS: ts, Read: uint64(max(read, 0)), Seen: uint64(max(seen, 0))})
	}
	for i := 0; i < len(rest); i += 4 {
		room, _ := rest[i].(string)
		seq, _ := rest[i+1].(int64)
		read, _ := rest[i+3].(int64)
		it := store.ConvInfo{Conv: store.RoomConv(room), Kind: store.ConvRoom, Peer: room,
			Seq: uint64(max(seq, 0)), Read: uint64(max(read, 0))}
		if v, ok := rest[i+2].(string); ok {
			m, err := decode(v)
			if err != nil {
				return nil, false, fmt.Errorf("wshub/redisstore: conversations of %q: head of room %q: %w", user, room, err)
			}
			it.TS = m.TS
		}
		items = append(items, it)
	}
	slices.SortFunc(items, func(a, b store.ConvInfo) int {
		if c := cmp.Compare(b.TS, a.TS); c != 0 {
			return c
		}
		if c := cmp.Compare(b.Seq, a.Seq); c != 0 {
			return c
		}
		return cmp.Compare(a.Conv, b.Conv)
	})
	more := len(items) > limit
	if more {
		items = items[:limit:limit]
	}
	return items, more, nil
}

// directPeer returns the other user of the direct conversation conv
// ("d:<len(a)>:<a>:<b>") of user: user itself for a self-conversation.
func directPeer(conv, user string) string {
	rest, ok := strings.CutPrefix(conv, "d:")
	if !ok {
		return ""
	}
	i := 0
	for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
		i++
	}
	n, err := strconv.Atoi(rest[:i])
	if err != nil || i >= len(rest) || rest[i] != ':' || len(rest) < i+1+n+1 {
		return ""
	}
	a, b := rest[i+1:i+1+n], rest[i+1+n+1:]
	if a == user {
		return b
	}
	return a
}
