// Package redisstore is a store.Store kept in Redis, for a hub that has
// outgrown one machine: several hub processes given Stores on the same
// Redis (and the same Options.Prefix) act as one hub. They share seqs,
// history, pending queues, (sender, cid) records and room membership, and
// the Store is a store.Feed, through which each process delivers every
// message to its own connections, whichever process stored it. The Redis
// is one server (with replicas, or Sentinel: a failover client), or a
// Redis Cluster (*redis.ClusterClient, see OpenCluster).
//
// # Routing between hub processes
//
// Announcements are published with SPUBLISH (sharded pub/sub: a Redis
// Cluster routes them to the one shard owning the channel's slot; a
// single server treats them like PUBLISH) on the channel of what they
// concern (see channels.go):
//
//	<prefix>{u:<user>}     a direct message, to its sender's and its
//	                       recipient's channels; the user's joins and
//	                       leaves
//	<prefix>{c:r:<room>}   a room's messages
//	<prefix>{presence}     presence transitions
//
// Each channel carries the hash tag of the keys it is published next to,
// so that the script writing those keys publishes, inside the same
// atomic step. Subscribe passes the announcements on as store.Events. A
// hub whose store is a Feed (see wshub.Hub) delivers every message from
// its subscription, its own included; Event.Origin, the connection id the
// sending process gave in AppendRequest.Origin (kept in the message's
// meta field, never in the message), keeps the message from being echoed
// to the connection that sent it.
//
// Order: a room's messages are published by the conversation's step of
// Append, so in seq order. A direct message is published on each user's
// channel by that user's step, which applies a conversation's messages
// to the user in seq order, each once (the cursor, see Append below), so
// every subscriber of a user channel sees each conversation of that user
// in seq order, with no gaps and no repeats, whichever processes stored
// them. A membership change is published by the user's step of Join or
// Leave. Messages of different conversations, and a user's channel
// against a room's, have no order between them.
//
// Feed loss: pub/sub is not durable. Announcements made while a process
// is not subscribed are not replayed: Subscribe sends EventReady first,
// once Redis confirmed the subscription, and returns an error wrapping
// ErrFeedBroken as soon as the subscription may have missed anything.
// Nothing stored is lost, only its announcement: reconnecting clients
// catch up from their pending queue (direct messages) and with cmd 12
// and since, or cmd 17 (rooms).
//
// The connection registry is not shared: IsOnline, Users and Conns of a
// hub report that process's own connections only. What is shared:
//
//   - ephemeral frames (typing indicators, read-marker events): the Store
//     is a store.Signaler (signal.go);
//   - presence: the Store is a store.Presence, which keeps per-process
//     leases and the users online on each in Redis, measured by Redis's
//     own clock, and announces online and offline transitions on the
//     presence channel (presence.go).
//
// # Atomicity: single-slot steps
//
// Every script touches the keys of one hash slot, so that it runs on a
// Redis Cluster: the keys of a conversation carry the hash tag
// {c:<conv>}, those of a user {u:<user>}, the presence keys {presence}. A
// script runs alone on its server; what spans slots is a sequence of such
// steps, each idempotent, arranged so that a failure between two of them
// is repaired by the next call and never loses what a nil error
// promised.
//
// Append of a message from A in conversation C (to B, pending P):
//
//  0. Bounds, reads only: the cid record (a duplicate skips the rest of
//     this step) and, for each user of P, its queue size and its count
//     from A. A queue at a bound refuses the Append with
//     store.ErrPendingFull before anything is written. Concurrent Appends
//     to one recipient may each pass and together overshoot a bound by at
//     most their number.
//  1. The conversation's step (convAppendScript, slot of C): the cid
//     check (a duplicate returns the first message, and goes on to step 2
//     for it while history still holds it at its seq); else the next seq, the message in history, the history
//     bound, the cid record, and, when P is not the default ([B] for a
//     direct conversation, none else) or the Append has an origin, the
//     message's meta field (its origin and P), so that step 2 can be
//     redone from history alone. A room message is announced here.
//  2. One step per user U of {A, B} and P (userApplyScript, slot of U;
//     the calls of users on one server go in one pipeline): U's cursor
//     hash holds, per conversation, the last seq applied to U. Seqs at or
//     below it are skipped; a run starting above cursor + 1 is a gap: the
//     caller reads the missing messages (and their meta fields) from
//     history and calls again with the whole run. Each new seq is
//     enqueued for U if U is in its P, moves U's read marker if U sent
//     it, puts the conversation at the top of U's inbox index (direct
//     conversations), and is announced on U's channel (U the sender or
//     the recipient). A room message's step 2 only moves the sender's
//     marker (and queues it for P, which rooms usually leave empty), with
//     no cursor.
//  3. Durability: WAIT after each step, on the step's connection (see
//     Durability).
//
// So two processes appending to one conversation apply each user's
// messages in seq order, each once; an Append that died between step 1
// and step 2 (a crash, a failover, a timeout) returned an error, so no
// receipt was sent: the client's resend (same cid) finds the cid record
// and runs step 2 for the first message before it returns, and the next
// Append of the conversation fills the gap of B and A even without a
// resend (a user only in that message's P is filled by the resend). A
// nil error means stored and queued.
//
// A cid is scoped to (sender, conversation): its record lives in the
// conversation's slot, since a client resends a frame to the conversation
// it sent it to. The same cid in another conversation is another frame.
//
// Before its first write each script checks the types of the keys it
// writes, so a key clobbered by another program fails that step without
// a partial write of its slot. A step that failed that way after step 1
// ran leaves the message in history but not in that user's keys: the
// Append returns the error (no receipt), and the resend once the key is
// repaired completes it.
//
// Join and Leave are two steps: the room's member set (slot of
// r:<room>), then the user's room set (slot of the user), which
// announces the change when either set changed; calling again completes
// one that failed between them. MarkRead reads the conversation's latest
// seq, then moves the marker in the user's slot, capped at it.
// Conversations reads the user's slot in one script, then the peers'
// markers and the rooms' newest messages with pipelined reads. Ack,
// Pending, PendingPage, History, Rooms and Members touch one slot each.
//
// # Durability
//
// Redis acknowledges a write once it is in its memory; what survives a
// crash depends on the server's persistence settings and on replication.
// A hub sends a receipt after Append returned, so a receipt means:
//
//   - appendonly yes, appendfsync always: the write was fsynced to the
//     Append-only file before Redis replied (Redis writes and fsyncs the AOF
//     before sending the replies of the commands it just ran, one fsync for
//     all of them). A receipted message survives a crash of Redis or of its
//     machine. This is the setting for "a receipt is a promise".
//   - appendonly yes, appendfsync everysec (Redis's usual AOF setting): the
//     write is fsynced within about a second; a crash of the machine (or of
//     Redis while the disk is slow) can lose the last second or two of
//     receipted messages.
//   - no AOF (RDB snapshots only, or no persistence): everything since the
//     last snapshot is lost when Redis stops. A receipt means "stored in
//     Redis's memory".
//
// Replication is asynchronous: a failover to a replica (Sentinel, or a
// Redis Cluster promoting a master's replica) loses the writes the
// replica had not received. Options.WaitReplicas closes that window: each
// step is sent in one pipeline with WAIT numreplicas timeout after it, on
// the same connection (WAIT covers the writes of its own connection), on
// the server holding the step's slot, and a step fewer replicas
// acknowledged within Options.WaitTimeout fails the call with
// ErrNotReplicated (no receipt; the resend waits again: a duplicate's
// steps write too, the cid record's TTL and the cursor, so that their WAIT
// covers everything before). By default (WaitReplicas 0) a Store waits for
// one replica when the master reports one connected (INFO replication,
// checked again every few seconds and after errors), else not at all. A
// replica that acknowledged a write has it in memory, not necessarily on
// disk: Redis 7.0 has no WAITAOF (7.2), which would wait for the fsync of
// the replicas' AOF; with appendfsync always on the master, its own reply
// follows its fsync. The cost: BenchmarkClusterAppend.
//
// On a MOVED, ASK or connection error (a failover, a resharding) a step
// reloads the cluster's slot map and runs again on the slot's new master,
// for up to 3 s; the steps are idempotent (an Append without cid excepted,
// which may then store the message twice, as a retry always could).
//
// With no-appendfsync-on-rewrite yes, Redis skips fsyncs while it rewrites
// the AOF or saves a snapshot, so "always" then behaves like "no" for that
// time. Keys evicted by a maxmemory policy other than noeviction are lost
// as well; use noeviction (Redis then refuses new Appends with an OOM
// error instead).
//
// When a conversation's key is lost (FLUSHALL, eviction, expiry, a restart
// without persistence), its Epoch is lost with it: the next History or
// Append creates a new random epoch and seqs start again at 1, which tells
// clients holding old seqs to reload; the users' cursors, which hold the
// epoch they count in, start again as well.
//
// # Retention
//
//   - history: each conversation keeps its newest Options.MaxHistory
//     messages (default 10,000); Page.First tells how far back it reaches.
//     When the bound is lowered, each Append deletes at most 100 of the
//     excess, so the conversation shrinks over the following Appends
//     instead of in one long script.
//   - pending: each user's queue holds at most Options.MaxPending messages
//     (default 10,000), and at most Options.MaxPendingPerSender from one
//     sender (default 1,000), checked before the Append writes (see step
//     0). A queued message leaves its queue only by Ack (a queue holds its
//     own copy of each message, which history trimming does not touch).
//     The per-sender counts and the queue's epoch (see PendingPage) are a
//     hash each per recipient, written in the same script as the queue and
//     deleted with its last message.
//   - (sender, cid) records: kept Options.CIDRetention (default 24 h) with a
//     Redis TTL. A record holds a copy of its message, so a duplicate
//     returns the first message even after history dropped it.
//   - conversations: kept until their messages are trimmed, unless
//     Options.HistoryTTL makes a conversation expire that long after its
//     last Append. A History of a never-written conversation stores its
//     epoch with a 24 h TTL, which its first Append removes, so reads of
//     arbitrary conversations do not leave keys behind.
//   - cursors: one field per conversation of each user, kept like the
//     inbox keys.
//
// A message is stored once in its conversation, once per pending
// recipient and once in its cid record: memory is about (2 + len(Pending))
// times the encoded message for a direct message with a cid, plus its meta
// field (the origin).
//
// # Keys
//
// Every key starts with Options.Prefix (default "wshub:"; it must not hold
// '{' or '}'), then a hash tag and a kind. The part after the tag never
// holds '}', so keys of different ids cannot collide:
//
//	<prefix>{c:<conv>}h      hash: "n" last seq, "f" first retained seq,
//	                         "e" epoch, "<seq>" message, "x<seq>" its
//	                         meta field (origin, pending list)
//	<prefix>{c:<conv>}k:<len(from)>:<from><cid>   string: the first
//	                         message, with TTL ("x:<hex(from)>:<hex(cid)>"
//	                         when from or cid holds a '}')
//	<prefix>{c:r:<room>}m    set: members of room
//	<prefix>{u:<user>}p      sorted set: pending message ids by enqueue
//	                         order
//	<prefix>{u:<user>}m      hash: pending message id -> message
//	<prefix>{u:<user>}n      hash: sender -> number of its messages in
//	                         the queue
//	<prefix>{u:<user>}pe     hash: "e" the queue's epoch, "n" the last
//	                         score given in p (see PendingPage)
//	<prefix>{u:<user>}r      set: rooms of user
//	<prefix>{u:<user>}cur    hash: conversation -> "<seq>:<epoch>", the
//	                         last seq applied to the user (Append step 2)
//	<prefix>{u:<user>}ci     sorted set: the user's direct conversations
//	                         by recency (see inbox.go)
//	<prefix>{u:<user>}ch     hash: direct conversation -> its seq in ci
//	<prefix>{u:<user>}rm     hash: conversation -> the user's read marker
//	<prefix>{presence}pl     sorted set: presence lease incarnation ->
//	                         deadline
//	<prefix>{presence}pi     hash: hub process (proc) -> its incarnation
//	<prefix>{presence}pn     string: counter numbering incarnations
//	<prefix>{presence}po:<inc>   set: users online on an incarnation
//	<prefix>{presence}pu:<user>  set: incarnations the user is online on
//
// A stored message is "<seq>:" followed by a compact binary encoding whose
// last field is the Body, kept byte for byte. An announcement is a kind
// byte followed by length-prefixed fields: 'm', the origin, then the
// stored message; 'j' (join) or 'l' (leave), the room, then the user;
// 's' (signal), see signal.go; 'p' (presence), '1' (online) or '0'
// (offline), the time in ms, then the user.
//
// # Deployment
//
// New takes a *redis.Client (one server, or a failover client of
// Sentinel) or a *redis.ClusterClient, and refuses a *redis.Ring (which
// shards without hash slots). The scripts use commands of Redis 7.0
// (SPUBLISH); the tests run against Redis 7.0, on one server and on a
// cluster of 3 masters with a replica each.
//
// Each Subscribe holds connections of its own, and Redis sends each
// announcement to the processes subscribed to its channel.
//
// Without a CID an Append is not idempotent: if the connection breaks after
// Redis ran the conversation's step, a retry (the go-redis client retries
// a failed command up to its MaxRetries, 3 by default, and a step is run
// again after a MOVED or connection error) stores the message twice.
// Appends with a CID are safe to retry.
package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wshub/wshub/store"
)

