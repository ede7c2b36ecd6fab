package redisstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wshub/wshub/store"
)

var _ store.Router = (*Store)(nil)

// Subscribe implements store.Feed and store.Router. It subscribes with
// SSUBSCRIBE (sharded pub/sub) to the presence channel, sends EventReady
// once Redis confirmed it, and then to the channels of the users and
// rooms its caller follows (Follow), calling fn for every announcement
// they carry, one at a time: a channel's announcements in the order
// Redis ran the writes that announced them. With a Redis Cluster it holds
// one connection per master owning a followed channel's slot; with one
// Redis, one connection. fn must not call Follow and wait for it: Follow
// waits for a confirmation that the goroutine calling fn may be the one
// to read.
//
// It returns ctx.Err() when ctx ends, store.ErrClosed when the Store is
// closed, and otherwise an error wrapping ErrFeedBroken (and its cause):
// at once when it cannot connect and subscribe within FeedCheckInterval,
// and, once subscribed, as soon as any of its connections can no longer
// promise to see every announcement: the connection failed or was killed
// (CLIENT KILL, a Redis restart, a failover, Redis's pubsub output buffer
// limit for a subscriber that reads too slowly), a followed channel's
// slot moved to another master (Redis then unsubscribes it), or a
// connection got no reply to a PING within FeedCheckInterval. Subscribe
// never reconnects by itself: the caller subscribes again and
// resynchronizes, as the hub does. Nor does it let go-redis reconnect a
// broken subscription (which, against an address that accepts
// connections and does not answer, would delay the report by the
// client's dial and handshake timeouts): the first Subscribe of a Store
// adds a redis.Hook to the client that refuses those dials, and only
// those.
func (s *Store) Subscribe(ctx context.Context, fn func(store.Event)) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	s.hookFeed.Do(func() { s.client.AddHook(noRedial{}) })
	subCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sub := &subscription{s: s, ctx: subCtx, cancel: cancel, fn: fn,
		shards: make(map[string]*shard), follows: make(map[string]*follow), unsubs: make(map[string]int),
		orphans: make(map[string]int)}
	defer sub.close()

	setup, cancelSetup := context.WithTimeout(subCtx, s.opts.FeedCheckInterval)
	err := sub.follow(setup, []string{s.presenceChannel()}, true)
	cancelSetup()
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case s.closed.Load():
			return store.ErrClosed
		}
		if cause := context.Cause(subCtx); cause != nil {
			err = cause
		}
		return fmt.Errorf("%w: subscribe: %w", ErrFeedBroken, err)
	}
	s.addSubscription(sub)
	defer s.removeSubscription(sub)
	sub.emit(store.Event{Kind: store.EventReady})
	select {
	case <-subCtx.Done():
	case <-s.done:
	}
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case s.closed.Load():
		return store.ErrClosed
	}
	return fmt.Errorf("%w: %w", ErrFeedBroken, context.Cause(subCtx))
}

// errNotSubscribed is what Follow answers without an active Subscribe.
var errNotSubscribed = fmt.Errorf("%w: no active subscription", ErrFeedBroken)

// Follow implements store.Router: the active subscriptions of this Store
// receive the announcements on the channels of users and rooms (see
// channels.go) once it returned. It fails with an error wrapping
// ErrFeedBroken when no subscription is active.
func (s *Store) Follow(ctx context.Context, users, rooms []string, wait bool) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	subs := s.subscriptions()
	if len(subs) == 0 {
		return errNotSubscribed
	}
	chans := s.channels(users, rooms)
	for _, sub := range subs {
		if err := sub.follow(ctx, chans, wait); err != nil {
			return err
		}
	}
	return nil
}

// Unfollow implements store.Router.
func (s *Store) Unfollow(users, rooms []string) {
	chans := s.channels(users, rooms)
	for _, sub := range s.subscriptions() {
		sub.unfollow(chans)
	}
}

