package client

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/gorilla/websocket"
	"github.com/wshub/wshub"
)

// Defaults used for zero fields of Options.
const (
	DefaultHeartbeatInterval = 25 * time.Second
	DefaultHeartbeatTimeout  = 10 * time.Second
	DefaultStableAfter       = 10 * time.Second
	DefaultOutboxSize        = 1000
	DefaultInboxSize         = 64
	DefaultDedupSize         = 1024
	DefaultHandshakeTimeout  = 10 * time.Second
)

// Options configure a Client. The zero value of every field means the
// documented default.
type Options struct {
	// Token is sent as the ?token= query parameter; the hub's
	// authenticate hook turns it into the user id.
	Token string
	// Ack sets ack=1: the client acknowledges (cmd 14) every direct
	// message after handing it to the application, and the hub keeps
	// unacknowledged messages to send them again on the next connection.
	Ack bool
	// Batch sets batch=1: the hub may put several frames into one
	// WebSocket message, separated by "\n". The client splits them.
	Batch bool
	// Header is sent with the WebSocket handshake (e.g. Authorization,
	// Origin).
	Header http.Header
	// Dialer opens the WebSocket connections. nil means a dialer with
	// DefaultHandshakeTimeout, the proxy from the environment and
	// gorilla's default buffer sizes. A load tool opening thousands of
	// clients can share one Dialer with small buffers and a
	// WriteBufferPool.
	Dialer *websocket.Dialer

	// HeartbeatInterval is how often a ping (cmd 1) is sent: 0 means
	// DefaultHeartbeatInterval (25 s), negative disables the heartbeat.
	HeartbeatInterval time.Duration
	// HeartbeatTimeout: when nothing at all (a pong, any frame, a
	// WebSocket ping) arrives within this time after a heartbeat ping,
	// the connection is taken for dead, closed and replaced. 0 means
	// DefaultHeartbeatTimeout (10 s). It also bounds each write, and the
	// wait for the welcome frame.
	HeartbeatTimeout time.Duration

	// Backoff spaces reconnect attempts (full jitter, see Backoff). The
	// zero value means 0.5 s doubling to a 30 s cap. A refused handshake's
	// Retry-After raises the next delay to that much, up to Backoff.Max.
	Backoff Backoff
	// MaxAttempts is the number of reconnect attempts in a row after
	// which Run gives up with ErrGaveUp; 0 means unlimited.
	MaxAttempts int
	// StableAfter: a connection that stayed open at least this long
	// resets the attempt count, so the next outage starts again from the
	// shortest delay. 0 means DefaultStableAfter (10 s).
	StableAfter time.Duration
	// NoReconnect makes Run return after the first connection ends (or
	// the first dial fails) instead of reconnecting.
	NoReconnect bool
	// ReconnectAlways makes the client reconnect even after a final
	// refusal: close code 4000 (replaced) or 1008 (policy), or HTTP 401 or
	// 403 on dial. Without it those end Run.
	ReconnectAlways bool

	// OutboxSize bounds the frames waiting to be written, receipted or
	// answered (Send, Post, Join, History, Call, Leave, Emit); beyond it
	// those calls fail with ErrOutboxFull. 0 means DefaultOutboxSize.
	OutboxSize int
	// InboxSize is the capacity of the Messages channel. 0 means
	// DefaultInboxSize.
	InboxSize int
	// DedupSize is how many message ids the client remembers to drop
	// duplicates (a message sent again after a reconnect, a room replay
	// overlapping what arrived live). 0 means DefaultDedupSize; negative
	// disables the check.
	DedupSize int

	// Logger receives debug and warning records; nil means no logging.
	Logger *slog.Logger

	// Callbacks. Each is optional and runs on one of the client's own
	// goroutines, never two at a time: it must return quickly and must not
	// call the waiting methods (Send, Join, History, Call, Conversations,
	// Watch, RoomPresence), whose answers that goroutine would have to
	// read, nor Close, which waits for it (use "go c.Close()"). Post, Emit,
	// Leave and State are fine.

	// OnMessage, when set, receives every incoming message (cmd 10, 11,
	// application commands other than answers to Call) instead of the
	// Messages channel, on the
	// reader goroutine: reading waits while it runs (backpressure).
	OnMessage func(f *wshub.Frame)
	// OnOpen is called when a connection is established and the welcome
	// frame (cmd 20) arrived, before rooms are rejoined and the outbox is
	// written again.
	OnOpen func(welcome *wshub.Frame)
	// OnClose is called when a connection ends: the close code and reason
	// from the server, or 1006 and a description when it broke without a
	// close frame (network error, heartbeat timeout), or 1000 when the
	// client closed it.
	OnClose func(code int, reason string)
	// OnReconnecting is called before waiting delay for reconnect attempt
	// number attempt (1, 2, ...).
	OnReconnecting func(attempt int, delay time.Duration)
	// OnReceipt is called for every receipt (cmd 15) of a frame in the
	// outbox, on the reader goroutine.
	OnReceipt func(receipt *wshub.Frame)
	// OnRejoin is called when the hub answered the automatic rejoin of a
	// room after a reconnect. recovered false means messages may have been
	// missed: reload the room with History.
	OnRejoin func(room string, recovered bool)
	// OnPresence is called, on the reader goroutine, when a user watched
	// with Watch comes online or goes offline (TS is the time of the
	// transition), and for every state the hub lists in answer to the
	// automatic re-watch after a reconnect (TS 0). Without it presence
	// transitions are dropped: they never come on Messages.
	OnPresence func(p Presence)
	// OnError is called for failures nobody else hears about: a dial that
	// failed, a heartbeat timeout, an error frame (*ServerError) that
	// answers no waiting call (e.g. a Post), an undecodable frame.
	OnError func(err error)
}

func (o Options) withDefaults() Options {
	if o.HeartbeatInterval == 0 {
		o.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if o.HeartbeatTimeout <= 0 {
		o.HeartbeatTimeout = DefaultHeartbeatTimeout
	}
	if o.StableAfter <= 0 {
		o.StableAfter = DefaultStableAfter
	}
	if o.OutboxSize <= 0 {
		o.OutboxSize = DefaultOutboxSize
	}
	if o.InboxSize <= 0 {
		o.InboxSize = DefaultInboxSize
	}
	if o.DedupSize == 0 {
		o.DedupSize = DefaultDedupSize
	}
	if o.Dialer == nil {
		o.Dialer = &websocket.Dialer{
			Proxy:            http.ProxyFromEnvironment,
			HandshakeTimeout: DefaultHandshakeTimeout,
		}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}
