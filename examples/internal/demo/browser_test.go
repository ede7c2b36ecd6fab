package demo_test

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
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

// convList returns the conversation list of u's page: each entry's key
// ('u:bob', 'r:lobby'), unread badge ("" when none) and, for a direct
// conversation, whether the peer's online dot is on.
func (u *user) convList() []convEntry {
	u.t.Helper()
	var list []convEntry
	eval(u.t, u.tab, `[...document.querySelectorAll('#convs li')].map((li) => ({
		conv: li.dataset.conv,
		badge: li.querySelector('.badge')?.textContent || '',
		online: !!li.querySelector('.presence.online'),
	}))`, &list)
	return list
}

type convEntry struct {
	Conv   string `json:"conv"`
	Badge  string `json:"badge"`
	Online bool   `json:"online"`
}

// TestDemo_ConversationsReadsTypingPresence: alice has a direct
// conversation with bob with two unread messages and a room with two. Her
// page lists both with their unread badges, and so does a second browser
// of hers with no local state (another origin: its own storage). Reading
// on one clears the badge on the other. bob signs in: his online dot comes
// on in alice's list. alice writes; bob opens the conversation: alice's
// page shows the seen tick on her message. bob types: alice's page shows
// "typing…", which goes away a few seconds after he stops. bob's page
// closes: his dot goes off. With WSHUB_SCREENSHOT=path, alice's page is
// captured while bob types (docs/demo.png).
func TestDemo_ConversationsReadsTypingPresence(t *testing.T) {
	s := newServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for _, u := range []string{"alice", "bob", "carol"} {
		require.NoError(t, s.hub.Join(ctx, u, "lobby"))
	}
	for _, m := range []struct{ from, to, text string }{
		{"bob", "alice", "Morning! The release build is green."},
		{"bob", "alice", "Can you write the release notes?"},
		{"carol", "#lobby", "Standup moves to 10:30 today"},
		{"carol", "#lobby", "Room B, not room A"},
	} {
		var err error
		if room, ok := strings.CutPrefix(m.to, "#"); ok {
			_, err = s.hub.SendToRoom(ctx, m.from, room, &wshub.Frame{Content: m.text})
		} else {
			_, err = s.hub.SendToUser(ctx, m.from, m.to, &wshub.Frame{Content: m.text})
		}
		require.NoError(t, err)
		// The next message in a later millisecond: the list's order (most
		// recent first) is by time.
		for t0 := time.Now().UnixMilli(); time.Now().UnixMilli() <= t0; {
			time.Sleep(time.Millisecond)
		}
	}
	want := []convEntry{{Conv: "r:lobby", Badge: "2"}, {Conv: "u:bob", Badge: "2"}}

	alice := signIn(t, s, "alice")
	alice.waitFor(`document.querySelectorAll('#convs .badge').length === 2`)
	assert.Equal(t, want, alice.convList(), "the hub's list, most recent first, bob offline")

	// A second browser of alice: another origin, so no local state.
	alice2 := &user{t: t, name: "alice", tab: newBrowser(t)}
	open(t, alice2.tab, "http://localhost:"+s.addr[strings.LastIndex(s.addr, ":")+1:]+"/?user=alice&"+fast)
	alice2.waitState("open")
	alice2.waitFor(`document.querySelectorAll('#convs .badge').length === 2`)
	assert.Equal(t, want, alice2.convList(), "the same list on a fresh device")

	// alice reads bob's messages on the first: the badge goes on both.
	alice.open("u:bob")
	alice.waitShown("Can you write the release notes?")
	alice.waitFor(`document.querySelector('[data-conv="u:bob"] .badge') === null`)
	alice2.waitFor(`document.querySelector('[data-conv="u:bob"] .badge') === null`)
	alice2.waitFor(`document.querySelector('[data-conv="r:lobby"] .badge')?.textContent === '2'`)

	// bob comes online.
	bob := signIn(t, s, "bob")
	alice.waitFor(`document.querySelector('[data-conv="u:bob"] .presence.online') !== null`)
	alice2.waitFor(`document.querySelector('[data-conv="u:bob"] .presence.online') !== null`)
	alice.waitFor(`document.querySelector('#chat-sub').textContent === 'Online'`)

	// alice answers; bob has not read it yet: a single tick.
	alice.say("Sure, on it. Draft in ten minutes.")
	alice.waitSent("Sure, on it. Draft in ten minutes.")
	var seen int
	eval(t, alice.tab, `document.querySelectorAll('#messages .msg.seen').length`, &seen)
	assert.Zero(t, seen, "not seen before bob reads")
	bob.waitFor(`document.querySelector('[data-conv="u:alice"] .badge')?.textContent === '1'`)

	// bob opens the conversation: alice sees the seen tick on her message.
	bob.open("u:alice")
	bob.waitShown("Sure, on it. Draft in ten minutes.")
	alice.waitFor(`[...document.querySelectorAll('#messages .msg.mine.seen .msg-text')].map((e) => e.textContent).join() === 'Sure, on it. Draft in ten minutes.'`)
	var meta string
	eval(t, alice.tab, `document.querySelector('#messages .msg.mine.seen .meta').textContent`, &meta)
	assert.Contains(t, meta, "Seen")

	// bob types (without sending): alice sees "typing…", in the open
	// conversation and in the list. alice's page records when typing
	// events came and when the indicator went away.
	eval(t, alice.tab, `window.typingAt = [];
		wshubDemo.client.on('typing', () => typingAt.push(Date.now()));
		window.typingShown = false;
		new MutationObserver(() => {
			const hidden = document.querySelector('#typing').hidden;
			if (!hidden) typingShown = true;
			else if (typingShown && !window.typingHiddenAt) window.typingHiddenAt = Date.now();
		}).observe(document.querySelector('#typing'), {attributes: true}), true`, nil)
	bob.do(chromedp.SendKeys(chromedp.ID("composer-input"), "Thanks! I will"))
	alice.waitFor(`!document.querySelector('#typing').hidden && document.querySelector('#typing').textContent === 'typing…'`)
	alice.waitFor(`document.querySelector('[data-conv="u:bob"] .c-last.typing')?.textContent === 'typing…'`)
	if path := os.Getenv("WSHUB_SCREENSHOT"); path != "" {
		png, err := chromedp.Run(alice.tab, chromedp.CaptureScreenshot())
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(path, png, 0o644))
		t.Logf("screenshot written to %s", path)
	}
	// It goes away a few seconds after the last typing event.
	alice.waitFor(`document.querySelector('#typing').hidden && document.querySelector('[data-conv="u:bob"] .c-last.typing') === null`)
	var after int64
	eval(t, alice.tab, `typingHiddenAt - Math.max(...typingAt)`, &after)
	assert.GreaterOrEqual(t, after, int64(3000), "the indicator stays ~4 s after the last typing event")

	// bob's page closes: his dot goes off.
	require.NoError(t, chromedp.Cancel(bob.tab), "close bob's tab")
	alice.waitFor(`document.querySelector('[data-conv="u:bob"]').dataset.online === 'false'`)
	alice.waitFor(`document.querySelector('#chat-sub').textContent === 'Offline'`)
	alice2.waitFor(`document.querySelector('[data-conv="u:bob"] .presence.online') === null`)
}
