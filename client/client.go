package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wshub/wshub"
)

// State is where a Client is in its life.
type State int32

// States of a Client.
const (
	StateIdle         State = iota // created, Run not started
	StateConnecting                // dialing, or waiting for the welcome frame
	StateOpen                      // connected: the welcome frame arrived
	StateReconnecting              // waiting out a backoff delay before the next dial
	StateClosed                    // Run has returned; the client is done
)

func (s State) String() string {
	switch s {
	case StateIdle:
		return "idle"
	case StateConnecting:
		return "connecting"
	case StateOpen:
		return "open"
	case StateReconnecting:
		return "reconnecting"
	case StateClosed:
		return "closed"
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// RoomState is what the client remembers of a joined room: the seq up to
// which it has delivered every message (its own receipted ones included),
// or the join reply's seq, and the history epoch that seq belongs to.
// Rejoins after a reconnect ask for the messages after Seq.
type RoomState struct {
	Seq   uint64
	Epoch string
}

// Client is a wshub connection that keeps itself alive: it sends
// heartbeats, reconnects with backoff, resends what was not receipted,
// acknowledges and deduplicates incoming messages, and rejoins rooms.
//
// Create one with New and drive it with Run, or use Dial, which does both.
// All methods are safe for concurrent use.
type Client struct {
	url  string  // the dial URL, query included
	opts Options // defaults filled in

	rnd       *rand.Rand // backoff jitter; used only by Run's goroutine
	cidPrefix string     // random per client, so cids never repeat across clients of one user
	cidSeq    atomic.Uint64
	t0        time.Time // base of the monotonic clock readings in conn.lastRead

	// msgs carries incoming messages when Options.OnMessage is nil.
	// Closed by finish, after the last reader goroutine has returned.
	msgs chan *wshub.Frame
	// kick wakes the writer when the outbox or the ack list grew.
	// Capacity 1, never closed.
	kick chan struct{}
	// quit is closed by Close (quitOnce); Close also cancels Run's
	// context, which is what the loops watch.
	quit     chan struct{}
	quitOnce sync.Once
	// opened is closed by Run's goroutine when the first connection
	// opened (openOnce).
	opened   chan struct{}
	openOnce sync.Once
	// done is closed by finish when Run has ended.
	done    chan struct{}
	started atomic.Bool // Run was called (or Close made it impossible)
	state   atomic.Int32

	// seen drops duplicate message ids. Only the reader goroutine of the
	// current connection uses it; connections never overlap.
	seen *dedup

	mu    sync.Mutex
	out   outbox           // guarded by mu
	acks  []string         // guarded by mu: ids to acknowledge with the next write
	rooms map[string]*room // guarded by mu: joined rooms
	// rejoins maps the cid of each automatic rejoin sent on the current
	// connection to its room, until its answer came; rejoinSeq numbers
	// them.
	rejoins   map[string]string // guarded by mu
	rejoinSeq uint64            // guarded by mu
	welcome   *wshub.Frame      // guarded by mu: the latest welcome frame
	ended     bool              // guarded by mu: Run has ended; nothing new is accepted
	err       error             // guarded by mu: why Run ended (nil after Close)
	cancel    func()            // guarded by mu: cancels Run's context; set by Run
	// abandoned holds the cids of the latest Calls whose ctx ended before
	// their answer, so that a late answer is dropped rather than
	// delivered as a message. Guarded by mu.
	abandoned *dedup
	// watching is the user ids of the latest Watch, sent again on every
	// new connection; rewatchCID is the cid of that automatic re-watch on
	// the current connection ("" when none is out). Guarded by mu.
	watching   []string
	rewatchCID string
}

// abandonedSize is how many cids of abandoned Calls a client remembers.
const abandonedSize = 256

// room is the state of one joined room. Guarded by Client.mu.
type room struct {
	RoomState
	// ahead holds the seqs delivered above Seq+1: Seq moves only over
	// contiguous seqs (observe), so that a rejoin's since never skips a
	// message this client has not had. Nil until needed.
	ahead map[uint64]struct{}
}

// maxAhead bounds room.ahead. Past it the client gives up on the oldest
// gap: a hub delivers a room's messages to a connection in seq order, so
// a gap that many messages old is not going to fill on this connection
// (the next rejoin asks from Seq, which then lies past it).
const maxAhead = 4096

// observe notes that the message with seq was delivered (or, for the
// client's own message, receipted), moving Seq over contiguous seqs only:
// a live message can arrive on a new connection before its rejoin's
// replay has filled the gap before it, and that connection may end before
// the replay comes.
func (r *room) observe(seq uint64) {
	if seq <= r.Seq {
		return
	}
	if seq == r.Seq+1 && len(r.ahead) == 0 {
		r.Seq = seq
		return
	}
	if r.ahead == nil {
		r.ahead = make(map[uint64]struct{})
	}
	r.ahead[seq] = struct{}{}
	if len(r.ahead) > maxAhead {
		low := seq
		for s := range r.ahead {
			low = min(low, s)
		}
		r.Seq = low - 1
	}
	r.drain()
}

// moveTo moves Seq to seq (a join answer's: everything up to it was
// replayed or reported not recovered), if it is ahead.
func (r *room) moveTo(seq uint64) {
	if seq <= r.Seq {
		return
	}
	r.Seq = seq
	for s := range r.ahead {
		if s <= seq {
			delete(r.ahead, s)
		}
	}
	r.drain()
}

// drain moves Seq over the seqs in ahead that follow it.
func (r *room) drain() {
	for {
		if _, ok := r.ahead[r.Seq+1]; !ok {
			break
		}
		r.Seq++
		delete(r.ahead, r.Seq)
	}
	if len(r.ahead) == 0 {
		r.ahead = nil
	}
}

// New returns a client for the hub at rawURL (ws://, wss://, or http(s)://
// which is turned into ws(s)://). It does not connect: call Run.
func New(rawURL string, opts Options) (*Client, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("wshub/client: bad url: %w", err)
	}
	switch u.Scheme {
	case "ws", "wss":
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return nil, fmt.Errorf("wshub/client: bad url scheme %q", u.Scheme)
	}
	q := u.Query()
	if opts.Token != "" {
		q.Set("token", opts.Token)
	}
	if opts.Ack {
		q.Set("ack", "1")
	}
	if opts.Batch {
		q.Set("batch", "1")
	}
	u.RawQuery = q.Encode()
	opts = opts.withDefaults()
	seed := rand.Uint64()
	c := &Client{
		url:       u.String(),
		opts:      opts,
		rnd:       rand.New(rand.NewPCG(seed, rand.Uint64())),
		cidPrefix: strconv.FormatUint(seed, 36) + strconv.FormatUint(rand.Uint64(), 36) + "-",
		t0:        time.Now(),
		kick:      make(chan struct{}, 1),
		quit:      make(chan struct{}),
		opened:    make(chan struct{}),
		done:      make(chan struct{}),
		seen:      newDedup(opts.DedupSize),
		abandoned: newDedup(abandonedSize),
		rooms:     make(map[string]*room),
	}
	if opts.OnMessage == nil {
		c.msgs = make(chan *wshub.Frame, opts.InboxSize)
	}
	return c, nil
}

// Dial creates a client, starts Run in the background and waits until the
// first connection is open. It keeps retrying (per Options) until ctx
// ends; ctx bounds only this wait, not the client's life, which lasts until
// Close. It fails with the final error when the hub refuses for good (HTTP
// 401 or 403, close code 4000 or 1008, unless Options.ReconnectAlways), or
// with ctx.Err().
func Dial(ctx context.Context, rawURL string, opts Options) (*Client, error) {
	c, err := New(rawURL, opts)
	if err != nil {
		return nil, err
	}
	go func() { _ = c.Run(context.Background()) }()
	select {
	case <-c.opened:
		return c, nil
	case <-c.done:
		return nil, c.Err()
	case <-ctx.Done():
		_ = c.Close()
		return nil, ctx.Err()
	}
}

// Close ends the client: the current connection is closed with 1000, Run
// returns nil, waiting calls fail with ErrClosed and the Messages channel
// is closed. It waits for Run to return. Close is idempotent.
func (c *Client) Close() error {
	c.quitOnce.Do(func() { close(c.quit) })
	c.mu.Lock()
	if c.cancel != nil {
		c.cancel()
	}
	c.mu.Unlock()
	if c.started.CompareAndSwap(false, true) {
		// Run never ran and now never will.
		c.finish(nil)
	}
	<-c.done
	return nil
}

// Done returns a channel that is closed when Run has returned.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns why Run ended: nil while it runs and after Close, ctx.Err()
// when Run's context ended, or the final error.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// State returns the client's current state.
func (c *Client) State() State { return State(c.state.Load()) }

func (c *Client) setState(s State) { c.state.Store(int32(s)) }

// Messages returns the channel of incoming messages (cmd 10, 11, typing
// indicators (cmd 22, see Typing), read events (cmd 19, see MarkRead) and
// application commands, except the answers to Call), each delivered once
// (duplicates by id are dropped). It is closed when Run returns. It is nil when
// Options.OnMessage is set.
//
// The channel holds Options.InboxSize messages. When the application does
// not read it, the client stops reading the connection until there is
// room (backpressure): nothing is dropped, the heartbeat does not count the
// wait as a dead link, and the hub will eventually close the connection as
// a slow consumer (1013); the client then reconnects, and with Ack the
// messages not yet handed over are sent again by the hub. Messages still
// in the channel when the client closes count as delivered (and are
// acknowledged).
func (c *Client) Messages() <-chan *wshub.Frame { return c.msgs }

// Welcome returns the welcome frame of the latest connection (the user id
// is in UserID, the connection id in ID), or nil before the first.
func (c *Client) Welcome() *wshub.Frame {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.welcome
}

// Rooms returns the rooms the client has joined, with their state.
func (c *Client) Rooms() map[string]RoomState {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[string]RoomState, len(c.rooms))
	for name, r := range c.rooms {
		m[name] = r.RoomState
	}
	return m
}