// Errors of this package. Compare with errors.Is.
var (
	// ErrUnsupportedClient is returned by New for a *redis.Ring, which
	// shards keys by itself without hash slots (a Redis Cluster is
	// supported: *redis.ClusterClient).
	ErrUnsupportedClient = errors.New("wshub/redisstore: Ring clients are not supported (use a Redis Cluster)")
	// ErrCorrupt is returned when a value read from Redis is not a message
	// this package stored.
	ErrCorrupt = errors.New("wshub/redisstore: stored value is damaged")
)

// Defaults used for the zero fields of Options.
const (
	DefaultPrefix       = "wshub:"
	DefaultMaxHistory   = 10_000
	DefaultMaxPending   = 10_000
	DefaultMaxPerSender = 1_000
	DefaultCIDRetention = 24 * time.Hour
)

const (
	// emptyEpochTTL is the TTL of a conversation key that History created
	// to hold the epoch of a never-written conversation.
	emptyEpochTTL = 24 * time.Hour
	// trimBatch is the most history messages one Append deletes.
	trimBatch = 100
	// chunkSize is the most fields a script passes to one HMGET.
	chunkSize = 1000
	// maxLuaSeq bounds the seqs passed to scripts, whose numbers are
	// exact up to 2^53.
	maxLuaSeq = 1 << 52
)

