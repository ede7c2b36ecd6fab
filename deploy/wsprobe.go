//go:build ignore

// Command wsprobe checks a wshub endpoint from outside, the way
// deploy/check-nginx.sh needs it: through a proxy, with a browser's Origin
// header; and serves a hub configured as a program behind a proxy would
// configure it (serve), which the example cannot be. It is not part of any
// package (build tag ignore); run it from the repository root:
//
//	go run deploy/wsprobe.go dial   [-origin O] [-cacert F] -want 101|403|...|any URL
//	go run deploy/wsprobe.go direct [-origin O] [-cacert F] URL
//	go run deploy/wsprobe.go idle   [-origin O] [-cacert F] -for 70s -want open|closed URL
//	go run deploy/wsprobe.go hold   [-origin O] [-cacert F] -n 1000 -for 30s URL
//	go run deploy/wsprobe.go ports N
//	go run deploy/wsprobe.go serve  [-addr A] [-trusted-proxies P] [-origins O1,O2] [-no-address-bounds] [-tls-cert F -tls-key F]
//
// dial, direct, idle and hold take -src ADDR to connect from that local
// address (127.0.0.2, say: every 127/8 address is the loopback). hold
// reports how many connections it got and the HTTP status of the first
// refusal, if any, and exits 0 either way. serve prints "listening on
// http(s)://ADDR", then "connect USER from ADDR" for each connection (the
// client's address as the hub sees it), and serves a hub with a memory
// store at /ws until SIGTERM: -trusted-proxies sets Options.TrustedProxies,
// -origins Options.AllowedOrigins, -no-address-bounds turns off the
// per-address bounds (MaxConnsPerIP, UpgradeRate), for memory measurements
// from one address.
//
// URL is the hub's WebSocket URL without a query (ws://host:port/ws or
// wss://...); the probe adds ?token=USER (development authentication: the
// token is the user id). It exits 1 when the outcome is not the one wanted.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wshub/wshub"
)

func main() {
	if len(os.Args) < 2 {
		fail("usage: wsprobe dial|direct|idle|ports ...")
	}
	cmd, args := os.Args[1], os.Args[2:]
	switch cmd {
	case "ports":
		ports(args)
		return
	case "serve":
		serve(args)
		return
	}
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	origin := fs.String("origin", "", "Origin header to send (a browser always sends one)")
	cacert := fs.String("cacert", "", "PEM file of the CA to trust for wss:// (a self-signed certificate)")
	want := fs.String("want", "", "dial: the HTTP status wanted, or any; idle: open or closed")
	idleFor := fs.Duration("for", 70*time.Second, "idle, hold: how long to stay silent")
	src := fs.String("src", "", "local address to connect from")
	n := fs.Int("n", 1000, "hold: how many connections")
	fs.Parse(args)
	if fs.NArg() != 1 {
		fail("one URL expected")
	}
	p := &probe{url: fs.Arg(0), origin: *origin, src: *src}
	if *src != "" {
		nd := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(*src)}}
		p.dialContext = nd.DialContext
	}
	if *cacert != "" {
		pem, err := os.ReadFile(*cacert)
		if err != nil {
			fail(err.Error())
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			fail("no certificate in " + *cacert)
		}
		p.tls = &tls.Config{RootCAs: pool}
	}
	switch cmd {
	case "dial":
		p.dial(*want)
	case "direct":
		p.direct()
	case "idle":
		p.idle(*idleFor, *want)
	case "hold":
		p.hold(*n, *idleFor)
	default:
		fail("unknown command " + cmd)
	}
}

type probe struct {
	url, origin string
	src         string // local address, or ""
	tls         *tls.Config
	dialContext func(ctx context.Context, network, addr string) (net.Conn, error) // nil: the default
}

// frame is the part of a wshub frame the probe looks at.
type frame struct {
	Cmd     int    `json:"cmd"`
	CID     string `json:"cid,omitempty"`
	UserID  string `json:"userid,omitempty"`
	DstID   string `json:"dstid,omitempty"`
	Content string `json:"content,omitempty"`
	Seq     int64  `json:"seq,omitempty"`
}

