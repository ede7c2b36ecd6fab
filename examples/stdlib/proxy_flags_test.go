package main_test

import (
	"net/http"
	"path/filepath"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// -allowed-origins replaces same origin; -trusted-proxies makes the hub
// believe a proxy's forwarded scheme and host.
func TestExample_OriginAndProxyFlags(t *testing.T) {
	bin := buildExample(t)
	status := func(addr string, h http.Header) int {
		ws, resp, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws?token=alice", h)
		if err == nil {
			ws.Close()
			return http.StatusSwitchingProtocols
		}
		require.NotNil(t, resp, "%v", err)
		return resp.StatusCode
	}

	e := startExample(t, bin, "-addr", "127.0.0.1:0", "-store", "mem", "-db", filepath.Join(t.TempDir(), "x.db"),
		"-allowed-origins", "https://chat.example, https://*.example.org")
	assert.Equal(t, 101, status(e.addr, http.Header{"Origin": {"https://chat.example"}}))
	assert.Equal(t, 101, status(e.addr, http.Header{"Origin": {"https://a.example.org"}}))
	assert.Equal(t, 403, status(e.addr, http.Header{"Origin": {"http://" + e.addr}}), "the allow-list replaces same origin")

	p := startExample(t, bin, "-addr", "127.0.0.1:0", "-store", "mem", "-trusted-proxies", "127.0.0.1")
	fwd := http.Header{"Origin": {"https://chat.example"}, "X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"chat.example"}}
	assert.Equal(t, 101, status(p.addr, fwd), "a trusted proxy's forwarded scheme and host are the request's")
	assert.Equal(t, 403, status(e.addr, http.Header{"Origin": {"https://elsewhere.example"}, "X-Forwarded-Host": {"elsewhere.example"}}),
		"without -trusted-proxies the headers count for nothing")
}