// Options configures a Store. The zero value of every field means the
// documented default.
type Options struct {
	// Prefix starts every key the Store uses. Stores with the same Prefix
	// on the same Redis database share everything; use different prefixes
	// (or databases) for independent hubs. Zero means DefaultPrefix
	// ("wshub:"). End it with a separator so that one prefix is not the
	// start of another.
	Prefix string

	// MaxHistory is the number of newest messages kept per conversation.
	// Zero means DefaultMaxHistory (10,000); negative means unbounded.
	MaxHistory int
	// MaxPending is the most messages one user's pending queue holds; an
	// Append past it is refused with store.ErrPendingFull. Zero means
	// DefaultMaxPending (10,000); negative means unbounded.
	MaxPending int
	// MaxPendingPerSender is the most messages from one sender that one
	// user's pending queue holds, so that one sender cannot fill it for
	// everyone; an Append past it is refused with store.ErrPendingFull.
	// Zero means DefaultMaxPerSender (1,000); negative means unbounded.
	MaxPendingPerSender int
	// CIDRetention is how long a (sender, cid) record is kept. Zero means
	// DefaultCIDRetention (24 h).
	CIDRetention time.Duration
	// HistoryTTL, when positive, makes a conversation (its history, seq
	// counter and epoch) expire that long after its last Append; a later
	// Append starts it again at seq 1 with a new epoch. Zero means
	// conversations do not expire.
	HistoryTTL time.Duration

	// FeedCheckInterval is how often Subscribe sends a PING on its
	// subscription connection; a subscription that received nothing, not
	// even the PING's answer, by the next check is reported broken. Zero
	// means DefaultFeedCheckInterval (5 s).
	FeedCheckInterval time.Duration

	// WaitReplicas is how many replicas must acknowledge each write
	// (Append, MarkRead, Join, Leave) before it returns: the Store sends
	// WAIT on the connection of the write (see the package doc). Zero
	// means automatic: 1 when the master reports a connected replica (INFO
	// replication, looked at again every few seconds and after errors),
	// else none. Negative means never wait. A write fewer replicas
	// acknowledged within WaitTimeout returns an error wrapping
	// ErrNotReplicated.
	//
	// The automatic setting follows what the master reports: while its
	// replica is disconnected (restarting, resyncing), it stops waiting,
	// and a failover to that replica may then lose the writes of that
	// time (a replica that fell behind and was promoted before it caught
	// up: hundreds of receipted messages in the test
	// TestCluster_FailoverAfterReplicaFellBehind run with it). Set
	// WaitReplicas to 1 (or more) to refuse those writes instead, at the
	// cost of refusing every write while a master has no replica.
	WaitReplicas int
	// WaitTimeout bounds each WAIT. Zero means DefaultWaitTimeout (1 s).
	WaitTimeout time.Duration

	// CloseClient makes Close close the client given to New. Open always
	// closes the client it made.
	CloseClient bool
}

