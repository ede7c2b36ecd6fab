package demo_test

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

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

// open navigates tab to url and waits for the demo to have a client.
func open(t *testing.T, tab context.Context, url string) {
	t.Helper()
	require.NoError(t, chromedp.Do(tab, chromedp.Navigate(url)))
	waitFor(t, tab, `window.wshubDemo !== undefined`, `document.body.innerText`)
}

// eval evaluates expr in the page, awaiting a promise, and decodes the
// result into out (which may be nil).
func eval(t *testing.T, tab context.Context, expr string, out any) {
	t.Helper()
	raw, err := chromedp.Run(tab, chromedp.Evaluate[json.RawMessage](expr, chromedp.EvalAwaitPromise))
	require.NoError(t, err, "evaluate %s", expr)
	if out != nil {
		require.NoError(t, json.Unmarshal(raw, out), "decode %s", raw)
	}
}

// waitFor polls the JavaScript expression cond until it is truthy; on
// timeout it fails the test and shows diag (another expression).
func waitFor(t *testing.T, tab context.Context, cond, diag string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	var err error
	for {
		_, err = chromedp.Run(tab, chromedp.Poll[chromedp.Void](cond,
			chromedp.WithPollingTimeout(time.Until(deadline)), chromedp.WithPollingInterval(20*time.Millisecond)))
		// A navigation destroys the page's context under the poll: poll
		// again in the new page.
		if err == nil || time.Now().After(deadline) || !strings.Contains(err.Error(), "context") {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		got, _ := chromedp.Run(tab, chromedp.Evaluate[json.RawMessage](diag))
		t.Fatalf("waiting for %s: %v; %s = %s", cond, err, diag, got)
	}
}