// channels returns the channels of users and rooms.
func (s *Store) channels(users, rooms []string) []string {
	chans := make([]string, 0, len(users)+len(rooms))
	for _, u := range users {
		chans = append(chans, s.userChannel(u))
	}
	for _, r := range rooms {
		chans = append(chans, s.roomChannel(r))
	}
	return chans
}

// subscriptionSet holds a Store's active subscriptions.
type subscriptionSet struct {
	mu   sync.Mutex
	subs []*subscription // guarded by mu
}

func (s *Store) addSubscription(sub *subscription) {
	s.subs.mu.Lock()
	defer s.subs.mu.Unlock()
	s.subs.subs = append(s.subs.subs, sub)
}

func (s *Store) removeSubscription(sub *subscription) {
	s.subs.mu.Lock()
	defer s.subs.mu.Unlock()
	for i, x := range s.subs.subs {
		if x == sub {
			s.subs.subs = append(s.subs.subs[:i:i], s.subs.subs[i+1:]...)
			return
		}
	}
}

func (s *Store) subscriptions() []*subscription {
	s.subs.mu.Lock()
	defer s.subs.mu.Unlock()
	return append([]*subscription(nil), s.subs.subs...)
}

// subscription is one running Subscribe: its connections (shards), one
// per Redis master that owns a followed channel, and its follows.
type subscription struct {
	s      *Store
	ctx    context.Context         // ends with the subscription
	cancel context.CancelCauseFunc // ends it, with the cause
	fn     func(store.Event)
	fnMu   sync.Mutex // fn is called one at a time

	mu      sync.Mutex
	shards  map[string]*shard  // guarded by mu; by master address ("" for a client that is not a cluster client)
	follows map[string]*follow // guarded by mu; by channel
	unsubs  map[string]int     // guarded by mu: SUNSUBSCRIBEs sent and not yet answered, by channel
	// orphans counts, by channel, the SSUBSCRIBE confirmations still to
	// come for follows undone before them. Guarded by mu.
	orphans map[string]int
	closed  bool           // guarded by mu
	wg      sync.WaitGroup // the shards' goroutines
}

// follow is one followed channel.
type follow struct {
	count int
	shard *shard
	// waiters are closed by the confirmations of the SSUBSCRIBEs sent for
	// the channel, oldest first (Redis answers a connection's commands in
	// order).
	waiters []chan struct{}
}

// shard is one pub/sub connection of a subscription.
type shard struct {
	ps *redis.PubSub
	// noRedial is set once the connection was made: go-redis may not dial
	// a new one in its place (see noRedial).
	noRedial *atomic.Bool
	alive    atomic.Bool // set on every reply, cleared by the watcher
}

// fail ends the subscription because of err.
func (sub *subscription) fail(err error) {
	sub.cancel(err)
}

// emit calls fn.
func (sub *subscription) emit(ev store.Event) {
	sub.fnMu.Lock()
	defer sub.fnMu.Unlock()
	sub.fn(ev)
}

// addrOf returns the address of the master owning ch's slot with a
// cluster client, "" otherwise.
func (sub *subscription) addrOf(ctx context.Context, ch string) (string, error) {
	cc, ok := sub.s.client.(*redis.ClusterClient)
	if !ok {
		return "", nil
	}
	node, err := cc.MasterForKey(ctx, ch)
	if err != nil {
		return "", err
	}
	return node.Options().Addr, nil
}

