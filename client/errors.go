package client

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/websocket"
	"github.com/wshub/wshub"
)

// Errors of the client. Compare with errors.Is.
var (
	// ErrClosed is returned by calls on a client whose Run has ended
	// (after Close, after its context ended, or after a final error), and
	// by the calls still waiting (Send, Join, History, Call) when that
	// happens.
	ErrClosed = errors.New("wshub/client: client is closed")
	// ErrRunning is returned by a second call of Run.
	ErrRunning = errors.New("wshub/client: Run already called")
	// ErrOutboxFull is returned by Send, Post and the other calls that use
	// the outbox when Options.OutboxSize frames already wait in it.
	ErrOutboxFull = errors.New("wshub/client: outbox is full")
	// ErrHeartbeatTimeout is the cause reported (Options.OnError) when a
	// connection was closed because nothing arrived within
	// Options.HeartbeatTimeout after a heartbeat ping.
	ErrHeartbeatTimeout = errors.New("wshub/client: heartbeat timeout")
	// ErrGaveUp is returned by Run when Options.MaxAttempts reconnect
	// attempts in a row failed, or after the first disconnection when
	// Options.NoReconnect is set. It wraps the last failure.
	ErrGaveUp = errors.New("wshub/client: gave up reconnecting")
	// ErrConnectionLost is returned by Call when the connection its
	// request was written on ended before the answer. The command may or
	// may not have run on the hub; the client does not send it again.
	ErrConnectionLost = errors.New("wshub/client: connection lost before the answer")
	// ErrForbidden is returned (wrapped in a *HandshakeError) by Run and
	// Dial when the hub refused the handshake with HTTP 403: its origin
	// policy, or the application, does not let this client in. Like HTTP
	// 401 (wshub.ErrUnauthorized) it is final unless
	// Options.ReconnectAlways is set.
	ErrForbidden = errors.New("wshub/client: forbidden")
	// ErrProtocol is reported when the server breaks the protocol (no
	// welcome frame first).
	ErrProtocol = errors.New("wshub/client: protocol error")
)

// CloseError is the close code and reason with which the server ended a
// connection. Run returns one (wrapped) when the code is final: 4000
// (replaced by a newer connection of the same user) or 1008 (policy, e.g.
// an expired token), unless Options.ReconnectAlways is set.
type CloseError struct {
	Code   int    // WebSocket close code; 1006 when the connection broke without a close frame
	Reason string // close reason sent by the server, if any

	err error // the local cause when the connection broke (Code 1006)
}

// Unwrap returns the local cause of an abnormal close (e.g.
// ErrHeartbeatTimeout), or nil.
func (e *CloseError) Unwrap() error { return e.err }

func (e *CloseError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("wshub/client: connection closed (%d)", e.Code)
	}
	return fmt.Sprintf("wshub/client: connection closed (%d %s)", e.Code, e.Reason)
}

// HandshakeError is an HTTP answer other than 101 Switching Protocols to
// the WebSocket handshake: the hub (or a proxy in front of it) refused the
// connection. It is reported to Options.OnError for every refused attempt.
//
// 401 and 403 are final: Run and Dial end with the error, which matches
// errors.Is(err, wshub.ErrUnauthorized) or errors.Is(err, ErrForbidden),
// unless Options.ReconnectAlways is set. Any other status (429 and 503 when
// the hub or its authentication backend is overloaded, 500, 502, 504, a
// proxy's 404 during a deploy) is retried with backoff, and RetryAfter, when
// the answer has one, is the shortest delay before the next attempt (but
// never more than Backoff.Max).
type HandshakeError struct {
	Host       string        // host:port dialed (the URL's token is never put into an error)
	StatusCode int           // the HTTP status
	RetryAfter time.Duration // the answer's Retry-After (seconds or an HTTP date); 0 when absent
}

func (e *HandshakeError) Error() string {
	s := fmt.Sprintf("wshub/client: dial %s: HTTP %d", e.Host, e.StatusCode)
	if e.RetryAfter > 0 {
		s += fmt.Sprintf(" (retry after %v)", e.RetryAfter)
	}
	if err := e.Unwrap(); err != nil {
		s += ": " + err.Error()
	}
	return s
}

// Unwrap returns wshub.ErrUnauthorized for 401, ErrForbidden for 403, and
// websocket.ErrBadHandshake otherwise.
func (e *HandshakeError) Unwrap() error {
	switch e.StatusCode {
	case http.StatusUnauthorized:
		return wshub.ErrUnauthorized
	case http.StatusForbidden:
		return ErrForbidden
	}
	return websocket.ErrBadHandshake
}

// Close codes that end Run unless Options.ReconnectAlways is set.
const (
	ClosePolicy   = 1008 // policy violation: rate limit, expired token
	CloseReplaced = 4000 // the user opened more connections than allowed; this one went
)

// ServerError is an error frame (cmd 40) answering a frame this client
// sent. errors.Is(err, wshub.ErrNotMember) and the like report whether the
// server's code and reason are those of that wshub error.
type ServerError struct {
	Code   int          // the frame's code (HTTP-like: 400, 403, 404, 429, 500, 503)
	Reason string       // the frame's reason
	Frame  *wshub.Frame // the error frame itself
}

func (e *ServerError) Error() string {
	return fmt.Sprintf("wshub/client: server error %d: %s", e.Code, e.Reason)
}

// Is reports whether target is a *wshub.Error with the same code whose
// reason is e's reason or the start of it (the hub sends "reason: detail"
// for wrapped errors).
func (e *ServerError) Is(target error) bool {
	t, ok := target.(*wshub.Error)
	if !ok || t.Code != e.Code {
		return false
	}
	return e.Reason == t.Reason || strings.HasPrefix(e.Reason, t.Reason+": ")
}
