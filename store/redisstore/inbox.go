package redisstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/wshub/wshub/store"
)

// The inbox (store.Inbox) is kept in three keys per user, in the user's
// slot, all written by Append's step for that user (userApplyScript):
//
//	<prefix>{u:<user>}ci  sorted set: the user's direct conversations, one
//	                      member per conversation: 16 decimal digits of
//	                      2^52 - seq, then the conversation id; score -TS
//	<prefix>{u:<user>}ch  hash: conversation id -> the seq of its member
//	                      in ci (so that Append finds the member to
//	                      replace; an older seq never replaces a newer)
//	<prefix>{u:<user>}rm  hash: conversation id -> read marker
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

func (s *Store) indexKey(user string) string { return s.userTag(user) + "ci" }
func (s *Store) headsKey(user string) string { return s.userTag(user) + "ch" }
func (s *Store) marksKey(user string) string { return s.userTag(user) + "rm" }

// inboxScore is the index score of a message with timestamp ts: -ts
// (MaxInt64 for MinInt64, which has no negation).
func inboxScore(ts int64) string {
	if ts == math.MinInt64 {
		return strconv.FormatInt(math.MaxInt64, 10)
	}
	return strconv.FormatInt(-ts, 10)
}

var _ store.Inbox = (*Store)(nil)

// MarkRead implements store.Inbox in two single-slot steps: the
// conversation's latest seq is read (its slot), then one script caps seq
// at it and moves the marker (the user's slot), followed by WAIT when
// replicas must acknowledge writes (see Options.WaitReplicas).
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
	n, err := s.client.HGet(ctx, s.convKey(conv), "n").Uint64()
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, false, s.wrap("mark read", err)
	}
	mk := s.marksKey(user)
	cmds, err := s.step(ctx, mk, call{markReadScript, []string{mk},
		[]any{conv, strconv.FormatUint(min(seq, n, maxLuaSeq), 10)}})
	if err != nil {
		return 0, false, s.wrap("mark read", err)
	}
	res, err := cmds[0].(*redis.Cmd).Slice()
	if err != nil || len(res) != 2 {
		return 0, false, fmt.Errorf("wshub/redisstore: mark read: unexpected reply %v (%v)", res, err)
	}
	marker, _ := res[0].(int64)
	moved, _ := res[1].(int64)
	return uint64(max(marker, 0)), moved == 1, nil
}

// Conversations implements store.Inbox: one read script in the user's
// slot reads limit+1 entries of the user's index (O(log N + limit)) with
// the user's markers, and the user's rooms (O(R)); then pipelined reads
// in the other slots fetch each peer's marker and each room's newest
// message (two round trips). The rooms and the direct entries are merged
// here. The reads of the other slots are not one snapshot with the first:
// a peer's marker or a room's head may be newer than the index entries.
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
		[]string{s.indexKey(user), s.marksKey(user), s.userKey(user)}, limit+1).Slice()
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
	if d < 0 || 1+4*d > int64(len(res)) || (int64(len(res))-1-4*d)%2 != 0 {
		return bad()
	}
	rest := res[1+4*d:]
	items := make([]store.ConvInfo, 0, int(d)+len(rest)/2)
	for i := int64(0); i < d; i++ {
		r := res[1+4*i : 5+4*i]
		conv, _ := r[0].(string)
		seq, _ := r[1].(int64)
		ts, _ := r[2].(int64)
		read, _ := r[3].(int64)
		items = append(items, store.ConvInfo{Conv: conv, Kind: store.ConvDirect, Peer: directPeer(conv, user),
			Seq: uint64(max(seq, 0)), TS: ts, Read: uint64(max(read, 0))})
	}
	for i := 0; i < len(rest); i += 2 {
		room, _ := rest[i].(string)
		read, _ := rest[i+1].(int64)
		items = append(items, store.ConvInfo{Conv: store.RoomConv(room), Kind: store.ConvRoom, Peer: room,
			Read: uint64(max(read, 0))})
	}
	if len(items) > 0 {
		if err := s.fillConversations(ctx, user, items); err != nil {
			return nil, false, err
		}
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

// fillConversations reads, with pipelined reads in their slots, the
// peers' markers (Seen) of the direct items and the latest seq and TS of
// the room items.
func (s *Store) fillConversations(ctx context.Context, user string, items []store.ConvInfo) error {
	cmds := make([]*redis.StringCmd, len(items))
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, it := range items {
			if it.Kind == store.ConvDirect {
				cmds[i] = p.HGet(ctx, s.marksKey(it.Peer), it.Conv)
			} else {
				cmds[i] = p.HGet(ctx, s.convKey(it.Conv), "n")
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return s.wrap("conversations", err)
	}
	heads := make([]*redis.StringCmd, len(items))
	_, err = s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range items {
			n, _ := strconv.ParseUint(cmds[i].Val(), 10, 64)
			if items[i].Kind == store.ConvDirect {
				items[i].Seen = n
			} else if n > 0 {
				items[i].Seq = n
				heads[i] = p.HGet(ctx, s.convKey(items[i].Conv), strconv.FormatUint(n, 10))
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return s.wrap("conversations", err)
	}
	for i, h := range heads {
		if h == nil || h.Err() != nil {
			continue
		}
		m, err := decode(h.Val())
		if err != nil {
			return fmt.Errorf("wshub/redisstore: conversations of %q: head of room %q: %w", user, items[i].Peer, err)
		}
		items[i].TS = m.TS
	}
	return nil
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