// Pending returns the number of frames in the outbox: not yet written, or
// waiting for their receipt or answer (Send, Post, Join, History, Call).
func (c *Client) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.len()
}

// newCID returns a cid unique to this client.
func (c *Client) newCID() string {
	return c.cidPrefix + strconv.FormatUint(c.cidSeq.Add(1), 36)
}

// enqueue adds a frame to the outbox, assigning a cid when the kind needs
// one and f has none. f is not modified.
func (c *Client) enqueue(f *wshub.Frame, k kind, wait bool) (*entry, error) {
	return c.enqueueEncoded(f, k, wait, (*wshub.Frame).Encode)
}

// enqueueEncoded is enqueue with the frame's encoding done by encode (for
// a frame whose wire form Frame.Encode cannot produce).
func (c *Client) enqueueEncoded(f *wshub.Frame, k kind, wait bool, encode func(*wshub.Frame) ([]byte, error)) (*entry, error) {
	if f == nil {
		return nil, fmt.Errorf("wshub/client: nil frame")
	}
	cp := *f
	if cp.CID == "" && k != kindOnce && k != kindLive {
		cp.CID = c.newCID()
	}
	data, err := encode(&cp)
	if err != nil {
		return nil, fmt.Errorf("wshub/client: encode frame: %w", err)
	}
	e := &entry{cid: cp.CID, kind: k, cmd: cp.Cmd, dst: cp.DstID, data: data}
	if k == kindOnce || k == kindLive {
		e.cid = "" // never matched by an answer
	}
	if wait {
		e.done = make(chan result, 1)
	}
	c.mu.Lock()
	switch {
	case c.ended:
		c.mu.Unlock()
		return nil, ErrClosed
	case c.out.len() >= c.opts.OutboxSize:
		c.mu.Unlock()
		return nil, ErrOutboxFull
	case e.cid != "" && c.out.get(e.cid) != nil:
		c.mu.Unlock()
		return nil, fmt.Errorf("wshub/client: cid %q is already in the outbox", e.cid)
	}
	c.out.push(e)
	c.mu.Unlock()
	c.wake()
	return e, nil
}

