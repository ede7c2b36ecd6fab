package wsconn

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	server = <-accepted
	require.NotNil(t, server)
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

// readTextFrames reads unmasked text frames from r and sends their
// payloads on out until r fails.
func readTextFrames(r io.Reader, out chan<- string) {
	defer close(out)
	br := bufio.NewReader(r)
	for {
		var h [2]byte
		if _, err := io.ReadFull(br, h[:]); err != nil {
			return
		}
		n := int(h[1] & 0x7F)
		switch n {
		case 126:
			var e [2]byte
			if _, err := io.ReadFull(br, e[:]); err != nil {
				return
			}
			n = int(binary.BigEndian.Uint16(e[:]))
		case 127:
			var e [8]byte
			if _, err := io.ReadFull(br, e[:]); err != nil {
				return
			}
			n = int(binary.BigEndian.Uint64(e[:]))
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(br, p); err != nil {
			return
		}
		out <- string(p)
	}
}

// textFrame is an unmasked text frame holding p.
func textFrame(p string) []byte {
	c := &gatherConn{pool: &sync.Pool{New: func() any { b := []byte(nil); return &b }}}
	c.gather()
	c.appendText([]byte(p))
	return *c.buf
}

// TestGatherConn_TryFlushKeepsTheRestInOrder fills a socket its peer does
// not read with non-blocking writes until one is cut short, then has a
// write through (a control frame) and a flusher pass follow: the peer
// reads every frame whole and in order.
func TestGatherConn_TryFlushKeepsTheRestInOrder(t *testing.T) {
	server, client := tcpPair(t)
	pool := &sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}
	c := newGatherConn(server, pool)
	if !c.canTry() {
		t.Skip("no non-blocking writes on this system")
	}
	payload := func(i int) string { return fmt.Sprintf("%06d:%s", i, make([]byte, 9000)) }
	var want []string
	cut := false
	for i := 0; !cut; i++ {
		require.Less(t, i, 100000, "the socket never filled")
		c.gather()
		c.appendText([]byte(payload(i)))
		done, err := c.tryFlush()
		require.NoError(t, err)
		want = append(want, payload(i))
		cut = !done
	}
	require.NotNil(t, c.buf, "the rest is kept")
	require.Positive(t, len(*c.buf)-c.sent)

	// The peer starts reading: the write through waits for the socket,
	// after the rest.
	frames := make(chan string, len(want)+2)
	go readTextFrames(client, frames)
	_, err := c.Write(textFrame("through"))
	require.NoError(t, err)
	want = append(want, "through")
	c.gather()
	c.appendText([]byte("gathered"))
	require.NoError(t, c.flush())
	want = append(want, "gathered")
	require.Nil(t, c.buf)

	for i, w := range want {
		select {
		case got, ok := <-frames:
			require.True(t, ok, "stream ended before frame %d", i)
			require.Equal(t, len(w), len(got), "frame %d", i)
			require.Equal(t, w, got, "frame %d", i)
		case <-time.After(10 * time.Second):
			t.Fatalf("frame %d never came", i)
		}
	}
}

// TestGatherConn_TryFlushReportsAClosedPeer: a non-blocking write to a
// reset connection fails rather than reporting a full socket for ever.
func TestGatherConn_TryFlushReportsAClosedPeer(t *testing.T) {
	server, client := tcpPair(t)
	pool := &sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}
	c := newGatherConn(server, pool)
	if !c.canTry() {
		t.Skip("no non-blocking writes on this system")
	}
	client.(*net.TCPConn).SetLinger(0)
	client.Close() // reset
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		c.gather()
		c.appendText([]byte("x"))
		_, err = c.tryFlush()
		time.Sleep(5 * time.Millisecond)
	}
	require.Error(t, err)
	require.Nil(t, c.buf, "the buffer went back to the pool")
}