// follow counts a follow of each of chans, sends SSUBSCRIBE for those
// not subscribed yet, and with wait waits until Redis confirmed every one
// of them (or ctx or the subscription ends).
func (sub *subscription) follow(ctx context.Context, chans []string, wait bool) error {
	addrs := make([]string, len(chans))
	for i, ch := range chans {
		a, err := sub.addrOf(ctx, ch)
		if err != nil {
			return fmt.Errorf("wshub/redisstore: follow: %w", err)
		}
		addrs[i] = a
	}
	var waits []chan struct{}
	sub.mu.Lock()
	if sub.closed {
		sub.mu.Unlock()
		return errNotSubscribed
	}
	var err error
	for i, ch := range chans {
		f := sub.follows[ch]
		if f == nil {
			f = &follow{}
			sub.follows[ch] = f
		}
		f.count++
		if f.count > 1 {
			if n := len(f.waiters); n > 0 {
				waits = append(waits, f.waiters[n-1]) // its SSUBSCRIBE is on the way
			}
			continue
		}
		if f.shard, err = sub.shardLocked(addrs[i]); err == nil {
			w := make(chan struct{})
			f.waiters = append(f.waiters, w)
			waits = append(waits, w)
			err = f.shard.ps.SSubscribe(context.WithValue(ctx, noRedialKey{}, f.shard.noRedial), ch)
			sub.startLocked(f.shard)
		}
		if err != nil {
			f.count--
			if f.count == 0 {
				delete(sub.follows, ch)
			}
			break
		}
	}
	sub.mu.Unlock()
	if err != nil {
		sub.fail(fmt.Errorf("ssubscribe: %w", err)) // the connection may be in any state
		return fmt.Errorf("wshub/redisstore: follow: %w", err)
	}
	if !wait {
		return nil
	}
	for _, w := range waits {
		select {
		case <-w:
		case <-ctx.Done():
			return fmt.Errorf("wshub/redisstore: follow: %w", ctx.Err())
		case <-sub.ctx.Done():
			return fmt.Errorf("%w: %w", ErrFeedBroken, context.Cause(sub.ctx))
		}
	}
	return nil
}

// unfollow undoes a follow of each of chans, sending SUNSUBSCRIBE for
// those no longer followed.
func (sub *subscription) unfollow(chans []string) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.closed {
		return
	}
	for _, ch := range chans {
		f := sub.follows[ch]
		if f == nil {
			continue
		}
		if f.count--; f.count > 0 {
			continue
		}
		delete(sub.follows, ch)
		if len(f.waiters) > 0 {
			sub.orphans[ch] += len(f.waiters)
		}
		sub.unsubs[ch]++
		ctx := context.WithValue(sub.ctx, noRedialKey{}, f.shard.noRedial)
		if err := f.shard.ps.SUnsubscribe(ctx, ch); err != nil {
			sub.fail(fmt.Errorf("sunsubscribe: %w", err))
			return
		}
	}
}

// shardLocked returns the shard of addr, made if needed. The caller
// holds sub.mu.
func (sub *subscription) shardLocked(addr string) (*shard, error) {
	if sh := sub.shards[addr]; sh != nil {
		return sh, nil
	}
	sh := &shard{noRedial: new(atomic.Bool)}
	// No channel: no I/O yet. The first SSUBSCRIBE dials, on the master
	// of its channel's slot.
	sh.ps = sub.s.client.SSubscribe(context.WithValue(sub.ctx, noRedialKey{}, sh.noRedial))
	sub.shards[addr] = sh
	return sh, nil
}

// startLocked starts the receive and health-check goroutines of sh once
// its connection exists (after its first SSUBSCRIBE). The caller holds
// sub.mu.
func (sub *subscription) startLocked(sh *shard) {
	if sh.noRedial.Swap(true) {
		return // started before
	}
	ctx := context.WithValue(sub.ctx, noRedialKey{}, sh.noRedial)
	sub.wg.Add(2)
	go func() {
		defer sub.wg.Done()
		sub.fail(sub.receive(ctx, sh))
	}()
	go func() {
		defer sub.wg.Done()
		if err := sub.watch(ctx, sh); err != nil {
			sub.fail(err)
		}
	}()
}

// close ends the shards' connections and waits for their goroutines.
func (sub *subscription) close() {
	sub.cancel(nil)
	sub.mu.Lock()
	sub.closed = true
	for _, sh := range sub.shards {
		_ = sh.ps.Close() // ends the receive loop's read
	}
	sub.mu.Unlock()
	sub.wg.Wait()
}

