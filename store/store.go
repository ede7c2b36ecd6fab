// Package store defines the persistence contract of a wshub hub: message
// history per conversation, the pending-delivery queue per user, the
// (sender, cid) receipt records that make resends safe, and room
// membership.
//
// A pending queue is a promise: a message in it was receipted and leaves it
// only by delivery (Ack), never to make room. Its room is bounded instead:
// an Append that would take a recipient's queue past its implementation's
// bound in total, or past the bound for that one sender, is refused with
// ErrPendingFull and stores nothing. The per-sender bound keeps one sender
// from filling another user's queue and so locking everyone else out.
//
// Implementations: store/memstore (memory, for tests and throwaway
// processes), store/boltstore (one durable bbolt file), store/redisstore
// (several hub processes sharing one Redis). Every implementation must pass
// the conformance suite in store/storetest.
package store

import (
	"context"
	"errors"
	"strconv"
	"time"
)

// Errors returned by Store implementations. Compare with errors.Is.
var (
	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("wshub/store: store is closed")
	// ErrInvalid is returned when a request lacks a required field
	// (an empty conversation, sender or message id).
	ErrInvalid = errors.New("wshub/store: invalid request")
	// ErrPendingFull is returned by Append when the pending queue of one
	// of the recipients is full: it holds its implementation's bound of
	// messages in total (MaxPending), or from this sender
	// (MaxPendingPerSender). Nothing of the message was stored. An Ack by
	// that recipient makes room again.
	ErrPendingFull = errors.New("wshub/store: pending queue is full")
)

// Message is one stored message. The store keeps every field as given,
// except Seq, which Append assigns.
type Message struct {
	ID   string // unique message id, assigned by the hub (UUIDv7)
	Conv string // conversation key, see DirectConv and RoomConv
	Seq  uint64 // position in Conv, assigned by Append: 1, 2, 3, ...
	TS   int64  // server time, Unix milliseconds
	Cmd  int    // wire command (10 direct, 11 room, or an application cmd)
	From string // sender user id
	To   string // recipient user id, or room id
	Body []byte // application payload (JSON), opaque to the store
}

// AppendRequest is one atomic write: a history append, the pending enqueue
// for its recipients and the (sender, cid) record.
type AppendRequest struct {
	// Msg is the message to store; Msg.Seq is ignored and assigned.
	Msg Message
	// Pending lists the users whose pending queue receives the message.
	// Empty for room messages.
	Pending []string
	// CID, when not empty, is the client's id for the frame. A later
	// Append with the same (Msg.From, CID) stores nothing and returns the
	// first message.
	CID string
	// Origin is the id of the connection that sent the message, if any.
	// It is not stored; a Feed passes it to its subscribers, so that the
	// hub holding that connection does not echo the message to it.
	Origin string
}

// Query selects a window of a conversation's history.
//
// With Since > 0 the window is the oldest Limit messages with
// Since < seq (and seq < Before when Before > 0): reading forward.
// Otherwise it is the newest Limit messages with seq < Before (any seq when
// Before is 0): reading backward from the end. Either way Items come oldest
// first. Limit <= 0 means DefaultLimit.
type Query struct {
	Since  uint64
	Before uint64
	Limit  int
}

// DefaultLimit is the number of history items a Query with no Limit returns.
const DefaultLimit = 50

// Page is a history window.
type Page struct {
	Items []Message // oldest first
	More  bool      // the window has messages beyond Limit in reading direction
	Epoch string    // identifies the history stream (see Store.History)
	First uint64    // oldest seq still retained in the conversation; 0 if none
	Last  uint64    // newest seq ever assigned in the conversation; 0 if none
}

