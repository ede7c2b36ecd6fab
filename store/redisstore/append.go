package redisstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/wshub/wshub/store"
)

// maxGapFill is the most missing messages one call of step 2 fetches from
// history to fill a user's gap; a longer gap takes several rounds.
const maxGapFill = 1000

// entry is one message of a run given to userApplyScript.
type entry struct {
	seq     uint64
	value   string // the stored value "<seq>:<encoded>"
	msg     store.Message
	pending []string // the users whose queue receives it
	origin  string
	// inHistory: history holds value at seq (always, but for a
	// duplicate whose message was trimmed or whose stream was lost).
	inHistory bool
}

// Append implements store.Store in single-slot steps (see the package
// doc): the bounds (reads), the conversation's step (cid record, seq,
// history, and the announcement of a room message), then one step per
// user of the message (pending queue, inbox, announcement), each followed
// by WAIT when replicas must acknowledge it. An empty conversation,
// sender, message id or pending user is rejected with an error wrapping
// store.ErrInvalid; a full pending queue with one wrapping
// store.ErrPendingFull; a write not acknowledged by enough replicas with
// one wrapping ErrNotReplicated. The returned message of a first Append
// carries the caller's own Body; a duplicate's is a copy.
//
// A duplicate (same sender, cid and conversation) runs the user steps of
// the first message again before it returns, so that a message whose
// first Append failed after its conversation's step is queued by the
// resend: a nil error always means stored and queued.
func (s *Store) Append(ctx context.Context, req store.AppendRequest) (store.Message, bool, error) {
	if err := s.check(ctx); err != nil {
		return store.Message{}, false, err
	}
	switch {
	case req.Msg.Conv == "":
		return store.Message{}, false, fmt.Errorf("%w: empty conversation", store.ErrInvalid)
	case req.Msg.From == "":
		return store.Message{}, false, fmt.Errorf("%w: empty sender", store.ErrInvalid)
	case req.Msg.ID == "":
		return store.Message{}, false, fmt.Errorf("%w: empty message id", store.ErrInvalid)
	}
	var pending []string
	for _, u := range req.Pending {
		if u == "" {
			return store.Message{}, false, fmt.Errorf("%w: empty pending user", store.ErrInvalid)
		}
		if !slices.Contains(pending, u) {
			pending = append(pending, u) // enqueued and counted once
		}
	}
	var cidKey string
	if req.CID != "" {
		cidKey = s.cidKey(req.Msg.Conv, req.Msg.From, req.CID)
	}

	// Step 0: the bounds, read in the recipients' slots (and the cid
	// record first: a resend is a duplicate even when a queue is full).
	if _, cluster := s.client.(*redis.ClusterClient); !cluster {
		return s.appendOne(ctx, req, pending, cidKey)
	}
	if err := s.checkBounds(ctx, cidKey, pending, req.Msg.From); err != nil {
		return store.Message{}, false, err
	}

	// Step 1: the conversation's slot.
	e, epoch, dup, err := s.appendConv(ctx, req, pending, cidKey)
	if err != nil {
		return store.Message{}, false, err
	}
	room := s.isRoom(&req.Msg)

	// Step 2: each user's slot. A duplicate whose message history no
	// longer holds at its seq (trimmed long ago, or its conversation was
	// lost and its seqs started again) has nothing to redo.
	if e.inHistory {
		if err := s.applyUsers(ctx, e, epoch, room); err != nil {
			return store.Message{}, false, s.wrap("append", err)
		}
	}
	return e.msg, dup, nil
}

// appendConv is step 1 of Append: convAppendScript in the conversation's
// slot. It returns the message's entry (the first message's, for a
// duplicate), the conversation's epoch (empty when a duplicate's
// conversation is gone) and whether it is a duplicate.
func (s *Store) appendConv(ctx context.Context, req store.AppendRequest, pending []string, cidKey string) (*entry, string, bool, error) {
	conv := req.Msg.Conv
	ck := s.convKey(conv)
	hasCID := "0"
	keys := []string{ck}
	if cidKey != "" {
		hasCID = "1"
		keys = append(keys, cidKey)
	}
	room := s.isRoom(&req.Msg)
	var roomChan, header any = "", ""
	if room {
		roomChan = s.roomChannel(req.Msg.To)
		header = encodeMessageHeader(req.Origin)
	}
	enc := string(encode(&req.Msg))
	cmds, err := s.step(ctx, ck, call{convAppendScript, keys, []any{
		hasCID, enc, s.newEpoch(), s.maxHistory, s.cidTTL, s.historyTTL, trimBatch,
		encodeMeta(req.Origin, pending, defaultPending(&req.Msg)), roomChan, header,
	}})
	if err != nil {
		return nil, "", false, s.wrap("append", err)
	}
	res, err := cmds[0].(*redis.Cmd).Slice()
	if err != nil || len(res) < 3 {
		return nil, "", false, fmt.Errorf("wshub/redisstore: append: unexpected reply %v (%v)", res, err)
	}
	return convReply(res, req, pending, enc)
}