// wake tells the writer there is something to write.
func (c *Client) wake() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// wait waits for e's result. When ctx ends first, e leaves the outbox (if
// still there) and ctx.Err() is returned.
func (c *Client) wait(ctx context.Context, e *entry) (*wshub.Frame, error) {
	r := c.waitResult(ctx, e)
	return r.f, r.err
}

// waitResult is wait returning the whole result.
func (c *Client) waitResult(ctx context.Context, e *entry) result {
	select {
	case r := <-e.done:
		return r
	case <-ctx.Done():
		c.mu.Lock()
		removed := c.out.removeEntry(e)
		if removed && e.kind == kindCall {
			c.abandoned.add(e.cid)
		}
		c.mu.Unlock()
		if !removed {
			// Settled at the same moment: its result is there.
			return <-e.done
		}
		return result{err: ctx.Err()}
	}
}

// Send sends a message (cmd 10 to a user, cmd 11 to a room, or an
// application command that the hub's dispatcher answers with a receipt)
// and waits for its receipt (cmd 15), which it returns.
//
// f is not modified; a copy gets a fresh cid when f.CID is empty. The frame
// is kept in the outbox until the receipt or an error frame with its cid
// arrives, and is written again with the same cid after every reconnect —
// the hub's (sender, cid) deduplication makes that safe, so the message is
// stored once. An error frame fails Send with a *ServerError (compare with
// errors.Is(err, wshub.ErrNotMember) etc.).
//
// When ctx ends first, the frame leaves the outbox and Send returns
// ctx.Err(); the frame may or may not have reached the hub. To retry it
// safely, set f.CID yourself and Send the same cid again.
func (c *Client) Send(ctx context.Context, f *wshub.Frame) (*wshub.Frame, error) {
	e, err := c.enqueue(f, kindMessage, true)
	if err != nil {
		return nil, err
	}
	return c.wait(ctx, e)
}

