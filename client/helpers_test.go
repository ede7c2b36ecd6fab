package client_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/client"
	"github.com/wshub/wshub/store"
)

// wait bounds every wait of these tests: a generous "does not stall".
const wait = 10 * time.Second

// fastBackoff keeps reconnects quick in tests.
var fastBackoff = client.Backoff{Base: 20 * time.Millisecond, Max: 200 * time.Millisecond}

// dial connects user to url and closes the client when the test ends.
func dial(t *testing.T, url, user string, opts client.Options) *client.Client {
	t.Helper()
	opts.Token = user
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, err := client.Dial(ctx, url, opts)
	require.NoError(t, err, "dial %s", user)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// recv returns the next message from c's Messages channel.
func recv(t *testing.T, c *client.Client) *wshub.Frame {
	t.Helper()
	select {
	case f, ok := <-c.Messages():
		require.True(t, ok, "messages channel closed")
		return f
	case <-time.After(wait):
		t.Fatal("no message within", wait)
		return nil
	}
}

// send sends a message and requires its receipt.
func send(t *testing.T, c *client.Client, f *wshub.Frame) *wshub.Frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	r, err := c.Send(ctx, f)
	require.NoError(t, err)
	require.Equal(t, wshub.CmdReceipt, r.Cmd)
	return r
}

// hubServer is a hub on a real listener that can be stopped and started
// again on the same address with the same store: a server restart.
type hubServer struct {
	addr string
	st   store.Store
	hub  *wshub.Hub
	http *http.Server
	done chan struct{} // closed when Serve returned
}

// startHub serves a hub with st at addr ("127.0.0.1:0" for any port) and
// stops it when the test ends.
func startHub(t *testing.T, addr string, st store.Store) *hubServer {
	t.Helper()
	h, err := wshub.New(wshub.Options{Authenticate: wshub.DevAuthenticate, Store: st})
	require.NoError(t, err)
	var ln net.Listener
	require.Eventually(t, func() bool { // the old socket may linger for a moment
		ln, err = net.Listen("tcp", addr)
		return err == nil
	}, wait, 10*time.Millisecond, "listen %s: %v", addr, err)
	mux := http.NewServeMux()
	mux.Handle("/ws", h)
	s := &hubServer{addr: ln.Addr().String(), st: st, hub: h,
		http: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		_ = s.http.Serve(ln)
	}()
	t.Cleanup(func() { s.stop(t) })
	return s
}

// url is the hub's WebSocket URL.
func (s *hubServer) url() string { return "ws://" + s.addr + "/ws" }

// stop closes the listener, then every connection (1001). Idempotent.
func (s *hubServer) stop(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_ = s.http.Shutdown(ctx) // closes the listener; hijacked sockets stay
	if err := s.hub.Shutdown(ctx); err != nil && !errors.Is(err, wshub.ErrClosed) {
		t.Errorf("hub shutdown: %v", err)
	}
	<-s.done
}

// proxy is a TCP proxy whose current links can be switched to silently
// drop every byte in both directions without closing: a dead NAT entry or
// a pulled cable. Links opened afterwards pass bytes normally.
type proxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	refusing atomic.Bool // new links are closed at once

	mu    sync.Mutex
	links []*link // guarded by mu
	n     int     // guarded by mu: links ever accepted
}

// link is one proxied connection.
type link struct {
	a, b       net.Conn
	blackholed atomic.Bool
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &proxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		a, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.refusing.Load() {
			a.Close()
			continue
		}
		b, err := net.Dial("tcp", p.target)
		if err != nil {
			a.Close()
			continue
		}
		l := &link{a: a, b: b}
		p.mu.Lock()
		p.links = append(p.links, l)
		p.n++
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(l, a, b)
		go p.pipe(l, b, a)
	}
}

// pipe copies src to dst, dropping the bytes while the link is blackholed.
func (p *proxy) pipe(l *link, src, dst net.Conn) {
	defer p.wg.Done()
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !l.blackholed.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// blackhole makes every current link drop all bytes from now on.
func (p *proxy) blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.links {
		l.blackholed.Store(true)
	}
}

// cut closes every current link: the connections through the proxy break
// (the hub sees them go). Links opened afterwards pass bytes normally,
// unless refuse is on.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.links {
		l.a.Close()
		l.b.Close()
	}
	p.links = nil
}

// refuse makes the proxy close every link it accepts from now on (on), or
// pass them again (off): the hub is out of reach.
func (p *proxy) refuse(on bool) { p.refusing.Store(on) }

// accepted returns how many links the proxy has accepted.
func (p *proxy) accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

func (p *proxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for _, l := range p.links {
		l.a.Close()
		l.b.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// events records a client's callbacks for assertions.
type events struct {
	mu           sync.Mutex
	opens        int
	closes       []int // close codes
	reconnecting []time.Duration
	errs         []error
	rejoins      map[string][]bool
}

// options returns opts with callbacks that record into e.
func (e *events) options(opts client.Options) client.Options {
	opts.OnOpen = func(*wshub.Frame) { e.mu.Lock(); e.opens++; e.mu.Unlock() }
	opts.OnClose = func(code int, _ string) { e.mu.Lock(); e.closes = append(e.closes, code); e.mu.Unlock() }
	opts.OnReconnecting = func(_ int, d time.Duration) {
		e.mu.Lock()
		e.reconnecting = append(e.reconnecting, d)
		e.mu.Unlock()
	}
	opts.OnError = func(err error) { e.mu.Lock(); e.errs = append(e.errs, err); e.mu.Unlock() }
	opts.OnRejoin = func(room string, recovered bool) {
		e.mu.Lock()
		if e.rejoins == nil {
			e.rejoins = make(map[string][]bool)
		}
		e.rejoins[room] = append(e.rejoins[room], recovered)
		e.mu.Unlock()
	}
	return opts
}

func (e *events) openCount() int { e.mu.Lock(); defer e.mu.Unlock(); return e.opens }

func (e *events) closeCodes() []int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]int(nil), e.closes...)
}

func (e *events) hasErr(target error) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, err := range e.errs {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

func (e *events) rejoinsOf(room string) []bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]bool(nil), e.rejoins[room]...)
}