// Store is the persistence behind a hub. All methods are safe for
// concurrent use. A method whose ctx is done before it completes returns
// ctx.Err() (possibly wrapped); a write cancelled that way may or may not
// have taken effect, and the cid record makes a retry of Append safe.
//
// So that a write's effect and the hub's follow-up (a delivery, its room
// index, an announcement) are never parted, a hub calls Join, Leave,
// MarkRead and, without a Feed, Append with a context that the end of the
// caller's is not passed on to (context.WithoutCancel): an implementation
// must bound those writes itself (a timeout, or returning ErrClosed once
// closed) rather than rely on ctx alone.
//
// "Durable" is defined by each implementation's documentation; a hub sends a
// receipt only after Append returned, so a durable store that returned nil
// must not lose the write in a crash of the process.
type Store interface {
	// Append stores req.Msg at the end of req.Msg.Conv with the next seq,
	// enqueues it for every user in req.Pending, and records
	// (req.Msg.From, req.CID): all in one atomic step, so that a crash
	// leaves either all of it or none.
	//
	// Seqs of one conversation are strictly increasing without gaps in the
	// order Appends take effect; concurrent Appends to one conversation
	// get distinct seqs.
	//
	// If req.CID is not empty and (req.Msg.From, req.CID) was recorded by
	// an earlier Append still retained, nothing is written and Append
	// returns that earlier stored message with dup true. Records are kept
	// for at least the retention the implementation documents. This check
	// comes first: a resend of a stored message is a duplicate even when
	// the recipient's queue is full.
	//
	// Otherwise, if the pending queue of any user in req.Pending holds the
	// implementation's bound of messages in total, or of messages from
	// req.Msg.From, Append writes nothing (no history, no queue, no cid
	// record) and returns an error wrapping ErrPendingFull. The bounds
	// count per recipient and per (recipient, sender); a message leaves
	// a queue only by Ack, which makes room for its sender again. A
	// message without Pending (a room message) is never refused for them.
	//
	// On success the returned message is req.Msg with its assigned Seq.
	Append(ctx context.Context, req AppendRequest) (m Message, dup bool, err error)

	// History returns a window of conv's history (see Query). A
	// conversation never written returns an empty Page with its Epoch.
	//
	// Epoch names the history stream: it stays the same as long as the
	// seqs of conv keep their meaning, and changes when the store lost or
	// recreated the stream (a memory store after a restart, a Redis key
	// that expired), so that a client holding seqs from another epoch
	// knows to reload.
	History(ctx context.Context, conv string, q Query) (Page, error)

	// Pending returns the user's pending queue, in the order the messages
	// were enqueued. It does not remove them. Every message Append put
	// there stays until Ack removes it: the queue's bounds refuse new
	// messages (see Append) instead of dropping old ones.
	Pending(ctx context.Context, user string) ([]Message, error)

	// Ack removes the messages with the given ids from the user's pending
	// queue, which makes room for their senders under the bounds (see
	// Append). Ids not in the queue are ignored.
	Ack(ctx context.Context, user string, ids ...string) error

	// Join makes user a member of room. Joining twice is harmless.
	Join(ctx context.Context, room, user string) error
	// Leave removes user from room. Leaving a room one is not in is harmless.
	Leave(ctx context.Context, room, user string) error
	// Rooms lists the rooms user is a member of, in no particular order.
	Rooms(ctx context.Context, user string) ([]string, error)
	// Members lists the members of room, in no particular order.
	Members(ctx context.Context, room string) ([]string, error)

	// Inbox is the per-user view of conversations and read markers,
	// maintained by Append.
	Inbox

	// Close releases the store; a durable store flushes what it holds
	// first. Methods called after Close return ErrClosed. Close is
	// idempotent.
	Close() error
}

// Inbox is the per-user view of conversations that a hub needs for cmd 18
// (a user's conversations, most recent first) and cmd 19 (read markers).
// Store embeds it: every Store implements it.
//
// The store maintains it from Append: a message whose Conv is
// DirectConv(From, To) puts that conversation at the top of the index of
// From and of To (one entry when From == To), with the message's Seq and
// TS; every Append moves From's read marker on Msg.Conv to the new seq.
// Both happen in the Append's atomic step. A duplicate Append (dup true)
// changes neither. Room messages are not indexed per member: a user's
// rooms come from the memberships (Join, Leave), their latest seq and ts
// from the room's history (RoomConv).
type Inbox interface {
	// Conversations returns up to limit of user's conversations, most
	// recent first, and more true when there were others. They are the
	// direct conversations with at least one message and every room user
	// is a member of (a room without messages has Seq 0 and TS 0).
	// Recency is the latest message's TS, then its Seq, descending; ties
	// are broken by Conv, ascending. limit <= 0 means
	// DefaultConversations; a limit above MaxConversations is lowered to
	// it.
	//
	// Cost: O(limit + R) work and reads, R the number of rooms user is a
	// member of, whatever the number of direct conversations; it does
	// not grow with the number of other users or conversations.
	Conversations(ctx context.Context, user string, limit int) (items []ConvInfo, more bool, err error)

	// MarkRead moves user's read marker on conv forward to seq, capped at
	// conv's latest seq, and returns the stored marker and whether it
	// moved. A seq at or below the stored marker changes nothing; on a
	// conversation without messages the marker stays 0. The marker is
	// stored as durably as an Append. The store does not check that user
	// belongs to conv: that is the hub's job.
	MarkRead(ctx context.Context, user, conv string, seq uint64) (marker uint64, moved bool, err error)
}