// convReply reads convAppendScript's reply res (see there) for req.
func convReply(res []any, req store.AppendRequest, pending []string, enc string) (*entry, string, bool, error) {
	e := new(entry)
	var epoch string
	dup := false
	if code, _ := res[0].(int64); code == 1 {
		if len(res) < 4 {
			return nil, "", false, fmt.Errorf("wshub/redisstore: append: unexpected reply %v", res)
		}
		dup = true
		e.value, _ = res[1].(string)
		m, err := decode(e.value)
		if err != nil {
			return nil, "", false, fmt.Errorf("wshub/redisstore: append: cid record of %q: %w", req.CID, err)
		}
		e.msg, e.seq = m, m.Seq
		epoch, _ = res[3].(string)
		if len(res) > 4 {
			same, _ := res[4].(int64)
			e.inHistory = same == 1
		}
		// The first message's pending list: from its meta field, else
		// the default while its conversation exists, else (history
		// gone) the resend's.
		e.pending, e.origin = pending, req.Origin
		if meta, ok := res[2].(string); ok {
			var p []string
			var custom bool
			e.origin, p, custom = decodeMeta(meta)
			e.pending = defaultPending(&m)
			if custom {
				e.pending = p
			}
		} else if epoch != "" {
			e.pending = defaultPending(&m)
		}
	} else {
		seq, ok := res[1].(int64)
		if !ok || seq <= 0 {
			return nil, "", false, fmt.Errorf("wshub/redisstore: append: unexpected seq %v", res[1])
		}
		epoch, _ = res[2].(string)
		e.msg = req.Msg
		e.msg.Seq = uint64(seq)
		e.seq = uint64(seq)
		e.value = strconv.FormatInt(seq, 10) + ":" + enc
		e.pending, e.origin = pending, req.Origin
		e.inHistory = true
	}

	return e, epoch, dup, nil
}

// isRoom tells whether m is a room message: its conversation is
// RoomConv(To).
func (s *Store) isRoom(m *store.Message) bool {
	return m.To != "" && m.Conv == store.RoomConv(m.To)
}

// defaultPending is the pending list a message has unless its
// AppendRequest says otherwise: [To] for a direct message, none else.
func defaultPending(m *store.Message) []string {
	if store.IsDirect(m) {
		return []string{m.To}
	}
	return nil
}

// encodeMeta returns the meta field of a message ("x<seq>" in its
// conversation's hash), which lets a later step 2 redo the message's
// user steps from history alone: the uvarint-prefixed origin, then the
// uvarint-prefixed pending users when they differ from the default. It
// returns "" (no field) for no origin and the default list.
func encodeMeta(origin string, pending, def []string) string {
	same := len(pending) == len(def)
	for _, u := range pending {
		same = same && slices.Contains(def, u)
	}
	if origin == "" && same {
		return ""
	}
	b := appendString(nil, origin)
	if same {
		return string(b)
	}
	b = append(b, '+')
	for _, u := range pending {
		b = appendString(b, u)
	}
	return string(b)
}

// decodeMeta reverses encodeMeta; custom is false when the message has
// the default pending list (pending is then nil).
func decodeMeta(v string) (origin string, pending []string, custom bool) {
	d := decoder{s: v}
	origin = d.string()
	if d.bad || d.s == "" || d.s[0] != '+' {
		return origin, nil, false
	}
	d.s = d.s[1:]
	pending = []string{}
	for d.s != "" && !d.bad {
		pending = append(pending, d.string())
	}
	return origin, pending, true
}

