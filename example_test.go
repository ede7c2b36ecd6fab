package wshub_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wshub/wshub"
)

// env is a hub on a test server and the connections dialed to it.
type env struct {
	url   string
	hub   *wshub.Hub
	srv   *httptest.Server
	conns []*websocket.Conn
}

// serve mounts h at /ws on a test server.
func serve(h *wshub.Hub) *env {
	mux := http.NewServeMux()
	mux.Handle("/ws", h)
	s := httptest.NewServer(mux)
	return &env{url: "ws" + strings.TrimPrefix(s.URL, "http") + "/ws", hub: h, srv: s}
}

// stop closes the clients, shuts the hub down and closes the server.
func (e *env) stop() {
	for _, c := range e.conns {
		c.Close()
	}
	e.hub.Shutdown(context.Background())
	e.srv.Close()
}

// connect dials as user and skips the welcome frame.
func (e *env) connect(user string) *websocket.Conn {
	ws, _, err := websocket.DefaultDialer.Dial(e.url+"?token="+user, nil)
	if err != nil {
		log.Fatal(err)
	}
	e.conns = append(e.conns, ws)
	next(ws) // welcome
	return ws
}

// next reads one frame.
func next(ws *websocket.Conn) *wshub.Frame {
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	var f wshub.Frame
	if err := ws.ReadJSON(&f); err != nil {
		log.Fatal(err)
	}
	return &f
}