// Call sends an application command (cmd 100 and up) as a request and
// returns the hub's answer: the first frame that carries the request's cid
// (by convention the handler answers with
// n.Send(&wshub.Frame{Cmd: f.Cmd, CID: f.CID, ...})). The answer is not
// delivered on Messages or OnMessage. An error frame (cmd 40) with the cid
// fails Call with a *ServerError, which carries the code and reason and
// matches the hub's errors (errors.Is(err, wshub.ErrUnknownCommand)) and an
// application's own *wshub.Error values.
//
// f is not modified; the request is a copy with a fresh cid (f.CID is
// ignored). Made while there is no connection, the request waits for the
// next one. Once written it is never written again: if that connection
// ends before the answer, Call fails with ErrConnectionLost, and the
// command may or may not have run on the hub — it does not deduplicate
// application commands, so resending could run it twice. Retry only what
// is safe to run twice.
//
// When ctx ends first, Call returns ctx.Err(); an answer arriving later is
// dropped. Call fails with ErrClosed when the client closes meanwhile.
func (c *Client) Call(ctx context.Context, f *wshub.Frame) (*wshub.Frame, error) {
	if f == nil {
		return nil, fmt.Errorf("wshub/client: nil frame")
	}
	if f.Cmd < wshub.CmdApp {
		return nil, fmt.Errorf("%w: Call is for application commands (%d and up), not cmd %d",
			wshub.ErrBadRequest, wshub.CmdApp, f.Cmd)
	}
	req := *f
	req.CID = c.newCID()
	e, err := c.enqueue(&req, kindCall, true)
	if err != nil {
		return nil, err
	}
	return c.wait(ctx, e)
}