// receive reads sh, calling fn for its announcements, until a read fails
// (close's ps.Close included) or a reply shows that announcements may
// have been missed; it returns why, never nil.
func (sub *subscription) receive(ctx context.Context, sh *shard) error {
	s := sub.s
	for {
		v, err := sh.ps.Receive(ctx)
		if err != nil {
			return fmt.Errorf("%w: %w", errSubscriptionFailed, err)
		}
		sh.alive.Store(true)
		switch v := v.(type) {
		case *redis.Subscription:
			if err := sub.confirmed(v); err != nil {
				return err
			}
		case *redis.Message:
			ev, err := decodeEvent(v.Payload)
			if err != nil {
				return fmt.Errorf("%w: %w", errSubscriptionFailed, err)
			}
			if ev.Kind == store.EventMessage {
				ev.User, _ = s.channelUser(v.Channel)
			}
			sub.emit(ev)
		case *redis.Pong:
			// a health check's answer: alive is set
		default:
			return fmt.Errorf("%w: unexpected pubsub reply %T", errSubscriptionFailed, v)
		}
	}
}

// confirmed handles Redis's answer to a SSUBSCRIBE or SUNSUBSCRIBE. A
// SUNSUBSCRIBE nobody sent means Redis dropped the channel (its slot moved
// to another master): what it announces next would be missed.
func (sub *subscription) confirmed(v *redis.Subscription) error {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	switch v.Kind {
	case "ssubscribe":
		if f := sub.follows[v.Channel]; f != nil && len(f.waiters) > 0 {
			close(f.waiters[0])
			f.waiters = f.waiters[1:]
			return nil
		}
		if sub.orphans[v.Channel] > 0 {
			if sub.orphans[v.Channel]--; sub.orphans[v.Channel] == 0 {
				delete(sub.orphans, v.Channel)
			}
			return nil
		}
		// A confirmation nobody asked for: go-redis subscribed again on a
		// new connection, after a gap nobody announced.
		return fmt.Errorf("%w: %w: %s", errSubscriptionFailed, errResubscribed, v.Channel)
	case "sunsubscribe":
		if sub.unsubs[v.Channel] > 0 {
			if sub.unsubs[v.Channel]--; sub.unsubs[v.Channel] == 0 {
				delete(sub.unsubs, v.Channel)
			}
			return nil
		}
		return fmt.Errorf("%w: Redis unsubscribed channel %q (its slot moved?)", errSubscriptionFailed, v.Channel)
	}
	return fmt.Errorf("%w: %w: %s %s", errSubscriptionFailed, errResubscribed, v.Kind, v.Channel)
}

// watch runs beside sh's receive loop until the subscription ends, and
// returns why sh must end it (nil when it ended otherwise): a PING could
// not be sent, or nothing at all (not even the PING's answer) came in one
// FeedCheckInterval after a PING.
func (sub *subscription) watch(ctx context.Context, sh *shard) error {
	s := sub.s
	t := time.NewTicker(s.opts.FeedCheckInterval)
	defer t.Stop()
	pinged := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.done:
			return store.ErrClosed
		case <-t.C:
		}
		if !sh.alive.Swap(false) && pinged {
			return fmt.Errorf("%w: no reply from Redis to a PING within %v", errSubscriptionFailed, s.opts.FeedCheckInterval)
		}
		if err := sh.ps.Ping(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("%w: health check: %w", errSubscriptionFailed, err)
		}
		pinged = true
	}
}

// errSubscriptionFailed marks the causes of a subscription that broke.
var errSubscriptionFailed = errors.New("subscription failed")

// errResubscribed reports that a PubSub subscribed again on a new
// connection: announcements between the two were missed.
var errResubscribed = errors.New("go-redis subscribed again on a new connection")