// Default and maximum limits of Inbox.Conversations.
const (
	DefaultConversations = 100
	MaxConversations     = 1000
)

// ConvKind tells what kind of conversation a ConvInfo describes.
type ConvKind int

// Kinds of conversations.
const (
	ConvDirect ConvKind = 1 // direct messages between two users (DirectConv)
	ConvRoom   ConvKind = 2 // a room's messages (RoomConv)
)

// ConvInfo is one conversation of a user, as Inbox.Conversations lists it.
// The unread count is Seq - Read (seqs have no gaps).
type ConvInfo struct {
	Conv string   // conversation key (DirectConv or RoomConv)
	Kind ConvKind // ConvDirect or ConvRoom
	Peer string   // ConvDirect: the other user (the user itself for a self-conversation); ConvRoom: the room id
	Seq  uint64   // latest seq of Conv, 0 if it has no messages
	TS   int64    // TS of that message, 0 if none
	Read uint64   // the user's read marker on Conv
	Seen uint64   // ConvDirect: Peer's read marker on Conv; 0 for rooms
}

// IsDirect reports whether m belongs to a direct conversation that an
// Inbox indexes: m.To is set and m.Conv is DirectConv(m.From, m.To).
func IsDirect(m *Message) bool {
	if m.To == "" {
		return false
	}
	// m.Conv == DirectConv(m.From, m.To), without building the key.
	a, b := m.From, m.To
	if b < a {
		a, b = b, a
	}
	var buf [20]byte
	n := strconv.AppendInt(buf[:0], int64(len(a)), 10)
	c := m.Conv
	if len(c) != 2+len(n)+1+len(a)+1+len(b) || c[:2] != "d:" {
		return false
	}
	c = c[2:]
	if c[:len(n)] != string(n) || c[len(n)] != ':' {
		return false
	}
	c = c[len(n)+1:]
	return c[:len(a)] == a && c[len(a)] == ':' && c[len(a)+1:] == b
}

// DirectConv is the conversation key of the direct messages between users
// a and b, whoever sent them: DirectConv(a, b) == DirectConv(b, a).
func DirectConv(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return "d:" + strconv.Itoa(len(a)) + ":" + a + ":" + b
}

// RoomConv is the conversation key of room's history.
func RoomConv(room string) string { return "r:" + room }

// Feed is implemented by a Store that several hub processes share, so that
// they act as one hub: every message appended and every membership change,
// by any process, is announced to every subscribed process.
//
// A hub whose store is a Feed delivers every message, its own included,
// from the feed, instead of straight after Append. The feed therefore
// announces the messages of one conversation in seq order: announcing is
// part of the atomic Append.
type Feed interface {
	// Subscribe calls fn for each event, one at a time and in the order
	// announced, until ctx ends (it then returns ctx.Err()) or the
	// subscription breaks (it returns why). The first event is
	// EventReady, once the subscription is active: events announced
	// before it, or while no subscription is active, are not replayed.
	// fn must not block.
	Subscribe(ctx context.Context, fn func(Event)) error
}

// EventKind tells what a Feed event announces.
type EventKind int

// Kinds of Feed events.
const (
	EventReady    EventKind = iota // the subscription is active
	EventMessage                   // Msg was appended
	EventJoin                      // User joined Room
	EventLeave                     // User left Room
	EventSignal                    // Signal was announced (Signaler)
	EventPresence                  // User went online or offline (Presence)
)

// Router is implemented by a Feed that routes by interest: a subscriber
// receives the announcements concerning the users and rooms it follows
// (and every presence transition), not every announcement of the
// deployment. A direct message is then announced once per user it
// concerns (Event.User: its recipient, and its sender for the sender's
// other connections), each user's announcements of one conversation in
// seq order; a room's messages on the room's own stream, in seq order.
//
// Follows belong to the running Subscribe and end with it. They are
// counted: a user or room followed twice is followed until it was
// unfollowed twice. The hub makes each Unfollow after the Follow it
// undoes returned, and only on the subscription that Follow was made on,
// so a count falls to zero only when nobody follows any more.
type Router interface {
	Feed
	// Follow makes the running subscription receive the announcements
	// concerning users and rooms. With wait it returns once the store
	// confirmed it: what is announced after Follow returned is delivered.
	// Without, it returns once the follows are counted and requested,
	// without waiting (a Subscribe's fn, which may be the one to read the
	// confirmation, must not wait). It fails when no subscription is
	// active, or when ctx ends first (the follows it made stay counted:
	// Unfollow them).
	Follow(ctx context.Context, users, rooms []string, wait bool) error
	// Unfollow undoes one Follow of each of users and rooms. It does not
	// wait.
	Unfollow(users, rooms []string)
}