// checkBounds is step 0 of Append: one pipeline of reads, the cid record
// (its slot) and each recipient's queue size and count from sender (their
// slots). It returns ErrPendingFull when a queue is at a bound and the
// cid record does not exist. Concurrent Appends to one recipient may each
// pass and together overshoot a bound by their number.
func (s *Store) checkBounds(ctx context.Context, cidKey string, pending []string, from string) error {
	maxp, maxs := max(s.opts.MaxPending, 0), max(s.opts.MaxPendingPerSender, 0)
	if len(pending) == 0 || (maxp == 0 && maxs == 0) {
		return nil
	}
	var cidCmd *redis.IntCmd
	cards := make([]*redis.IntCmd, len(pending))
	counts := make([]*redis.StringCmd, len(pending))
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		if cidKey != "" {
			cidCmd = p.Exists(ctx, cidKey)
		}
		for i, u := range pending {
			cards[i] = p.ZCard(ctx, s.pendingKey(u))
			counts[i] = p.HGet(ctx, s.pcountKey(u), from)
		}
		return nil
	})
	if err != nil {
		// A missing count (redis.Nil) is no error; any other is.
		for _, c := range counts {
			if c.Err() != nil && !errors.Is(c.Err(), redis.Nil) {
				return s.wrap("append", c.Err())
			}
		}
		for _, c := range cards {
			if c.Err() != nil {
				return s.wrap("append", c.Err())
			}
		}
		if cidCmd != nil && cidCmd.Err() != nil {
			return s.wrap("append", cidCmd.Err())
		}
	}
	if cidCmd != nil && cidCmd.Val() > 0 {
		return nil // a duplicate: step 1 returns the first message
	}
	for i, u := range pending {
		n := cards[i].Val()
		if maxp > 0 && n >= int64(maxp) {
			return fmt.Errorf("%w: %q holds %d messages (MaxPending)", store.ErrPendingFull, u, n)
		}
		if n > 0 && maxs > 0 {
			c, _ := strconv.ParseInt(counts[i].Val(), 10, 64)
			if c >= int64(maxs) {
				return fmt.Errorf("%w: %q holds %d messages from %q (MaxPendingPerSender)", store.ErrPendingFull, u, c, from)
			}
		}
	}
	return nil
}

// usersOf returns the users whose slot step 2 writes for e: From, To
// (not of a room message) and the pending users, each once.
func usersOf(e *entry, room bool) []string {
	us := []string{e.msg.From}
	if !room && e.msg.To != "" && e.msg.To != e.msg.From {
		us = append(us, e.msg.To)
	}
	for _, u := range e.pending {
		if !slices.Contains(us, u) {
			us = append(us, u)
		}
	}
	return us
}

// flags returns userApplyScript's flags of e for user u (see there).
func flags(e *entry, u string, room bool) string {
	var f []byte
	if slices.Contains(e.pending, u) {
		f = append(f, 'p')
	}
	if u == e.msg.From {
		f = append(f, 's')
	}
	if !room && (u == e.msg.From || u == e.msg.To) {
		if store.IsDirect(&e.msg) {
			f = append(f, 'i')
		}
		f = append(f, 'u')
	}
	return string(f)
}

