package demo_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/examples/internal/demo"
	"github.com/wshub/wshub/store"
	"github.com/wshub/wshub/store/boltstore"
)

// server is the demo as the examples run it: the page at /, the hub at /ws
// and /chat, a bbolt store; it can be stopped and started again on the
// same address with the same file.
type server struct {
	t    *testing.T
	addr string // host:port, fixed across restarts
	db   string // bbolt file

	st  *boltstore.Store
	hub *wshub.Hub
	srv *http.Server
}

func newServer(t *testing.T) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	s := &server{t: t, addr: addr, db: filepath.Join(t.TempDir(), "wshub.db")}
	s.start()
	t.Cleanup(func() {
		if s.hub != nil {
			s.stop()
		}
	})
	return s
}

func (s *server) url(query string) string { return "http://" + s.addr + "/?" + query }

func (s *server) start() {
	t := s.t
	t.Helper()
	st, err := boltstore.Open(s.db, boltstore.Options{})
	require.NoError(t, err)
	h, err := wshub.New(wshub.Options{Authenticate: wshub.DevAuthenticate, Store: st})
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("/ws", h)
	mux.Handle("/chat", h)
	mux.Handle("/", demo.Handler())
	var ln net.Listener
	// The port was ours a moment ago; give the kernel a moment if needed.
	require.Eventually(t, func() bool {
		ln, err = net.Listen("tcp", s.addr)
		return err == nil
	}, waitTimeout, 50*time.Millisecond, "listen on %s: %v", s.addr, err)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	s.st, s.hub, s.srv = st, h, srv
}

// stop shuts the hub down (every socket closed with 1001), closes the
// listener and the store.
func (s *server) stop() {
	t := s.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	assert.NoError(t, s.hub.Shutdown(ctx))
	assert.NoError(t, s.srv.Close())
	assert.NoError(t, s.st.Close())
	s.hub, s.srv, s.st = nil, nil, nil
}

// storedCount counts the messages of a conversation whose content is text.
func (s *server) storedCount(conv, text string) int {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	page, err := s.st.History(ctx, conv, store.Query{Limit: 200})
	require.NoError(s.t, err)
	n := 0
	for _, m := range page.Items {
		if strings.Contains(string(m.Body), fmt.Sprintf("%q", text)) {
			n++
		}
	}
	return n
}

// fast are the page parameters of the tests: short reconnect delays so that
// a restart is noticed and survived quickly.
const fast = "backoffBase=100&backoffMax=1000"

// user is one person at one browser tab of the demo.
type user struct {
	t    *testing.T
	name string
	tab  context.Context
}

func signIn(t *testing.T, s *server, name string) *user {
	t.Helper()
	u := &user{t: t, name: name, tab: newBrowser(t)}
	open(t, u.tab, s.url("user="+name+"&"+fast))
	// Record the client's join answers for the test.
	eval(t, u.tab, `window.joins = [], wshubDemo.client.on('joined', (d) => window.joins.push(d)), true`, nil)
	u.waitState("open")
	return u
}

func (u *user) do(actions ...chromedp.Action[chromedp.Void]) {
	u.t.Helper()
	require.NoError(u.t, chromedp.Do(u.tab, actions...))
}

func (u *user) waitFor(cond string) {
	u.t.Helper()
	waitFor(u.t, u.tab, cond, `document.querySelector('#app').innerText`)
}

func (u *user) waitState(state string) {
	u.t.Helper()
	u.waitFor(fmt.Sprintf(`document.querySelector('#conn').dataset.state === %q`, state))
}

// type types text into the input with the given id and presses Enter, as
// a person would.
func (u *user) typeIn(id, text string) {
	u.t.Helper()
	u.do(chromedp.SendKeys(chromedp.ID(id), text+kb.Enter))
}

func (u *user) chatWith(other string) { u.typeIn("new-chat-input", other) }
func (u *user) joinRoom(room string)  { u.typeIn("join-room-input", room) }
func (u *user) say(text string)       { u.typeIn("composer-input", text) }

