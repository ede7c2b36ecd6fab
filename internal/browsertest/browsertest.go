// Package browsertest runs Debian's headless Chromium for browser tests.
//
// Tests never download a browser: without /usr/bin/chromium a test is
// skipped, except under CI=true, where it fails.
package browsertest

import (
	"context"
	"os"
	"sync"
	"testing"

	"github.com/chromedp/chromedp"
)

// Chromium is Debian's browser.
const Chromium = "/usr/bin/chromium"

// Browser is one headless Chromium shared by a package's tests, started
// by the first Tab and stopped by Close (call it from TestMain). The zero
// value is ready to use.
type Browser struct {
	once   sync.Once
	ctx    context.Context // browser context; tabs are made from it; set by once
	cancel context.CancelFunc
	err    error
}

// Tab returns the context of a new tab, closed when the test ends.
func (b *Browser) Tab(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(Chromium); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("browser test needs %s under CI: %v", Chromium, err)
		}
		t.Skipf("no %s: %v", Chromium, err)
	}
	b.once.Do(b.start)
	if b.err != nil {
		t.Fatalf("start chromium: %v", b.err)
	}
	tab, cancel := chromedp.NewContext(b.ctx)
	t.Cleanup(cancel)
	if err := chromedp.Do(tab); err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	return tab
}

// start launches Chromium with the flags this machine needs: as root no
// sandbox, and no background networking (the network is closed).
func (b *Browser) start() {
	dir, err := os.MkdirTemp("", "wshub-chromium-")
	if err != nil {
		b.err = err
		return
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(Chromium),
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
	b.ctx = ctx
	b.cancel = func() {
		cancelCtx()
		cancelAlloc()
		_ = os.RemoveAll(dir)
	}
	b.err = chromedp.Do(ctx)
}

// Close stops Chromium if it was started.
func (b *Browser) Close() {
	if b.cancel != nil {
		b.cancel()
	}
}
