package wshub

import (
	"context"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/wshub/wshub/store"
)

// Presence (cmd 21): a connection watches up to MaxWatch users and is
// told when one of them goes from no connection to one, or from one to
// none, on any hub process sharing the store.
//
// The hub does not announce each connect and disconnect as it happens.
// A user's first connect and last disconnect only mark the user dirty;
// a goroutine (runPresence) gathers the dirty users and, one
// Options.PresenceInterval after the first of them, compares each one's
// state now with what was last announced. A user who left and came back
// within the interval (a reconnect) announces nothing, and a storm of
// flapping connections costs at most one transition per user per
// interval, whatever the number of flaps: the cost to watchers is
// bounded by the number of users they watch, not by the churn.
//
// With a store that implements store.Presence (Redis), the state is
// shared: each hub process holds a lease under an id of its own, renews
// it every PresenceTTL/3, and reports its dirty users' states with
// SetPresence, which announces the transitions on the store's feed; the
// users of a process that dies are announced offline by another process
// once its lease ends. Without it the hub announces the transitions of
// its own connections to its own watchers.

// MaxWatch is how many users one connection may watch (cmd 21).
const MaxWatch = 1000

// presenceBatch is how many users one SetPresence call reports at most.
const presenceBatch = 1000

// presence tracks the users whose state may have changed and the
// connections watching users.
type presence struct {
	h        *Hub
	st       store.Presence // nil: presence among this process's connections only
	interval time.Duration  // Options.PresenceInterval
	ttl      time.Duration  // Options.PresenceTTL
	proc     string         // this process's lease id with st
	wake     chan struct{}  // one token: a user became dirty
	done     chan struct{}  // closed by runPresence when it returns

	mu    sync.Mutex
	dirty map[string]struct{} // guarded by mu: users whose local state changed since the last flush
	// announced holds, without st, the state last announced of every
	// watched user. Guarded by mu.
	announced map[string]bool
	// resend is set, with st, when the store lost this process's entries
	// (reset): every local user is reported again. Guarded by mu.
	resend bool

	// watchMu serializes changes of the watch index and of the
	// watching lists of connections (Node.watching). Order: watchMu, then
	// a watch shard's mu, then mu.
	watchMu sync.Mutex
	watch   [roomShards]watchShard
}

// watchShard maps a user to the connections watching it.
type watchShard struct {
	mu    sync.RWMutex
	users map[string]map[*Node]struct{} // guarded by mu
}

func newPresence(h *Hub) *presence {
	p := &presence{
		h:         h,
		interval:  h.opts.PresenceInterval,
		ttl:       h.opts.PresenceTTL,
		proc:      uuid.NewString(),
		wake:      make(chan struct{}, 1),
		done:      make(chan struct{}),
		dirty:     make(map[string]struct{}),
		announced: make(map[string]bool),
	}
	p.st, _ = h.store.(store.Presence)
	if _, isFeed := h.store.(store.Feed); !isFeed {
		p.st = nil // transitions travel on the feed: without one they cannot be heard
	}
	for i := range p.watch {
		p.watch[i].users = make(map[string]map[*Node]struct{})
	}
	return p
}

func (p *presence) watchShard(user string) *watchShard {
	return &p.watch[maphash.String(p.h.seed, user)%roomShards]
}