func (o Options) withDefaults() Options {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.MaxHistory == 0 {
		o.MaxHistory = DefaultMaxHistory
	}
	if o.MaxPending == 0 {
		o.MaxPending = DefaultMaxPending
	}
	if o.MaxPendingPerSender == 0 {
		o.MaxPendingPerSender = DefaultMaxPerSender
	}
	if o.CIDRetention <= 0 {
		o.CIDRetention = DefaultCIDRetention
	}
	if o.HistoryTTL < 0 {
		o.HistoryTTL = 0
	}
	if o.WaitTimeout <= 0 {
		o.WaitTimeout = DefaultWaitTimeout
	}
	if o.FeedCheckInterval <= 0 {
		o.FeedCheckInterval = DefaultFeedCheckInterval
	}
	return o
}

// Store is a store.Store kept in Redis. Create it with New or Open and
// release it with Close. It holds no state of its own besides the client:
// any number of Stores, in any number of processes, may share one Redis.
type Store struct {
	client redis.UniversalClient
	opts   Options

	// Script arguments derived from opts, formatted (and boxed in an
	// interface, which allocates) once.
	maxHistory, maxPending, maxPerSender, cidTTL, historyTTL any
	// channel is the feed's pub/sub channel: Prefix + "feed"; channelArg
	// is the same, boxed once for the scripts.
	channel    string
	channelArg any

	// epochBase and epochSeq make the epoch offered to a conversation
	// that has none: epochBase is random per Store, epochSeq counts.
	epochBase string
	epochSeq  atomic.Uint64

	// replicas caches the replica counts of the masters (WaitReplicas
	// automatic).
	replicas replicaCache

	// hookFeed adds the noRedial hook to client on the first Subscribe.
	hookFeed sync.Once
	// subs are the active Subscribes, which Follow and Unfollow reach.
	subs subscriptionSet

	// closed is set by Close before anything else; methods check it first.
	closed atomic.Bool
	// done is closed by Close (after closed is set); it ends Subscribe.
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error // written inside closeOnce, read after it
}

