// Package wshub is an embeddable WebSocket hub: mount a *Hub as an
// http.Handler, and browsers and Go programs exchange direct and room
// messages through it, stored in a pluggable store.Store, with receipts,
// offline queues, history and reconnect-safe resends. The wire protocol is
// described in docs/protocol.md.
package wshub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"

	"github.com/wshub/wshub/internal/wsconn"
	"github.com/wshub/wshub/store"
	"github.com/wshub/wshub/store/memstore"
)

// Options configures a Hub. The zero value of every field means the
// documented default, filled in by New; only Authenticate is required.
type Options struct {
	// Store keeps history, pending queues, receipts and memberships.
	// Default: a new memstore owned by the hub and closed by Shutdown. A
	// store given here belongs to the caller, who closes it after
	// Shutdown returned.
	Store store.Store

	// Authenticate turns an upgrade request into the user id of the
	// connection; an error or an empty id answers HTTP 401, which tells
	// clients to stop retrying. An error that wraps ErrAuthUnavailable (the
	// application's auth backend is down, say) answers HTTP 503 with
	// Retry-After instead, and clients keep trying. Required: New
	// fails with ErrNoAuthenticate without it. Token extracts the token
	// the way clients send it; DevAuthenticate takes the token as the user
	// id, for development only.
	Authenticate func(r *http.Request) (userID string, err error)

	// CheckOrigin decides whether a browser's cross-origin request may
	// connect; false answers HTTP 403. Default: AllowedOrigins when set,
	// else same origin only: the Origin header's scheme, host and port
	// equal the request's own (scheme https when the request came over
	// TLS, r.TLS != nil, else http; ports 80 and 443 when not given).
	// Requests without an Origin header are allowed: browsers always send
	// one on a WebSocket upgrade, other clients need not.
	//
	// Behind a proxy that terminates TLS, or rewrites Host (nginx's
	// default proxy_set_header Host $proxy_host), the request's own
	// scheme and host are not the page's: list the proxy in
	// TrustedProxies (same origin then compares with the scheme and host
	// the proxy forwarded), or set AllowedOrigins.
	CheckOrigin func(r *http.Request) bool
	// AllowedOrigins, when not empty, replaces the same-origin default
	// (New fails with ErrBadOption if CheckOrigin is set too): a request
	// with an Origin header may connect only when its origin matches one
	// of these patterns, whatever the request's Host. A pattern is
	// "scheme://host" or "scheme://host:port", scheme http or https, as
	// browsers write origins ("https://chat.example.com"); the host may
	// start with "*." to match any name below a domain
	// ("https://*.example.com" matches a.example.com and a.b.example.com,
	// not example.com). Scheme and port must match exactly, a missing port
	// meaning the scheme's default (80, 443); hosts compare case-blind.
	//
	// Same origin cannot tell a DNS-rebinding page from the real one: a
	// page at http://evil.example whose name the attacker pointed at the
	// hub's address sends "Host: evil.example" with a matching Origin.
	// That page gets whatever the hub grants by where a request comes
	// from, or by what the browser attaches to it by itself (cookies, HTTP
	// authentication, client certificates). A hub reachable on an intranet
	// or on localhost, or whose Authenticate reads cookies, should list
	// its pages' origins here: a rebinding page's origin never matches.
	// (A list of allowed Host values would do the same for browsers; the
	// origins are what an application knows anyway, and pin the scheme.)
	AllowedOrigins []string
	// TrustedProxies lists the reverse proxies in front of the hub, as IP
	// addresses or CIDR prefixes ("10.0.0.0/8", "127.0.0.1"); New fails
	// with ErrBadOption on an entry that is neither. For a request whose
	// TCP peer is one of them, the hub takes the client's address from
	// the Forwarded header (RFC 7239: for=), else X-Forwarded-For, else
	// X-Real-IP — the rightmost address that is not itself a trusted
	// proxy, so a client cannot forge its address by sending the header
	// itself — and the request's scheme and host, for the same-origin
	// check, from Forwarded's proto= and host=, else X-Forwarded-Proto
	// and X-Forwarded-Host. That address is Node.RemoteAddr and the key
	// of the per-address bounds. Headers from any other peer are ignored.
	// Default: none.
	TrustedProxies []string

	// Dispatcher handles application commands (cmd >= CmdApp). Without it
	// they are answered with ErrUnknownCommand.
	Dispatcher Dispatcher
	// Middleware wraps the whole routing of incoming frames, built-in
	// commands included, the first element outermost.
	Middleware []Middleware
	// AuthorizeRoom, when set, is asked before a user joins a room
	// (CmdJoin), sends to it (CmdRoom) or reads its history
	// (CmdRoomHistory). A non-nil error refuses the frame with an error
	// frame (ErrForbidden unless the error is or wraps an *Error).
	AuthorizeRoom func(ctx context.Context, n *Node, cmd Cmd, room string) error
	// OnConnect is called after a connection is registered and its
	// welcome frame queued, before its first frame is read.
	OnConnect func(n *Node)
	// OnDisconnect is called once when a connection is gone, with the
	// error that ended it (nil for a normal close).
	OnDisconnect func(n *Node, err error)

	// PingInterval is how often the hub sends a WebSocket ping to each
	// connection. Default 25 s.
	PingInterval time.Duration
	// PongTimeout is how long a connection may stay silent (no frame, no
	// pong) before the hub drops it; it is checked at each ping, so a
	// silent connection goes between PongTimeout and PongTimeout plus
	// PingInterval after its last bytes. Default 60 s; raised to at least
	// PingInterval plus one second.
	PongTimeout time.Duration
	// WriteTimeout bounds each write to a socket. Default 10 s.
	WriteTimeout time.Duration
	// ReadLimit is the largest message a client may send, in bytes; a
	// larger one closes the connection with 1009. Default 64 KiB.
	ReadLimit int64
	// FrameTimeout bounds how long a message (or a control frame) may
	// take to arrive whole once its first byte came: a connection that
	// leaves one incomplete longer is closed with 1008. With ReadLimit it
	// bounds what a client can hold on the hub by sending slowly: at most
	// one message of ReadLimit bytes, for FrameTimeout. Default 20 s.
	FrameTimeout time.Duration
	// SendQueue is how many frames may wait for one connection, and
	// SendQueueBytes how many bytes (the frames waiting and those being
	// written); a connection whose queue is full is closed with 1013 (its
	// direct messages stay pending). Defaults 1024 frames and 4 MiB.
	SendQueue      int
	SendQueueBytes int
	// MaxConnsPerUser is how many connections one user may hold; the
	// oldest is closed with 4000 when one more connects. Default 8.
	MaxConnsPerUser int
	// MaxConnsPerIP is how many connections (and upgrades under way) one
	// client address may hold: one more is answered with HTTP 429 and a
	// Retry-After header before any upgrade, before Authenticate runs.
	// The address is the host of the request's RemoteAddr, an IPv6
	// address's /64 prefix (one host or network usually has the whole
	// prefix). Default 256: the users of a small office or a campus
	// building behind one NAT address, with a few tabs and devices each,
	// get through, while one host cannot hold more than 256 sockets,
	// sessions and store loads. A hub behind a reverse proxy sees every
	// client at the proxy's address: raise the cap or disable it there
	// (trusted-proxy handling is not built yet); a hub serving mobile
	// networks behind carrier-grade NAT may need more. Negative: no cap.
	MaxConnsPerIP int
	// UpgradeRate bounds the upgrade requests one client address (as for
	// MaxConnsPerIP) may make per second, a token bucket holding
	// UpgradeBurst: past it, HTTP 429 with a Retry-After header (the
	// seconds until a token is back) before any upgrade, before
	// Authenticate runs. Refused requests cost no token. Default 10 per
	// second; negative (or rate.Inf): no limit. The hub keeps one entry
	// per address that connected lately: it goes once the address holds
	// no connection and its bucket is full again.
	UpgradeRate rate.Limit
	// UpgradeBurst is the bucket size of UpgradeRate. Default
	// MaxConnsPerIP (256 by default; 256 when that cap is off), so that
	// every connection an address may hold can come back at once, as
	// after a restart of the hub, and the rate bounds only what comes
	// after.
	UpgradeBurst int
	// MaxRooms is how many rooms one user may be a member of: a join
	// (cmd 12, Hub.Join) that would make it one more is refused with
	// ErrTooManyRooms (error frame 429); joining a room the user is in
	// already is always allowed. Every connect loads all of a user's rooms,
	// so this bounds that too. An online user's rooms are counted from the
	// hub's membership cache; an offline user's from Store.Rooms (the
	// store has no cheaper count: a list of at most MaxRooms ids).
	// Default 1,000; negative: no limit.
	MaxRooms int
	// MessageRate is the quota of messages (cmd 10 and 11 from clients)
	// one user may have stored: a token bucket refilled at MessageRate
	// per second and holding MessageBurst, per user across all its
	// connections, kept when the user disconnects (reconnecting does not
	// refill it). A message over it is answered with ErrQuota (error
	// frame 429) and nothing of it is stored. A bucket rather than a count
	// per fixed window: a client may spend its whole burst at once (after
	// a reconnect, say), but not twice across a window's edge. Default 2
	// per second, 120 a minute: more than anyone types for long, and with
	// the burst one account can have about 174,000 messages a day stored,
	// where the audit of issue 10 saw 200,000 in 24 seconds. A resend of
	// a cid already stored, and a message the store failed to take, give
	// their charge back. Messages the application sends (SendToUser,
	// SendToRoom) are not counted. Negative (or rate.Inf): no quota. The
	// quota is per hub process: n processes sharing a store allow up to n
	// times as much.
	MessageRate rate.Limit
	// MessageBurst is the bucket size of MessageRate. Default 1,000, the
	// Go client's default outbox: a client that comes back with a full
	// outbox is not refused.
	MessageBurst int
	// MaxRecipients bounds the distinct users one user may send direct
	// messages (cmd 10) to within RecipientWindow; a message to one more
	// is answered with ErrQuota (error frame 429) and nothing is stored,
	// while messages to the users already counted go on. It is the bound
	// on fan-out: each new recipient is a new pending queue and a new
	// conversation in the store, and a client can name any number of
	// users, existing or not. Default 100 per hour: more people than one
	// person starts conversations with in an hour; an application that
	// needs more (a support desk, a bot) raises it or sends from the
	// server side (SendToUser is not counted). The window starts with the
	// user's first direct message and restarts after RecipientWindow.
	// Negative: no bound. Per hub process, like MessageRate.
	MaxRecipients int
	// RecipientWindow is the window of MaxRecipients. Default 1 hour.
	RecipientWindow time.Duration
	// MaxHistory caps the items of one history reply (cmd 16, 17).
	// Default 200.
	MaxHistory int
	// MaxReplay caps how many room messages a join with since replays;
	// past it the join reports recovered false. Default 1000.
	MaxReplay int
	// RateLimit, when positive, bounds the frames one connection may send
	// per second (with bursts of RateBurst, default twice the rate). A
	// frame over the limit is answered with ErrRateLimited (429) and not
	// handled; a connection that goes on sending over the limit, RateBurst
	// frames in a row, is closed with 1008. Default 0: no limit. What a
	// user can make the hub store is bounded by MessageRate and
	// MaxRecipients whether or not this is set.
	RateLimit rate.Limit
	// RateBurst is the burst of RateLimit.
	RateBurst int

	// PresenceInterval is how long presence changes (a user's first
	// connection opened, its last one closed) gather before they are
	// announced to the connections watching the user (cmd 21): a user who
	// reconnects within it announces nothing, and a user whose
	// connections flap announces at most one transition per interval.
	// Default 1 s.
	PresenceInterval time.Duration
	// PresenceTTL is, with a store that implements store.Presence
	// (shared by several hub processes), the lease of this process's
	// presence entries: renewed every PresenceTTL/3, and when it ends
	// (the process was killed, or lost the store) another process
	// announces its users offline. Default 15 s.
	PresenceTTL time.Duration

	// Logger receives the hub's logs. Default slog.Default().
	Logger *slog.Logger
}

