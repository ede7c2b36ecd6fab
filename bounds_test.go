package wshub_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/hubtest"
	"github.com/wshub/wshub/store"
)

// The bounds of a hub on the open internet (issue 10): the message quota,
// rooms per user, id sizes, connections and upgrades per address, and the
// origin policy. The tests dial from 127.0.0.1, so they set small limits.

// dialStatus dials url with header and returns the HTTP status of the
// handshake's answer (101 when it upgraded, then closing the connection)
// and the answer's headers.
func dialStatus(t *testing.T, d *websocket.Dialer, url string, header http.Header) (int, http.Header) {
	t.Helper()
	ws, resp, err := d.Dial(url, header)
	if err == nil {
		ws.Close()
		return resp.StatusCode, resp.Header
	}
	require.NotNil(t, resp, "dial %s: %v", url, err)
	return resp.StatusCode, resp.Header
}

// pendingOf and historyOf read the store behind srv, to check what a
// refused message left there: nothing.
func pendingOf(t *testing.T, srv *hubtest.Server, user string) []store.Message {
	t.Helper()
	p, err := srv.Hub.Store().Pending(context.Background(), user)
	require.NoError(t, err)
	return p
}

func historyOf(t *testing.T, srv *hubtest.Server, conv string) []store.Message {
	t.Helper()
	page, err := srv.Hub.Store().History(context.Background(), conv, store.Query{Limit: 100})
	require.NoError(t, err)
	return page.Items
}

// expectError reads c's next frame, which must be an error frame with
// code answering cid, and returns it.
func expectError(t *testing.T, c *hubtest.Conn, code int, cid string) *wshub.Frame {
	t.Helper()
	e := c.Expect(t, wshub.CmdError)
	require.Equal(t, code, e.Code, "error frame %+v", e)
	require.Equal(t, cid, e.CID)
	return e
}