var (
	_ store.Store        = (*Store)(nil)
	_ store.PendingPager = (*Store)(nil)
)

// New returns a Store using client; zero Options mean the defaults. New
// does no I/O (see Ping). client is a *redis.Client (one server, or a
// failover client of Sentinel) or a *redis.ClusterClient (a Redis
// Cluster: give it ClusterStateReloadInterval, see OpenCluster); New
// fails with ErrUnsupportedClient for a *redis.Ring, and with an error
// for a Prefix holding '{' or '}' (the keys' hash tags follow it).
//
// The client's own settings apply: its timeouts, its retries (see the
// package doc) and whether it honours ctx cancellation while waiting for a
// reply (go-redis does only with ContextTimeoutEnabled; Open sets it).
func New(client redis.UniversalClient, opts Options) (*Store, error) {
	switch client.(type) {
	case nil:
		return nil, errors.New("wshub/redisstore: nil client")
	case *redis.Ring:
		return nil, ErrUnsupportedClient
	}
	if strings.ContainsAny(opts.Prefix, "{}") {
		return nil, fmt.Errorf("wshub/redisstore: prefix %q holds '{' or '}'", opts.Prefix)
	}
	opts = opts.withDefaults()
	var rnd [8]byte
	_, _ = rand.Read(rnd[:]) // never fails (crypto/rand)
	s := &Store{
		client:       client,
		opts:         opts,
		maxHistory:   strconv.Itoa(max(opts.MaxHistory, 0)),
		maxPending:   strconv.Itoa(max(opts.MaxPending, 0)),
		maxPerSender: strconv.Itoa(max(opts.MaxPendingPerSender, 0)),
		cidTTL:       strconv.FormatInt(max(opts.CIDRetention.Milliseconds(), 1), 10),
		historyTTL:   "0",
		epochBase:    hex.EncodeToString(rnd[:]) + ".",
		channel:      opts.Prefix + "feed",
		channelArg:   opts.Prefix + "feed",
		done:         make(chan struct{}),
	}
	if opts.HistoryTTL > 0 {
		s.historyTTL = strconv.FormatInt(max(opts.HistoryTTL.Milliseconds(), 1), 10)
	}
	return s, nil
}

