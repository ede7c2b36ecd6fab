// Package wsconn is wshub's WebSocket transport (RFC 6455): framing,
// masking, fragmentation, UTF-8 validation, control frames and the close
// handshake, the read drivers (an epoll loop on Linux, a reader goroutine
// over TLS and elsewhere) and the write path. The hub above it receives
// whole text messages and connection events and hands over encoded frames
// to write.
package wsconn