// mark records that user's first connection opened or its last one
// closed here.
func (p *presence) mark(user string) {
	p.mu.Lock()
	p.dirty[user] = struct{}{}
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// run gathers dirty users and reports them (see the comment at the top),
// and with a shared store renews the lease every ttl/3, until the hub
// shuts down; it then retires the lease.
func (p *presence) run() {
	defer close(p.done)
	var tick <-chan time.Time
	if p.st != nil {
		t := time.NewTicker(p.ttl / 3)
		defer t.Stop()
		tick = t.C
		p.flush() // take the lease at once
	}
	for {
		select {
		case <-p.h.ctx.Done():
			p.retire()
			return
		case <-tick:
		case <-p.wake:
			// Let the interval's changes gather: a reconnect within it
			// cancels out.
			select {
			case <-p.h.ctx.Done():
				p.retire()
				return
			case <-time.After(p.interval):
			}
		}
		p.flush()
	}
}

// retire ends this process's lease with a shared store, so that its
// users (all disconnected by Shutdown) are announced offline now rather
// than when the lease would end.
func (p *presence) retire() {
	if p.st == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.st.RetirePresence(ctx, p.proc); err != nil {
		p.h.log.Warn("wshub: presence: cannot retire this process's lease; its users go offline when it ends",
			slog.Any("err", err), slog.Duration("ttl", p.ttl))
	}
}

// flush reports the dirty users.
func (p *presence) flush() {
	p.mu.Lock()
	dirty := p.dirty
	p.dirty = make(map[string]struct{}, len(dirty))
	resend := p.resend
	p.resend = false
	p.mu.Unlock()
	if p.st == nil {
		p.announceLocal(dirty)
		return
	}
	if resend {
		for _, n := range p.h.allNodes() {
			dirty[n.user] = struct{}{}
		}
	}
	var on, off []string
	for u := range dirty {
		if p.h.IsOnline(u) {
			on = append(on, u)
		} else {
			off = append(off, u)
		}
	}
	// Every call renews the lease, the first one even with nothing to
	// report.
	for first := true; first || len(on) > 0 || len(off) > 0; first = false {
		bon := on[:min(len(on), presenceBatch)]
		boff := off[:min(len(off), presenceBatch-len(bon))]
		ctx, cancel := context.WithTimeout(p.h.ctx, p.ttl/3)
		reset, err := p.st.SetPresence(ctx, p.proc, p.ttl, bon, boff)
		cancel()
		if err != nil {
			if p.h.ctx.Err() == nil {
				p.h.log.Error("wshub: presence: cannot report to the store; retrying", slog.Any("err", err))
			}
			p.mu.Lock()
			for _, u := range on {
				p.dirty[u] = struct{}{}
			}
			for _, u := range off {
				p.dirty[u] = struct{}{}
			}
			p.resend = p.resend || resend
			p.mu.Unlock()
			return // retried at the next change or lease renewal
		}
		on, off = on[len(bon):], off[len(boff):]
		if reset {
			// The store had no entries of this process (its first call, or
			// they were removed after the lease ended): report everyone
			// again. Those just reported are recorded; doing so again
			// announces nothing.
			p.mu.Lock()
			p.resend = true
			p.mu.Unlock()
			select {
			case p.wake <- struct{}{}:
			default:
			}
		}
	}
}

// announceLocal announces, without a shared store, the transitions of
// the dirty users that someone watches.
func (p *presence) announceLocal(dirty map[string]struct{}) {
	ts := time.Now().UnixMilli()
	st := p.h.starters.Get().(*starter)
	for u := range dirty {
		now := p.h.IsOnline(u)
		p.mu.Lock()
		was, watched := p.announced[u]
		if watched {
			p.announced[u] = now
		}
		p.mu.Unlock()
		if watched && was != now {
			p.deliver(u, now, ts, st)
		}
	}
	p.h.writeOut(st)
}

// deliver queues a transition of user for the local connections that
// watch it.
func (p *presence) deliver(user string, online bool, ts int64, st *starter) {
	ws := p.watchShard(user)
	ws.mu.RLock()
	defer ws.mu.RUnlock()
	watchers := ws.users[user]
	if len(watchers) == 0 {
		return
	}
	data, err := (&Frame{Cmd: CmdPresence, UserID: user, Online: &online, TS: ts}).Encode()
	if err != nil {
		return
	}
	of := outFrame{data: data}
	for n := range watchers {
		n.enqueue(of, st)
	}
}

// online reports, for each of users, whether it has a connection: on
// any process sharing the store when the store implements
// store.Presence, else on this one.
func (p *presence) online(ctx context.Context, users []string) ([]bool, error) {
	if p.st != nil {
		return p.st.Online(ctx, users)
	}
	out := make([]bool, len(users))
	for i, u := range users {
		out[i] = p.h.IsOnline(u)
	}
	return out, nil
}

// setWatch makes n watch users, replacing what it watched before. It
// returns false when n is gone.
func (p *presence) setWatch(n *Node, users []string) bool {
	p.watchMu.Lock()
	defer p.watchMu.Unlock()
	// With unregister (which sets gone, then reads watched): one of the
	// two sees the other's flag, so a watch is never left behind by a
	// connection that is gone.
	n.watched.Store(true)
	if n.gone.Load() {
		p.dropLocked(n)
		return false
	}
	for _, u := range n.watching {
		p.unwatchLocked(n, u)
	}
	n.watching = users
	for _, u := range users {
		ws := p.watchShard(u)
		ws.mu.Lock()
		set := ws.users[u]
		if set == nil {
			set = make(map[*Node]struct{})
			ws.users[u] = set
		}
		set[n] = struct{}{}
		if p.st == nil && len(set) == 1 {
			p.mu.Lock()
			p.announced[u] = p.h.IsOnline(u)
			p.mu.Unlock()
		}
		ws.mu.Unlock()
	}
	return true
}

// unwatchLocked removes n from user's watchers. The caller holds watchMu.
func (p *presence) unwatchLocked(n *Node, user string) {
	ws := p.watchShard(user)
	ws.mu.Lock()
	if set := ws.users[user]; set != nil {
		delete(set, n)
		if len(set) == 0 {
			delete(ws.users, user)
			p.mu.Lock()
			delete(p.announced, user)
			p.mu.Unlock()
		}
	}
	ws.mu.Unlock()
}

// dropWatch removes a closed connection from the watch index.
func (p *presence) dropWatch(n *Node) {
	p.watchMu.Lock()
	defer p.watchMu.Unlock()
	p.dropLocked(n)
}

// dropLocked removes n from the watch index. The caller holds watchMu.
func (p *presence) dropLocked(n *Node) {
	for _, u := range n.watching {
		p.unwatchLocked(n, u)
	}
	n.watching = nil
}

// presenceCmd answers cmd 21: with room, the room's members and whether
// each is online (members only); otherwise it makes the connection
// watch f.IDs and answers their states.
func (h *Hub) presenceCmd(ctx context.Context, n *Node, f *Frame) error {
	p := h.presence
	if f.Room {
		if err := checkDst(f.DstID); err != nil {
			return err
		}
		if !h.isMember(n.user, f.DstID) {
			return ErrNotMember
		}
		members, err := h.store.Members(ctx, f.DstID)
		if err != nil {
			return h.storeErr(err)
		}
		items, err := h.presenceItems(ctx, members)
		if err != nil {
			return err
		}
		return n.Send(&Frame{Cmd: CmdPresence, CID: f.CID, DstID: f.DstID, Room: true, Items: items})
	}
	if len(f.IDs) > MaxWatch {
		return fmt.Errorf("%w: at most %d ids may be watched", ErrBadRequest, MaxWatch)
	}
	users := make([]string, 0, len(f.IDs))
	seen := make(map[string]struct{}, len(f.IDs))
	for _, u := range f.IDs {
		if err := checkID("user id", u); err != nil {
			return err
		}
		if _, dup := seen[u]; !dup {
			seen[u] = struct{}{}
			users = append(users, u)
		}
	}
	// Watch first, then read the states: a transition in between is
	// announced after the reply rather than lost.
	if !p.setWatch(n, users) {
		return ErrClosed
	}
	items, err := h.presenceItems(ctx, users)
	if err != nil {
		return err
	}
	return n.Send(&Frame{Cmd: CmdPresence, CID: f.CID, Items: items})
}

// presenceItems returns a cmd 21 item per user with its state.
func (h *Hub) presenceItems(ctx context.Context, users []string) ([]*Frame, error) {
	online, err := h.presence.online(ctx, users)
	if err != nil {
		return nil, h.storeErr(err)
	}
	items := make([]*Frame, len(users))
	for i, u := range users {
		items[i] = &Frame{Cmd: CmdPresence, UserID: u, Online: &online[i]}
	}
	return items, nil
}

// Online reports, for each of users, whether it has a connection: on any
// hub process sharing the store when the store implements
// store.Presence (a process that died counts until its lease,
// Options.PresenceTTL, ends), else on this hub.
func (h *Hub) Online(ctx context.Context, users ...string) ([]bool, error) {
	for _, u := range users {
		if err := checkID("user id", u); err != nil {
			return nil, err
		}
	}
	out, err := h.presence.online(ctx, users)
	if err != nil {
		return nil, h.storeErr(err)
	}
	return out, nil
}

// onPresence delivers a transition announced on the store's feed.
func (h *Hub) onPresence(ev *store.Event) {
	st := h.starters.Get().(*starter)
	h.presence.deliver(ev.User, ev.Online, ev.TS, st)
	h.writeOut(st)
}
