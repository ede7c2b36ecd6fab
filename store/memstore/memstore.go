// Package memstore is a store.Store kept in the memory of one process: for
// tests, demos and hubs whose history may be thrown away.
//
// # Durability
//
// "Durable" for memstore means "in this process's memory until Close": a
// receipt sent after Append returned survives every later call, but nothing
// survives the process or Close. Each Store has its own random Epoch (a
// UUID), so a client that kept seqs from an earlier process learns from the
// changed epoch that they mean nothing now.
//
// # Bounds
//
// A long-running process must not grow without limit, so a Store keeps:
//
//   - per conversation, the newest Options.HistoryLimit messages (default
//     10,000). An Append beyond that drops the conversation's oldest
//     message: Page.First moves up by one, Page.Last keeps counting, and a
//     Query reaching below First returns what is still retained.
//   - per user, at most Options.MaxPending pending messages (default
//     10,000), and at most Options.MaxPendingPerSender of them from one
//     sender (default 1,000). An Append that would go past either bound for
//     any of its recipients is refused with store.ErrPendingFull and stores
//     nothing; a pending message leaves its queue only by Ack. A queued
//     message holds its copy even after history dropped it.
//   - (sender, cid) records for Options.CIDTTL (default 24 h) and at most
//     Options.CIDLimit of them (default 100,000); see Options.CIDLimit for
//     which record goes first when the store is full. After a record is
//     gone, a resend with that cid is stored as a new message.
//
// The number of conversations, of users with a non-empty pending queue and
// of rooms is not bounded by the store: it is as large as the hub's
// population. A user's queue is freed when it becomes empty; a room when its
// last member leaves.
//
// # Validation
//
// An empty conversation, sender or message id (Append), conversation
// (History), user or room (the other methods) is rejected with an error
// that wraps store.ErrInvalid.
//
// # Sharing
//
// Messages returned by History, Pending and a duplicate Append share their
// Body with the store's copy: callers must treat them as read-only. Append
// copies the Body it is given, so the caller may reuse its buffer.
//
// # Memory
//
// Each message is kept, with its cid, in one allocation that holds no
// pointers (about 250-350 bytes of heap for a short chat message), shared by
// the history, the pending queues and the cid records: the garbage collector
// marks it without scanning it, so a store holding millions of messages adds
// little to every collection of the process.
package memstore

import (
	"context"
	"fmt"
	"hash/maphash"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/wshub/wshub/store"
)

// Defaults used for zero fields of Options.
const (
	// DefaultHistoryLimit is the default number of messages kept per
	// conversation.
	DefaultHistoryLimit = 10_000
	// DefaultMaxPending is the default bound of one user's pending queue.
	DefaultMaxPending = 10_000
	// DefaultMaxPendingPerSender is the default bound of the messages of
	// one sender in one user's pending queue.
	DefaultMaxPendingPerSender = 1_000
	// DefaultCIDTTL is the default time a (sender, cid) record is kept.
	DefaultCIDTTL = 24 * time.Hour
	// DefaultCIDLimit is the default number of (sender, cid) records kept.
	DefaultCIDLimit = 100_000
)

// numShards is the number of shards of the conversation, user and room
// indexes. A power of two so that the shard is a mask of the hash.
const numShards = 64

// cidShardSize is the number of cid records per shard below which fewer
// shards are used: with a CIDLimit under 2*cidShardSize there is a single
// shard and eviction is strictly oldest-first across the store.
const cidShardSize = 1024

