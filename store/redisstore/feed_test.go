package redisstore_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/wshub/wshub/internal/redistest"
	"github.com/wshub/wshub/store"
	"github.com/wshub/wshub/store/redisstore"
)

// waitBound bounds every wait of these tests: it proves "does not stall",
// it is not a timing requirement.
const waitBound = 10 * time.Second

// subscription is a running Subscribe whose events are collected.
type subscription struct {
	events chan store.Event // written by fn, which fails the test when it is full
	cancel context.CancelFunc
	ended  chan struct{} // closed by the Subscribe goroutine after setting err
	err    error         // Subscribe's result, read after ended
}

// subscribe starts s.Subscribe on a goroutine and waits for its first
// event, which must be EventReady. It is cancelled at the end of the test.
func subscribe(t *testing.T, s *redisstore.Store) *subscription {
	t.Helper()
	sub := startSubscribe(t, s)
	ev := sub.next(t)
	require.Equal(t, store.EventReady, ev.Kind, "the first event is EventReady")
	// The sentinel's messages (see sentinel) are announced on the channel
	// of the user "sentinel".
	require.NoError(t, s.Follow(t.Context(), []string{"sentinel"}, nil, true))
	return sub
}

// startSubscribe starts s.Subscribe on a goroutine without waiting.
func startSubscribe(t *testing.T, s *redisstore.Store) *subscription {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sub := &subscription{events: make(chan store.Event, 10_000), cancel: cancel, ended: make(chan struct{})}
	go func() {
		defer close(sub.ended)
		sub.err = s.Subscribe(ctx, func(ev store.Event) {
			select {
			case sub.events <- ev:
			default:
				t.Errorf("subscriber buffer full: event %+v dropped", ev)
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-sub.ended:
		case <-time.After(waitBound):
			t.Errorf("Subscribe did not return within %v of its ctx's end", waitBound)
		}
	})
	return sub
}

// next returns the next event, failing the test when none comes.
func (sub *subscription) next(t *testing.T) store.Event {
	t.Helper()
	select {
	case ev := <-sub.events:
		return ev
	case <-sub.ended:
		// Events delivered before Subscribe returned come first.
		select {
		case ev := <-sub.events:
			return ev
		default:
		}
		t.Fatalf("Subscribe returned: %v", sub.err)
	case <-time.After(waitBound):
		t.Fatalf("no event within %v", waitBound)
	}
	return store.Event{}
}

// result waits for Subscribe to return and returns its error.
func (sub *subscription) result(t *testing.T) error {
	t.Helper()
	select {
	case <-sub.ended:
		return sub.err
	case <-time.After(waitBound):
		t.Fatalf("Subscribe did not return within %v", waitBound)
		return nil
	}
}

// sentinel appends a message from s to a conversation of its own and
// returns the events that arrive before its announcement. Redis runs the
// sentinel's script after every write that returned before it, so an
// announcement of those writes that is missing here never comes.
func (sub *subscription) sentinel(t *testing.T, s *redisstore.Store) []store.Event {
	t.Helper()
	id := fmt.Sprintf("sentinel-%d", time.Now().UnixNano())
	appendOK(t, s, store.AppendRequest{Msg: store.Message{ID: id, Conv: "sentinel", From: "sentinel", Cmd: 10}})
	var before []store.Event
	for {
		ev := sub.next(t)
		if ev.Kind == store.EventMessage && ev.Msg.ID == id {
			return before
		}
		before = append(before, ev)
	}
}

// TestFeed_TwoProcessesAnnounceInSeqOrder: two Stores on one prefix (two
// hub processes) append concurrently to a few conversations, resending
// every cid once; a third Store's subscriber gets every stored message
// exactly once, per conversation in seq order, with its Origin, and no
// duplicate is announced.
func TestFeed_TwoProcessesAnnounceInSeqOrder(t *testing.T) {
	prefix := newPrefix("feed")
	a, _ := newStore(t, redisstore.Options{Prefix: prefix})
	b, _ := newStore(t, redisstore.Options{Prefix: prefix})
	watcher, _ := newStore(t, redisstore.Options{Prefix: prefix})
	other, _ := newStore(t, redisstore.Options{Prefix: newPrefix("otherhub")})
	sub := subscribe(t, watcher)
	require.NoError(t, watcher.Follow(t.Context(), []string{"alice", "bob"}, []string{"r1", "r2"}, true))

	convs := []string{store.RoomConv("r1"), store.RoomConv("r2"), store.DirectConv("alice", "bob")}
	const writers, each = 4, 30 // per Store
	var mu sync.Mutex           // guards stored
	stored := make(map[string]store.Message)
	origins := make(map[string]string) // message id -> origin; written before wg.Wait, read after
	var wg sync.WaitGroup
	for h, s := range []*redisstore.Store{a, b} {
		for w := range writers {
			origin := fmt.Sprintf("conn-%d-%d\x00\xff", h, w) // binary-safe
			wg.Go(func() {
				for i := range each {
					// A room's message goes to the room (its channel); a
					// direct one between alice and bob.
					from, to, cmd := fmt.Sprint("user", w), "", 11
					conv := convs[i%len(convs)]
					switch conv {
					case store.RoomConv("r1"):
						to = "r1"
					case store.RoomConv("r2"):
						to = "r2"
					default:
						from, to, cmd = "alice", "bob", 10
						if w%2 == 1 {
							from, to = to, from
						}
					}
					req := store.AppendRequest{
						Msg: store.Message{
							ID: fmt.Sprintf("h%d-w%d-%d", h, w, i), Conv: conv, TS: int64(i), Cmd: cmd,
							From: from, To: to, Body: []byte{'{', 0, 0xff, byte(i), '}'},
						},
						CID:    fmt.Sprint("cid-", w, "-", i), // each Store sends it once: one of the two is a dup
						Origin: origin,
					}
					m, dup, err := s.Append(t.Context(), req)
					if !assert.NoError(t, err) {
						return
					}
					mu.Lock()
					if !dup {
						stored[m.ID] = m
						origins[m.ID] = origin
					}
					mu.Unlock()
				}
			})
		}
	}
	// Another prefix is another hub: its messages are not announced here.
	appendOK(t, other, store.AppendRequest{Msg: dm("elsewhere", "alice", "bob")})
	wg.Wait()
	require.False(t, t.Failed())
	require.Len(t, stored, writers*each, "one of each (sender, cid) pair stored")

	// A room's message is announced once, on the room's channel; a direct
	// one once for its recipient and once for its sender (Event.User).
	events := sub.sentinel(t, a)
	want := 0
	for _, m := range stored {
		want++
		if m.Cmd == 10 {
			want++
		}
	}
	require.Len(t, events, want, "one announcement per stored message and user, none for duplicates")
	last := make(map[string]uint64) // by conversation and user
	seen := make(map[string]bool)   // by id and user
	for _, ev := range events {
		require.Equal(t, store.EventMessage, ev.Kind)
		m, ok := stored[ev.Msg.ID]
		require.True(t, ok, "announced %q, which was not stored (a duplicate or another prefix)", ev.Msg.ID)
		if m.Cmd == 10 {
			assert.Contains(t, []string{m.From, m.To}, ev.User)
		} else {
			assert.Empty(t, ev.User)
		}
		key := ev.Msg.ID + "\x00" + ev.User
		assert.False(t, seen[key], "%q announced twice for %q", ev.Msg.ID, ev.User)
		seen[key] = true
		assert.Equal(t, m, ev.Msg, "the announced message is the stored one")
		assert.Equal(t, origins[ev.Msg.ID], ev.Origin)
		stream := ev.Msg.Conv + "\x00" + ev.User
		assert.Equal(t, last[stream]+1, ev.Msg.Seq, "conversation %q in seq order without gaps for %q", ev.Msg.Conv, ev.User)
		last[stream] = ev.Msg.Seq
	}
}

// TestFeed_JoinLeaveAnnouncedWhenMembershipChanges: Join and Leave
// announce a change of membership, by any Store of the prefix; joining
// again and leaving a room one is not in announce nothing.
func TestFeed_JoinLeaveAnnouncedWhenMembershipChanges(t *testing.T) {
	prefix := newPrefix("feedjoin")
	a, _ := newStore(t, redisstore.Options{Prefix: prefix})
	b, _ := newStore(t, redisstore.Options{Prefix: prefix})
	sub := subscribe(t, a)
	ctx := t.Context()
	room, user := "room\x00:1", "us\xffer"                                // binary-safe
	require.NoError(t, a.Follow(ctx, []string{user, "carol"}, nil, true)) // announced on the user's channel

	require.NoError(t, b.Join(ctx, room, user))
	require.NoError(t, a.Join(ctx, room, user))
	require.NoError(t, a.Join(ctx, room, "carol"))
	require.NoError(t, b.Leave(ctx, room, user))
	require.NoError(t, a.Leave(ctx, room, user))
	require.NoError(t, a.Leave(ctx, "nowhere", user))
	assert.Equal(t, []store.Event{
		{Kind: store.EventJoin, Room: room, User: user},
		{Kind: store.EventJoin, Room: room, User: "carol"},
		{Kind: store.EventLeave, Room: room, User: user},
	}, sub.sentinel(t, b))
	members, err := a.Members(ctx, room)
	require.NoError(t, err)
	assert.Equal(t, []string{"carol"}, members)
}

// TestFeed_EventsBeforeSubscribeAreNotReplayed: messages appended before
// the subscription is ready are not announced to it.
func TestFeed_EventsBeforeSubscribeAreNotReplayed(t *testing.T) {
	s, _ := newStore(t, redisstore.Options{})
	appendOK(t, s, store.AppendRequest{Msg: dm("early", "alice", "bob")})
	sub := subscribe(t, s)
	assert.Empty(t, sub.sentinel(t, s))
}

// TestFeed_CancelReturnsCtxErr: Subscribe returns ctx.Err() when its ctx
// ends, and leaves no goroutine behind.
func TestFeed_CancelReturnsCtxErr(t *testing.T) {
	s, _ := newStore(t, redisstore.Options{})
	require.NoError(t, s.Ping(t.Context()))
	before := goleak.IgnoreCurrent()
	sub := subscribe(t, s)
	sub.cancel()
	assert.ErrorIs(t, sub.result(t), context.Canceled)
	goleak.VerifyNone(t, before)

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	assert.ErrorIs(t, s.Subscribe(ctx, func(store.Event) { t.Error("fn called") }), context.Canceled)
}

// TestFeed_StoreCloseEndsSubscribe: Close ends a running Subscribe with
// ErrClosed, whether or not the Store owns its client.
func TestFeed_StoreCloseEndsSubscribe(t *testing.T) {
	for _, own := range []bool{false, true} {
		t.Run(fmt.Sprint("CloseClient=", own), func(t *testing.T) {
			srv := needRedis(t)
			client := srv.Client(t)
			s, err := redisstore.New(client, redisstore.Options{Prefix: newPrefix("feedclose"), CloseClient: own})
			require.NoError(t, err)
			sub := subscribe(t, s)
			require.NoError(t, s.Close())
			assert.ErrorIs(t, sub.result(t), store.ErrClosed)
			assert.ErrorIs(t, s.Subscribe(t.Context(), func(store.Event) {}), store.ErrClosed)
		})
	}
}

// TestFeed_KilledConnectionBreaksSubscribe: when Redis drops the
// subscriber's connection, Subscribe returns ErrFeedBroken instead of
// reconnecting silently; a new Subscribe works.
func TestFeed_KilledConnectionBreaksSubscribe(t *testing.T) {
	s, client := newStore(t, redisstore.Options{})
	sub := subscribe(t, s)
	n, err := client.ClientKillByFilter(t.Context(), "TYPE", "pubsub").Result()
	require.NoError(t, err)
	require.GreaterOrEqual(t, n, int64(1))
	err = sub.result(t)
	assert.ErrorIs(t, err, redisstore.ErrFeedBroken)
	assert.NotErrorIs(t, err, context.Canceled)

	again := subscribe(t, s)
	require.NoError(t, s.Follow(t.Context(), []string{"bob"}, nil, true))
	m := appendOK(t, s, store.AppendRequest{Msg: dm("after", "alice", "bob")})
	ev := again.next(t)
	assert.Equal(t, store.EventMessage, ev.Kind)
	assert.Equal(t, m, ev.Msg)
}

// TestFeed_UnansweredHealthCheckBreaksSubscribe: a Redis that stops
// answering (here CLIENT PAUSE, as a hung server or a dead network would)
// ends Subscribe with ErrFeedBroken after about two FeedCheckIntervals.
func TestFeed_UnansweredHealthCheckBreaksSubscribe(t *testing.T) {
	s, client := newStore(t, redisstore.Options{FeedCheckInterval: 20 * time.Millisecond})
	sub := subscribe(t, s)
	require.NoError(t, client.Do(t.Context(), "CLIENT", "PAUSE", "1000", "ALL").Err())
	// UNPAUSE waits for the pause to end (a paused server holds it too),
	// so that the next test finds Redis answering.
	t.Cleanup(func() { assert.NoError(t, client.Do(context.Background(), "CLIENT", "UNPAUSE").Err()) })
	err := sub.result(t)
	assert.ErrorIs(t, err, redisstore.ErrFeedBroken)
	// The command left unanswered is the health check's PING, or an
	// SSUBSCRIBE the subscriber had in flight when Redis paused (seen
	// under load): either way the subscriber noticed within its bound.
	if msg := fmt.Sprint(err); !strings.Contains(msg, "PING") && !strings.Contains(msg, "ssubscribe") {
		t.Errorf("the error names neither PING nor SSUBSCRIBE: %v", err)
	}
}

// TestFeed_ForeignAnnouncementBreaksSubscribe: a payload this package did
// not publish on the feed channel means events may be lost or garbled:
// Subscribe returns an error wrapping ErrCorrupt.
func TestFeed_ForeignAnnouncementBreaksSubscribe(t *testing.T) {
	for _, payload := range []string{"", "x", "m", "m\x05ab", "m\x00garbage", "j\x03ro", "j\x04room"} {
		t.Run(fmt.Sprintf("%q", payload), func(t *testing.T) {
			prefix := newPrefix("foreign")
			s, client := newStore(t, redisstore.Options{Prefix: prefix})
			sub := subscribe(t, s)
			require.NoError(t, client.SPublish(t.Context(), prefix+"{presence}", payload).Err())
			err := sub.result(t)
			assert.ErrorIs(t, err, redisstore.ErrCorrupt)
			assert.ErrorIs(t, err, redisstore.ErrFeedBroken)
		})
	}
}

// TestFeed_SlowSubscriberIsCutOff: a subscriber that reads slower than
// announcements come is disconnected by Redis at its pubsub output buffer
// limit; Subscribe reports it instead of losing events silently.
func TestFeed_SlowSubscriberIsCutOff(t *testing.T) {
	prefix := newPrefix("slow")
	s, client := newStore(t, redisstore.Options{Prefix: prefix, MaxHistory: 1})
	old, err := client.ConfigGet(t.Context(), "client-output-buffer-limit").Result()
	require.NoError(t, err)
	require.NoError(t, client.ConfigSet(t.Context(), "client-output-buffer-limit", "pubsub 64kb 64kb 0").Err())
	t.Cleanup(func() {
		require.NoError(t, client.ConfigSet(context.Background(), "client-output-buffer-limit", old["client-output-buffer-limit"]).Err())
	})

	release := make(chan struct{}) // closed by the test to let fn return
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ready := make(chan struct{}) // closed by fn on EventReady
	res := make(chan error, 1)
	go func() {
		res <- s.Subscribe(ctx, func(ev store.Event) {
			if ev.Kind == store.EventReady {
				close(ready)
				return
			}
			<-release // a subscriber stuck on its first message
		})
	}()
	select {
	case <-ready:
	case <-time.After(waitBound):
		t.Fatal("not ready")
	}
	require.NoError(t, s.Follow(ctx, []string{"bob"}, nil, true))
	// Append until Redis has cut the subscriber off: the socket buffers
	// take some megabytes before Redis's output buffer grows.
	m := dm("big", "alice", "bob")
	m.Body = make([]byte, 64<<10)
	cut := false
	for i := 0; i < 1000 && !cut; i++ {
		m.ID = fmt.Sprint("big", i)
		appendOK(t, s, store.AppendRequest{Msg: m})
		if i%10 == 9 {
			n, err := client.PubSubShardNumSub(t.Context(), prefix+"{u:bob}").Result()
			require.NoError(t, err)
			cut = n[prefix+"{u:bob}"] == 0
		}
	}
	require.True(t, cut, "Redis did not disconnect the subscriber")
	close(release)
	select {
	case err := <-res:
		assert.ErrorIs(t, err, redisstore.ErrFeedBroken)
	case <-time.After(waitBound):
		t.Fatal("Subscribe did not report the lost connection")
	}
}

// TestFeed_StoppedServerBreaksSubscribe: a Redis that shuts down ends
// Subscribe with ErrFeedBroken; while it is down Subscribe fails at once
// (it does not wait for it); once it is back a new Subscribe works.
func TestFeed_StoppedServerBreaksSubscribe(t *testing.T) {
	srv := redistest.Start(t)
	s, err := redisstore.Open(t.Context(), srv.Addr, redisstore.Options{Prefix: newPrefix("stopped")})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, s.Close()) })
	sub := subscribe(t, s)
	srv.Stop()
	assert.ErrorIs(t, sub.result(t), redisstore.ErrFeedBroken)
	for range 3 {
		err = startSubscribe(t, s).result(t)
		assert.ErrorIs(t, err, redisstore.ErrFeedBroken)
		assert.ErrorContains(t, err, "subscribe")
	}
	require.NoError(t, srv.Restart())
	again := subscribe(t, s)
	require.NoError(t, s.Follow(t.Context(), []string{"bob"}, nil, true))
	m := appendOK(t, s, store.AppendRequest{Msg: dm("back", "alice", "bob")})
	assert.Equal(t, m, again.next(t).Msg)
}