const (
	userShards = 64
	roomShards = 64
	keyLocks   = 1024
)

// Hub routes frames between connections and a store. It is an
// http.Handler: mount it at the path clients connect to. All methods are
// safe for concurrent use.
type Hub struct {
	opts     Options
	store    store.Store
	ownStore bool
	log      *slog.Logger
	origins  []originPattern   // Options.AllowedOrigins, parsed
	proxies  []netip.Prefix    // Options.TrustedProxies, parsed
	ips      *ipTable          // nil when MaxConnsPerIP and UpgradeRate are off
	quotas   *quotaTable       // nil when MessageRate and MaxRecipients are off
	tr       *wsconn.Transport // the WebSocket connections' transport
	dispatch Dispatcher        // middleware around router
	// waits: dispatching any frame may wait (the store is not a
	// store.NonBlocking, or Options.Middleware runs the application's
	// code), so each is handed off the transport's poller first
	// (nodeEvents.Message).
	waits bool
	seed  maphash.Seed
	// starters holds the *starter of deliveries.
	starters sync.Pool
	// frames holds the *Frame that incoming messages are decoded into,
	// when they can be taken back (see reusable); reuseFrames is set when
	// no Middleware sees the frames.
	frames      sync.Pool
	reuseFrames bool

	users [userShards]userShard
	rooms [roomShards]roomShard
	// convLocks serializes, per conversation, a store append with the
	// delivery to local connections, so that every connection receives a
	// conversation in seq order. userLocks serializes, per user,
	// membership changes with the loading of a connecting user's rooms.
	// Both are striped by hash and held across the store calls of their
	// key only, never across socket I/O. Order: a conversation lock before
	// a user lock.
	convLocks [keyLocks]sync.Mutex
	userLocks [keyLocks]sync.Mutex

	ctx    context.Context // cancelled by Shutdown; parent of every node's ctx
	cancel context.CancelFunc
	nodes  sync.WaitGroup // one per connection, and per transport goroutine

	// feed, when the store is a store.Feed, announces every message and
	// membership change of every hub process sharing the store; messages
	// are then delivered from it (runFeed) rather than after Append.
	feed     store.Feed
	feedDone chan struct{} // closed by runFeed when it returns
	// signaler, when the feed is a store.Signaler, carries typing and
	// read-marker events to the other hub processes.
	signaler store.Signaler
	// router, when the feed is a store.Router, routes by interest: the
	// hub follows its online users and their rooms (see follow.go).
	router store.Router
	// unfollowMu is held for reading across an Unfollow call and the
	// check that its connection follows the current subscription, and
	// for writing while a break is counted (runFeed): an Unfollow of a
	// connection of the old subscription never reaches the next one.
	unfollowMu sync.RWMutex
	presence   *presence // cmd 21

	stats hubStats // counters for Stats

	mu         sync.Mutex // guards closed, feedReady, readySince and readyCh
	closed     bool
	feedReady  bool      // the feed's subscription is active
	readySince time.Time // when feedReady last turned true
	// readyCh is closed when feedReady turns true (by setReady, its only
	// closer) and replaced by an open one when it turns false; WaitReady
	// waits on it. Nil when the store is not a Feed.
	readyCh chan struct{}
	// feedBreaks counts the losses of the feed's subscription. A
	// connection notes it when it passes the ready check and checks it
	// again once registered (Node.start): one that passed just before a
	// loss and registered just after runFeed's sweep would otherwise
	// stay open, having missed what the feed announced meanwhile.
	feedBreaks uint64
}