// Options configures a Store. The zero value means the documented defaults.
type Options struct {
	// HistoryLimit is the number of newest messages kept per
	// conversation; older ones fall off. Zero or less means
	// DefaultHistoryLimit.
	HistoryLimit int
	// MaxPending is the most messages one user's pending queue holds; an
	// Append past it is refused with store.ErrPendingFull. Zero means
	// DefaultMaxPending (10,000); negative means unbounded.
	MaxPending int
	// MaxPendingPerSender is the most messages from one sender that one
	// user's pending queue holds, so that one sender cannot fill it for
	// everyone; an Append past it is refused with store.ErrPendingFull.
	// Zero means DefaultMaxPendingPerSender (1,000); negative means
	// unbounded.
	MaxPendingPerSender int
	// CIDTTL is how long a (sender, cid) record is kept after the Append
	// that made it. Zero or less means DefaultCIDTTL.
	CIDTTL time.Duration
	// CIDLimit is the most (sender, cid) records the Store keeps; zero or
	// less means DefaultCIDLimit. Records are spread by a hash of
	// (sender, cid) over shards (the largest power of two not above
	// CIDLimit/1024, from 1 to 64), each holding an equal share of
	// CIDLimit; a full shard evicts its oldest record. So with CIDLimit
	// below 2048 the oldest record of the whole store goes first; above,
	// the oldest of one shard, which is among the store's oldest. A
	// record keeps its message alive (a duplicate Append returns it), even
	// after history dropped that message.
	CIDLimit int
	// Now returns the current time, for CIDTTL. Nil means time.Now. Tests
	// set it to move time forward without waiting.
	Now func() time.Time
}

// Store is an in-memory store.Store. Create it with New; the zero value is
// not usable. It is safe for concurrent use: conversations, users and rooms
// are sharded, and each conversation has its own lock, so Appends to
// different conversations proceed in parallel.
//
// Lock order (never acquired in the other direction): conversation.mu,
// then cidShard.mu, then userShard.mu, several of them in shard order;
// roomShard.mu, then userShard.mu (membership). inboxShard.mu comes after
// all of these (several of them in shard order), and the conversation
// index and read markers live there. convShard.mu is never held while
// acquiring another lock.
type Store struct {
	epoch        string
	historyLimit int
	maxPending   int // 0: unbounded
	maxPerSender int // 0: unbounded
	cidTTL       time.Duration
	now          func() time.Time
	seed         maphash.Seed

	closed   atomic.Bool
	queueGen atomic.Uint64 // generations of pending queues (PendingPage)

	convs   [numShards]convShard
	users   [numShards]userShard
	rooms   [numShards]roomShard
	inboxes [numShards]inboxShard
	cids    []cidShard // len is a power of two, see Options.CIDLimit
	cidMask uint64
}

var (
	_ store.Store        = (*Store)(nil)
	_ store.Inbox        = (*Store)(nil)
	_ store.NonBlocking  = (*Store)(nil)
	_ store.PendingPager = (*Store)(nil)
)

// NonBlocking reports true: the store's calls never wait for I/O (see
// store.NonBlocking), so the hub runs them on the goroutine that read the
// frame.
func (*Store) NonBlocking() bool { return true }

// New returns an empty Store with a fresh random Epoch.
func New(opts Options) *Store {
	s := &Store{
		epoch:        uuid.NewString(),
		historyLimit: opts.HistoryLimit,
		maxPending:   bound(opts.MaxPending, DefaultMaxPending),
		maxPerSender: bound(opts.MaxPendingPerSender, DefaultMaxPendingPerSender),
		cidTTL:       opts.CIDTTL,
		now:          opts.Now,
		seed:         maphash.MakeSeed(),
	}
	if s.historyLimit <= 0 {
		s.historyLimit = DefaultHistoryLimit
	}
	if s.cidTTL <= 0 {
		s.cidTTL = DefaultCIDTTL
	}
	if s.now == nil {
		s.now = time.Now
	}
	cidLimit := opts.CIDLimit
	if cidLimit <= 0 {
		cidLimit = DefaultCIDLimit
	}
	n := 1
	for n*2 <= numShards && n*2*cidShardSize <= cidLimit {
		n *= 2
	}
	s.cids = make([]cidShard, n)
	s.cidMask = uint64(n - 1)
	for i := range s.cids {
		// Shares of cidLimit: the first cidLimit%n shards take one more.
		s.cids[i].limit = cidLimit / n
		if i < cidLimit%n {
			s.cids[i].limit++
		}
		s.cids[i].m = make(map[cidKey]cidRecord)
	}
	for i := range s.convs {
		s.convs[i].m = make(map[string]*conversation)
	}
	for i := range s.users {
		s.users[i].pending = make(map[string]*pendingQueue)
		s.users[i].rooms = make(map[string]map[string]struct{})
	}
	for i := range s.rooms {
		s.rooms[i].members = make(map[string]map[string]struct{})
	}
	for i := range s.inboxes {
		s.inboxes[i].m = make(map[string]*userInbox)
	}
	return s
}