// Post is Send without waiting: it puts the frame in the outbox and
// returns its cid. The receipt comes to Options.OnReceipt, an error frame
// to Options.OnError; until one of them arrives the frame is resent after
// every reconnect.
func (c *Client) Post(f *wshub.Frame) (cid string, err error) {
	e, err := c.enqueue(f, kindMessage, false)
	if err != nil {
		return "", err
	}
	return e.cid, nil
}

// Emit writes f once, on the current connection or the next one if there
// is none, and forgets it: no cid is assigned, nothing is resent or
// awaited. Use it for frames without a receipt (application commands that
// are not answered with cmd 15).
func (c *Client) Emit(f *wshub.Frame) error {
	_, err := c.enqueue(f, kindOnce, false)
	return err
}

// Typing tells dstid that the user is typing: the hub forwards
// {"cmd":22,"userid":<this user>,"dstid":dstid,"room":room} to the
// connections of user dstid, or, with room, to the connections of room
// dstid's members but this one (the user must be a member, or an error
// frame 403 comes to Options.OnError). Other clients get it as a frame
// with Cmd wshub.CmdTyping on Messages or OnMessage.
//
// It is fire and forget: it returns without waiting for anything, and
// nothing answers it. A typing indicator is ephemeral: when no connection
// is open, or the one open ends before the frame is written, it is
// dropped, never written on a later connection. The hub drops more than
// five a second per connection; call it when the user starts typing and
// then every few seconds while they go on, not on every keystroke.
func (c *Client) Typing(ctx context.Context, dstid string, room bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if dstid == "" {
		return fmt.Errorf("%w: empty dstid", wshub.ErrMissingDst)
	}
	switch c.State() {
	case StateClosed:
		return ErrClosed
	case StateOpen:
	default:
		return nil // ephemeral: nothing to keep for the next connection
	}
	_, err := c.enqueue(&wshub.Frame{Cmd: wshub.CmdTyping, DstID: dstid, Room: room}, kindLive, false)
	return err
}

// Join joins room and returns the hub's reply (cmd 12 with the room's
// latest Seq and Epoch). The client then remembers the room and, after
// every reconnect, joins it again with since and epoch so that the
// messages missed meanwhile are replayed (see Options.OnRejoin). Joining a
// room already joined asks for the messages after the last one seen. When
// ctx ends before the reply, the room is not remembered, though the hub may
// have joined it.
func (c *Client) Join(ctx context.Context, roomID string) (*wshub.Frame, error) {
	if roomID == "" {
		return nil, fmt.Errorf("%w: empty room", wshub.ErrMissingDst)
	}
	f := &wshub.Frame{Cmd: wshub.CmdJoin, DstID: roomID}
	c.mu.Lock()
	if r, ok := c.rooms[roomID]; ok {
		f.Since, f.Epoch = r.Seq, r.Epoch
	}
	c.mu.Unlock()
	e, err := c.enqueue(f, kindRequest, true)
	if err != nil {
		return nil, err
	}
	return c.wait(ctx, e)
}

// Leave leaves room: the client forgets it and writes cmd 13 once (now, or
// on the next connection). It does not wait; the hub sends no answer.
func (c *Client) Leave(roomID string) error {
	if roomID == "" {
		return fmt.Errorf("%w: empty room", wshub.ErrMissingDst)
	}
	c.mu.Lock()
	delete(c.rooms, roomID)
	c.mu.Unlock()
	return c.Emit(&wshub.Frame{Cmd: wshub.CmdLeave, DstID: roomID})
}