// applyUsers is step 2 of Append: userApplyScript for each user of e,
// one call per user; the calls of the users whose slots one server holds
// go in one pipeline (followed by one WAIT), the servers' pipelines run
// concurrently. A user whose cursor shows a gap, or whose call failed,
// continues alone (applyUser).
func (s *Store) applyUsers(ctx context.Context, e *entry, epoch string, room bool) error {
	users := usersOf(e, room)
	var groups [][]string
	byAddr := map[string]int{}
	for _, u := range users {
		addr := ""
		if cc, ok := s.client.(*redis.ClusterClient); ok {
			if n, err := cc.MasterForKey(ctx, s.cursorKey(u)); err == nil {
				addr = n.Options().Addr
			} else {
				addr = "?" + u // unknown: alone
			}
		}
		i, ok := byAddr[addr]
		if !ok {
			i = len(groups)
			byAddr[addr] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], u)
	}
	errs := make(chan error, len(groups))
	for _, g := range groups {
		go func() { errs <- s.applyGroup(ctx, g, e, epoch, room) }()
	}
	var first error
	for range groups {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// applyGroup runs userApplyScript for users (whose slots one server
// holds) in one step; those that report a gap, or all of them when the
// step failed, continue with applyUser.
func (s *Store) applyGroup(ctx context.Context, users []string, e *entry, epoch string, room bool) error {
	if len(users) == 1 {
		return s.applyUser(ctx, users[0], e, epoch, room)
	}
	calls := make([]call, len(users))
	for i, u := range users {
		calls[i] = s.applyCall(u, e.msg.Conv, applyMode(room), epoch, 0, []*entry{e}, room)
	}
	cmds, err := s.step(ctx, s.cursorKey(users[0]), calls...)
	if err != nil && !retryable(err) {
		return err
	}
	for i, u := range users {
		if err == nil {
			if res, rerr := cmds[i].(*redis.Cmd).Slice(); rerr == nil && len(res) == 2 {
				if code, _ := res[0].(int64); code == 0 {
					continue
				}
			}
		}
		if err := s.applyUser(ctx, u, e, epoch, room); err != nil {
			return err
		}
	}
	return nil
}

// applyMode is userApplyScript's mode: no cursor for a room message.
func applyMode(room bool) string {
	if room {
		return "n"
	}
	return "d"
}

// applyUser runs userApplyScript for user u with e, filling a gap from
// history when the script reports one.
func (s *Store) applyUser(ctx context.Context, u string, e *entry, epoch string, room bool) error {
	mode := applyMode(room)
	run := []*entry{e}
	floor := uint64(0)
	for round := 0; ; round++ {
		res, err := s.runApply(ctx, u, e.msg.Conv, mode, epoch, floor, run, room)
		if err != nil {
			return err
		}
		if len(res) != 2 {
			return fmt.Errorf("unexpected reply %v", res)
		}
		code, _ := res[0].(int64)
		if code == 0 {
			if run[len(run)-1] == e {
				return nil
			}
			run = []*entry{e} // a chunk of a long gap applied: go on
			continue
		}
		if round > 1000 {
			return fmt.Errorf("gap in %q for %q not filled", e.msg.Conv, u)
		}
		cur, _ := res[1].(int64)
		lo, hi := uint64(max(cur, 0))+1, e.seq-1
		if hi-lo+1 > maxGapFill {
			hi = lo + maxGapFill - 1
		}
		fill, gone, err := s.fetchRun(ctx, e.msg.Conv, lo, hi)
		if err != nil {
			return err
		}
		floor = max(floor, gone)
		switch {
		case hi == e.seq-1:
			run = append(fill, e)
		case len(fill) > 0:
			run = fill
		default:
			run = []*entry{e}
		}
	}
}

// runApply runs userApplyScript once for u (see there).
func (s *Store) runApply(ctx context.Context, u, conv, mode, epoch string, floor uint64, run []*entry, room bool) ([]any, error) {
	c := s.applyCall(u, conv, mode, epoch, floor, run, room)
	cmds, err := s.step(ctx, c.keys[0], c)
	if err != nil {
		return nil, err
	}
	return cmds[0].(*redis.Cmd).Slice()
}

// applyCall is the userApplyScript call for u with run.
func (s *Store) applyCall(u, conv, mode, epoch string, floor uint64, run []*entry, room bool) call {
	keys := []string{s.cursorKey(u), s.pendingKey(u), s.pmsgKey(u), s.pcountKey(u), s.marksKey(u), s.indexKey(u), s.headsKey(u), s.pepochKey(u)}
	args := make([]any, 0, 6+6*len(run))
	args = append(args, conv, strconv.FormatUint(floor, 10), mode, epoch, s.userChannel(u), "")
	for _, e := range run {
		f := flags(e, u, room)
		if args[5] == "" && strings.IndexByte(f, 'p') >= 0 {
			args[5] = s.newEpoch() // for u's queue, if it has no epoch
		}
		args = append(args, strconv.FormatUint(e.seq, 10), e.value, f,
			encodeMessageHeader(e.origin), inboxScore(e.msg.TS), e.msg.From)
	}
	return call{userApplyScript, keys, args}
}

// fetchRun reads the messages lo..hi of conv from history, with their
// meta fields, for a gap fill. Seqs no longer retained are skipped:
// gone is the highest of them (0 if none), the floor to give the script.
func (s *Store) fetchRun(ctx context.Context, conv string, lo, hi uint64) ([]*entry, uint64, error) {
	if lo > hi {
		return nil, 0, nil
	}
	fields := []string{"f"}
	for q := lo; q <= hi; q++ {
		f := strconv.FormatUint(q, 10)
		fields = append(fields, f, "x"+f)
	}
	vals, err := s.client.HMGet(ctx, s.convKey(conv), fields...).Result()
	if err != nil {
		return nil, 0, err
	}
	var out []*entry
	gone := uint64(0)
	for i := 1; i+1 < len(vals); i += 2 {
		seq := lo + uint64(i-1)/2
		v, ok := vals[i].(string)
		if !ok {
			gone = seq
			out = out[:0] // everything before a missing seq is below the floor
			continue
		}
		m, err := decode(v)
		if err != nil {
			return nil, 0, fmt.Errorf("history of %q: %w", conv, err)
		}
		e := &entry{seq: seq, value: v, msg: m, pending: defaultPending(&m)}
		if meta, ok := vals[i+1].(string); ok {
			var p []string
			var custom bool
			e.origin, p, custom = decodeMeta(meta)
			if custom {
				e.pending = p
			}
		}
		out = append(out, e)
	}
	return out, gone, nil
}

// appendOne is Append on one Redis server (a client that is not a
// cluster client): appendOneScript does every step in one call, so one
// round trip (and one WAIT) instead of three. What it writes is what the
// steps write; a user whose cursor shows a gap (which only a split
// Append that died between its steps can leave) is filled by applyUser
// after it, as in the split Append.
func (s *Store) appendOne(ctx context.Context, req store.AppendRequest, pending []string, cidKey string) (store.Message, bool, error) {
	conv := req.Msg.Conv
	ck := s.convKey(conv)
	room := s.isRoom(&req.Msg)
	probe := &entry{msg: req.Msg, pending: pending, origin: req.Origin}
	users := usersOf(probe, room)
	keys := make([]string, 0, 2+8*len(users))
	keys = append(keys, ck)
	hasCID := "0"
	if cidKey != "" {
		hasCID = "1"
		keys = append(keys, cidKey)
	}
	nck := len(keys)
	var roomChan any = ""
	header := encodeMessageHeader(req.Origin)
	if room {
		roomChan = s.roomChannel(req.Msg.To)
	}
	enc := string(encode(&req.Msg))
	args := make([]any, 0, 19+2*len(users))
	args = append(args, nck, max(s.opts.MaxPending, 0), len(users), max(s.opts.MaxPendingPerSender, 0), req.Msg.From,
		applyMode(room), header, inboxScore(req.Msg.TS), conv,
		hasCID, enc, s.newEpoch(), s.maxHistory, s.cidTTL, s.historyTTL, trimBatch,
		encodeMeta(req.Origin, pending, defaultPending(&req.Msg)), roomChan, header)
	for _, u := range users {
		keys = append(keys, s.cursorKey(u), s.pendingKey(u), s.pmsgKey(u), s.pcountKey(u), s.marksKey(u), s.indexKey(u), s.headsKey(u), s.pepochKey(u))
		args = append(args, flags(probe, u, room), s.userChannel(u))
	}
	cmds, err := s.step(ctx, ck, call{appendOneScript, keys, args})
	if err != nil {
		return store.Message{}, false, s.wrap("append", err)
	}
	res, err := cmds[0].(*redis.Cmd).Slice()
	if err != nil || len(res) < 1 {
		return store.Message{}, false, fmt.Errorf("wshub/redisstore: append: unexpected reply %v (%v)", res, err)
	}
	switch kind, _ := res[0].(string); kind {
	case "full":
		if len(res) != 4 {
			break
		}
		bound, _ := res[1].(string)
		n, _ := res[2].(int64)
		i, _ := res[3].(int64)
		if i < 0 || int(i) >= len(users) {
			break
		}
		if bound == "sender" {
			return store.Message{}, false, fmt.Errorf("%w: %q holds %d messages from %q (MaxPendingPerSender)", store.ErrPendingFull, users[i], n, req.Msg.From)
		}
		return store.Message{}, false, fmt.Errorf("%w: %q holds %d messages (MaxPending)", store.ErrPendingFull, users[i], n)
	case "dup":
		e, epoch, dup, err := convReply(res[1:], req, pending, enc)
		if err != nil {
			return store.Message{}, false, err
		}
		if e.inHistory {
			if err := s.applyUsers(ctx, e, epoch, room); err != nil {
				return store.Message{}, false, s.wrap("append", err)
			}
		}
		return e.msg, dup, nil
	case "ok":
		if len(res) < 3 {
			break
		}
		e, epoch, _, err := convReply([]any{int64(0), res[1], res[2]}, req, pending, enc)
		if err != nil {
			return store.Message{}, false, err
		}
		for _, r := range res[3:] {
			i, _ := r.(int64)
			if i < 0 || int(i) >= len(users) {
				return store.Message{}, false, fmt.Errorf("wshub/redisstore: append: unexpected reply %v", res)
			}
			if err := s.applyUser(ctx, users[i], e, epoch, room); err != nil {
				return store.Message{}, false, s.wrap("append", err)
			}
		}
		return e.msg, false, nil
	}
	return store.Message{}, false, fmt.Errorf("wshub/redisstore: append: unexpected reply %v", res)
}