func TestHub_MessageQuotaRefusesWith429AndStoresNothing(t *testing.T) {
	// A burst of 3 and a refill too slow to matter within the test.
	srv := hubtest.New(t, wshub.Options{MessageRate: rate.Every(time.Hour), MessageBurst: 3, MaxRecipients: -1})
	ctx := context.Background()
	require.NoError(t, srv.Hub.Join(ctx, "alice", "r"))
	alice, bob := srv.Dial(t, "alice"), srv.Dial(t, "bob")
	dm := store.DirectConv("alice", "bob")

	alice.Send(t, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", CID: "c1", Content: "1"})
	first := alice.Expect(t, wshub.CmdReceipt)
	// A resend of a stored cid stores nothing and is not charged.
	alice.Send(t, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", CID: "c1", Content: "1"})
	assert.Equal(t, first.ID, alice.Expect(t, wshub.CmdReceipt).ID)
	alice.Send(t, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", CID: "c2", Content: "2"})
	alice.Expect(t, wshub.CmdReceipt)
	alice.Send(t, &wshub.Frame{Cmd: wshub.CmdRoom, DstID: "r", CID: "c3", Content: "3"})
	alice.Expect(t, wshub.CmdReceipt)

	// The burst is spent: direct and room messages are refused.
	alice.Send(t, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", CID: "c4", Content: "4"})
	e := expectError(t, alice, 429, "c4")
	assert.Contains(t, e.Reason, "quota exceeded")
	alice.Send(t, &wshub.Frame{Cmd: wshub.CmdRoom, DstID: "r", CID: "c5", Content: "5"})
	expectError(t, alice, 429, "c5")

	// Reconnecting does not refill the quota.
	alice.WS.Close()
	waitFor(t, func() bool { return !srv.Hub.IsOnline("alice") })
	alice = srv.Dial(t, "alice")
	alice.Send(t, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", CID: "c6", Content: "6"})
	expectError(t, alice, 429, "c6")

	// Nothing of the refused messages is stored or delivered.
	assert.Len(t, historyOf(t, srv, dm), 2)
	assert.Len(t, historyOf(t, srv, store.RoomConv("r")), 1)
	assert.Equal(t, "1", bob.Expect(t, wshub.CmdSingle).Content)
	assert.Equal(t, "2", bob.Expect(t, wshub.CmdSingle).Content)
	bob.ExpectNothing(t)
	waitFor(t, func() bool { return len(pendingOf(t, srv, "bob")) == 0 })

	// The quota is alice's: bob sends, and so does the application.
	bob.Send(t, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "alice", CID: "b1", Content: "hi"})
	bob.Expect(t, wshub.CmdReceipt)
	for i := range 10 {
		_, err := srv.Hub.SendToUser(ctx, "alice", "bob", &wshub.Frame{Content: fmt.Sprint("server ", i)})
		require.NoError(t, err, "SendToUser is not counted")
	}
}

func TestHub_MaxRecipientsRefusesNewRecipientsWith429(t *testing.T) {
	// Long enough that the sends below all fall into the first window.
	const window = 2 * time.Second
	srv := hubtest.New(t, wshub.Options{MaxRecipients: 3, RecipientWindow: window})
	alice := srv.Dial(t, "alice")
	send := func(to, cid string) {
		alice.Send(t, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: to, CID: cid, Content: "hi " + to})
	}
	start := time.Now()
	for i := range 3 {
		send(fmt.Sprint("u", i), fmt.Sprint("c", i))
		alice.Expect(t, wshub.CmdReceipt)
	}
	send("u3", "over")
	e := expectError(t, alice, 429, "over")
	assert.Contains(t, e.Reason, "quota exceeded")
	// Users already counted go on receiving.
	send("u1", "again")
	alice.Expect(t, wshub.CmdReceipt)

	assert.Empty(t, pendingOf(t, srv, "u3"), "nothing queued for the refused recipient")
	assert.Empty(t, historyOf(t, srv, store.DirectConv("alice", "u3")))
	assert.Len(t, pendingOf(t, srv, "u1"), 2)

	// A new window counts afresh.
	time.Sleep(time.Until(start.Add(window + 100*time.Millisecond)))
	send("u3", "later")
	alice.Expect(t, wshub.CmdReceipt)
	assert.Len(t, pendingOf(t, srv, "u3"), 1)
}

func TestHub_MaxRoomsRefusesJoinsWith429(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{MaxRooms: 3})
	ctx := context.Background()

	t.Run("online user, cmd 12", func(t *testing.T) {
		alice := srv.Dial(t, "alice")
		join := func(room, cid string) {
			alice.Send(t, &wshub.Frame{Cmd: wshub.CmdJoin, DstID: room, CID: cid})
		}
		for i := range 3 {
			join(fmt.Sprint("r", i), "")
			alice.Expect(t, wshub.CmdJoin)
		}
		join("r3", "j")
		e := expectError(t, alice, 429, "j")
		assert.Contains(t, e.Reason, "too many rooms")
		members, err := srv.Hub.Members(ctx, "r3")
		require.NoError(t, err)
		assert.Empty(t, members, "the refused join is not stored")

		join("r1", "again") // a room she is in already
		assert.Equal(t, "again", alice.Expect(t, wshub.CmdJoin).CID)
		alice.Send(t, &wshub.Frame{Cmd: wshub.CmdLeave, DstID: "r0"})
		join("r3", "after-leave")
		assert.Equal(t, "after-leave", alice.Expect(t, wshub.CmdJoin).CID)
		assert.ErrorIs(t, srv.Hub.Join(ctx, "alice", "r4"), wshub.ErrTooManyRooms, "Hub.Join counts the same rooms")
	})

	t.Run("offline user, Hub.Join", func(t *testing.T) {
		for i := range 3 {
			require.NoError(t, srv.Hub.Join(ctx, "bob", fmt.Sprint("r", i)))
		}
		err := srv.Hub.Join(ctx, "bob", "r3")
		require.ErrorIs(t, err, wshub.ErrTooManyRooms)
		require.NoError(t, srv.Hub.Join(ctx, "bob", "r2"), "joining again is allowed")
		rooms, err := srv.Hub.Store().Rooms(ctx, "bob")
		require.NoError(t, err)
		assert.ElementsMatch(t, []string{"r0", "r1", "r2"}, rooms)

		// Online with those rooms, bob meets the same bound.
		bob := srv.Dial(t, "bob")
		bob.Send(t, &wshub.Frame{Cmd: wshub.CmdJoin, DstID: "r3", CID: "j"})
		expectError(t, bob, 429, "j")
	})
}

func TestHub_IDsOfAtMost256Bytes(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	ctx := context.Background()
	longest := strings.Repeat("é", 128)    // 256 bytes, 128 characters
	over := strings.Repeat("é", 128) + "x" // 257 bytes
	require.Len(t, longest, wshub.MaxIDLen)

	t.Run("user id", func(t *testing.T) {
		c := srv.Dial(t, longest)
		assert.Equal(t, longest, c.Welcome.UserID)
		status, _ := dialStatus(t, websocket.DefaultDialer, srv.DialURL(over), nil)
		assert.Equal(t, http.StatusBadRequest, status, "a 257-byte user id is refused before the upgrade")
		status, _ = dialStatus(t, websocket.DefaultDialer, srv.DialURL(strings.Repeat("t", 40_000)), nil)
		assert.Equal(t, http.StatusBadRequest, status)
	})

	t.Run("dstid", func(t *testing.T) {
		c := srv.Dial(t, "alice")
		// Every command that takes a dstid, with the answer a valid one
		// gets (0: none).
		cmds := []struct {
			cmd    wshub.Cmd
			answer wshub.Cmd
		}{
			{wshub.CmdJoin, wshub.CmdJoin}, // first: 11 and 17 need the membership
			{wshub.CmdSingle, wshub.CmdReceipt},
			{wshub.CmdRoom, wshub.CmdReceipt},
			{wshub.CmdHistory, wshub.CmdHistory},
			{wshub.CmdRoomHistory, wshub.CmdRoomHistory},
			{wshub.CmdLeave, 0},
		}
		for _, tc := range cmds {
			t.Run(fmt.Sprint("cmd ", tc.cmd), func(t *testing.T) {
				c.Send(t, &wshub.Frame{Cmd: tc.cmd, DstID: over, CID: "over"})
				e := expectError(t, c, 400, "over")
				assert.Contains(t, e.Reason, "longer than 256 bytes")
				c.Send(t, &wshub.Frame{Cmd: tc.cmd, DstID: longest, CID: "longest"})
				if tc.answer == 0 {
					c.ExpectNothing(t)
					return
				}
				assert.Equal(t, "longest", c.Expect(t, tc.answer).CID)
			})
		}
		assert.Empty(t, historyOf(t, srv, store.DirectConv("alice", over)))
		assert.Empty(t, historyOf(t, srv, store.RoomConv(over)))
		rooms, err := srv.Hub.Store().Rooms(ctx, "alice")
		require.NoError(t, err)
		assert.NotContains(t, rooms, over)
	})

	t.Run("server-side API", func(t *testing.T) {
		f := &wshub.Frame{Content: "x"}
		_, err := srv.Hub.SendToUser(ctx, "system", over, f)
		assert.ErrorIs(t, err, wshub.ErrBadID)
		_, err = srv.Hub.SendToUser(ctx, over, "bob", f)
		assert.ErrorIs(t, err, wshub.ErrBadID)
		_, err = srv.Hub.SendToUser(ctx, "system", "bob", f)
		assert.NoError(t, err)
		_, err = srv.Hub.SendToRoom(ctx, "system", over, f)
		assert.ErrorIs(t, err, wshub.ErrBadID)
		_, err = srv.Hub.SendToRoom(ctx, over, "r", f)
		assert.ErrorIs(t, err, wshub.ErrBadID)
		assert.ErrorIs(t, srv.Hub.Join(ctx, "bob", over), wshub.ErrBadID)
		assert.ErrorIs(t, srv.Hub.Join(ctx, over, "r"), wshub.ErrBadID)
		assert.ErrorIs(t, srv.Hub.Join(ctx, "bob", "bad\xffutf8"), wshub.ErrBadID)
		assert.ErrorIs(t, srv.Hub.Leave(ctx, "bob", over), wshub.ErrBadID)
		_, err = srv.Hub.Members(ctx, over)
		assert.ErrorIs(t, err, wshub.ErrBadID)
		assert.NoError(t, srv.Hub.Join(ctx, longest, longest))
	})
}

func TestHub_MaxConnsPerIPRefusesWith429(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{MaxConnsPerIP: 2, UpgradeRate: -1})
	a := srv.Dial(t, "alice")
	srv.Dial(t, "bob")
	status, header := dialStatus(t, websocket.DefaultDialer, srv.DialURL("carol"), nil)
	assert.Equal(t, http.StatusTooManyRequests, status)
	secs, err := strconv.Atoi(header.Get("Retry-After"))
	require.NoError(t, err, "Retry-After %q", header.Get("Retry-After"))
	assert.Positive(t, secs)

	// A connection that ends gives its place back.
	a.WS.Close()
	waitFor(t, func() bool { return !srv.Hub.IsOnline("alice") })
	// Requests refused after they were counted (401 here) give their
	// place back at once.
	for range 5 {
		status, _ := dialStatus(t, websocket.DefaultDialer, srv.URL, nil)
		require.Equal(t, http.StatusUnauthorized, status)
	}
	c := srv.Dial(t, "carol")
	status, _ = dialStatus(t, websocket.DefaultDialer, srv.DialURL("dave"), nil)
	assert.Equal(t, http.StatusTooManyRequests, status, "bob and carol hold the two places")
	c.WS.Close()
	waitFor(t, func() bool { return !srv.Hub.IsOnline("carol") })
	srv.Dial(t, "dave")

	// Another address has a count of its own.
	other := fromAddress(t, "127.0.0.2")
	ws, _, err := other.Dial(srv.DialURL("erin"), nil)
	require.NoError(t, err, "a client at 127.0.0.2")
	ws.Close()
}

func TestHub_UpgradeRatePerIPRefusesWith429(t *testing.T) {
	// A burst of 3 and a refill of one an hour: the fourth upgrade waits.
	srv := hubtest.New(t, wshub.Options{UpgradeRate: rate.Every(time.Hour), UpgradeBurst: 3})
	for i := range 3 {
		c := srv.Dial(t, fmt.Sprint("u", i))
		c.WS.Close() // the rate counts upgrades, not open connections
	}
	status, header := dialStatus(t, websocket.DefaultDialer, srv.DialURL("u3"), nil)
	assert.Equal(t, http.StatusTooManyRequests, status)
	secs, err := strconv.Atoi(header.Get("Retry-After"))
	require.NoError(t, err, "Retry-After %q", header.Get("Retry-After"))
	assert.InDelta(t, 3600, secs, 60, "the time until a token is back")

	ws, _, err := fromAddress(t, "127.0.0.2").Dial(srv.DialURL("u4"), nil)
	require.NoError(t, err, "another address has a bucket of its own")
	ws.Close()
}

// fromAddress is a dialer whose connections come from ip, another
// loopback address (Linux routes all of 127.0.0.0/8 to lo); the test is
// skipped where it cannot bind it.
func fromAddress(t *testing.T, ip string) *websocket.Dialer {
	t.Helper()
	nd := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: hubtest.Timeout}
	probe, err := nd.Dial("tcp", "127.0.0.1:1")
	if err != nil && strings.Contains(err.Error(), "bind") {
		t.Skipf("cannot dial from %s: %v", ip, err)
	}
	if probe != nil {
		probe.Close()
	}
	return &websocket.Dialer{NetDial: nd.Dial, HandshakeTimeout: hubtest.Timeout}
}