// Open connects to the Redis at addr, which is either "host:port" or a
// URL understood by redis.ParseURL ("redis://user:pass@host:6379/2",
// "rediss://...", "unix:///path/to/redis.sock"), checks it answers PING
// and returns a Store that owns the connection (Close closes it). The
// client honours ctx deadlines and cancellation on every call.
func Open(ctx context.Context, addr string, opts Options) (*Store, error) {
	var ro *redis.Options
	if strings.Contains(addr, "://") {
		var err error
		if ro, err = redis.ParseURL(addr); err != nil {
			return nil, fmt.Errorf("wshub/redisstore: open %s: %w", addr, err)
		}
	} else {
		ro = &redis.Options{Addr: addr}
	}
	ro.ContextTimeoutEnabled = true
	client := redis.NewClient(ro)
	opts.CloseClient = true
	s, err := New(client, opts)
	if err != nil {
		_ = client.Close()
		return nil, err
	}
	if err := s.Ping(ctx); err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("wshub/redisstore: open %s: %w", addr, err)
	}
	return s, nil
}

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	return s.wrap("ping", s.client.Ping(ctx).Err())
}

// check returns ErrClosed after Close, else ctx.Err().
func (s *Store) check(ctx context.Context) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	return ctx.Err()
}

// wrap names the operation in a Redis error; after Close, an error from the
// closed client becomes ErrClosed.
func (s *Store) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if s.closed.Load() && (errors.Is(err, redis.ErrClosed) || errors.Is(err, net.ErrClosed)) {
		return store.ErrClosed
	}
	return fmt.Errorf("wshub/redisstore: %s: %w", op, err)
}

// Keys. See the package doc. A conversation's keys carry the hash tag
// {c:<conv>}, a user's {u:<user>}: the part after the tag holds no '}', so
// keys of different ids never collide, whatever the ids hold.

func (s *Store) convTag(conv string) string { return s.opts.Prefix + "{c:" + conv + "}" }
func (s *Store) userTag(user string) string { return s.opts.Prefix + "{u:" + user + "}" }

func (s *Store) convKey(conv string) string    { return s.convTag(conv) + "h" }
func (s *Store) roomKey(room string) string    { return s.convTag(store.RoomConv(room)) + "m" }
func (s *Store) pendingKey(user string) string { return s.userTag(user) + "p" }
func (s *Store) pmsgKey(user string) string    { return s.userTag(user) + "m" }
func (s *Store) pcountKey(user string) string  { return s.userTag(user) + "n" }
func (s *Store) pepochKey(user string) string  { return s.userTag(user) + "pe" }
func (s *Store) userKey(user string) string    { return s.userTag(user) + "r" }
func (s *Store) cursorKey(user string) string  { return s.userTag(user) + "cur" }

// cidKey is the (sender, cid) record of conv: a cid is scoped to (sender,
// conversation). When from or cid holds a '}', both are hex encoded (kind
// "x:" instead of "k:"), so that the part after the tag holds none.
func (s *Store) cidKey(conv, from, cid string) string {
	if strings.ContainsRune(from, '}') || strings.ContainsRune(cid, '}') {
		return s.convTag(conv) + "x:" + hex.EncodeToString([]byte(from)) + ":" + hex.EncodeToString([]byte(cid))
	}
	return s.convTag(conv) + "k:" + strconv.Itoa(len(from)) + ":" + from + cid
}

// newEpoch returns an epoch no Store offered before.
func (s *Store) newEpoch() string {
	return s.epochBase + strconv.FormatUint(s.epochSeq.Add(1), 36)
}

