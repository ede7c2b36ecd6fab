package chaosproxy_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/wshub/wshub/internal/chaosproxy"
)

// wait bounds every wait of these tests: long enough for a loaded machine.
const wait = 10 * time.Second

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echoServer accepts connections on 127.0.0.1 and hands each to handle on
// a goroutine of its own; it stops when the test ends.
func echoServer(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() { defer wg.Done(); handle(c) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// echo copies what it reads back until the end of the stream, then
// closes.
func echo(c net.Conn) {
	_, _ = io.Copy(c, c)
	_ = c.Close()
}

func newProxy(t *testing.T, target string) *chaosproxy.Proxy {
	t.Helper()
	p, err := chaosproxy.New(target)
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	return p
}

func dialProxy(t *testing.T, p *chaosproxy.Proxy) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.Addr(), wait)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// waitConns waits until the proxy has n open connections and returns them.
func waitConns(t *testing.T, p *chaosproxy.Proxy, n int) []*chaosproxy.Conn {
	t.Helper()
	var cs []*chaosproxy.Conn
	require.Eventually(t, func() bool { cs = p.Conns(); return len(cs) == n }, wait, 5*time.Millisecond)
	return cs
}

func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(wait))
	_, err := c.Write([]byte(msg))
	require.NoError(t, err)
	buf := make([]byte, len(msg))
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	assert.Equal(t, msg, string(buf))
}

func TestProxy_ForwardsBothWaysAndPassesTheEndOfStream(t *testing.T) {
	p := newProxy(t, echoServer(t, echo))
	c := dialProxy(t, p)
	roundTrip(t, c, "hello")
	big := make([]byte, 1<<20) // larger than a chunk and the socket buffers
	for i := range big {
		big[i] = byte(i)
	}
	c.SetDeadline(time.Now().Add(wait))
	go func() { c.Write(big); c.(*net.TCPConn).CloseWrite() }()
	got, err := io.ReadAll(c) // the echo closes after our end of stream reached it
	require.NoError(t, err)
	assert.Equal(t, big, got)
	require.Eventually(t, func() bool { return p.Stats().Open == 0 }, wait, 5*time.Millisecond)
	assert.Equal(t, int64(1), p.Stats().Accepted)
}

func TestProxy_LatencyDelaysEveryChunk(t *testing.T) {
	p := newProxy(t, echoServer(t, echo))
	const d = 100 * time.Millisecond
	p.SetLatency(d) // before the connection: new connections get it
	c := dialProxy(t, p)
	t0 := time.Now()
	roundTrip(t, c, "x")
	assert.GreaterOrEqual(t, time.Since(t0), 2*d, "one delay each way")

	waitConns(t, p, 1)[0].SetLatency(0)
	roundTrip(t, c, "y") // and without: nothing to assert on speed, only that it flows
}

func TestProxy_CutEndsBothSides(t *testing.T) {
	serverEnd := make(chan error, 1)
	p := newProxy(t, echoServer(t, func(c net.Conn) {
		_, err := io.Copy(io.Discard, c)
		serverEnd <- err
		c.Close()
	}))
	c := dialProxy(t, p)
	pc := waitConns(t, p, 1)[0]
	pc.Cut()
	c.SetReadDeadline(time.Now().Add(wait))
	_, err := c.Read(make([]byte, 1))
	assert.ErrorIs(t, err, io.EOF, "the client sees the end of the stream")
	select {
	case <-serverEnd: // EOF or reset: either way the server's socket ended
	case <-time.After(wait):
		t.Fatal("the server's socket was not ended")
	}
	<-pc.Done()
	assert.Equal(t, int64(1), p.Stats().Cut)
}

func TestProxy_ResetSendsRST(t *testing.T) {
	p := newProxy(t, echoServer(t, echo))
	c := dialProxy(t, p)
	roundTrip(t, c, "x")
	waitConns(t, p, 1)[0].Reset()
	c.SetReadDeadline(time.Now().Add(wait))
	_, err := c.Read(make([]byte, 1))
	assert.True(t, errors.Is(err, syscall.ECONNRESET), "want a reset, got %v", err)
	assert.Equal(t, int64(1), p.Stats().Reset)
}