// open clicks the conversation in the list (waiting for it to appear).
func (u *user) open(conv string) {
	u.t.Helper()
	sel := fmt.Sprintf(`[data-conv=%q]`, conv)
	u.waitFor(fmt.Sprintf(`document.querySelector(%q) !== null`, sel))
	u.do(chromedp.Click(chromedp.CSS(sel)))
	u.waitFor(fmt.Sprintf(`document.querySelector(%q).classList.contains('active')`, sel))
}

// shown counts the messages with exactly this text in the open conversation.
func (u *user) shown(text string) int {
	u.t.Helper()
	var n int
	eval(u.t, u.tab, fmt.Sprintf(`[...document.querySelectorAll('#messages .msg-text')].filter((e) => e.textContent === %q).length`, text), &n)
	return n
}

// waitShown waits until text is shown in the open conversation.
func (u *user) waitShown(text string) {
	u.t.Helper()
	u.waitFor(fmt.Sprintf(`[...document.querySelectorAll('#messages .msg-text')].some((e) => e.textContent === %q)`, text))
}

// waitSent waits until the message with text in the open conversation
// carries its receipt (a server id).
func (u *user) waitSent(text string) {
	u.t.Helper()
	u.waitFor(fmt.Sprintf(`[...document.querySelectorAll('#messages .msg')].some((e) => e.dataset.id && e.querySelector('.msg-text').textContent === %q)`, text))
}

func (u *user) outboxCount() int {
	u.t.Helper()
	var n string
	eval(u.t, u.tab, `document.querySelector('#outbox').dataset.count`, &n)
	var c int
	_, err := fmt.Sscan(n, &c)
	require.NoError(u.t, err)
	return c
}

// TestDemo_ChatSurvivesServerRestart: two people chat directly and in a
// room; the server stops; both pages show that they are reconnecting;
// messages typed meanwhile wait in the outbox; the server comes back on the
// same address; the pages reconnect by themselves and every message typed
// during the outage arrives exactly once.
func TestDemo_ChatSurvivesServerRestart(t *testing.T) {
	s := newServer(t)
	alice := signIn(t, s, "alice")
	bob := signIn(t, s, "bob")

	// Direct messages.
	alice.chatWith("bob")
	alice.say("Hi Bob! Did the release go out?")
	alice.waitSent("Hi Bob! Did the release go out?")
	bob.open("u:alice")
	bob.waitShown("Hi Bob! Did the release go out?")
	bob.say("Yes, ten minutes ago. All green so far.")
	alice.waitShown("Yes, ten minutes ago. All green so far.")

	// A room.
	alice.joinRoom("lobby")
	bob.joinRoom("lobby")
	bob.waitFor(`wshubDemo.client.rooms().some((r) => r.room === 'lobby' && r.epoch)`)
	alice.waitFor(`wshubDemo.client.rooms().some((r) => r.room === 'lobby' && r.epoch)`)
	alice.say("Morning, everyone")
	bob.waitShown("Morning, everyone")

	// The server goes away.
	s.stop()
	alice.waitState("reconnecting")
	bob.waitState("reconnecting")
	var text string
	eval(t, alice.tab, `document.querySelector('#conn-text').textContent`, &text)
	assert.Regexp(t, `^Reconnecting`, text)

	// Typed during the outage: they wait in the outbox.
	alice.say("Is the server down?") // in #lobby
	bob.say("Looks like a restart")  // in #lobby
	alice.open("u:bob")
	alice.say("Ping me when it is back") // direct
	assert.Equal(t, 2, alice.outboxCount())
	assert.Equal(t, 1, bob.outboxCount())
	eval(t, alice.tab, `document.querySelector('#outbox').textContent`, &text)
	assert.Equal(t, "2 messages waiting to be sent", text)
	eval(t, alice.tab, `[...document.querySelectorAll('#messages .msg.pending .meta')].map((e) => e.textContent).join()`, &text)
	assert.Contains(t, text, "waiting to send")

	// The server is back on the same address, with the same file.
	s.start()
	alice.waitState("open")
	bob.waitState("open")
	alice.waitFor(`document.querySelector('#outbox').dataset.count === '0'`)
	bob.waitFor(`document.querySelector('#outbox').dataset.count === '0'`)
	alice.waitSent("Ping me when it is back")

	// Exactly once, on screen and in the store.
	bob.waitShown("Is the server down?") // bob has #lobby open
	alice.waitShown("Ping me when it is back")
	bob.open("u:alice")
	bob.waitShown("Ping me when it is back")
	alice.open("r:lobby")
	alice.waitShown("Looks like a restart")
	alice.waitSent("Is the server down?")
	// Let any duplicate that were on its way arrive before counting.
	time.Sleep(300 * time.Millisecond)
	assert.Equal(t, 1, bob.shown("Ping me when it is back"))
	assert.Equal(t, 1, alice.shown("Looks like a restart"))
	assert.Equal(t, 1, alice.shown("Is the server down?"))
	bob.open("r:lobby")
	assert.Equal(t, 1, bob.shown("Is the server down?"))
	assert.Equal(t, 1, bob.shown("Morning, everyone"))
	assert.Equal(t, 1, s.storedCount(store.DirectConv("alice", "bob"), "Ping me when it is back"))
	assert.Equal(t, 1, s.storedCount(store.RoomConv("lobby"), "Is the server down?"))
	assert.Equal(t, 1, s.storedCount(store.RoomConv("lobby"), "Looks like a restart"))

	// The room was rejoined from where each page left it: replayed, not
	// reloaded.
	for _, u := range []*user{alice, bob} {
		var joins []struct {
			Room      string `json:"room"`
			Recovered bool   `json:"recovered"`
		}
		eval(t, u.tab, `window.joins`, &joins)
		require.NotEmpty(t, joins, u.name)
		last := joins[len(joins)-1]
		assert.Equal(t, "lobby", last.Room, u.name)
		assert.True(t, last.Recovered, "%s: rejoin recovered", u.name)
	}
}

