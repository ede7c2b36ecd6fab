package demo_test

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

// chromium is Debian's browser; tests never download one.
const chromium = "/usr/bin/chromium"

// waitTimeout bounds every wait for the page: generous, it only proves
// that nothing stalls.
const waitTimeout = 10 * time.Second

// browser is the Chromium shared by the tests of this package, started by
// the first test that needs it and stopped by TestMain; each test gets its
// own tab (and, through its own server port, its own origin and storage).
var browser struct {
	once   sync.Once
	ctx    context.Context // browser context; tabs are made from it
	cancel context.CancelFunc
	err    error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if browser.cancel != nil {
		browser.cancel()
	}
	os.Exit(code)
}

// newBrowser returns the context of a new tab in the shared headless
// Chromium. Without Chromium the test is skipped, except under CI=true
// where it fails.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromium); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("browser test needs %s under CI: %v", chromium, err)
		}
		t.Skipf("no %s: %v", chromium, err)
	}
	browser.once.Do(func() {
		dir, err := os.MkdirTemp("", "wshub-chromium-")
		if err != nil {
			browser.err = err
			return
		}
		opts := []chromedp.ExecAllocatorOption{
			chromedp.ExecPath(chromium),
			chromedp.Headless,
			chromedp.NoSandbox,
			chromedp.DisableGPU,
			chromedp.NoFirstRun,
			chromedp.NoDefaultBrowserCheck,
			chromedp.Flag("disable-quic", true),
			chromedp.Flag("disable-background-networking", true),
			chromedp.Flag("disable-component-update", true),
			chromedp.Flag("disable-sync", true),
			chromedp.Flag("disable-dev-shm-usage", true),
			chromedp.Flag("disable-background-timer-throttling", true),
			chromedp.Flag("disable-backgrounding-occluded-windows", true),
			chromedp.Flag("disable-renderer-backgrounding", true),
			chromedp.UserDataDir(dir),
			chromedp.WindowSize(1200, 800),
		}
		actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
		ctx, cancelCtx := chromedp.NewContext(actx)
		browser.ctx = ctx
		browser.cancel = func() {
			cancelCtx()
			cancelAlloc()
			_ = os.RemoveAll(dir)
		}
		browser.err = chromedp.Do(ctx)
	})
	require.NoError(t, browser.err, "start chromium")
	tab, cancel := chromedp.NewContext(browser.ctx)
	t.Cleanup(cancel)
	require.NoError(t, chromedp.Do(tab), "open a tab")
	return tab
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