func TestHub_SameOriginComparesSchemeHostAndPort(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	_, port, err := net.SplitHostPort(strings.TrimPrefix(srv.HTTP.URL, "http://"))
	require.NoError(t, err)
	other := strconv.Itoa(map[bool]int{true: 8081, false: 8080}[port == "8080"])
	tests := []struct {
		name   string
		host   string // the request's Host header; "" for the server's address
		origin string
		status int
	}{
		{"no Origin", "", "", http.StatusSwitchingProtocols},
		{"same origin", "", "http://127.0.0.1:" + port, http.StatusSwitchingProtocols},
		{"host case-blind", "localhost:" + port, "http://LOCALHOST:" + port, http.StatusSwitchingProtocols},
		{"https page, plain request", "", "https://127.0.0.1:" + port, http.StatusForbidden},
		{"other port", "", "http://127.0.0.1:" + other, http.StatusForbidden},
		{"Origin without the request's port", "", "http://127.0.0.1", http.StatusForbidden},
		{"other host", "", "http://evil.example:" + port, http.StatusForbidden},
		{"null", "", "null", http.StatusForbidden},
		{"not an origin", "", "127.0.0.1:" + port, http.StatusForbidden},
		{"default port in the Origin", "chat.example", "http://chat.example:80", http.StatusSwitchingProtocols},
		{"default port in the Host", "chat.example:80", "http://chat.example", http.StatusSwitchingProtocols},
		{"https default port against http", "chat.example", "http://chat.example:443", http.StatusForbidden},
		// What DNS rebinding looks like: the default cannot tell
		// (AllowedOrigins can, see below).
		{"rebinding page", "evil.example", "http://evil.example", http.StatusSwitchingProtocols},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.origin != "" {
				h.Set("Origin", tt.origin)
			}
			if tt.host != "" {
				h.Set("Host", tt.host)
			}
			status, _ := dialStatus(t, websocket.DefaultDialer, srv.DialURL("alice"), h)
			assert.Equal(t, tt.status, status)
		})
	}
}

