package storetest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub/store"
	"github.com/wshub/wshub/store/memstore"
	"github.com/wshub/wshub/store/storetest"
)

// handle is one open "connection" to a memstore kept across Close, which
// makes memstore look durable to RunDurable: Close closes the handle, not
// the data.
type handle struct {
	inner  store.Store
	closed atomic.Bool
}

func (h *handle) check(ctx context.Context) error {
	if h.closed.Load() {
		return store.ErrClosed
	}
	return ctx.Err()
}

func (h *handle) Append(ctx context.Context, req store.AppendRequest) (store.Message, bool, error) {
	if err := h.check(ctx); err != nil {
		return store.Message{}, false, err
	}
	return h.inner.Append(ctx, req)
}

func (h *handle) History(ctx context.Context, conv string, q store.Query) (store.Page, error) {
	if err := h.check(ctx); err != nil {
		return store.Page{}, err
	}
	return h.inner.History(ctx, conv, q)
}

func (h *handle) Pending(ctx context.Context, user string) ([]store.Message, error) {
	if err := h.check(ctx); err != nil {
		return nil, err
	}
	return h.inner.Pending(ctx, user)
}

func (h *handle) Ack(ctx context.Context, user string, ids ...string) error {
	if err := h.check(ctx); err != nil {
		return err
	}
	return h.inner.Ack(ctx, user, ids...)
}

func (h *handle) Join(ctx context.Context, room, user string) error {
	if err := h.check(ctx); err != nil {
		return err
	}
	return h.inner.Join(ctx, room, user)
}

func (h *handle) Leave(ctx context.Context, room, user string) error {
	if err := h.check(ctx); err != nil {
		return err
	}
	return h.inner.Leave(ctx, room, user)
}

func (h *handle) Rooms(ctx context.Context, user string) ([]string, error) {
	if err := h.check(ctx); err != nil {
		return nil, err
	}
	return h.inner.Rooms(ctx, user)
}

func (h *handle) Members(ctx context.Context, room string) ([]string, error) {
	if err := h.check(ctx); err != nil {
		return nil, err
	}
	return h.inner.Members(ctx, room)
}

func (h *handle) Conversations(ctx context.Context, user string, limit int) ([]store.ConvInfo, bool, error) {
	if err := h.check(ctx); err != nil {
		return nil, false, err
	}
	return h.inner.Conversations(ctx, user, limit)
}

func (h *handle) MarkRead(ctx context.Context, user, conv string, seq uint64) (uint64, bool, error) {
	if err := h.check(ctx); err != nil {
		return 0, false, err
	}
	return h.inner.MarkRead(ctx, user, conv, seq)
}

func (h *handle) Close() error {
	h.closed.Store(true)
	return nil
}

// keeper opens handles on one memstore per dir.
type keeper struct {
	mu     sync.Mutex
	stores map[string]*memstore.Store // guarded by mu
	fresh  bool                       // forget everything on reopen (a broken store)
}

func (k *keeper) open(_ *testing.T, dir string) store.Store {
	k.mu.Lock()
	defer k.mu.Unlock()
	s := k.stores[dir]
	if s == nil || k.fresh {
		s = memstore.New(memstore.Options{})
		k.stores[dir] = s
	}
	return &handle{inner: s}
}

func TestRunDurable_KeptStorePasses(t *testing.T) {
	k := &keeper{stores: make(map[string]*memstore.Store)}
	storetest.RunDurable(t, k.open)
}

func TestRun_HandlePasses(t *testing.T) {
	storetest.Run(t, func(*testing.T) store.Store { return &handle{inner: memstore.New(memstore.Options{})} })
}

// mutant is a store with one deliberate bug, which the suite must catch.
type mutant struct {
	store.Store
	bug    string
	bounds storetest.Bounds // under RunPendingBounds
	calls  atomic.Int64     // History calls, for "epoch-per-call"

	mu    sync.Mutex
	marks map[[2]string]uint64 // "markers-backwards": the last MarkRead per (user, conv); guarded by mu
}