// holdingProxy forwards TCP connections to a Redis until cut: then it
// closes them and accepts new ones without answering, as a load balancer
// in front of a dead Redis, or a hung one, would.
type holdingProxy struct {
	ln net.Listener
	to string

	mu    sync.Mutex
	held  bool       // guarded by mu
	conns []net.Conn // guarded by mu: every connection, both sides
}

// startProxy starts a holdingProxy to addr, stopped when the test ends.
func startProxy(t *testing.T, addr string) *holdingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &holdingProxy{ln: ln, to: addr}
	done := make(chan struct{}) // closed by the accept loop
	go func() {
		defer close(done)
		p.serve()
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		p.cut()
	})
	return p
}

// Addr is the proxy's address.
func (p *holdingProxy) Addr() string { return p.ln.Addr().String() }

func (p *holdingProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.conns = append(p.conns, c)
		held := p.held
		p.mu.Unlock()
		if held {
			continue // accepted, never answered
		}
		u, err := net.Dial("tcp", p.to)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, u)
		p.mu.Unlock()
		go func() { _, _ = io.Copy(u, c); u.Close() }()
		go func() { _, _ = io.Copy(c, u); c.Close() }()
	}
}

// cut closes every connection and holds new ones from now on.
func (p *holdingProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.held = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// slowClient is a client of addr whose dials, handshakes and commands may
// take a minute: longer than any wait of these tests.
func slowClient(t *testing.T, addr string) *redis.Client {
	c := redis.NewClient(&redis.Options{
		Addr: addr, ContextTimeoutEnabled: true,
		DialTimeout: time.Minute, ReadTimeout: time.Minute, WriteTimeout: time.Minute,
	})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestFeed_BrokenSubscriptionIsNotRedialed: when the subscription's
// connection fails, Subscribe returns at once, even where a new
// connection would be accepted and never answered: go-redis's PubSub
// would dial again and wait for its handshake (5 s by default, here a
// minute) before reporting the failure, and the subscription would pass
// for alive all along. The client's other dials are not affected.
func TestFeed_BrokenSubscriptionIsNotRedialed(t *testing.T) {
	p := startProxy(t, needRedis(t).Addr)
	client := slowClient(t, p.Addr())
	s, err := redisstore.New(client, redisstore.Options{Prefix: newPrefix("redial"), FeedCheckInterval: time.Minute})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, s.Close()) })
	sub := subscribe(t, s)
	require.NoError(t, client.Ping(t.Context()).Err(), "the client dials its pool's first connection")

	p.cut()
	err = sub.result(t)
	assert.ErrorIs(t, err, redisstore.ErrFeedBroken)
	assert.NotErrorIs(t, err, context.DeadlineExceeded)
}

// TestFeed_UnansweredSubscribeGivesUp: a server that accepts the
// connection and never answers makes Subscribe fail with ErrFeedBroken
// after about FeedCheckInterval, however long the client's own dial and
// handshake timeouts.
func TestFeed_UnansweredSubscribeGivesUp(t *testing.T) {
	p := startProxy(t, needRedis(t).Addr)
	p.cut()
	s, err := redisstore.New(slowClient(t, p.Addr()), redisstore.Options{FeedCheckInterval: 100 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, s.Close()) })
	err = startSubscribe(t, s).result(t)
	assert.ErrorIs(t, err, redisstore.ErrFeedBroken)
}