// TestDemo_ReferenceArticleClient: a page written like the reference
// article's client (authToken in the query, numeric ids, cmd 1 'ping'
// heartbeats, cmd 10/11 frames without cid) still works against wshub.
func TestDemo_ReferenceArticleClient(t *testing.T) {
	s := newServer(t)
	tab := newBrowser(t)
	require.NoError(t, chromedp.Do(tab, chromedp.Navigate("http://"+s.addr+"/style.css")))

	var got struct {
		A []string `json:"a"`
		B []string `json:"b"`
	}
	eval(t, tab, `(async () => {
		const connect = (id) => new Promise((resolve, reject) => {
			const ws = new WebSocket("ws://" + location.host + "/chat?authToken=" + id);
			const got = [];
			ws.onmessage = (evt) => { if (evt.data.indexOf("}") > -1) got.push(evt.data); };
			ws.onopen = () => resolve({ws, got});
			ws.onerror = reject;
		});
		const until = async (cond) => {
			const end = Date.now() + 10000;
			while (!cond()) {
				if (Date.now() > end) throw new Error('timed out: ' + JSON.stringify({a: a.got, b: b.got}));
				await new Promise((r) => setTimeout(r, 20));
			}
		};
		const a = await connect(1), b = await connect(2);
		a.ws.send(JSON.stringify({cmd: 1, content: 'ping'}));
		a.ws.send(JSON.stringify({userid: 1, cmd: 10, dstid: 2, media: 1, content: 'hello from the article'}));
		a.ws.send(JSON.stringify({cmd: 12, dstid: 100}));
		b.ws.send(JSON.stringify({cmd: 12, dstid: 100}));
		await until(() => b.got.some((d) => JSON.parse(d).cmd === 12));
		a.ws.send(JSON.stringify({userid: 1, cmd: 11, dstid: 100, media: 1, content: 'hello room 100'}));
		await until(() => b.got.some((d) => d.includes('hello room 100')) && a.got.some((d) => JSON.parse(d).cmd === 2));
		a.ws.close(); b.ws.close();
		return {a: a.got, b: b.got};
	})()`, &got)

	frames := func(raw []string) []*wshub.Frame {
		var out []*wshub.Frame
		for _, r := range raw {
			f, err := wshub.DecodeFrame([]byte(r))
			require.NoError(t, err, r)
			out = append(out, f)
		}
		return out
	}
	var pong, direct, room *wshub.Frame
	for _, f := range frames(got.A) {
		if f.Cmd == wshub.CmdPong {
			pong = f
		}
	}
	for _, f := range frames(got.B) {
		switch f.Cmd {
		case wshub.CmdSingle:
			direct = f
		case wshub.CmdRoom:
			room = f
		}
	}
	require.NotNil(t, pong, "cmd 1 answered: %v", got.A)
	assert.Equal(t, "pong", pong.Content)
	require.NotNil(t, direct, "direct message reached user 2: %v", got.B)
	assert.Equal(t, "1", direct.UserID)
	assert.Equal(t, "2", direct.DstID)
	assert.Equal(t, "hello from the article", direct.Content)
	assert.Equal(t, "1", direct.Media.String())
	require.NotNil(t, room, "room message reached user 2: %v", got.B)
	assert.Equal(t, "1", room.UserID)
	assert.Equal(t, "100", room.DstID)
	assert.Equal(t, "hello room 100", room.Content)
}