func (m *mutant) Conversations(ctx context.Context, user string, limit int) ([]store.ConvInfo, bool, error) {
	items, more, err := m.Store.Conversations(ctx, user, limit)
	if m.bug == "markers-backwards" {
		m.mu.Lock()
		for i := range items {
			if v, ok := m.marks[[2]string{user, items[i].Conv}]; ok {
				items[i].Read = v
			}
		}
		m.mu.Unlock()
	}
	return items, more, err
}

// MarkRead, with "markers-backwards", stores any seq up to the latest, as
// a store that forgot the forward-only rule would.
func (m *mutant) MarkRead(ctx context.Context, user, conv string, seq uint64) (uint64, bool, error) {
	if m.bug != "markers-backwards" {
		return m.Store.MarkRead(ctx, user, conv, seq)
	}
	p, err := m.Store.History(ctx, conv, store.Query{Limit: 1})
	if err != nil {
		return 0, false, err
	}
	seq = min(seq, p.Last)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.marks == nil {
		m.marks = make(map[[2]string]uint64)
	}
	m.marks[[2]string{user, conv}] = seq
	return seq, seq > 0, nil
}

func (m *mutant) Append(ctx context.Context, req store.AppendRequest) (store.Message, bool, error) {
	switch m.bug {
	case "trims-pending":
		// The old way: take everything, drop the oldest past MaxPending
		// (the inner store is unbounded).
		msg, dup, err := m.Store.Append(ctx, req)
		if err != nil || dup || m.bounds.MaxPending <= 0 {
			return msg, dup, err
		}
		for _, u := range req.Pending {
			q, err := m.Store.Pending(ctx, u)
			if err != nil {
				return msg, dup, err
			}
			for ; len(q) > m.bounds.MaxPending; q = q[1:] {
				if err := m.Store.Ack(ctx, u, q[0].ID); err != nil {
					return msg, dup, err
				}
			}
		}
		return msg, dup, nil
	case "history-for-refused":
		// Refuses the queue, but writes the history (and cid) first.
		msg, dup, err := m.Store.Append(ctx, req)
		if errors.Is(err, store.ErrPendingFull) {
			h := req
			h.Pending = nil
			_, _, _ = m.Store.Append(ctx, h)
		}
		return msg, dup, err
	case "seq-off-by-one":
		msg, dup, err := m.Store.Append(ctx, req)
		msg.Seq++
		return msg, dup, err
	case "no-dedup":
		req.CID = ""
	case "first-pending-only":
		if len(req.Pending) > 1 {
			req.Pending = req.Pending[:1]
		}
	case "ignore-ctx":
		ctx = context.Background()
	}
	return m.Store.Append(ctx, req)
}

func (m *mutant) History(ctx context.Context, conv string, q store.Query) (store.Page, error) {
	p, err := m.Store.History(ctx, conv, q)
	switch m.bug {
	case "more-always-false":
		p.More = false
	case "epoch-per-call":
		p.Epoch = fmt.Sprintf("%s-%d", p.Epoch, m.calls.Add(1))
	case "default-limit-ignored":
		if q.Limit <= 0 {
			p2, err := m.Store.History(ctx, conv, store.Query{Since: q.Since, Before: q.Before, Limit: 1 << 20})
			return p2, err
		}
	}
	return p, err
}

func (m *mutant) Pending(ctx context.Context, user string) ([]store.Message, error) {
	q, err := m.Store.Pending(ctx, user)
	if m.bug == "pending-newest-first" {
		slices.Reverse(q)
	}
	return q, err
}

func (m *mutant) Ack(ctx context.Context, user string, ids ...string) error {
	if m.bug == "ack-first-id-only" && len(ids) > 1 {
		ids = ids[:1]
	}
	return m.Store.Ack(ctx, user, ids...)
}

func (m *mutant) Members(ctx context.Context, room string) ([]string, error) {
	us, err := m.Store.Members(ctx, room)
	if m.bug == "members-after-leave" && err == nil && len(us) == 0 {
		return []string{"ghost"}, nil
	}
	return us, err
}