// HistoryRequest selects a window of a conversation's history: the direct
// messages with User, or the messages of Room (set exactly one). With
// Since > 0 the window is the oldest Limit messages after Since (reading
// forward); otherwise the newest Limit messages before Before (any when
// Before is 0). Limit 0 means the hub's default.
type HistoryRequest struct {
	User   string
	Room   string
	Since  uint64
	Before uint64
	Limit  int
}

// History asks for a window of history and returns the hub's reply (cmd 16
// or 17) with Items oldest first, More and Epoch. The request is asked
// again after a reconnect until it is answered or ctx ends.
func (c *Client) History(ctx context.Context, q HistoryRequest) (*wshub.Frame, error) {
	f := &wshub.Frame{Since: q.Since, Before: q.Before, Limit: q.Limit}
	switch {
	case q.User != "" && q.Room == "":
		f.Cmd, f.DstID = wshub.CmdHistory, q.User
	case q.Room != "" && q.User == "":
		f.Cmd, f.DstID = wshub.CmdRoomHistory, q.Room
	default:
		return nil, fmt.Errorf("%w: set exactly one of User and Room", wshub.ErrBadRequest)
	}
	e, err := c.enqueue(f, kindRequest, true)
	if err != nil {
		return nil, err
	}
	return c.wait(ctx, e)
}

// Conversation is one of the user's conversations, as Conversations
// lists them.
type Conversation struct {
	// DstID is the other user of a direct conversation (the user itself
	// for notes to self), or the room's id when Room is true.
	DstID string
	Room  bool
	// Seq is the conversation's latest seq and TS (Unix milliseconds) the
	// time of that message; both are 0 for a room without messages.
	Seq uint64
	TS  int64
	// Read is the user's read marker, Seen the peer's (direct
	// conversations only), Unread is Seq - Read.
	Read, Seen, Unread uint64
}

// Conversations asks the hub for up to limit of the user's conversations
// (cmd 18; limit 0 means the hub's default of 100, at most 1,000 are
// sent), most recent message first: every direct conversation with at
// least one message and every room the user is a member of. more reports
// that the list was cut at limit. The list comes from the store, so every
// device of the user gets the same one. The request is asked again after
// a reconnect until it is answered or ctx ends. An error frame fails it
// with a *ServerError (404 when the hub's store keeps no conversation
// index).
func (c *Client) Conversations(ctx context.Context, limit int) (items []Conversation, more bool, err error) {
	e, err := c.enqueue(&wshub.Frame{Cmd: wshub.CmdConversations, Limit: max(limit, 0)}, kindRequest, true)
	if err != nil {
		return nil, false, err
	}
	r, err := c.wait(ctx, e)
	if err != nil {
		return nil, false, err
	}
	items = make([]Conversation, 0, len(r.Items))
	for _, it := range r.Items {
		if it == nil {
			continue
		}
		items = append(items, Conversation{
			DstID: it.DstID, Room: it.Cmd == wshub.CmdRoom, Seq: it.Seq, TS: it.TS,
			Read: it.Read, Seen: it.Seen, Unread: it.Unread,
		})
	}
	return items, r.More, nil
}

// MarkRead tells the hub that the user has read the direct conversation
// with user dstid, or with room room dstid, up to seq (cmd 19). The hub
// stores the marker per user and conversation; it only moves forward and
// never past the conversation's latest seq. When it moved, the hub sends
// {"cmd":19,"userid":<this user>,"dstid":dstid,"room":room,"seq":<marker>}
// to the user's other connections and, for a direct conversation, to the
// peer's connections, which get it as a frame with Cmd wshub.CmdRead on
// Messages or OnMessage: the peer recognises the conversation by UserID,
// the user's other devices by DstID. Keep the highest Seq seen; events
// are live only and reach the connections on the reader's hub process.
//
// It does not wait: the frame is written once, now or on the next
// connection, and nothing answers it. A refusal (403 for a room the user
// is not in) comes to Options.OnError. A marker lost with a connection is
// harmless to send again: markers never move back.
func (c *Client) MarkRead(ctx context.Context, dstid string, room bool, seq uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if dstid == "" {
		return fmt.Errorf("%w: empty dstid", wshub.ErrMissingDst)
	}
	_, err := c.enqueue(&wshub.Frame{Cmd: wshub.CmdRead, DstID: dstid, Room: room, Seq: seq}, kindOnce, false)
	return err
}