// userShard indexes the online users whose id hashes to it.
type userShard struct {
	mu    sync.RWMutex
	users map[string]*userEntry // guarded by mu
}

// userEntry is one online user. Its fields are guarded by the mutex of the
// user's shard.
type userEntry struct {
	nodes []*Node             // oldest first
	rooms map[string]struct{} // the user's rooms, loaded when it came online
}

// liveNodes lists the user's connections that are not closing, oldest
// first. The caller holds the shard's lock.
func (u *userEntry) liveNodes() []*Node {
	live := make([]*Node, 0, len(u.nodes))
	for _, n := range u.nodes {
		if !n.isClosing() {
			live = append(live, n)
		}
	}
	return live
}

// roomShard indexes the local connections of the members of its rooms.
type roomShard struct {
	mu    sync.RWMutex
	rooms map[string]map[*Node]struct{} // guarded by mu
}

// New builds a Hub. It fails with ErrNoAuthenticate when
// opts.Authenticate is nil.
func New(opts Options) (*Hub, error) {
	if opts.Authenticate == nil {
		return nil, ErrNoAuthenticate
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur(&opts.PingInterval, 25*time.Second)
	defDur(&opts.PongTimeout, 60*time.Second)
	defDur(&opts.WriteTimeout, 10*time.Second)
	opts.PongTimeout = max(opts.PongTimeout, opts.PingInterval+time.Second)
	if opts.ReadLimit <= 0 {
		opts.ReadLimit = 64 << 10
	}
	defDur(&opts.FrameTimeout, 20*time.Second)
	def(&opts.SendQueue, 1024)
	def(&opts.SendQueueBytes, 4<<20)
	def(&opts.MaxConnsPerUser, 8)
	def(&opts.MaxHistory, 200)
	def(&opts.MaxReplay, 1000)
	if opts.RateLimit > 0 && opts.RateBurst <= 0 {
		opts.RateBurst = max(1, int(2*opts.RateLimit))
	}
	// The bounds: zero means the default, negative no bound.
	defBound := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defBound(&opts.MaxConnsPerIP, 256)
	defBound(&opts.MaxRooms, 1000)
	defBound(&opts.MaxRecipients, 100)
	defDur(&opts.RecipientWindow, time.Hour)
	if opts.UpgradeRate == 0 {
		opts.UpgradeRate = 10
	}
	if opts.UpgradeBurst <= 0 {
		opts.UpgradeBurst = 256
		if opts.MaxConnsPerIP > 0 {
			opts.UpgradeBurst = opts.MaxConnsPerIP
		}
	}
	if opts.MessageRate == 0 {
		opts.MessageRate = 2
	}
	def(&opts.MessageBurst, 1000)
	defDur(&opts.PresenceInterval, time.Second)
	defDur(&opts.PresenceTTL, 15*time.Second)
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	h := &Hub{opts: opts, store: opts.Store, log: opts.Logger, seed: maphash.MakeSeed()}
	if len(opts.AllowedOrigins) > 0 {
		if opts.CheckOrigin != nil {
			return nil, fmt.Errorf("%w: AllowedOrigins and CheckOrigin are both set", ErrBadOption)
		}
		var err error
		if h.origins, err = parseOriginPatterns(opts.AllowedOrigins); err != nil {
			return nil, err
		}
		h.opts.CheckOrigin = h.allowedOrigin
	}
	var err error
	if h.proxies, err = parsePrefixes(opts.TrustedProxies); err != nil {
		return nil, err
	}
	if h.opts.CheckOrigin == nil {
		h.opts.CheckOrigin = h.sameOrigin
	}
	if opts.MaxConnsPerIP > 0 || limited(opts.UpgradeRate) {
		h.ips = newIPTable(&opts)
	}
	if limited(opts.MessageRate) || opts.MaxRecipients > 0 {
		h.quotas = newQuotaTable(&opts)
	}
	if h.store == nil {
		h.store = memstore.New(memstore.Options{})
		h.ownStore = true
	}
	h.dispatch = chain(router{h}, opts.Middleware)
	nb, ok := h.store.(store.NonBlocking)
	h.waits = !ok || !nb.NonBlocking() || len(opts.Middleware) > 0
	h.starters.New = func() any { return new(starter) }
	h.frames.New = func() any { return new(Frame) }
	h.reuseFrames = len(opts.Middleware) == 0
	for i := range h.users {
		h.users[i].users = make(map[string]*userEntry)
	}
	for i := range h.rooms {
		h.rooms[i].rooms = make(map[string]map[*Node]struct{})
	}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	h.tr = wsconn.New(wsconn.Config{
		ReadLimit:      opts.ReadLimit,
		FrameTimeout:   opts.FrameTimeout,
		WriteTimeout:   opts.WriteTimeout,
		PingInterval:   opts.PingInterval,
		PongTimeout:    opts.PongTimeout,
		SendQueue:      opts.SendQueue,
		SendQueueBytes: opts.SendQueueBytes,
		Goroutines:     &h.nodes,
		Logger:         h.log,
		CloseSent:      func(code int) { h.stats.count(&h.stats.closes, code) },
		// Written acks in the store: inline when the store never waits;
		// the poller reads a batch's sockets itself when nothing waits.
		InlineWritten: ok && nb.NonBlocking(),
		PollBudget:    pollBudget(h.waits),
	})
	h.presence = newPresence(h)
	if f, ok := h.store.(store.Feed); ok {
		h.feed = f
		h.signaler, _ = f.(store.Signaler)
		h.router, _ = f.(store.Router)
		h.feedDone = make(chan struct{})
		h.readyCh = make(chan struct{})
		go h.runFeed()
	}
	go h.presence.run()
	return h, nil
}

// Store returns the hub's store.
func (h *Hub) Store() store.Store { return h.store }

// authRetryAfter is the Retry-After of a 503 for an unavailable
// authentication backend.
const authRetryAfter = 5 * time.Second

// Token returns the token a client sent with its upgrade request: the
// query parameter token, else authToken (the name the original tutorial's
// client uses),
// else an "Authorization: Bearer" header.
func Token(r *http.Request) string {
	q := r.URL.Query()
	if t := q.Get("token"); t != "" {
		return t
	}
	if t := q.Get("authToken"); t != "" {
		return t
	}
	if a := r.Header.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	return ""
}

// DevAuthenticate is an Options.Authenticate for development and tests
// only: the token is the user id, so anyone can be anyone. Never use it in
// production.
func DevAuthenticate(r *http.Request) (string, error) {
	t := Token(r)
	if t == "" {
		return "", ErrUnauthorized
	}
	return t, nil
}

// ServeHTTP upgrades a request to a WebSocket connection. Before any
// upgrade it answers 503 after Shutdown began (or while the store's feed
// is not subscribed), 403 when the origin policy refuses the request, 429
// with Retry-After when the client's address holds MaxConnsPerIP
// connections or upgrades faster than UpgradeRate, 401 when Authenticate
// refuses it, and 400 when the user id is longer than MaxIDLen bytes (or
// not UTF-8) or the request is no WebSocket upgrade.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.isClosed() {
		h.refuse(w, r, http.StatusServiceUnavailable, "hub is shutting down")
		return
	}
	feedBreaks, ready := h.feedState()
	if !ready {
		h.refuse(w, r, http.StatusServiceUnavailable, "hub is not ready: its store feed is not subscribed")
		return
	}
	if !h.opts.CheckOrigin(r) {
		h.refuse(w, r, http.StatusForbidden, "origin not allowed")
		return
	}
	var ipKey string // counted in h.ips until released
	if h.ips != nil {
		ipKey = h.clientKey(r)
		if wait, ok := h.ips.admit(ipKey, time.Now()); !ok {
			w.Header().Set("Retry-After", retryAfter(wait))
			h.refuse(w, r, http.StatusTooManyRequests, "too many connections or upgrades from your address")
			return
		}
		// Released here unless a connection took it over, which
		// releases it when it ends.
		defer func() {
			if ipKey != "" {
				h.ips.release(ipKey, time.Now())
			}
		}()
	}
	user, err := h.opts.Authenticate(r)
	if errors.Is(err, ErrAuthUnavailable) {
		// Not the client's fault: it should come back.
		w.Header().Set("Retry-After", strconv.Itoa(int(authRetryAfter/time.Second)))
		h.refuse(w, r, http.StatusServiceUnavailable, "authentication unavailable")
		return
	}
	if err != nil || user == "" {
		h.refuse(w, r, http.StatusUnauthorized, "unauthorized")
		return
	}
	if err := checkID("user id", user); err != nil {
		h.refuse(w, r, http.StatusBadRequest, trimPrefix(err.Error()))
		return
	}
	if !websocket.IsWebSocketUpgrade(r) {
		h.refuse(w, r, http.StatusBadRequest, "websocket upgrade required")
		return
	}
	q := r.URL.Query()
	n := newNode(h, user, q.Get("ack") == "1")
	n.remote = h.clientAddr(r)
	n.feedBreaks = feedBreaks
	n.ipKey = ipKey
	// Counted under mu, so that no node starts once Shutdown waits.
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		h.refuse(w, r, http.StatusServiceUnavailable, "hub is shutting down")
		return
	}
	h.nodes.Add(1)
	h.mu.Unlock()
	conn, err := h.tr.Upgrade(w, r, (*nodeEvents)(n), q.Get("batch") == "1", &n.mu)
	if err != nil {
		// The handshake was answered with an HTTP error.
		h.log.Debug("wshub: upgrade failed", slog.Any("err", err))
		h.nodes.Done()
		return
	}
	n.conn = conn
	h.stats.conns.Add(1)
	h.stats.connsTotal.Add(1)
	ipKey = "" // the connection's now: Closed releases it
	// Set the connection up on this goroutine, whose stack is large
	// already, and read on a fresh one: an idle reader's stack stays
	// small.
	if err := n.safeStart(); err != nil {
		conn.Abort(err)
		return
	}
	conn.Serve()
}