// TestHandler serves the page, its assets and the client, and nothing else.
func TestHandler(t *testing.T) {
	srv := httptest.NewServer(demo.Handler())
	defer srv.Close()
	for _, tc := range []struct {
		method, path string
		status       int
		ctype, body  string
	}{
		{"GET", "/", 200, "text/html", `<script type="module" src="/app.js">`},
		{"GET", "/app.js", 200, "text/javascript", `from '/wshub.js'`},
		{"GET", "/style.css", 200, "text/css", `.conn`},
		{"GET", "/wshub.js", 200, "text/javascript", `export class WSHubClient`},
		{"HEAD", "/", 200, "text/html", ``},
		{"GET", "/nope", 404, "", ``},
		{"GET", "/static/index.html", 404, "", ``},
		{"POST", "/", 405, "", ``},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, srv.URL+tc.path, nil)
			require.NoError(t, err)
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			assert.Equal(t, tc.status, resp.StatusCode)
			if tc.ctype != "" {
				assert.Contains(t, resp.Header.Get("Content-Type"), tc.ctype)
			}
			assert.Contains(t, string(b), tc.body)
		})
	}
}

// TestDemo_SignInAndOut: without ?user the page asks for a name; signing
// in connects as that user; signing out returns to the form.
func TestDemo_SignInAndOut(t *testing.T) {
	s := newServer(t)
	tab := newBrowser(t)
	require.NoError(t, chromedp.Do(tab, chromedp.Navigate(s.url(fast))))
	waitFor(t, tab, `!document.querySelector('#signin').hidden`, `document.body.innerText`)
	require.NoError(t, chromedp.Do(tab, chromedp.SendKeys(chromedp.ID("signin-name"), "carol"+kb.Enter)))
	waitFor(t, tab, `document.querySelector('#conn').dataset.state === 'open'`, `document.body.innerText`)
	var name, user, cookie string
	eval(t, tab, `document.querySelector('#me-name').textContent`, &name)
	eval(t, tab, `wshubDemo.client.userId`, &user)
	eval(t, tab, `document.cookie`, &cookie)
	assert.Equal(t, "carol", name)
	assert.Equal(t, "carol", user, "the hub took the name as the user id")
	assert.Contains(t, cookie, "wshub_token=carol")

	require.NoError(t, chromedp.Do(tab, chromedp.Click(chromedp.ID("signout"))))
	waitFor(t, tab, `!document.querySelector('#signin').hidden && document.querySelector('#app').hidden`, `document.body.innerText`)
	eval(t, tab, `document.cookie`, &cookie)
	assert.NotContains(t, cookie, "wshub_token=carol")
}