// Event is one announcement of a Feed.
type Event struct {
	Kind   EventKind
	Msg    Message // EventMessage: the stored message, with its Seq
	Origin string  // EventMessage: AppendRequest.Origin
	Room   string  // EventJoin, EventLeave
	// User: EventJoin, EventLeave, EventPresence: the user. EventMessage
	// of a Router: the user for whose connections the message is
	// announced (empty for a room's message, or from a Feed that is not
	// a Router: every local recipient).
	User   string
	Signal Signal // EventSignal
	Online bool   // EventPresence: User now has a connection on some live hub process
	TS     int64  // EventPresence: when the transition was recorded, Unix milliseconds
}

// Signal is an ephemeral frame (a typing indicator, a read-marker event)
// for the connections of some users or of a room's members, on every hub
// process. It is never stored.
type Signal struct {
	// Users lists the users whose connections receive Data.
	Users []string
	// Room, when not empty, adds the connections of Room's members.
	Room string
	// Origin is the id of a connection that must not receive Data (the
	// one that sent it), or empty.
	Origin string
	// Data is the encoded frame.
	Data []byte
}

// PendingPager is implemented by a Store that reads a user's pending queue
// a page at a time. The hub uses it when a connection starts: a long queue
// is then never held whole in the hub's memory (once per connection of the
// user), and the first message goes out after one page is read. Without
// it the hub calls Pending. storetest.RunPendingPages checks it.
type PendingPager interface {
	// PendingPage returns up to limit of user's pending messages (limit
	// less than 1 means 1), in enqueue order, from the position cursor on
	// ("" is the start of the queue), and the cursor of the next page,
	// which is "" once the page reached the end of the queue. A cursor is
	// the store's own text, valid for that user; another text is an error
	// wrapping ErrInvalid.
	//
	// The pages of one walk (from "" until next is "") return every
	// message of the queue exactly once, in enqueue order, those enqueued
	// during the walk included, even if the queue was emptied (every
	// message acknowledged) and filled again between two pages; a message
	// acknowledged during the walk may be missing. The last page may be
	// empty.
	PendingPage(ctx context.Context, user, cursor string, limit int) (page []Message, next string, err error)
}

// NonBlocking is implemented by a Store whose calls never wait for I/O or
// for anything but short critical sections: memstore's. When NonBlocking
// reports true, the hub runs a frame's store calls on the goroutine that
// read the frame, even when that goroutine is the transport's poller
// (which saves a thread's wake-up per frame); for any other store it
// first hands polling on to another goroutine. A store that says it never
// blocks and then waits (on a network, on a disk) delays the reads of
// other connections. A wrapper that embeds *memstore.Store and adds I/O
// must override NonBlocking to report false.
type NonBlocking interface {
	NonBlocking() bool
}

// Signaler is implemented by a Feed that also carries ephemeral frames
// between hub processes. A hub whose Feed is not a Signaler delivers
// them to its own connections only.
type Signaler interface {
	// Signal announces s as an EventSignal to every subscriber (this
	// process included). It is best effort: a Signal is never stored,
	// and one announced while a subscriber's subscription is broken is
	// not replayed to it.
	Signal(ctx context.Context, s Signal) error
}

// Presence is implemented by a Feed store that tracks, across hub
// processes, which users have at least one connection. Each hub process
// holds a lease under an id of its own (proc) and renews it by calling
// SetPresence at least once per ttl; the entries of a process whose lease
// ended (it was killed, or lost the store for longer than ttl) are
// removed by the next SetPresence of any process, which announces the
// resulting offline transitions. A hub whose store is not a Presence
// tracks presence among its own connections.
type Presence interface {
	// SetPresence records that on process proc the users in on have a
	// connection and those in off have none, and renews proc's lease for
	// ttl. For every user whose state across all processes with a live
	// lease changed, it announces an EventPresence on the Feed. It also
	// removes the entries of (a bounded number of) processes whose lease
	// ended, announcing the users that are then offline everywhere.
	//
	// reset is true when proc had no lease (its first call, or its
	// lease ended and its entries were removed): the caller must then
	// send its whole state again, every user it holds in on.
	SetPresence(ctx context.Context, proc string, ttl time.Duration, on, off []string) (reset bool, err error)

	// RetirePresence ends proc's lease at once and removes its entries,
	// announcing the users that are then offline everywhere (a hub
	// shutting down, or abandoning a proc id after its feed broke).
	RetirePresence(ctx context.Context, proc string) error

	// Online reports, for each of users, whether it has a connection on
	// a process with a live lease.
	Online(ctx context.Context, users []string) ([]bool, error)
}