func (h *Hub) isClosed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closed
}

// Ready reports whether the hub accepts connections: Shutdown has not
// begun and, when its store is a store.Feed (a store shared by several
// hub processes), the feed's subscription is active. While it is false
// ServeHTTP answers 503: before the first subscription, and from the
// moment a subscription breaks until a new one is active. It suits a
// readiness probe; WaitReady waits for it.
func (h *Hub) Ready() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return !h.closed && (h.feed == nil || h.feedReady)
}

// WaitReady returns nil as soon as Ready is true, ctx.Err() when ctx
// ends first, and ErrClosed when Shutdown has been called. It does not
// make the hub ready any sooner: the hub subscribes to its store's feed,
// and resubscribes after the subscription breaks, by itself.
func (h *Hub) WaitReady(ctx context.Context) error {
	for {
		h.mu.Lock()
		closed, ready, changed := h.closed, h.feed == nil || h.feedReady, h.readyCh
		h.mu.Unlock()
		switch {
		case closed:
			return ErrClosed
		case ready:
			return nil
		}
		select {
		case <-changed:
		case <-h.ctx.Done(): // Shutdown; closed is set
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// ready reports whether the hub can route messages: always, unless its
// store is a Feed whose subscription is not active.
func (h *Hub) ready() bool {
	_, ok := h.feedState()
	return ok
}

// feedState reports whether the hub can route messages (ready) and how
// many times its feed's subscription was lost so far.
func (h *Hub) feedState() (breaks uint64, ready bool) {
	if h.feed == nil {
		return 0, true
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.feedBreaks, h.feedReady
}

// setReady records whether the feed's subscription is active and wakes
// WaitReady when it became so. It returns when the subscription became
// active if it was until now (the zero time otherwise).
func (h *Hub) setReady(ready bool) (since time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case ready && !h.feedReady:
		h.feedReady, h.readySince = true, time.Now()
		close(h.readyCh)
	case !ready && h.feedReady:
		h.feedReady, since = false, h.readySince
		h.readyCh = make(chan struct{})
		h.feedBreaks++
	}
	return since
}

// Resubscribing to the store's feed: the n-th attempt in a row waits
// feedRetryMin doubled n-1 times, at most feedRetryMax, each wait drawn
// at random from the upper half of that (so that hub processes that lost
// Redis together do not come back in lockstep). The doubling starts over
// once a subscription has been active for feedHealthy: the backoff slows
// down a feed that keeps breaking at once, never the recovery from the
// next, unrelated outage.
const (
	feedRetryMin = 100 * time.Millisecond
	feedRetryMax = 5 * time.Second
	feedHealthy  = time.Second
)

// feedPause is a wait of the resubscribe backoff: between d/2 and d.
func feedPause(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

// runFeed keeps a subscription to the store's feed until Shutdown. When
// the subscription breaks, events may have been missed: every local
// connection is closed with 1013, so that its client reconnects and
// catches up from the pending queue and the history. It subscribes again
// with the backoff above, logging each failure.
func (h *Hub) runFeed() {
	defer close(h.feedDone)
	wait := feedRetryMin
	for {
		err := h.feed.Subscribe(h.ctx, h.onEvent)
		h.unfollowMu.Lock()
		since := h.setReady(false)
		h.unfollowMu.Unlock()
		if h.ctx.Err() != nil {
			return
		}
		if !since.IsZero() && time.Since(since) >= feedHealthy {
			wait = feedRetryMin
		}
		pause := feedPause(wait)
		if since.IsZero() {
			h.log.Error("wshub: cannot subscribe to the store feed; not accepting connections until it works",
				slog.Any("err", err), slog.Duration("retry_in", pause))
		} else {
			h.log.Error("wshub: store feed broke; clients will reconnect",
				slog.Any("err", err), slog.Duration("retry_in", pause))
		}
		// Also when it never became active: a connection may have
		// registered while the previous subscription was breaking.
		for _, n := range h.allNodes() {
			n.closeWith(CloseTryAgainLater, "hub resynchronizing")
		}
		select {
		case <-h.ctx.Done():
			return
		case <-time.After(pause):
		}
		wait = min(2*wait, feedRetryMax)
	}
}

// onEvent handles one feed event; it runs on the feed's goroutine.
func (h *Hub) onEvent(ev store.Event) {
	switch ev.Kind {
	case store.EventReady:
		h.setReady(true)
	case store.EventMessage:
		st := h.starters.Get().(*starter)
		if err := h.deliverFor(&ev.Msg, nil, sender{id: ev.Origin}, ev.User, st); err != nil {
			h.log.Error("wshub: deliver from feed", slog.String("id", ev.Msg.ID), slog.Any("err", err))
		}
		h.writeOut(st)
	case store.EventJoin:
		_ = h.followJoined(h.indexJoin(ev.User, ev.Room), ev.Room, false) // closes on failure
	case store.EventLeave:
		h.indexLeave(ev.User, ev.Room)
	case store.EventSignal:
		h.onSignal(&ev.Signal)
	case store.EventPresence:
		h.onPresence(&ev)
	}
}

// Shutdown closes every connection with 1001 and returns when they are
// gone, releasing what the hub holds (its epoll instance, its feed
// subscription): call it once for every Hub made by New. It returns
// ctx.Err() when ctx ends first, after closing the remaining sockets at
// once. New upgrades are refused with 503 from the start. A store the hub
// created is closed; one given in Options is not. Shutdown returns
// ErrClosed when called again.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return ErrClosed
	}
	h.closed = true
	h.mu.Unlock()

	for _, n := range h.allNodes() {
		n.closeWith(websocket.CloseGoingAway, "server shutting down")
	}
	done := make(chan struct{}) // closed by the waiter goroutine
	go func() { h.nodes.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		for _, n := range h.allNodes() {
			go n.conn.Abort(errShutdown)
		}
		<-done
	}
	h.cancel()
	h.tr.Close()
	<-h.presence.done
	if h.feed != nil {
		<-h.feedDone
	}
	if h.ownStore {
		if cerr := h.store.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// allNodes lists every registered connection.
func (h *Hub) allNodes() []*Node {
	var all []*Node
	for i := range h.users {
		s := &h.users[i]
		s.mu.RLock()
		for _, u := range s.users {
			all = append(all, u.nodes...)
		}
		s.mu.RUnlock()
	}
	return all
}

func (h *Hub) userShard(user string) *userShard {
	return &h.users[maphash.String(h.seed, user)%userShards]
}

func (h *Hub) roomShard(room string) *roomShard {
	return &h.rooms[maphash.String(h.seed, room)%roomShards]
}

func (h *Hub) convLock(conv string) *sync.Mutex {
	return &h.convLocks[maphash.String(h.seed, conv)%keyLocks]
}

func (h *Hub) userLock(user string) *sync.Mutex {
	return &h.userLocks[maphash.String(h.seed, user)%keyLocks]
}

// Users lists the users with at least one connection to this hub.
func (h *Hub) Users() []string {
	var ids []string
	for i := range h.users {
		s := &h.users[i]
		s.mu.RLock()
		for id := range s.users {
			ids = append(ids, id)
		}
		s.mu.RUnlock()
	}
	return ids
}

// Conns lists the connections of user to this hub, oldest first.
func (h *Hub) Conns(user string) []*Node {
	s := h.userShard(user)
	s.mu.RLock()
	defer s.mu.RUnlock()
	if u := s.users[user]; u != nil {
		return append([]*Node(nil), u.nodes...)
	}
	return nil
}

// IsOnline reports whether user has a connection to this hub.
func (h *Hub) IsOnline(user string) bool {
	s := h.userShard(user)
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.users[user] != nil
}

// register adds n to the indexes, loading the user's rooms from the store
// when n is its first connection. It returns the connection that n
// replaces (over MaxConnsPerUser), if any.
//
// The user's entry (its connections and rooms) and the room index change
// together, under the user's shard lock: register, unregister, indexJoin
// and indexLeave each add or remove exactly the (connection, room) pairs
// of the index they follow or unfollow (follow.go), whatever runs
// between them.
func (h *Hub) register(ctx context.Context, n *Node) (evicted *Node, err error) {
	ul := h.userLock(n.user)
	ul.Lock()
	defer ul.Unlock()
	if err := h.markFollows(n); err != nil {
		return nil, err
	}
	s := h.userShard(n.user)
	var rooms []string
	loaded := false
	for {
		s.mu.Lock()
		if s.users[n.user] != nil || loaded {
			break // with s.mu held
		}
		// Offline: its rooms come from the store. Only register makes a
		// user's entry, under the user's lock, so none appears
		// meanwhile; one may go (its last connection closing) until
		// s.mu is held, which is why this is checked under it.
		s.mu.Unlock()
		if rooms, err = h.store.Rooms(ctx, n.user); err != nil {
			return nil, err
		}
		loaded = true
	}
	u := s.users[n.user]
	if u == nil {
		h.presence.mark(n.user)
		u = &userEntry{}
		if len(rooms) > 0 {
			u.rooms = make(map[string]struct{}, len(rooms))
			for _, r := range rooms {
				u.rooms[r] = struct{}{}
			}
		}
		s.users[n.user] = u
	}
	u.nodes = append(u.nodes, n)
	if live := u.liveNodes(); len(live) > h.opts.MaxConnsPerUser {
		evicted = live[0]
	}
	var keys []string
	if h.followLocked(n, userKey) {
		keys = append(keys, userKey)
	}
	for r := range u.rooms {
		h.indexAdd(r, n)
		if h.followLocked(n, r) {
			keys = append(keys, r)
		}
	}
	s.mu.Unlock()
	if err := h.follow(ctx, []pendingFollows{{n, keys}}, true); err != nil {
		h.unregister(n)
		return nil, err
	}
	return evicted, nil
}

// unregister removes n from the indexes.
func (h *Hub) unregister(n *Node) {
	n.gone.Store(true)
	if n.watched.Load() {
		h.presence.dropWatch(n)
	}
	s := h.userShard(n.user)
	s.mu.Lock()
	u := s.users[n.user]
	if u == nil {
		s.mu.Unlock()
		return
	}
	found := false
	for i, m := range u.nodes {
		if m == n {
			u.nodes = append(u.nodes[:i], u.nodes[i+1:]...)
			found = true
			break
		}
	}
	if len(u.nodes) == 0 {
		delete(s.users, n.user)
		h.presence.mark(n.user)
	}
	if !found {
		s.mu.Unlock()
		return
	}
	for r := range u.rooms {
		h.indexRemove(r, n)
	}
	var drop []string
	for k := range n.follows {
		if h.unfollowLocked(n, k) {
			drop = append(drop, k)
		}
	}
	s.mu.Unlock()
	h.unfollow(n, drop)
}

func (h *Hub) indexAdd(room string, nodes ...*Node) {
	rs := h.roomShard(room)
	rs.mu.Lock()
	set := rs.rooms[room]
	if set == nil {
		set = make(map[*Node]struct{})
		rs.rooms[room] = set
	}
	for _, n := range nodes {
		set[n] = struct{}{}
	}
	rs.mu.Unlock()
}

func (h *Hub) indexRemove(room string, nodes ...*Node) {
	rs := h.roomShard(room)
	rs.mu.Lock()
	if set := rs.rooms[room]; set != nil {
		for _, n := range nodes {
			delete(set, n)
		}
		if len(set) == 0 {
			delete(rs.rooms, room)
		}
	}
	rs.mu.Unlock()
}

// isMember reports whether an online user is a member of room, from the
// membership loaded when it came online and kept by Join and Leave.
func (h *Hub) isMember(user, room string) bool {
	s := h.userShard(user)
	s.mu.RLock()
	defer s.mu.RUnlock()
	u := s.users[user]
	if u == nil {
		return false
	}
	_, ok := u.rooms[room]
	return ok
}

// Join makes user a member of room, in the store and, when the user is
// online, for its connections here. Joining again is harmless. It returns
// ErrBadID for an id that is empty, longer than MaxIDLen bytes or not
// UTF-8, and ErrTooManyRooms when the user is a member of
// Options.MaxRooms rooms already (and not of this one).
func (h *Hub) Join(ctx context.Context, user, room string) error {
	return h.join(ctx, user, room)
}

// join joins user to room, in the store and for its connections here.
func (h *Hub) join(ctx context.Context, user, room string) error {
	if err := checkID("user id", user); err != nil {
		return err
	}
	if err := checkID("room id", room); err != nil {
		return err
	}
	ul := h.userLock(user)
	ul.Lock()
	defer ul.Unlock()
	if err := h.checkMaxRooms(ctx, user, room); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return h.storeErr(err)
	}
	// Not cut short by ctx (see send): a join the store took and the
	// index missed would leave the user's connections out of the room
	// until the user has none left.
	if err := h.store.Join(context.WithoutCancel(ctx), room, user); err != nil {
		return h.storeErr(err)
	}
	return h.followJoined(h.indexJoin(user, room), room, true)
}

// checkMaxRooms returns ErrTooManyRooms when user is a member of
// Options.MaxRooms rooms or more, not counting room. It counts an online
// user's rooms in the membership cache, an offline user's with
// Store.Rooms. The caller holds the user's lock, so that no join of the
// user's slips in between the count and the join.
func (h *Hub) checkMaxRooms(ctx context.Context, user, room string) error {
	limit := h.opts.MaxRooms
	if limit < 0 {
		return nil
	}
	s := h.userShard(user)
	s.mu.RLock()
	u := s.users[user]
	var count int
	var in bool
	if u != nil {
		_, in = u.rooms[room]
		count = len(u.rooms)
	}
	s.mu.RUnlock()
	if u == nil {
		rooms, err := h.store.Rooms(ctx, user)
		if err != nil {
			return h.storeErr(err)
		}
		count, in = len(rooms), slices.Contains(rooms, room)
	}
	if in || count < limit {
		return nil
	}
	return fmt.Errorf("%w: a user may be in at most %d", ErrTooManyRooms, limit)
}

// indexJoin records that user is a member of room, if the user is online
// here, adding its connections to the room's index, and returns their
// follows of the room, for followJoined.
func (h *Hub) indexJoin(user, room string) []pendingFollows {
	s := h.userShard(user)
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[user]
	if u == nil {
		return nil
	}
	if _, ok := u.rooms[room]; ok {
		return nil
	}
	if u.rooms == nil {
		u.rooms = make(map[string]struct{})
	}
	u.rooms[room] = struct{}{}
	h.indexAdd(room, u.nodes...)
	var fs []pendingFollows
	for _, n := range u.nodes {
		if h.followLocked(n, room) {
			fs = append(fs, pendingFollows{n, []string{room}})
		}
	}
	return fs
}

// Leave removes user from room, in the store and for its connections
// here. Leaving a room one is not in is harmless. It returns ErrBadID for
// an id that is empty, longer than MaxIDLen bytes or not UTF-8.
func (h *Hub) Leave(ctx context.Context, user, room string) error {
	if err := checkID("user id", user); err != nil {
		return err
	}
	if err := checkID("room id", room); err != nil {
		return err
	}
	ul := h.userLock(user)
	ul.Lock()
	defer ul.Unlock()
	if err := ctx.Err(); err != nil {
		return h.storeErr(err)
	}
	// Not cut short by ctx (see join).
	if err := h.store.Leave(context.WithoutCancel(ctx), room, user); err != nil {
		return h.storeErr(err)
	}
	h.indexLeave(user, room)
	return nil
}

// indexLeave records that user left room, if the user is online here.
func (h *Hub) indexLeave(user, room string) {
	s := h.userShard(user)
	s.mu.Lock()
	var drop []*Node
	if u := s.users[user]; u != nil {
		if _, in := u.rooms[room]; in {
			// Only then: a leave announced by the feed after a local Leave
			// must not remove (and unfollow) again.
			delete(u.rooms, room)
			h.indexRemove(room, u.nodes...)
			for _, n := range u.nodes {
				if h.unfollowLocked(n, room) {
					drop = append(drop, n)
				}
			}
		}
	}
	s.mu.Unlock()
	for _, n := range drop {
		h.unfollow(n, []string{room})
	}
}

// Members lists the members of room, online or not. It returns ErrBadID
// for a room id that is empty, longer than MaxIDLen bytes or not UTF-8.
func (h *Hub) Members(ctx context.Context, room string) ([]string, error) {
	if err := checkID("room id", room); err != nil {
		return nil, err
	}
	return h.store.Members(ctx, room)
}

// SendToUser stores a direct message from user from (an application may
// use a reserved id such as "system" for its own notices) to user to and delivers it like a cmd 10 frame;
// f's payload fields and CID are used. It returns the receipt (cmd 15).
// An empty to is ErrMissingDst; an id longer than MaxIDLen bytes, not
// UTF-8, or an empty from is ErrBadID. The message quota of clients
// (Options.MessageRate, MaxRecipients) does not apply.
//
// A ctx done before the message is handed to the store fails the call.
// Once handed, the call waits for the store's answer whatever ctx does (a
// store bounds its own writes), unless the store is a store.Feed: a
// message the store took is delivered, rather than left for the
// recipient's next connection.
func (h *Hub) SendToUser(ctx context.Context, from, to string, f *Frame) (*Frame, error) {
	if err := checkDst(to); err != nil {
		return nil, err
	}
	if err := checkID("sender id", from); err != nil {
		return nil, err
	}
	r, _, err := h.send(ctx, CmdSingle, from, to, f, nil, nil)
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// SendToRoom stores a message from user from to room and delivers it to
// the room's members like a cmd 11 frame, without checking that from is a
// member. It returns the receipt (cmd 15). Ids are checked as by
// SendToUser, and the message quota of clients does not apply either;
// ctx as for SendToUser.
func (h *Hub) SendToRoom(ctx context.Context, from, room string, f *Frame) (*Frame, error) {
	if err := checkDst(room); err != nil {
		return nil, err
	}
	if err := checkID("sender id", from); err != nil {
		return nil, err
	}
	r, _, err := h.send(ctx, CmdRoom, from, room, f, nil, nil)
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// pollBudget is the transport's Config.PollBudget: 100 µs when handling a
// built-in command never waits (docs/benchmarks.md: a socket handed to a
// worker was read 184 µs after the client's write at the median, 47 µs
// when the poller read it); else 0, since every read then hands the loop
// on, and a bolt store's p99 went from 5-7 ms to 11-170 ms in about half
// the runs with the poller reading several sockets of a batch.
func pollBudget(waits bool) time.Duration {
	if waits {
		return 0
	}
	return 100 * time.Microsecond
}

// send stores and delivers a direct (CmdSingle) or room (CmdRoom) message
// and returns its receipt; dup reports a resend of a (from, cid) stored
// before, which stored nothing. origin, the sending connection, if any,
// gets the receipt instead of the message. The connections the delivery
// leaves to write go to out when it is not nil (origin's read batch),
// else they are written before send returns.
func (h *Hub) send(ctx context.Context, cmd Cmd, from, to string, f *Frame, origin *Node, out *starter) (receipt Frame, dup bool, err error) {
	if h.isClosed() {
		return Frame{}, false, ErrUnavailable
	}
	body, err := f.appendPayload(make([]byte, 0, 32+len(f.Content)+len(f.Data)))
	if err != nil {
		return Frame{}, false, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Frame{}, false, fmt.Errorf("%w: message id: %w", ErrInternal, err)
	}
	req := store.AppendRequest{
		Msg: store.Message{ID: id.String(), TS: time.Now().UnixMilli(), Cmd: int(cmd), From: from, To: to, Body: body},
		CID: f.CID,
	}
	if origin != nil {
		req.Origin = origin.id
	}
	if cmd == CmdSingle {
		req.Msg.Conv = store.DirectConv(from, to)
		req.Pending = []string{to}
	} else {
		req.Msg.Conv = store.RoomConv(to)
	}
	var m store.Message
	start := time.Now()
	if h.feed != nil {
		// The feed delivers it, to every hub process, in seq order.
		m, dup, err = h.store.Append(ctx, req)
	} else {
		// The conversation lock makes append-then-deliver one step per
		// conversation, so connections receive it in seq order.
		//
		// ctx does not cut the append short: a store may have taken the
		// message by the time ctx is done (boltstore's Append may return
		// ctx.Err() after its commit), and one taken but not delivered
		// would reach the recipient's online connections only on their
		// next connect (a room's members not at all), since the
		// sender's resend of its cid is a duplicate, which delivers
		// nothing. So the sender's connection closing, or a caller's
		// deadline, does not part the append from its delivery; the
		// store bounds its own writes.
		if err := ctx.Err(); err != nil {
			return Frame{}, false, h.storeErr(err)
		}
		cl := h.convLock(req.Msg.Conv)
		st, own := h.starterOr(out)
		cl.Lock()
		m, dup, err = h.store.Append(context.WithoutCancel(ctx), req)
		if err == nil && !dup {
			err = h.deliver(&m, f, sender{node: origin}, st)
		}
		cl.Unlock()
		if own {
			h.writeOut(st)
		}
	}
	h.stats.observeAppend(time.Since(start))
	if err != nil {
		return Frame{}, false, h.storeErr(err)
	}
	if !dup {
		h.stats.stored.Add(1)
	}
	return Frame{Cmd: CmdReceipt, CID: f.CID, ID: m.ID, DstID: to, Seq: m.Seq, TS: m.TS}, dup, nil
}

// deliver pushes a stored message to the local connections that receive
// it: for a direct message every connection of the recipient and the
// sender's other connections; for a room message every member connection
// but the sending one (origin). This is the one seam through
// which stored messages reach connections: called after Append, or for
// every message announced by the store's Feed. src, when not nil, is the
// frame the message was made from, which saves decoding its payload. The
// connections it leaves in st are the caller's to write (writeOut) once
// it released its locks.
func (h *Hub) deliver(m *store.Message, src *Frame, origin sender, st *starter) error {
	return h.deliverFor(m, src, origin, "", st)
}

// deliverFor is deliver, limited for a direct message to the connections
// of user only when user is not empty: a store.Router announces a direct
// message once for its recipient and once for its sender.
func (h *Hub) deliverFor(m *store.Message, src *Frame, origin sender, user string, st *starter) error {
	var out *Frame
	if src != nil {
		out = frameHead(m) // the payload is src's: not decoded back from m.Body
		out.setPayload(src.payload())
	} else {
		out = frameOf(m)
	}
	data, err := out.Encode()
	if err != nil {
		return err
	}
	of := outFrame{data: data, conv: m.Conv, seq: m.Seq}
	count := 0
	if Cmd(m.Cmd) == CmdRoom {
		rs := h.roomShard(m.To)
		rs.mu.RLock()
		for n := range rs.rooms[m.To] {
			if !origin.is(n) && n.enqueue(of, st) {
				count++
			}
		}
		rs.mu.RUnlock()
	} else {
		if m.From != m.To && (user == "" || user == m.From) {
			own := of
			own.own = true
			count += h.pushUser(m.From, own, origin, st)
		}
		if user == "" || user == m.To {
			of.pendingID = m.ID
			count += h.pushUser(m.To, of, sender{}, st)
		}
	}
	h.stats.deliveries.Add(uint64(count))
	return nil
}

// starter lists the connections a delivery took the writer role of
// (see Node.push).
type starter struct {
	conns []*wsconn.Conn
	parts atomic.Int32 // writeOut's goroutines still writing
}

// writeShare is the most connections writeOut writes on the calling
// goroutine, and the fewest worth a goroutine of their own.
const writeShare = 64

// writeOut writes the connections in st (wsconn.Transport.WriteMany:
// several sockets per system call where io_uring allows), which never
// waits for a socket, and returns st to its pool. A few it writes itself;
// more it hands to goroutines, one per processor at most, and returns at
// once: the sending connection goes on with its next frame while its
// message is written, and deliveries of other messages queue their frames
// behind connections not written yet, which then take several frames in
// one write.
func (h *Hub) writeOut(st *starter) {
	conns := st.conns
	if len(conns) <= writeShare {
		h.tr.WriteMany(conns)
		h.putStarter(st)
		return
	}
	k := min(runtime.GOMAXPROCS(0), len(conns)/writeShare)
	per := (len(conns) + k - 1) / k
	st.parts.Store(int32((len(conns) + per - 1) / per))
	for i := 0; i < len(conns); i += per {
		part := conns[i:min(i+per, len(conns))]
		go func() {
			h.tr.WriteMany(part)
			if st.parts.Add(-1) == 0 {
				h.putStarter(st)
			}
		}()
	}
}

// starterOr returns out, or, when out is nil, a starter of the pool that
// the caller owns: it writes it (writeOut) once it released its locks.
func (h *Hub) starterOr(out *starter) (st *starter, own bool) {
	if out != nil {
		return out, false
	}
	return h.starters.Get().(*starter), true
}

// putStarter returns st to its pool.
func (h *Hub) putStarter(st *starter) {
	clear(st.conns)
	st.conns = st.conns[:0]
	h.starters.Put(st)
}

// sender names the connection a message came from: a node of this hub,
// or the id of a connection of another hub process (from the Feed).
type sender struct {
	node *Node
	id   string
}

// is reports whether n is the sending connection.
func (s sender) is(n *Node) bool {
	if s.node != nil {
		return s.node == n
	}
	return s.id != "" && s.id == n.id
}

// pushUser queues f for every connection of user but skip, and returns
// to how many. See Node.push for st.
func (h *Hub) pushUser(user string, f outFrame, skip sender, st *starter) int {
	count := 0
	s := h.userShard(user)
	s.mu.RLock()
	if u := s.users[user]; u != nil {
		for _, n := range u.nodes {
			if !skip.is(n) && n.enqueue(f, st) {
				count++
			}
		}
	}
	s.mu.RUnlock()
	return count
}

// frameHead is a stored message's wire frame without its payload.
func frameHead(m *store.Message) *Frame {
	return &Frame{Cmd: Cmd(m.Cmd), ID: m.ID, UserID: m.From, DstID: m.To, Seq: m.Seq, TS: m.TS}
}

// frameOf turns a stored message into its wire frame.
func frameOf(m *store.Message) *Frame {
	f := frameHead(m)
	if len(m.Body) > 0 {
		var p payload
		if json.Unmarshal(m.Body, &p) == nil {
			f.setPayload(p)
		}
	}
	return f
}

// joinAndReplay answers cmd 12: it joins the user to the room and, when
// the frame carries since or epoch, first replays the room's messages
// after since to this connection. The room's live frames for the
// connection are held back meanwhile and released after the reply, minus
// those the replay covered, so none overtakes the replay or repeats it.
func (h *Hub) joinAndReplay(ctx context.Context, n *Node, f *Frame) error {
	room := f.DstID
	conv := store.RoomConv(room)
	n.mu.Lock()
	n.holding = conv
	n.mu.Unlock()
	var last uint64
	defer func() { n.release(map[string]uint64{conv: last}) }()
	if err := h.join(ctx, n.user, room); err != nil {
		return err
	}
	want := f.Since > 0 || f.Epoch != ""
	q := store.Query{Limit: 1}
	if want {
		q = store.Query{Since: f.Since, Limit: h.opts.MaxReplay}
	}
	page, err := h.store.History(ctx, conv, q)
	if err != nil {
		return h.storeErr(err)
	}
	last = page.Last
	recovered := false
	if want && (f.Epoch == "" || f.Epoch == page.Epoch) && !page.More {
		// Everything after since is in the page unless history was
		// trimmed past since+1.
		recovered = page.Last <= f.Since || (page.First > 0 && page.First <= f.Since+1)
		for i := range page.Items {
			m := &page.Items[i]
			data, err := frameOf(m).Encode()
			if err != nil {
				return err
			}
			if !n.push(outFrame{data: data, conv: conv, seq: m.Seq}, true, nil) {
				return ErrClosed
			}
		}
	}
	return n.Send(&Frame{Cmd: CmdJoin, CID: f.CID, DstID: room, Seq: page.Last, Epoch: page.Epoch, Recovered: &recovered})
}