// History implements store.Store. A History of a never-written
// conversation stores its epoch (see the package doc), so the epoch it
// reports is the one the first Append keeps.
func (s *Store) History(ctx context.Context, conv string, q store.Query) (store.Page, error) {
	if err := s.check(ctx); err != nil {
		return store.Page{}, err
	}
	if conv == "" {
		return store.Page{}, fmt.Errorf("%w: empty conversation", store.ErrInvalid)
	}
	limit := q.Limit
	if limit <= 0 {
		limit = store.DefaultLimit
	}
	since, before := q.Since, q.Before
	if since > maxLuaSeq {
		since = maxLuaSeq // beyond any seq: an empty window
	}
	if before > maxLuaSeq {
		before = 0 // beyond any seq: no upper bound
	}
	res, err := historyScript.Run(ctx, s.client, []string{s.convKey(conv)},
		s.newEpoch(), since, before, min(limit, math.MaxInt32),
		emptyEpochTTL.Milliseconds(), chunkSize,
	).Slice()
	if err != nil {
		return store.Page{}, s.wrap("history", err)
	}
	if len(res) < 4 {
		return store.Page{}, fmt.Errorf("wshub/redisstore: history: unexpected reply %v", res)
	}
	epoch, _ := res[0].(string)
	first, _ := res[1].(int64)
	last, _ := res[2].(int64)
	more, _ := res[3].(int64)
	p := store.Page{Epoch: epoch, First: uint64(first), Last: uint64(last), More: more == 1}
	if len(res) > 4 {
		p.Items = make([]store.Message, 0, len(res)-4)
		for _, r := range res[4:] {
			v, _ := r.(string)
			m, err := decode(v)
			if err != nil {
				return store.Page{}, fmt.Errorf("wshub/redisstore: history of %q: %w", conv, err)
			}
			p.Items = append(p.Items, m)
		}
	}
	return p, nil
}

// Pending implements store.Store: the whole queue, in one script call
// (pendingScript without a limit).
func (s *Store) Pending(ctx context.Context, user string) ([]store.Message, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if user == "" {
		return nil, fmt.Errorf("%w: empty user", store.ErrInvalid)
	}
	page, _, err := s.pendingPage(ctx, "pending", user, "", "", 0)
	return page, err
}

// PendingPage implements store.PendingPager in one script call
// (pendingScript). A cursor is "<score>:<epoch>": the score of the page's
// last message in the user's pending zset and the queue's epoch.
//
// Scores only grow while a queue lives (see userApplyScript), even when
// its last messages are acknowledged, so the messages after a cursor's
// score are exactly those its page did not reach, those enqueued since
// included. A queue that is emptied (its last message acknowledged) loses
// its keys, its epoch with them, and the next message starts a new queue
// with a new epoch; so do queues whose keys were deleted or lost. A cursor
// whose epoch is not the queue's was made in a queue that is gone, every
// message of the current one came after it, and the page starts at the
// beginning. The epoch hash alone lost while the queue stays (an eviction
// policy other than noeviction, see the package doc) gives the queue a new
// epoch too: a walk under way then starts again at the beginning and
// returns some messages twice. A failover that loses the queue's last
// writes (see Durability) leaves the queue's epoch with a lower last
// score: a walk under way may then miss messages enqueued after the
// failover, which stay queued for the next walk.
func (s *Store) PendingPage(ctx context.Context, user, cursor string, limit int) ([]store.Message, string, error) {
	if err := s.check(ctx); err != nil {
		return nil, "", err
	}
	if user == "" {
		return nil, "", fmt.Errorf("%w: empty user", store.ErrInvalid)
	}
	score, epoch, err := parsePendingCursor(cursor)
	if err != nil {
		return nil, "", err
	}
	return s.pendingPage(ctx, "pending page", user, score, epoch, min(max(limit, 1), math.MaxInt32))
}

// pendingPage runs pendingScript for user's queue: up to limit messages
// (0: all) after the cursor (score, epoch), or from the beginning when
// score is empty, and the cursor of the next page ("" at the end). op
// names the call in errors.
func (s *Store) pendingPage(ctx context.Context, op, user, score, epoch string, limit int) ([]store.Message, string, error) {
	offer := ""
	if limit > 0 {
		offer = s.newEpoch()
	}
	res, err := pendingScript.Run(ctx, s.client, []string{s.pendingKey(user), s.pmsgKey(user), s.pepochKey(user)},
		chunkSize, limit, score, epoch, offer).Slice()
	if err != nil {
		return nil, "", s.wrap(op, err)
	}
	if len(res) < 3 {
		return nil, "", fmt.Errorf("wshub/redisstore: %s: unexpected reply %v", op, res)
	}
	next := ""
	if more, _ := res[0].(int64); more == 1 {
		last, _ := res[1].(string)
		e, _ := res[2].(string)
		next = last + ":" + e
		if _, _, err := parsePendingCursor(next); err != nil {
			return nil, "", fmt.Errorf("wshub/redisstore: %s: unexpected reply %v", op, res[:3])
		}
	}
	page := make([]store.Message, 0, len(res)-3)
	for _, r := range res[3:] {
		v, _ := r.(string)
		m, err := decode(v)
		if err != nil {
			return nil, "", fmt.Errorf("wshub/redisstore: %s of %q: %w", op, user, err)
		}
		page = append(page, m)
	}
	return page, next, nil
}