func TestHub_SameOriginOverTLSWantsHTTPS(t *testing.T) {
	h, err := wshub.New(wshub.Options{Authenticate: wshub.DevAuthenticate})
	require.NoError(t, err)
	hs := httptest.NewTLSServer(h)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), hubtest.Timeout)
		defer cancel()
		assert.NoError(t, h.Shutdown(ctx))
		hs.Close()
	})
	d := &websocket.Dialer{TLSClientConfig: hs.Client().Transport.(*http.Transport).TLSClientConfig.Clone(), HandshakeTimeout: hubtest.Timeout}
	url := "wss" + strings.TrimPrefix(hs.URL, "https") + "/?token=alice"
	host := strings.TrimPrefix(hs.URL, "https://")
	for origin, want := range map[string]int{
		"https://" + host: http.StatusSwitchingProtocols,
		"http://" + host:  http.StatusForbidden,
	} {
		status, _ := dialStatus(t, d, url, http.Header{"Origin": {origin}})
		assert.Equal(t, want, status, "Origin %s", origin)
	}
	// The default port: Host without one is 443 over TLS.
	status, _ := dialStatus(t, d, url, http.Header{"Origin": {"https://chat.example"}, "Host": {"chat.example"}})
	assert.Equal(t, http.StatusSwitchingProtocols, status)
}

