package jsclient_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub/client/js"
	"github.com/wshub/wshub/internal/browsertest"
)

// waitTimeout bounds every wait for the page: generous, it only proves
// that nothing stalls.
const waitTimeout = 10 * time.Second

// browser is the Chromium shared by the tests of this package; each test
// gets its own tab (and, through its own server port, its own origin and
// storage).
var browser browsertest.Browser

func TestMain(m *testing.M) {
	code := m.Run()
	browser.Close()
	os.Exit(code)
}

// newBrowser returns the context of a new tab in the shared headless
// Chromium (skipped without it, except under CI=true).
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	return browser.Tab(t)
}

// testPage is the page the tests load: it imports wshub.js and offers
// track(client), which records every event of a client in window.log.
const testPage = `<!doctype html>
<meta charset="utf-8"><title>wshub.js test</title>
<script type="module">
import * as M from '/wshub.js';
window.M = M;
window.log = [];
const plain = (d) => d instanceof Error ? {error: String(d), code: d.code} : d;
window.track = (c) => {
  for (const t of ['state', 'open', 'welcome', 'close', 'reconnecting', 'message', 'receipt', 'joined', 'outbox', 'error']) {
    c.on(t, (d) => window.log.push({t, d: JSON.parse(JSON.stringify(plain(d) ?? null))}));
  }
  return c;
};
window.count = (t) => window.log.filter((e) => e.t === t).length;
window.ready = true;
</script>`

// newPageServer serves the test page at /, wshub.js at /wshub.js and ws
// (when not nil) at /ws.
func newPageServer(t *testing.T, ws http.Handler) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/wshub.js", js.Handler())
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(testPage))
	})
	if ws != nil {
		mux.Handle("/ws", ws)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// open navigates tab to url and waits for the test page's module.
func open(t *testing.T, tab context.Context, url string) {
	t.Helper()
	require.NoError(t, chromedp.Do(tab,
		chromedp.Navigate(url),
		chromedp.Poll[chromedp.Void](`window.ready === true`, chromedp.WithPollingTimeout(waitTimeout)),
	))
}

// eval evaluates expr in the page, awaiting a promise (for at most
// waitTimeout: a promise that never settles fails the test), and decodes
// the result into out (which may be nil).
func eval(t *testing.T, tab context.Context, expr string, out any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, waitTimeout)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[json.RawMessage](expr, chromedp.EvalAwaitPromise))
	require.NoError(t, err, "evaluate %s", expr)
	if out != nil {
		require.NoError(t, json.Unmarshal(raw, out), "decode %s", raw)
	}
}

// waitFor polls the JavaScript expression cond until it is truthy; on
// timeout it fails the test and shows diag (another expression).
func waitFor(t *testing.T, tab context.Context, cond, diag string) {
	t.Helper()
	_, err := chromedp.Run(tab, chromedp.Poll[chromedp.Void](cond,
		chromedp.WithPollingTimeout(waitTimeout), chromedp.WithPollingInterval(20*time.Millisecond)))
	if err != nil {
		got, _ := chromedp.Run(tab, chromedp.Evaluate[json.RawMessage](diag))
		t.Fatalf("waiting for %s: %v; %s = %s", cond, err, diag, got)
	}
}