// bound returns the bound an option v means: def for zero, 0 (unbounded)
// for a negative v.
func bound(v, def int) int {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

// Epoch returns the epoch of every conversation of s: a UUID chosen by New.
func (s *Store) Epoch() string { return s.epoch }

func (s *Store) shard(key string) uint64 { return maphash.String(s.seed, key) }

// check returns the error a method must return before doing anything.
func (s *Store) check(ctx context.Context) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	return ctx.Err()
}

// Append implements store.Store. It copies req.Msg.Body; the returned
// message of a first Append carries the caller's own Body, that of a
// duplicate the store's copy (read-only).
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

	c := s.conversation(req.Msg.Conv)
	c.mu.Lock()
	defer c.mu.Unlock()

	// The cid shard stays locked until the write is complete, so a
	// concurrent duplicate (possibly to another conversation) waits and
	// then sees the whole write. The duplicate check comes before the
	// bounds: a resend of a stored message gets it back even when the
	// queue is full.
	var (
		cs  *cidShard
		key cidKey
		now time.Time
	)
	if req.CID != "" {
		key = cidKey{from: req.Msg.From, cid: req.CID}
		cs = &s.cids[maphash.Comparable(s.seed, key)&s.cidMask]
		cs.mu.Lock()
		defer cs.mu.Unlock()
		now = s.now()
		cs.expireLocked(now, s.cidTTL)
		if rec, ok := cs.m[key]; ok {
			return rec.rec.message(), true, nil
		}
	}
	stored, err := s.appendQueued(c, &req)
	if err != nil {
		return store.Message{}, false, err
	}
	// The record's own strings from here on: the caller's become garbage.
	if cs != nil {
		cs.addLocked(cidKey{from: stored.msg.From, cid: stored.cid}, stored.rec, now)
	}
	s.indexLocked(&stored.msg)
	m := stored.msg
	m.Body = req.Msg.Body
	return m, false, nil
}

// appendQueued appends req.Msg to c and enqueues it for req.Pending, unless
// a queue is at a bound. The recipients' queues stay locked from the check
// to the enqueue, so that concurrent Appends cannot both take the last
// place. c.mu is held for writing.
func (s *Store) appendQueued(c *conversation, req *store.AppendRequest) (entry, error) {
	if len(req.Pending) == 1 {
		// A direct message: one queue, looked up once.
		u := req.Pending[0]
		sh := &s.users[s.shard(u)%numShards]
		sh.mu.Lock()
		defer sh.mu.Unlock()
		if err := s.roomIn(sh.pending[u], u, req.Msg.From); err != nil {
			return entry{}, err
		}
		stored := c.appendLocked(&req.Msg, req.CID, s.historyLimit)
		s.queueLocked(sh, u).push(stored.rec, stored.msg.ID, stored.msg.From)
		return stored, nil
	}
	var locked queueLocks
	s.lockQueues(&locked, req.Pending)
	defer s.unlockQueues(&locked)
	if err := s.checkRoomLocked(req.Pending, req.Msg.From); err != nil {
		return entry{}, err
	}
	stored := c.appendLocked(&req.Msg, req.CID, s.historyLimit)
	s.enqueueLocked(req.Pending, &stored)
	return stored, nil
}

// queueLocks lists the user shards an Append holds locked, in shard order.
// It lives on the caller's stack: up to four shards take no allocation.
type queueLocks struct {
	n    int
	buf  [4]uint64
	more []uint64 // all of them when there are more than len(buf)
}

func (l *queueLocks) list() []uint64 {
	if l.more != nil {
		return l.more
	}
	return l.buf[:l.n]
}