func TestHub_AllowedOrigins(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{AllowedOrigins: []string{
		"https://chat.example.com",
		"https://*.example.org",
		"http://localhost:8080",
	}})
	tests := []struct {
		origin string
		host   string
		status int
	}{
		{"", "", http.StatusSwitchingProtocols}, // not a browser
		{"https://chat.example.com", "", http.StatusSwitchingProtocols},
		{"https://Chat.Example.COM", "", http.StatusSwitchingProtocols},
		{"https://chat.example.com:443", "", http.StatusSwitchingProtocols},
		{"http://chat.example.com", "", http.StatusForbidden},        // scheme and port
		{"http://chat.example.com:443", "", http.StatusForbidden},    // scheme
		{"https://chat.example.com:8443", "", http.StatusForbidden},  // port
		{"https://www.example.com", "", http.StatusForbidden},        // host
		{"https://a.example.org", "", http.StatusSwitchingProtocols}, // wildcard
		{"https://a.b.example.org", "", http.StatusSwitchingProtocols},
		{"https://example.org", "", http.StatusForbidden}, // the wildcard needs a label
		{"https://evilexample.org", "", http.StatusForbidden},
		{"http://a.example.org", "", http.StatusForbidden},
		{"http://localhost:8080", "", http.StatusSwitchingProtocols},
		{"http://localhost", "", http.StatusForbidden},
		// The list replaces same origin: the hub's own address is not
		// allowed unless listed, and a rebinding page is refused.
		{srv.HTTP.URL, "", http.StatusForbidden},
		{"http://evil.example", "evil.example", http.StatusForbidden},
	}
	for _, tt := range tests {
		name := tt.origin
		if name == "" {
			name = "no Origin"
		}
		t.Run(name, func(t *testing.T) {
			h := http.Header{}
			if tt.origin != "" {
				h.Set("Origin", tt.origin)
			}
			if tt.host != "" {
				h.Set("Host", tt.host)
			}
			status, _ := dialStatus(t, websocket.DefaultDialer, srv.DialURL("alice"), h)
			assert.Equal(t, tt.status, status)
		})
	}

	t.Run("bad patterns", func(t *testing.T) {
		for _, p := range []string{"chat.example.com", "ftp://chat.example.com", "https://a.*.example.com",
			"https://*", "https://chat.example.com/path", "https://chat.example.com:https", "*"} {
			_, err := wshub.New(wshub.Options{Authenticate: wshub.DevAuthenticate, AllowedOrigins: []string{p}})
			assert.ErrorIs(t, err, wshub.ErrBadOption, "pattern %q", p)
		}
		_, err := wshub.New(wshub.Options{Authenticate: wshub.DevAuthenticate, AllowedOrigins: []string{"https://a.example"},
			CheckOrigin: func(*http.Request) bool { return true }})
		assert.ErrorIs(t, err, wshub.ErrBadOption, "AllowedOrigins with CheckOrigin")
	})
}
