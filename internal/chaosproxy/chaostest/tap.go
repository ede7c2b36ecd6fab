package chaostest

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"sync"
)

// tapConn is a client's socket that shows every byte it reads to a tap
// before the client's WebSocket library sees it.
type tapConn struct {
	net.Conn
	tap *wsTap
}

func (c *tapConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.tap.feed(b[:n])
	}
	return n, err
}

// tapDial returns a NetDialContext that wraps every connection in a tap
// calling onMessage with each text message the server sends.
func tapDial(onMessage func(msg []byte)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &tapConn{Conn: nc, tap: &wsTap{onMessage: onMessage}}, nil
	}
}

// wsTap parses the server's side of one WebSocket connection: the HTTP
// response, then frames (unmasked, as a server sends them). Read by one
// goroutine at a time (the connection's reader); mu only guards against
// a library that reads from two.
type wsTap struct {
	mu        sync.Mutex
	onMessage func(msg []byte)
	buf       []byte // guarded by mu: bytes not yet parsed
	upgraded  bool   // guarded by mu: the HTTP response is behind us
	msg       []byte // guarded by mu: the text message being assembled
	inText    bool   // guarded by mu: continuation frames belong to a text message
}

func (t *wsTap) feed(p []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if !t.upgraded {
		i := bytes.Index(t.buf, []byte("\r\n\r\n"))
		if i < 0 {
			return
		}
		t.buf = t.buf[i+4:]
		t.upgraded = true
	}
	for {
		n, ok := t.frame()
		if !ok {
			break
		}
		t.buf = t.buf[n:]
	}
	if len(t.buf) == 0 {
		t.buf = nil // let a large buffer go
	}
}

// frame handles the frame at the start of buf, if it is whole, and
// returns its length.
func (t *wsTap) frame() (int, bool) {
	b := t.buf
	if len(b) < 2 {
		return 0, false
	}
	fin, op := b[0]&0x80 != 0, b[0]&0x0f
	masked := b[1]&0x80 != 0
	n, h := uint64(b[1]&0x7f), 2
	switch n {
	case 126:
		if len(b) < 4 {
			return 0, false
		}
		n, h = uint64(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		if len(b) < 10 {
			return 0, false
		}
		n, h = binary.BigEndian.Uint64(b[2:]), 10
	}
	var key []byte
	if masked {
		if len(b) < h+4 {
			return 0, false
		}
		key = b[h : h+4]
		h += 4
	}
	if uint64(len(b)-h) < n {
		return 0, false
	}
	payload := b[h : h+int(n)]
	switch op {
	case 0x1, 0x0: // text, continuation
		if op == 0x1 {
			t.msg, t.inText = t.msg[:0], true
		}
		if t.inText {
			start := len(t.msg)
			t.msg = append(t.msg, payload...)
			if key != nil { // a server never masks; unmask anyway
				for i := start; i < len(t.msg); i++ {
					t.msg[i] ^= key[(i-start)&3]
				}
			}
			if fin {
				for _, line := range bytes.Split(t.msg, []byte("\n")) {
					if len(bytes.TrimSpace(line)) > 0 {
						t.onMessage(line)
					}
				}
				t.inText = false
			}
		}
	case 0x2:
		t.inText = false
	}
	return h + int(n), true
}