// lockQueues locks the user shards of users, each once, in shard order
// (the lock order of several userShard.mu), and lists them in l.
func (s *Store) lockQueues(l *queueLocks, users []string) {
	for _, u := range users {
		i := s.shard(u) % numShards
		switch all := l.list(); {
		case slices.Contains(all, i):
		case l.more == nil && l.n < len(l.buf):
			l.buf[l.n] = i
			l.n++
		case l.more == nil:
			l.more = append(append(make([]uint64, 0, 2*len(l.buf)), l.buf[:]...), i)
		default:
			l.more = append(l.more, i)
		}
	}
	all := l.list()
	slices.Sort(all)
	for _, i := range all {
		s.users[i].mu.Lock()
	}
}

// unlockQueues unlocks the shards lockQueues locked.
func (s *Store) unlockQueues(l *queueLocks) {
	for _, i := range slices.Backward(l.list()) {
		s.users[i].mu.Unlock()
	}
}

// checkRoomLocked returns an error wrapping store.ErrPendingFull if the
// queue of one of users is at a bound for a message from from. The users'
// shards are locked.
func (s *Store) checkRoomLocked(users []string, from string) error {
	for _, u := range users {
		if err := s.roomIn(s.users[s.shard(u)%numShards].pending[u], u, from); err != nil {
			return err
		}
	}
	return nil
}

// roomIn returns an error wrapping store.ErrPendingFull if q, user's queue
// (nil when empty), is at a bound for a message from from. Its shard is
// locked.
func (s *Store) roomIn(q *pendingQueue, user, from string) error {
	switch {
	case q == nil:
	case s.maxPending > 0 && q.live >= s.maxPending:
		return fmt.Errorf("%w: %q holds %d messages (MaxPending)", store.ErrPendingFull, user, q.live)
	case q.from != nil && q.from[from] >= s.maxPerSender:
		return fmt.Errorf("%w: %q holds %d messages from %q (MaxPendingPerSender)", store.ErrPendingFull, user, q.from[from], from)
	}
	return nil
}

// newQueue returns an empty pending queue.
func (s *Store) newQueue() *pendingQueue {
	return &pendingQueue{gen: s.queueGen.Add(1), index: make(map[string]int), perSender: s.maxPerSender}
}