func (m *mutant) Close() error {
	if m.bug == "close-noop" {
		return nil
	}
	return m.Store.Close()
}

// TestMutantHelper runs the suite against the mutant named by
// $STORETEST_MUTANT, in the subprocess that TestRun_CatchesBrokenStores
// starts; run directly it has nothing to do.
func TestMutantHelper(t *testing.T) {
	bug := os.Getenv("STORETEST_MUTANT")
	if bug == "" {
		return
	}
	if bug == "forget-on-reopen" {
		k := &keeper{stores: make(map[string]*memstore.Store), fresh: true}
		storetest.RunDurable(t, k.open)
		return
	}
	storetest.Run(t, func(*testing.T) store.Store {
		return &mutant{Store: memstore.New(memstore.Options{}), bug: bug}
	})
	storetest.RunPendingBounds(t, func(_ *testing.T, b storetest.Bounds) store.Store {
		opts := memstore.Options{MaxPending: b.MaxPending, MaxPendingPerSender: b.MaxPendingPerSender}
		if bug == "trims-pending" {
			opts = memstore.Options{MaxPending: -1, MaxPendingPerSender: -1}
		}
		return &mutant{Store: memstore.New(opts), bug: bug, bounds: b}
	})
}

// TestRun_CatchesBrokenStores runs the suite against stores with one bug
// each and checks that it fails, in the subtest that owns the promise.
func TestRun_CatchesBrokenStores(t *testing.T) {
	cases := []struct {
		bug     string
		group   string // the group of subtests to run
		failing string // a subtest that must fail
	}{
		{"seq-off-by-one", "Seq", "Seq/StartsAtOneAndIncrementsByOne"},
		{"no-dedup", "CID", "CID/DuplicateReturnsFirstAndWritesNothing"},
		{"first-pending-only", "Append", "Append/EnqueuesPendingForListedUsers"},
		{"ignore-ctx", "Context", "Context/CanceledBeforeCall"},
		{"more-always-false", "History", "History/Windows"},
		{"epoch-per-call", "History", "History/EpochIsStable"},
		{"default-limit-ignored", "History", "History/DefaultLimit"},
		{"pending-newest-first", "Pending", "Pending/OrderIsEnqueueOrder"},
		{"ack-first-id-only", "Pending", "Pending/AckRemovesOnlyGivenIDs"},
		{"members-after-leave", "Membership", "Membership/JoinTwiceIsHarmless"},
		{"close-noop", "Close", "Close/MethodsReturnErrClosed"},
		{"forget-on-reopen", "HistoryAndSeq", "HistoryAndSeq"},
		{"trims-pending", "PendingBounds", "PendingBounds/FloodDoesNotEraseOthers"},
		{"history-for-refused", "PendingBounds", "PendingBounds/RefusedStoresNothing"},
		{"markers-backwards", "Inbox", "Inbox/MarkersForwardOnlyAndCapped"},
	}
	for _, tc := range cases {
		t.Run(tc.bug, func(t *testing.T) {
			t.Parallel()
			cmd := exec.CommandContext(t.Context(), os.Args[0],
				"-test.run=^TestMutantHelper$/^"+tc.group+"$", "-test.count=1", "-test.v")
			cmd.Env = append(os.Environ(), "STORETEST_MUTANT="+tc.bug)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			require.ErrorAs(t, err, &exit, "the suite passed a store with bug %q:\n%s", tc.bug, out)
			want := "--- FAIL: TestMutantHelper/" + tc.failing + " "
			if !strings.Contains(string(out), want) {
				t.Errorf("bug %q: want %q in the output; its summary:\n%s", tc.bug, want, summary(out))
			}
		})
	}
}

// summary returns the result lines of verbose go test output.
func summary(out []byte) string {
	var b strings.Builder
	for line := range strings.Lines(string(out)) {
		if strings.Contains(line, "--- ") || strings.HasPrefix(line, "FAIL") || strings.HasPrefix(line, "panic") {
			b.WriteString(line)
		}
	}
	return b.String()
}