func TestProxy_BlackholeKeepsTheSocketsAndForwardsNothing(t *testing.T) {
	received := make(chan string, 16)
	serverEnd := make(chan struct{})
	serverConn := make(chan net.Conn, 1)
	p := newProxy(t, echoServer(t, func(c net.Conn) {
		serverConn <- c
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			received <- sc.Text()
		}
		close(serverEnd)
	}))
	c := dialProxy(t, p)
	_, err := c.Write([]byte("before\n"))
	require.NoError(t, err)
	require.Equal(t, "before", <-received)
	sconn := <-serverConn

	pc := waitConns(t, p, 1)[0]
	pc.Blackhole()
	assert.True(t, pc.Blackholed())
	// The client's writes succeed and go nowhere; so do the server's.
	for range 100 {
		_, err := c.Write([]byte("lost\n"))
		require.NoError(t, err)
	}
	_, err = sconn.Write([]byte("lost too\n"))
	require.NoError(t, err)
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	_, err = c.Read(make([]byte, 1))
	var ne net.Error
	assert.True(t, errors.As(err, &ne) && ne.Timeout(), "nothing arrives and nothing ends: got %v", err)
	select {
	case m := <-received:
		t.Fatalf("the server got %q through a blackhole", m)
	default:
	}

	// The client gives up on it: its end of stream is not passed on.
	c.Close()
	select {
	case <-serverEnd:
		t.Fatal("the end of stream went through the blackhole")
	case <-time.After(300 * time.Millisecond):
	}
	select {
	case <-pc.Done():
		t.Fatal("the connection ended while the server still holds its side")
	default:
	}
	// Once the server gives up too, the proxy lets the connection go.
	sconn.Close()
	select {
	case <-pc.Done():
	case <-time.After(wait):
		t.Fatal("the blackholed connection was not released after both peers closed")
	}
	assert.Equal(t, int64(1), p.Stats().Blackholed)
}

func TestProxy_AllAtOnceAndCloseStopsEverything(t *testing.T) {
	p, err := chaosproxy.New(echoServer(t, echo))
	require.NoError(t, err)
	var cs []net.Conn
	for range 6 {
		c, err := net.DialTimeout("tcp", p.Addr(), wait)
		require.NoError(t, err)
		defer c.Close()
		roundTrip(t, c, "x")
		cs = append(cs, c)
	}
	waitConns(t, p, 6)
	assert.Equal(t, 6, p.BlackholeAll())
	// Blackholed connections are released by Close, like all others.
	require.NoError(t, p.Close())
	require.NoError(t, p.Close(), "idempotent")
	assert.Equal(t, int64(0), p.Stats().Open)
	for _, c := range cs {
		c.SetReadDeadline(time.Now().Add(wait))
		_, err := c.Read(make([]byte, 1))
		assert.Error(t, err, "closed by the proxy")
	}
	_, err = net.DialTimeout("tcp", p.Addr(), time.Second)
	assert.Error(t, err, "no longer accepting")
}

func TestProxy_CutAllAndResetAll(t *testing.T) {
	p := newProxy(t, echoServer(t, echo))
	for range 3 {
		roundTrip(t, dialProxy(t, p), "x")
	}
	waitConns(t, p, 3)
	assert.Equal(t, 3, p.CutAll())
	waitConns(t, p, 0)
	for range 2 {
		roundTrip(t, dialProxy(t, p), "x")
	}
	waitConns(t, p, 2)
	assert.Equal(t, 2, p.ResetAll())
	waitConns(t, p, 0)
	st := p.Stats()
	assert.Equal(t, int64(3), st.Cut)
	assert.Equal(t, int64(2), st.Reset)
	assert.Equal(t, int64(5), st.Accepted)
}

func TestProxy_DialFailureClosesTheClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := ln.Addr().String()
	ln.Close() // nothing listens there now
	p := newProxy(t, dead)
	c, err := net.DialTimeout("tcp", p.Addr(), wait)
	if err == nil { // or the reset came before connect returned
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(wait))
		_, err = c.Read(make([]byte, 1))
		assert.Error(t, err)
	}
	require.Eventually(t, func() bool { return p.Stats().DialFailed == 1 }, wait, 5*time.Millisecond)
}

func TestNew_RefusesNonLoopbackTargets(t *testing.T) {
	for _, target := range []string{"10.0.0.1:80", "example.com:80", "nope"} {
		_, err := chaosproxy.New(target)
		assert.Error(t, err, target)
	}
	p, err := chaosproxy.New("localhost:1")
	require.NoError(t, err)
	p.Close()
}