// Mount a hub in a net/http application.
func ExampleNew() {
	hub, err := wshub.New(wshub.Options{
		// Turn the request's token into a user id; DevAuthenticate takes
		// the token as the id and is for development only.
		Authenticate: func(r *http.Request) (string, error) {
			if wshub.Token(r) == "secret-of-alice" {
				return "alice", nil
			}
			return wshub.DevAuthenticate(r)
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	e := serve(hub) // http.Handle("/ws", hub) in a real server
	defer e.stop()

	alice := e.connect("secret-of-alice")
	bob := e.connect("bob")
	alice.WriteJSON(&wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", CID: "1", Content: "hi bob"})
	r := next(alice)
	m := next(bob)
	fmt.Println("receipt for", r.CID, "seq", r.Seq)
	fmt.Println(m.UserID, "->", m.DstID+":", m.Content)
	// Output:
	// receipt for 1 seq 1
	// alice -> bob: hi bob
}

// Add an application command (cmd >= 100) with Options.Dispatcher.
func ExampleOptions_dispatcher() {
	const cmdWhoAmI wshub.Cmd = 100
	hub, _ := wshub.New(wshub.Options{
		Authenticate: wshub.DevAuthenticate,
		Dispatcher: wshub.DispatcherFunc(func(ctx context.Context, n *wshub.Node, f *wshub.Frame) error {
			switch f.Cmd {
			case cmdWhoAmI:
				return n.Send(&wshub.Frame{Cmd: cmdWhoAmI, CID: f.CID, Content: "you are " + n.UserID()})
			}
			return wshub.ErrUnknownCommand
		}),
	})
	e := serve(hub)
	defer e.stop()

	c := e.connect("carol")
	c.WriteJSON(&wshub.Frame{Cmd: cmdWhoAmI, CID: "q1"})
	fmt.Println(next(c).Content)
	c.WriteJSON(&wshub.Frame{Cmd: 199, CID: "q2"})
	ef := next(c)
	fmt.Println(ef.Cmd, ef.Code, ef.CID)
	// Output:
	// you are carol
	// 40 404 q2
}

// Wrap the built-in commands: audit every frame, and veto some with an
// error frame of your own code.
func ExampleMiddleware() {
	var mu sync.Mutex
	var audit []string
	auditLog := func(next wshub.Dispatcher) wshub.Dispatcher {
		return wshub.DispatcherFunc(func(ctx context.Context, n *wshub.Node, f *wshub.Frame) error {
			err := next.Dispatch(ctx, n, f)
			mu.Lock()
			audit = append(audit, fmt.Sprintf("%s cmd=%d err=%v", n.UserID(), f.Cmd, err != nil))
			mu.Unlock()
			return err
		})
	}
	noShouting := func(next wshub.Dispatcher) wshub.Dispatcher {
		return wshub.DispatcherFunc(func(ctx context.Context, n *wshub.Node, f *wshub.Frame) error {
			if f.Cmd == wshub.CmdSingle && f.Content != "" && f.Content == strings.ToUpper(f.Content) {
				return &wshub.Error{Code: 422, Reason: "please do not shout"}
			}
			return next.Dispatch(ctx, n, f)
		})
	}
	hub, _ := wshub.New(wshub.Options{
		Authenticate: wshub.DevAuthenticate,
		Middleware:   []wshub.Middleware{auditLog, noShouting},
	})
	e := serve(hub)
	defer e.stop()

	c := e.connect("dave")
	c.WriteJSON(&wshub.Frame{Cmd: wshub.CmdSingle, DstID: "erin", CID: "1", Content: "HELLO"})
	ef := next(c)
	fmt.Println(ef.Code, ef.Reason)
	c.WriteJSON(&wshub.Frame{Cmd: wshub.CmdSingle, DstID: "erin", CID: "2", Content: "hello"})
	fmt.Println(next(c).Cmd == wshub.CmdReceipt)
	// The receipt is queued inside next.Dispatch: the audit line comes
	// just after it returned.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		mu.Lock()
		n := len(audit)
		mu.Unlock()
		if n == 2 {
			break
		}
	}
	mu.Lock()
	fmt.Println(strings.Join(audit, "\n"))
	mu.Unlock()
	// Output:
	// 422 please do not shout
	// true
	// dave cmd=10 err=true
	// dave cmd=10 err=false
}

// Authorize joins, room sends and room history reads.
func ExampleOptions_authorizeRoom() {
	hub, _ := wshub.New(wshub.Options{
		Authenticate: wshub.DevAuthenticate,
		AuthorizeRoom: func(ctx context.Context, n *wshub.Node, cmd wshub.Cmd, room string) error {
			if strings.HasPrefix(room, "admins") && n.UserID() != "root" {
				return errors.New("admins only")
			}
			return nil
		},
	})
	e := serve(hub)
	defer e.stop()

	guest := e.connect("guest")
	guest.WriteJSON(&wshub.Frame{Cmd: wshub.CmdJoin, DstID: "admins", CID: "j1"})
	ef := next(guest)
	fmt.Println(ef.Cmd, ef.Code, ef.CID)
	root := e.connect("root")
	root.WriteJSON(&wshub.Frame{Cmd: wshub.CmdJoin, DstID: "admins"})
	fmt.Println(next(root).Cmd == wshub.CmdJoin)
	// Output:
	// 40 403 j1
	// true
}

// Observe connections coming and going.
func ExampleOptions_onConnect() {
	events := make(chan string, 2)
	hub, _ := wshub.New(wshub.Options{
		Authenticate: wshub.DevAuthenticate,
		OnConnect:    func(n *wshub.Node) { events <- n.UserID() + " online" },
		OnDisconnect: func(n *wshub.Node, err error) { events <- n.UserID() + " offline" },
	})
	e := serve(hub)
	defer e.stop()

	c := e.connect("frank")
	fmt.Println(<-events)
	c.Close()
	fmt.Println(<-events)
	// Output:
	// frank online
	// frank offline
}

// Push from the server: a direct message to a user who is offline waits
// in the store and is delivered when the user connects.
func ExampleHub_SendToUser() {
	hub, _ := wshub.New(wshub.Options{Authenticate: wshub.DevAuthenticate})
	e := serve(hub)
	defer e.stop()

	ctx := context.Background()
	if _, err := hub.SendToUser(ctx, "system", "gina", &wshub.Frame{Content: "your order shipped"}); err != nil {
		log.Fatal(err)
	}
	g := e.connect("gina")
	m := next(g)
	fmt.Println(m.UserID+":", m.Content)
	// Output:
	// system: your order shipped
}

// Room messages from the server to every member online.
func ExampleHub_SendToRoom() {
	hub, _ := wshub.New(wshub.Options{Authenticate: wshub.DevAuthenticate})
	e := serve(hub)
	defer e.stop()

	ctx := context.Background()
	hub.Join(ctx, "hank", "news")
	h := e.connect("hank")
	hub.SendToRoom(ctx, "editor", "news", &wshub.Frame{Content: "extra!"})
	m := next(h)
	fmt.Println(m.DstID, m.UserID, m.Content)
	// Output:
	// news editor extra!
}