// parsePendingCursor splits a PendingPage cursor into its score and epoch
// ("" for the cursor ""); a text that is not a cursor is an error
// wrapping store.ErrInvalid. The score is a decimal integer from 1 to
// maxLuaSeq, the epoch what newEpoch makes (hex digits, '.', base 36).
func parsePendingCursor(cursor string) (score, epoch string, err error) {
	if cursor == "" {
		return "", "", nil
	}
	score, epoch, ok := strings.Cut(cursor, ":")
	n, perr := strconv.ParseUint(score, 10, 64)
	ok = ok && perr == nil && n >= 1 && n <= maxLuaSeq && score[0] != '0' &&
		epoch != "" && len(epoch) <= 64 && strings.Trim(epoch, "0123456789abcdefghijklmnopqrstuvwxyz.") == ""
	if !ok {
		return "", "", fmt.Errorf("%w: pending cursor %q", store.ErrInvalid, cursor)
	}
	return score, epoch, nil
}

// Ack implements store.Store in one script: the ids leave the queue and
// their senders' counts, O(log n) per id.
func (s *Store) Ack(ctx context.Context, user string, ids ...string) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if user == "" {
		return fmt.Errorf("%w: empty user", store.ErrInvalid)
	}
	if len(ids) == 0 {
		return nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	err := ackScript.Run(ctx, s.client, []string{s.pendingKey(user), s.pmsgKey(user), s.pcountKey(user), s.pepochKey(user)}, args...).Err()
	return s.wrap("ack", err)
}

// Join implements store.Store. When it made user a member (it was not
// one), it announces EventJoin on the user's channel (see membership).
func (s *Store) Join(ctx context.Context, room, user string) error {
	return s.membership(ctx, "join", "SADD", wireJoin, room, user)
}

// Leave implements store.Store. When user was a member, it announces
// EventLeave on the user's channel (see membership).
func (s *Store) Leave(ctx context.Context, room, user string) error {
	return s.membership(ctx, "leave", "SREM", wireLeave, room, user)
}

// membership runs the two steps of Join and Leave with cmd (SADD or
// SREM): the room's member set (the room's slot), then the user's room
// set (the user's slot), which announces the change on the user's channel
// when either set changed. Both steps are idempotent: a Join or Leave
// that failed between them is completed by calling it again.
func (s *Store) membership(ctx context.Context, op, cmd string, kind byte, room, user string) error {
	if err := s.checkMembership(ctx, room, user); err != nil {
		return err
	}
	rk := s.roomKey(room)
	cmds, err := s.step(ctx, rk, call{roomMembersScript, []string{rk}, []any{cmd, user}})
	if err != nil {
		return s.wrap(op, err)
	}
	changed := "0"
	if n, _ := cmds[0].(*redis.Cmd).Int(); n > 0 {
		changed = "1"
	}
	uk := s.userKey(user)
	_, err = s.step(ctx, uk, call{userRoomsScript, []string{uk},
		[]any{cmd, room, s.userChannel(user), encodeMembership(kind, room, user), changed}})
	return s.wrap(op, err)
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
	rooms, err := s.client.SMembers(ctx, s.userKey(user)).Result()
	return rooms, s.wrap("rooms", err)
}

// Members implements store.Store.
func (s *Store) Members(ctx context.Context, room string) ([]string, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if room == "" {
		return nil, fmt.Errorf("%w: empty room", store.ErrInvalid)
	}
	users, err := s.client.SMembers(ctx, s.roomKey(room)).Result()
	return users, s.wrap("members", err)
}

// Close implements store.Store. The Store holds nothing unwritten: every
// method returned after Redis answered it. Close closes the client if the
// Store owns it (Open, or Options.CloseClient) and returns its error.
// Calls still running may fail with ErrClosed; a running Subscribe returns
// ErrClosed.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.done)
		if s.opts.CloseClient {
			s.closeErr = s.client.Close()
		}
	})
	return s.closeErr
}