// Run connects and keeps the client connected until ctx ends (it returns
// ctx.Err()), Close is called (it returns nil), or a final error: HTTP 401
// or 403 on dial (a *HandshakeError wrapping wshub.ErrUnauthorized or
// ErrForbidden), a close with code 4000 or 1008 (a *CloseError), ErrGaveUp.
// Other refused handshakes are retried (see HandshakeError). Run may be
// called once.
func (c *Client) Run(ctx context.Context) error {
	if !c.started.CompareAndSwap(false, true) {
		return ErrRunning
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.mu.Lock()
	c.cancel = cancel
	c.mu.Unlock()
	select {
	case <-c.quit: // Close came first
		cancel()
	default:
	}
	err := c.loop(ctx)
	c.finish(err)
	return err
}

// finish records why the client ended, fails every waiting call and closes
// the Messages channel and done. Called once, by Run (or by Close when Run
// never ran), after the last connection's reader has returned.
func (c *Client) finish(err error) {
	c.mu.Lock()
	c.ended = true
	c.err = err
	all := c.out.drain()
	c.acks = nil
	c.mu.Unlock()
	for _, e := range all {
		e.complete(result{err: ErrClosed})
	}
	c.setState(StateClosed)
	if c.msgs != nil {
		close(c.msgs)
	}
	close(c.done)
}

// isFinal reports whether err ends Run without ReconnectAlways.
func isFinal(err error) bool {
	if errors.Is(err, wshub.ErrUnauthorized) || errors.Is(err, ErrForbidden) {
		return true
	}
	var ce *CloseError
	if errors.As(err, &ce) {
		return ce.Code == CloseReplaced || ce.Code == ClosePolicy
	}
	return false
}

// loop dials, serves connections and waits out backoff delays until ctx
// ends (Close cancels it too) or a final error.
func (c *Client) loop(ctx context.Context) error {
	attempt := 0
	for {
		c.setState(StateConnecting)
		openFor, err := c.connect(ctx)
		if ctx.Err() != nil {
			return c.endErr(ctx)
		}
		if isFinal(err) && !c.opts.ReconnectAlways {
			return err
		}
		if openFor >= c.opts.StableAfter {
			attempt = 0
		}
		if c.opts.NoReconnect {
			return fmt.Errorf("%w: %w", ErrGaveUp, err)
		}
		if c.opts.MaxAttempts > 0 && attempt >= c.opts.MaxAttempts {
			return fmt.Errorf("%w after %d attempts: %w", ErrGaveUp, attempt, err)
		}
		attempt++
		delay := c.opts.Backoff.Next(attempt, c.rnd)
		if he := (*HandshakeError)(nil); errors.As(err, &he) && he.RetryAfter > 0 {
			delay = c.opts.Backoff.atLeast(delay, he.RetryAfter)
		}
		c.setState(StateReconnecting)
		c.opts.Logger.Debug("wshub/client: reconnecting", "attempt", attempt, "delay", delay, "err", err)
		if c.opts.OnReconnecting != nil {
			c.opts.OnReconnecting(attempt, delay)
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return c.endErr(ctx)
		}
	}
}

// endErr is Run's result once ctx is done: nil after Close, else ctx.Err().
func (c *Client) endErr(ctx context.Context) error {
	select {
	case <-c.quit:
		return nil
	default:
		return ctx.Err()
	}
}