func (p *probe) connect(user string) (*websocket.Conn, *http.Response, error) {
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, TLSClientConfig: p.tls, NetDialContext: p.dialContext}
	h := http.Header{}
	if p.origin != "" {
		h.Set("Origin", p.origin)
	}
	return d.Dial(p.url+"?token="+user, h)
}

// dial connects once and compares the HTTP status of the answer.
func (p *probe) dial(want string) {
	c, resp, err := p.connect("alice")
	status := 0
	if resp != nil {
		status = resp.StatusCode
	}
	if c != nil {
		c.Close()
	}
	from := ""
	if p.src != "" {
		from = " from " + p.src
	}
	fmt.Printf("dial %s%s Origin=%q: HTTP %d", p.url, from, p.origin, status)
	if err != nil && status == 0 {
		fmt.Printf(" (%v)", err)
	}
	fmt.Println()
	if want != "any" && strconv.Itoa(status) != want {
		fail("wanted HTTP " + want)
	}
}

// direct sends a direct message from alice to bob and waits for bob to
// receive it and alice to get the receipt.
func (p *probe) direct() {
	alice := p.mustConnect("alice")
	defer alice.Close()
	bob := p.mustConnect("bob")
	defer bob.Close()
	cid := fmt.Sprintf("probe-%d", time.Now().UnixNano()) // unique: the hub deduplicates by (sender, cid)
	out := frame{Cmd: 10, DstID: "bob", CID: cid, Content: "hello " + cid}
	if err := alice.WriteJSON(out); err != nil {
		fail(err.Error())
	}
	got := readUntil(bob, func(f frame) bool { return f.Cmd == 10 && f.Content == out.Content })
	fmt.Printf("bob received: cmd %d from %q seq %d %q\n", got.Cmd, got.UserID, got.Seq, got.Content)
	rc := readUntil(alice, func(f frame) bool { return f.Cmd == 15 && f.CID == out.CID })
	fmt.Printf("alice got the receipt: cmd %d cid %q seq %d\n", rc.Cmd, rc.CID, rc.Seq)
}

// idle connects, sends nothing for d (answering the hub's WebSocket pings,
// as a browser does), then checks the connection with a cmd 1 ping.
func (p *probe) idle(d time.Duration, want string) {
	c := p.mustConnect("idler")
	defer c.Close()
	start := time.Now()
	var pings atomic.Int32
	c.SetPingHandler(func(data string) error {
		pings.Add(1)
		return c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(5*time.Second))
	})
	frames := make(chan frame, 16)
	closed := make(chan error, 1)
	go func() {
		for {
			var f frame
			if err := c.ReadJSON(&f); err != nil {
				closed <- err
				return
			}
			frames <- f
		}
	}()
	outcome := "open"
	select {
	case err := <-closed:
		fmt.Printf("idle %s: closed after %.1f s (%d hub pings answered): %v\n", p.url, time.Since(start).Seconds(), pings.Load(), err)
		outcome = "closed"
	case <-time.After(d):
		if err := c.WriteJSON(frame{Cmd: 1, CID: "still-there"}); err != nil {
			fmt.Printf("idle %s: write after %.1f s failed: %v\n", p.url, time.Since(start).Seconds(), err)
			outcome = "closed"
			break
		}
		deadline := time.After(5 * time.Second)
	wait:
		for {
			select {
			case f := <-frames:
				if f.Cmd == 2 && f.CID == "still-there" {
					fmt.Printf("idle %s: open after %.1f s silent; %d hub pings answered; cmd 1 answered with cmd 2\n",
						p.url, d.Seconds(), pings.Load())
					break wait
				}
			case err := <-closed:
				fmt.Printf("idle %s: closed after %.1f s: %v\n", p.url, time.Since(start).Seconds(), err)
				outcome = "closed"
				break wait
			case <-deadline:
				fmt.Printf("idle %s: no pong within 5 s after %.1f s\n", p.url, d.Seconds())
				outcome = "closed"
				break wait
			}
		}
	}
	if outcome != want {
		fail("wanted " + want)
	}
}

