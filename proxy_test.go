package wshub_test

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
)

// proxied serves a hub behind an httputil.ReverseProxy that rewrites Host
// to the hub's address (as nginx's default proxy_set_header Host
// $proxy_host does) and sets X-Forwarded-For, -Host and -Proto. The proxy
// connects to the hub from 127.0.0.2, so the hub can tell it from clients,
// which connect from 127.0.0.1. It returns the hub, the proxy's address,
// and the hub's own address; connected reports each new Node.
func proxied(t *testing.T, opts wshub.Options) (hub *wshub.Hub, front, back string, connected <-chan *wshub.Node) {
	t.Helper()
	nodes := make(chan *wshub.Node, 16)
	opts.Authenticate = wshub.DevAuthenticate
	opts.OnConnect = func(n *wshub.Node) { nodes <- n }
	hub, err := wshub.New(opts)
	require.NoError(t, err)
	hubSrv := httptest.NewServer(hub)
	target, err := url.Parse(hubSrv.URL)
	require.NoError(t, err)
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.SetXForwarded()
			r.Out.Host = target.Host // the Host rewritten to the upstream's
		},
		Transport: &http.Transport{DialContext: dialer.DialContext},
	}
	proxySrv := httptest.NewServer(rp)
	t.Cleanup(func() {
		proxySrv.Close()
		require.NoError(t, hub.Shutdown(context.Background()))
		hubSrv.Close()
	})
	return hub, strings.TrimPrefix(proxySrv.URL, "http://"), strings.TrimPrefix(hubSrv.URL, "http://"), nodes
}

// dialVia opens a WebSocket to addr as a browser page served by origin
// would, with extra headers.
func dialVia(addr, origin, user string, extra http.Header) (*websocket.Conn, *http.Response, error) {
	h := http.Header{"Origin": {origin}}
	for k, v := range extra {
		h[k] = v
	}
	return websocket.DefaultDialer.Dial("ws://"+addr+"/?token="+user, h)
}

func TestProxy_HostRewrittenRefusedAndLoggedWithoutTrust(t *testing.T) {
	logs := &logRecorder{}
	_, front, _, _ := proxied(t, wshub.Options{Logger: slog.New(logs)})
	// The page is served by the proxy's address; the hub sees its own
	// address in Host: not the same origin.
	_, resp, err := dialVia(front, "http://"+front, "alice", nil)
	require.Error(t, err)
	require.NotNil(t, resp)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	assert.True(t, logs.has("upgrade refused", "status=403", "origin not allowed", "origin=http://"+front),
		"the refusal is logged with the origin and host an operator needs to see")
}

func TestProxy_TrustedProxyForwardsOriginAndAddress(t *testing.T) {
	hub, front, back, connected := proxied(t, wshub.Options{TrustedProxies: []string{"127.0.0.2"}})
	ws, _, err := dialVia(front, "http://"+front, "alice", nil)
	require.NoError(t, err, "the trusted proxy's X-Forwarded-Host is the request's host")
	defer ws.Close()
	n := <-connected
	assert.Equal(t, "127.0.0.1", n.RemoteAddr(), "the client's address from the proxy's X-Forwarded-For, not the proxy's 127.0.0.2")

	// A client that forges X-Forwarded-For through the proxy: the proxy
	// appends what it saw, and the hub takes the rightmost untrusted entry.
	ws2, _, err := dialVia(front, "http://"+front, "bob", http.Header{"X-Forwarded-For": {"198.51.100.9"}})
	require.NoError(t, err)
	defer ws2.Close()
	assert.Equal(t, "127.0.0.1", (<-connected).RemoteAddr())

	// A client that connects to the hub directly is no trusted proxy: its
	// own forwarding headers are ignored, for its address and its origin.
	ws3, _, err := dialVia(back, "http://"+back, "carol", http.Header{"X-Forwarded-For": {"198.51.100.9"}, "X-Forwarded-Host": {"elsewhere.example"}})
	require.NoError(t, err)
	defer ws3.Close()
	n3 := <-connected
	host, _, err := net.SplitHostPort(n3.RemoteAddr())
	require.NoError(t, err, "a direct client's address is host:port, got %q", n3.RemoteAddr())
	assert.Equal(t, "127.0.0.1", host)
	_, resp, err := dialVia(back, "http://elsewhere.example", "dave", http.Header{"X-Forwarded-Host": {"elsewhere.example"}})
	require.Error(t, err, "a forwarded host from an untrusted peer does not make an origin the same")
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	_ = hub
}

func TestProxy_ForwardedHeaderRFC7239(t *testing.T) {
	_, _, back, connected := proxied(t, wshub.Options{TrustedProxies: []string{"127.0.0.0/8"}})
	// Every loopback address is trusted here, so a direct client counts as
	// a proxy: Forwarded's rightmost untrusted for= is the client.
	ws, _, err := dialVia(back, "https://chat.example", "alice", http.Header{
		"Forwarded": {`for="[2001:db8::7]:4711";proto=http, for=192.0.2.60;proto=https;host=chat.example`},
	})
	require.NoError(t, err, "proto and host from the nearest proxy's Forwarded element")
	defer ws.Close()
	assert.Equal(t, "192.0.2.60", (<-connected).RemoteAddr())
}

func TestProxy_BadTrustedProxiesRefusedByNew(t *testing.T) {
	_, err := wshub.New(wshub.Options{Authenticate: wshub.DevAuthenticate, TrustedProxies: []string{"10.0.0.0/8", "nginx.internal"}})
	require.ErrorIs(t, err, wshub.ErrBadOption)
}