// conversation returns conv's state, creating it if needed.
func (s *Store) conversation(conv string) *conversation {
	sh := &s.convs[s.shard(conv)%numShards]
	sh.mu.RLock()
	c := sh.m[conv]
	sh.mu.RUnlock()
	if c != nil {
		return c
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if c = sh.m[conv]; c == nil {
		c = &conversation{}
		sh.m[conv] = c
	}
	return c
}

// lookup returns conv's state or nil if conv was never written.
func (s *Store) lookup(conv string) *conversation {
	sh := &s.convs[s.shard(conv)%numShards]
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	return sh.m[conv]
}

// enqueueLocked adds m to the pending queue of every user in users, whose
// shards are locked. The caller holds the lock of m's conversation, so that
// queues receive one conversation's messages in seq order.
func (s *Store) enqueueLocked(users []string, m *entry) {
	for _, u := range users {
		sh := &s.users[s.shard(u)%numShards]
		s.queueLocked(sh, u).push(m.rec, m.msg.ID, m.msg.From)
	}
}

// History implements store.Store.
func (s *Store) History(ctx context.Context, conv string, q store.Query) (store.Page, error) {
	if err := s.check(ctx); err != nil {
		return store.Page{}, err
	}
	if conv == "" {
		return store.Page{}, fmt.Errorf("%w: empty conversation", store.ErrInvalid)
	}
	page := store.Page{Epoch: s.epoch}
	c := s.lookup(conv)
	if c == nil {
		return page, nil
	}
	limit := uint64(q.Limit)
	if q.Limit <= 0 {
		limit = store.DefaultLimit
	}

	c.mu.RLock()
	defer c.mu.RUnlock()
	page.Last = c.last
	if c.n == 0 {
		return page, nil
	}
	first := c.first()
	page.First = first
	// The window before Limit is applied: seqs lo..hi inclusive.
	lo, hi := first, c.last
	if q.Before > 0 {
		if q.Before <= lo {
			return page, nil
		}
		hi = min(hi, q.Before-1)
	}
	if q.Since > 0 {
		if q.Since >= hi {
			return page, nil
		}
		lo = max(lo, q.Since+1)
		if hi-lo+1 > limit {
			hi, page.More = lo+limit-1, true
		}
	} else if hi-lo+1 > limit {
		lo, page.More = hi-limit+1, true
	}
	page.Items = make([]store.Message, 0, hi-lo+1)
	for seq := lo; seq <= hi; seq++ {
		page.Items = append(page.Items, c.at(seq).message())
	}
	return page, nil
}

// Pending implements store.Store.
func (s *Store) Pending(ctx context.Context, user string) ([]store.Message, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if user == "" {
		return nil, fmt.Errorf("%w: empty user", store.ErrInvalid)
	}
	sh := &s.users[s.shard(user)%numShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	q := sh.pending[user]
	if q == nil {
		return nil, nil
	}
	return q.list(), nil
}

// PendingPage implements store.PendingPager. A cursor is the queue's
// generation and a position in it ("3.257"): positions never change
// (pendingItem), and a queue freed when it emptied and made again has a
// new generation, whose messages all came after any cursor of the old
// one, so a walk starts it from the beginning.
func (s *Store) PendingPage(ctx context.Context, user, cursor string, limit int) ([]store.Message, string, error) {
	if err := s.check(ctx); err != nil {
		return nil, "", err
	}
	if user == "" {
		return nil, "", fmt.Errorf("%w: empty user", store.ErrInvalid)
	}
	var gen uint64
	var pos int
	if cursor != "" {
		g, p, ok := strings.Cut(cursor, ".")
		var gerr, perr error
		gen, gerr = strconv.ParseUint(g, 10, 64)
		pos, perr = strconv.Atoi(p)
		if !ok || gerr != nil || perr != nil || pos < 0 {
			return nil, "", fmt.Errorf("%w: pending cursor %q", store.ErrInvalid, cursor)
		}
	}
	limit = max(limit, 1)
	sh := &s.users[s.shard(user)%numShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	q := sh.pending[user]
	if q == nil {
		return nil, "", nil
	}
	i := q.head
	if cursor != "" && gen == q.gen {
		i = max(i, q.at(pos))
	}
	page, next := q.page(i, limit)
	if next < 0 {
		return page, "", nil
	}
	return page, strconv.FormatUint(q.gen, 10) + "." + strconv.Itoa(next), nil
}

// Ack implements store.Store. Each id costs O(1) amortized.
func (s *Store) Ack(ctx context.Context, user string, ids ...string) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if user == "" {
		return fmt.Errorf("%w: empty user", store.ErrInvalid)
	}
	sh := &s.users[s.shard(user)%numShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	q := sh.pending[user]
	if q == nil {
		return nil
	}
	for _, id := range ids {
		q.remove(id)
	}
	if q.live == 0 {
		sh.dropQueueLocked(user, q)
	}
	return nil
}

// Join implements store.Store.
func (s *Store) Join(ctx context.Context, room, user string) error {
	return s.setMembership(ctx, room, user, addToSet)
}

// Leave implements store.Store.
func (s *Store) Leave(ctx context.Context, room, user string) error {
	return s.setMembership(ctx, room, user, removeFromSet)
}

// setMembership applies change (addToSet or removeFromSet) to the room's
// members and the user's rooms, under both shards' locks.
func (s *Store) setMembership(ctx context.Context, room, user string, change func(map[string]map[string]struct{}, string, string)) error {
	if err := s.checkMembership(ctx, room, user); err != nil {
		return err
	}
	rs := &s.rooms[s.shard(room)%numShards]
	us := &s.users[s.shard(user)%numShards]
	rs.mu.Lock()
	defer rs.mu.Unlock()
	us.mu.Lock()
	defer us.mu.Unlock()
	change(rs.members, room, user)
	change(us.rooms, user, room)
	return nil
}

func (s *Store) checkMembership(ctx context.Context, room, user string) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if room == "" || user == "" {
		return fmt.Errorf("%w: empty room or user", store.ErrInvalid)
	}
	return nil
}

// Rooms implements store.Store.
func (s *Store) Rooms(ctx context.Context, user string) ([]string, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if user == "" {
		return nil, fmt.Errorf("%w: empty user", store.ErrInvalid)
	}
	sh := &s.users[s.shard(user)%numShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return setKeys(sh.rooms[user]), nil
}

// Members implements store.Store.
func (s *Store) Members(ctx context.Context, room string) ([]string, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if room == "" {
		return nil, fmt.Errorf("%w: empty room", store.ErrInvalid)
	}
	sh := &s.rooms[s.shard(room)%numShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return setKeys(sh.members[room]), nil
}

// Close implements store.Store. It marks s closed; the memory is released
// when s is no longer referenced. Close always returns nil.
func (s *Store) Close() error {
	s.closed.Store(true)
	return nil
}

// convShard is one shard of the conversation index.
type convShard struct {
	mu sync.RWMutex
	m  map[string]*conversation // guarded by mu; entries are never removed
}

// conversation is one conversation's retained history: a ring of its
// newest messages, whose seqs are consecutive and end at last.
type conversation struct {
	mu    sync.RWMutex
	buf   []record // guarded by mu; ring, len(buf) <= historyLimit
	start int      // guarded by mu; index in buf of the oldest message
	n     int      // guarded by mu; number of messages retained
	last  uint64   // guarded by mu; newest seq assigned, 0 if none
	ts    int64    // guarded by mu; TS of the message with seq last
}

// first returns the oldest retained seq; c.mu held, c.n > 0.
func (c *conversation) first() uint64 { return c.last - uint64(c.n) + 1 }

// at returns the message with seq, which is retained; c.mu held.
func (c *conversation) at(seq uint64) record {
	return c.buf[(c.start+int(seq-c.first()))%len(c.buf)]
}

// entry is a record just made, with its fields decoded once.
type entry struct {
	rec record
	msg store.Message // sharing rec's bytes
	cid string        // sharing rec's bytes
}

// appendLocked stores msg with the next seq, and cid, and returns the
// record; c.mu is held for writing. History, pending queues and cid records
// share the record, which is never modified.
func (c *conversation) appendLocked(msg *store.Message, cid string, limit int) entry {
	c.last++
	c.ts = msg.TS
	m := newRecord(msg, c.last, cid)
	e := entry{rec: m}
	e.msg, e.cid = m.decode()
	switch {
	case c.n < len(c.buf):
		c.buf[(c.start+c.n)%len(c.buf)] = m
		c.n++
	case len(c.buf) < limit:
		grown := make([]record, min(max(2*len(c.buf), 4), limit))
		copy(grown, c.buf[c.start:])
		copy(grown[len(c.buf)-c.start:], c.buf[:c.start])
		c.buf, c.start = grown, 0
		c.buf[c.n] = m
		c.n++
	default:
		c.buf[c.start] = m // the oldest falls off
		c.start = (c.start + 1) % len(c.buf)
	}
	return e
}

// userShard is one shard of the per-user state.
type userShard struct {
	mu      sync.Mutex
	pending map[string]*pendingQueue       // guarded by mu; no empty queues
	rooms   map[string]map[string]struct{} // guarded by mu; user -> rooms; no empty sets
	// spare holds emptied small queues for reuse (guarded by mu; at most
	// spareQueues): a user whose every message is acknowledged as soon as
	// it is written (the common case for one online) would otherwise
	// leave a queue, its index map and its array for the collector at
	// each message.
	spare []*pendingQueue
}

// spareQueues bounds the emptied queues a userShard keeps for reuse, and
// spareQueueCap the array of one it keeps (a queue that once held many
// messages keeps a big index map too: it goes to the collector).
const (
	spareQueues   = 8
	spareQueueCap = 64
)

// queueLocked returns u's pending queue, making one (or reusing a spare)
// if u has none. sh is u's shard, locked.
func (s *Store) queueLocked(sh *userShard, u string) *pendingQueue {
	if q := sh.pending[u]; q != nil {
		return q
	}
	var q *pendingQueue
	if n := len(sh.spare); n > 0 {
		q = sh.spare[n-1]
		sh.spare[n-1] = nil
		sh.spare = sh.spare[:n-1]
		q.gen = s.queueGen.Add(1) // a new queue to PendingPage's cursors
	} else {
		q = s.newQueue()
	}
	sh.pending[u] = q
	return q
}

// dropQueueLocked removes u's queue q, now empty, keeping it as a spare
// when it is small. sh is u's shard, locked.
func (sh *userShard) dropQueueLocked(u string, q *pendingQueue) {
	delete(sh.pending, u)
	if len(sh.spare) >= spareQueues || cap(q.items) > spareQueueCap {
		return
	}
	clear(q.items[:cap(q.items)])
	q.items, q.head, q.next, q.live, q.from = q.items[:0], 0, 0, 0, nil
	clear(q.index)
	sh.spare = append(sh.spare, q)
}

// pendingQueue is one user's pending messages in enqueue order. Acked
// entries become tombstones that are skipped and compacted away, so that
// Ack by id is O(1) amortized. It is guarded by its userShard's mu.
type pendingQueue struct {
	items []pendingItem  // items[head:] are live entries and tombstones (nil rec)
	head  int            // items[:head] are all tombstones
	next  int            // position of the next entry pushed
	index map[string]int // message id -> position of its live entry
	live  int            // number of live entries
	gen   uint64         // the queue's generation, for PendingPage's cursors

	// from counts the live entries per sender, for the bound perSender
	// (0: unbounded). No sender can be at the bound while fewer than
	// perSender entries are live, so from is only kept from when live
	// reaches perSender until it falls below half of it: nil means
	// live < perSender. A queue that stays short counts nothing.
	perSender int
	from      map[string]int
}

// pendingItem is one entry of a pending queue: a message (nil once
// removed) and its position, which increases along the queue and never
// changes, so that compaction moves no cursor (PendingPage).
type pendingItem struct {
	rec record
	pos int
}

// push appends m. A message already in the queue is not added again.
// Nothing is ever dropped: the caller checked the bounds.
func (q *pendingQueue) push(m record, id, from string) {
	if _, ok := q.index[id]; ok {
		return
	}
	q.index[id] = q.next
	q.items = append(q.items, pendingItem{rec: m, pos: q.next})
	q.next++
	q.live++
	switch {
	case q.from != nil:
		q.from[from]++
	case q.perSender > 0 && q.live >= q.perSender:
		q.from = make(map[string]int)
		for _, it := range q.items[q.head:] {
			if it.rec != nil {
				q.from[it.rec.from()]++
			}
		}
	}
}

// at returns the index in items of the first entry at position pos or
// after it (len(items) if none): O(1) while the positions in items are
// consecutive, as pushes and sliding compaction keep them, else a binary
// search (after a rebuild).
func (q *pendingQueue) at(pos int) int {
	if len(q.items) == 0 {
		return 0
	}
	if k := pos - q.items[0].pos; k >= 0 && k < len(q.items) && q.items[k].pos == pos {
		return k
	}
	k, _ := slices.BinarySearchFunc(q.items, pos, func(it pendingItem, pos int) int { return it.pos - pos })
	return k
}

// remove turns the live entry of id into a tombstone, if there is one.
func (q *pendingQueue) remove(id string) {
	pos, ok := q.index[id]
	if !ok {
		return
	}
	delete(q.index, id)
	q.tombstone(q.at(pos))
}

// tombstone marks the live entry items[i], whose id has left the index,
// as removed, then restores the invariants: head on a live entry (or at
// the end) and tombstones at most about as many as live entries.
func (q *pendingQueue) tombstone(i int) {
	if q.from != nil {
		if q.live-1 < q.perSender/2 {
			q.from = nil
		} else if from := q.items[i].rec.from(); q.from[from] > 1 {
			q.from[from]--
		} else {
			delete(q.from, from)
		}
	}
	q.items[i].rec = nil
	q.live--
	for q.head < len(q.items) && q.items[q.head].rec == nil {
		q.head++
	}
	switch {
	case q.head == len(q.items):
		// All removed: start over, keeping the array.
		q.items, q.head = q.items[:0], 0
	case q.head >= 32 && 2*q.head >= len(q.items):
		// A FIFO queue's tombstones are at the front: slide the rest
		// down.
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	case len(q.items)-q.live >= 32 && len(q.items)-q.live > 2*q.live:
		// Acks out of order left tombstones in the middle: rebuild.
		q.rebuild()
	}
}

// rebuild copies the live entries to a new array, keeping their
// positions.
func (q *pendingQueue) rebuild() {
	items := make([]pendingItem, 0, 2*q.live)
	for _, it := range q.items[q.head:] {
		if it.rec != nil {
			items = append(items, it)
		}
	}
	q.items, q.head = items, 0
}

// list returns the live messages in enqueue order.
func (q *pendingQueue) list() []store.Message {
	out, _ := q.page(q.head, q.live)
	return out
}

// page returns up to limit live messages from items[i:], in enqueue order,
// and the position after the last one, or -1 when no live entry follows
// it.
func (q *pendingQueue) page(i, limit int) ([]store.Message, int) {
	out := make([]store.Message, 0, min(limit, q.live))
	for ; i < len(q.items) && len(out) < limit; i++ {
		if it := q.items[i]; it.rec != nil {
			out = append(out, it.rec.message())
		}
	}
	for j := i; j < len(q.items); j++ {
		if q.items[j].rec != nil {
			return out, q.items[i-1].pos + 1
		}
	}
	return out, -1
}

// roomShard is one shard of the room -> members index.
type roomShard struct {
	mu      sync.Mutex
	members map[string]map[string]struct{} // guarded by mu; no empty sets
}

func addToSet(sets map[string]map[string]struct{}, key, v string) {
	set := sets[key]
	if set == nil {
		set = make(map[string]struct{})
		sets[key] = set
	}
	set[v] = struct{}{}
}

func removeFromSet(sets map[string]map[string]struct{}, key, v string) {
	set := sets[key]
	delete(set, v)
	if len(set) == 0 {
		delete(sets, key)
	}
}

func setKeys(set map[string]struct{}) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	return out
}

// cidShard is one shard of the (sender, cid) records: a map for lookup and
// a FIFO in insertion (= time) order for eviction.
type cidShard struct {
	mu    sync.Mutex
	limit int                  // records kept at most; set by New
	m     map[cidKey]cidRecord // guarded by mu
	fifo  []cidEntry           // guarded by mu; fifo[head:] oldest first
	head  int                  // guarded by mu
	gen   uint64               // guarded by mu; last generation handed out
}

type cidKey struct{ from, cid string }

type cidRecord struct {
	rec record
	gen uint64 // matches the fifo entry that owns the record
}

type cidEntry struct {
	key cidKey
	at  int64 // Unix nanoseconds (a time.Time holds a pointer)
	gen uint64
}

// addLocked records key -> m at time now and evicts the oldest records
// beyond the shard's limit.
func (cs *cidShard) addLocked(key cidKey, m record, now time.Time) {
	cs.gen++
	cs.m[key] = cidRecord{rec: m, gen: cs.gen}
	cs.fifo = append(cs.fifo, cidEntry{key: key, at: now.UnixNano(), gen: cs.gen})
	for len(cs.m) > cs.limit {
		cs.popLocked()
	}
}

// expireLocked drops the records older than ttl.
func (cs *cidShard) expireLocked(now time.Time, ttl time.Duration) {
	for cs.head < len(cs.fifo) && time.Duration(now.UnixNano()-cs.fifo[cs.head].at) >= ttl {
		cs.popLocked()
	}
}

// popLocked drops the oldest fifo entry and its record.
func (cs *cidShard) popLocked() {
	e := cs.fifo[cs.head]
	cs.fifo[cs.head] = cidEntry{}
	cs.head++
	if rec, ok := cs.m[e.key]; ok && rec.gen == e.gen {
		delete(cs.m, e.key)
	}
	if cs.head == len(cs.fifo) {
		cs.fifo, cs.head = cs.fifo[:0], 0
	} else if cs.head >= 1024 && cs.head*2 >= len(cs.fifo) {
		n := copy(cs.fifo, cs.fifo[cs.head:])
		clear(cs.fifo[n:])
		cs.fifo, cs.head = cs.fifo[:n], 0
	}
}
