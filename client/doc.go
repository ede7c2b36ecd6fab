// Package client is the Go client of a wshub hub: the same behaviour as the
// browser client (client/js), for Go programs and the load tool.
//
// A Client keeps one WebSocket connection alive and hides its failures:
//
//   - Heartbeat: a ping (cmd 1) every Options.HeartbeatInterval (25 s).
//     When nothing at all arrives within Options.HeartbeatTimeout (10 s)
//     after a ping, the link is taken for dead (a NAT that forgot the
//     connection passes no bytes and reports no error), the socket is
//     closed and a new one dialed.
//   - Reconnect: after a lost connection the client waits a delay drawn by
//     Backoff (full jitter, 0.5 s doubling to a 30 s cap) and dials again,
//     without limit unless Options.MaxAttempts says otherwise. A
//     connection that stayed up Options.StableAfter (10 s) resets the
//     attempt count. A refused handshake (HTTP 429, 503 and the like) is
//     retried the same way, waiting at least its Retry-After (up to the
//     backoff's cap). Close code 4000 (replaced) or 1008 (policy), and
//     HTTP 401 or 403 on dial, end the client instead, unless
//     Options.ReconnectAlways.
//   - Outbox: Send and Post put the frame, with a cid, in a bounded outbox;
//     it is written now or after the next connect, and written again after
//     every reconnect until its receipt (cmd 15) or an error frame (cmd 40)
//     with its cid arrives. The hub stores a (sender, cid) once, so
//     resending is safe.
//   - Requests: Call sends an application command and returns the answer
//     that carries its cid. The hub does not deduplicate application
//     commands, so a request is written once: a connection lost before the
//     answer fails it with ErrConnectionLost.
//   - Incoming messages are delivered once: duplicates by id are dropped,
//     and with Options.Ack every direct message is acknowledged (cmd 14)
//     after the application got it, so the hub keeps it until then.
//   - Rooms: the client remembers the rooms it joined with the last
//     contiguous seq and the epoch it saw, and after a reconnect joins
//     them again with since and epoch; the hub replays what was missed
//     (Options.OnRejoin reports whether that was everything). A rejoin
//     the hub refuses for now (5xx, 429: its store unavailable, say)
//     replayed nothing, so the client closes that connection and
//     reconnects after its backoff; one refused for good (403) leaves the
//     room. Both are reported to Options.OnError.
//
// Incoming messages arrive on the Messages channel, or on
// Options.OnMessage. Connection events arrive on the other On* callbacks;
// State tells where the client is.
//
// Each connected client runs two goroutines (its Run loop, which also
// writes, and a reader) and one ticker, so a load tool can run thousands.
package client