// hold opens up to n connections (users h0, h1, ...), stopping at the
// first refusal, holds them for d, and reports how many were open then: to
// measure what an idle connection costs the proxy and the hub, and to see
// per-address limits.
func (p *probe) hold(n int, d time.Duration) {
	var open atomic.Int32
	conns := make([]*websocket.Conn, 0, n)
	for i := range n {
		c, resp, err := p.connect(fmt.Sprintf("h%d", i))
		if err != nil {
			status := "no HTTP answer: " + err.Error()
			if resp != nil {
				status = fmt.Sprintf("HTTP %d", resp.StatusCode)
			}
			fmt.Printf("hold: %d connected, then %s\n", i, status)
			break
		}
		conns = append(conns, c)
		open.Add(1)
		go func() {
			for {
				if _, _, err := c.ReadMessage(); err != nil { // answers the hub's pings
					open.Add(-1)
					return
				}
			}
		}()
	}
	fmt.Printf("hold: %d connections open; holding them %v\n", open.Load(), d)
	time.Sleep(d)
	fmt.Printf("hold: %d of %d still open\n", open.Load(), len(conns))
	for _, c := range conns {
		c.Close()
	}
}

func (p *probe) mustConnect(user string) *websocket.Conn {
	c, resp, err := p.connect(user)
	if err != nil {
		if resp != nil {
			fail(fmt.Sprintf("%s: connect as %s: HTTP %d", p.url, user, resp.StatusCode))
		}
		fail(fmt.Sprintf("%s: connect as %s: %v", p.url, user, err))
	}
	if w := readUntil(c, func(f frame) bool { return f.Cmd == 20 }); w.UserID != user {
		fail(fmt.Sprintf("welcome for %q, wanted %q", w.UserID, user))
	}
	return c
}

// readUntil reads frames until ok accepts one, for at most 5 s.
func readUntil(c *websocket.Conn, ok func(frame) bool) frame {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	for {
		_, data, err := c.ReadMessage()
		if err != nil {
			fail(err.Error())
		}
		var f frame
		if err := json.Unmarshal(data, &f); err != nil {
			fail(fmt.Sprintf("%v: %s", err, data))
		}
		if ok(f) {
			return f
		}
	}
}

// ports prints n free TCP ports of 127.0.0.1, one a line.
func ports(args []string) {
	n := 1
	if len(args) > 0 {
		n, _ = strconv.Atoi(args[0])
	}
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fail(err.Error())
		}
		lns = append(lns, ln)
		fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
}

// serve runs a hub configured as a program behind a proxy configures it.
func serve(args []string) {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	trusted := fs.String("trusted-proxies", "", "Options.TrustedProxies, comma-separated")
	origins := fs.String("origins", "", "Options.AllowedOrigins, comma-separated")
	noBounds := fs.Bool("no-address-bounds", false, "MaxConnsPerIP and UpgradeRate off")
	cert := fs.String("tls-cert", "", "TLS certificate (PEM)")
	key := fs.String("tls-key", "", "TLS key (PEM)")
	fs.Parse(args)
	opts := wshub.Options{
		Authenticate: wshub.DevAuthenticate,
		OnConnect: func(n *wshub.Node) {
			fmt.Printf("connect %s from %s\n", n.UserID(), n.RemoteAddr())
		},
	}
	if *trusted != "" {
		opts.TrustedProxies = strings.Split(*trusted, ",")
	}
	if *origins != "" {
		opts.AllowedOrigins = strings.Split(*origins, ",")
	}
	if *noBounds {
		opts.MaxConnsPerIP, opts.UpgradeRate = -1, -1
	}
	hub, err := wshub.New(opts)
	if err != nil {
		fail(err.Error())
	}
	mux := http.NewServeMux()
	mux.Handle("/ws", hub)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fail(err.Error())
	}
	scheme := "http"
	if *cert != "" {
		scheme = "https"
	}
	fmt.Printf("listening on %s://%s\n", scheme, ln.Addr())
	go func() {
		var serr error
		if *cert != "" {
			serr = srv.ServeTLS(ln, *cert, *key)
		} else {
			serr = srv.Serve(ln)
		}
		if serr != http.ErrServerClosed {
			fail(serr.Error())
		}
	}()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hub.Shutdown(sctx)
	srv.Shutdown(sctx)
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "wsprobe:", msg)
	os.Exit(1)
}
