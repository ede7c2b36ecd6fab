package redisstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wshub/wshub/store"
)

// ErrFeedBroken is returned by Subscribe when its subscription broke: the
// connection failed or was killed, Redis did not answer a health check in
// time, or go-redis reconnected on its own. Events may have been missed.
// The error also wraps the cause.
var ErrFeedBroken = errors.New("wshub/redisstore: feed subscription broke")

// DefaultFeedCheckInterval is the FeedCheckInterval used when the option is
// zero.
const DefaultFeedCheckInterval = 5 * time.Second

// The first byte of an announcement on the feed channel tells its kind.
const (
	wireMessage  = 'm' // uvarint len + origin, then the stored value "<seq>:<encoded message>"
	wireJoin     = 'j' // uvarint len + room, then the user
	wireLeave    = 'l' // the same as wireJoin
	wireSignal   = 's' // see encodeSignal
	wirePresence = 'p' // '1' online or '0' offline, uvarint TS, then the user (see presence.go)
)

var _ store.Feed = (*Store)(nil)

// noOrigin is the message announcement header without an origin, boxed
// once.
var noOrigin any = string([]byte{wireMessage, 0})

// encodeMessageHeader returns what the Append script puts before the stored
// value in a message announcement: the kind byte and the origin with its
// length.
func encodeMessageHeader(origin string) any {
	if origin == "" {
		return noOrigin
	}
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(origin))
	b = append(b, wireMessage)
	return string(appendString(b, origin))
}

// encodeMembership returns the announcement of a join (kind wireJoin) or
// leave (wireLeave).
func encodeMembership(kind byte, room, user string) string {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(room)+len(user))
	b = append(b, kind)
	b = appendString(b, room)
	return string(append(b, user...))
}

// decodeEvent parses an announcement. Strings of the result share memory
// with p.
func decodeEvent(p string) (store.Event, error) {
	if p == "" {
		return store.Event{}, fmt.Errorf("%w: empty feed announcement", ErrCorrupt)
	}
	d := decoder{s: p[1:]}
	switch p[0] {
	case wireMessage:
		origin := d.string()
		if d.bad {
			return store.Event{}, fmt.Errorf("%w: truncated feed announcement", ErrCorrupt)
		}
		m, err := decode(d.s)
		if err != nil {
			return store.Event{}, fmt.Errorf("feed announcement: %w", err)
		}
		return store.Event{Kind: store.EventMessage, Msg: m, Origin: origin}, nil
	case wireJoin, wireLeave:
		room := d.string()
		if d.bad || room == "" || d.s == "" {
			return store.Event{}, fmt.Errorf("%w: malformed membership announcement", ErrCorrupt)
		}
		kind := store.EventJoin
		if p[0] == wireLeave {
			kind = store.EventLeave
		}
		return store.Event{Kind: kind, Room: room, User: d.s}, nil
	case wireSignal:
		sig, err := decodeSignal(d.s)
		if err != nil {
			return store.Event{}, err
		}
		return store.Event{Kind: store.EventSignal, Signal: sig}, nil
	case wirePresence:
		state := d.byte()
		ts := d.uvarint()
		if d.bad || (state != '0' && state != '1') || ts > math.MaxInt64 || d.s == "" {
			return store.Event{}, fmt.Errorf("%w: malformed presence announcement", ErrCorrupt)
		}
		return store.Event{Kind: store.EventPresence, User: d.s, Online: state == '1', TS: int64(ts)}, nil
	}
	return store.Event{}, fmt.Errorf("%w: unknown feed announcement kind %q", ErrCorrupt, p[0])
}

// Subscribe implements store.Feed: it subscribes to the Prefix's feed
// channel on a connection of its own and calls fn for every announcement
// of every Store with the same Prefix on the same Redis (this one
// included), in the order Redis ran the writes that announced them.
//
// It returns ctx.Err() when ctx ends, store.ErrClosed when the Store is
// closed, and otherwise an error wrapping ErrFeedBroken (and its cause):
// at once when it cannot connect and subscribe within FeedCheckInterval,
// and, once subscribed, as soon as the subscription can no longer promise
// to see every announcement: the connection failed or was killed (CLIENT
// KILL, a Redis restart, Redis's pubsub output buffer limit for a
// subscriber that reads too slowly), or it got no reply to a PING within
// FeedCheckInterval. Subscribe never reconnects by itself: the caller
// subscribes again and resynchronizes, as the hub does. Nor does it let
// go-redis reconnect the broken subscription (which, against an address
// that accepts connections and does not answer, would delay the report
// by the client's dial and handshake timeouts): the first Subscribe of a
// Store adds a redis.Hook to the client that refuses those dials, and
// only those.
func (s *Store) Subscribe(ctx context.Context, fn func(store.Event)) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	s.hookFeed.Do(func() { s.client.AddHook(noRedial{}) })
	subscribed := new(atomic.Bool) // set once SUBSCRIBE was sent: dials under ctx are refused from then on
	ctx = context.WithValue(ctx, noRedialKey{}, subscribed)
	ps := s.client.Subscribe(ctx) // no channel: no I/O yet
	defer ps.Close()
	setup, cancel := context.WithTimeout(ctx, s.opts.FeedCheckInterval)
	err := ps.Subscribe(setup, s.channel) // dials, and sends SUBSCRIBE
	cancel()
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case s.closed.Load():
			return store.ErrClosed
		}
		return fmt.Errorf("%w: subscribe: %w", ErrFeedBroken, err)
	}
	subscribed.Store(true)

	var alive atomic.Bool              // set by the receive loop on every reply, cleared by the watcher
	stop := make(chan struct{})        // closed by Subscribe when the receive loop ended
	watcherDone := make(chan struct{}) // closed by the watcher goroutine
	var reason error                   // written by the watcher, read after watcherDone
	go func() {
		defer close(watcherDone)
		reason = s.watch(ctx, ps, stop, &alive)
		if reason != nil {
			_ = ps.Close() // ends the receive loop's read
		}
	}()
	err = s.receive(ctx, ps, fn, &alive)
	close(stop)
	<-watcherDone
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case s.closed.Load():
		return store.ErrClosed
	case reason != nil:
		err = reason
	}
	return fmt.Errorf("%w: %w", ErrFeedBroken, err)
}

// noRedialKey is the context key under which Subscribe passes its
// *atomic.Bool "subscribed" to noRedial.
type noRedialKey struct{}

// errNoRedial is what noRedial answers a dial it refuses with.
var errNoRedial = errors.New("wshub/redisstore: a broken feed subscription is not reconnected")

// noRedial is a redis.Hook that Subscribe adds to the Store's client, once
// per Store. When the connection of a go-redis PubSub fails, the PubSub
// dials a new one and subscribes again before the failed read returns.
// Subscribe reports the broken subscription instead (events may have
// been missed) and its caller subscribes again, so that dial is of no
// use; against a Redis that is gone it is refused at once, but against an
// address that accepts connections and does not answer (a proxy in front
// of a dead Redis) it would hold the broken subscription, reported as
// alive, for the client's dial and handshake timeouts. noRedial refuses
// the dials made under the ctx of a Subscribe that has subscribed; every
// other dial of the client passes through.
type noRedial struct{}

func (noRedial) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if subscribed, _ := ctx.Value(noRedialKey{}).(*atomic.Bool); subscribed != nil && subscribed.Load() {
			return nil, errNoRedial
		}
		return next(ctx, network, addr)
	}
}

func (noRedial) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (noRedial) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// errResubscribed reports that the PubSub subscribed again on a new
// connection: announcements between the two were missed.
var errResubscribed = errors.New("go-redis subscribed again on a new connection")

// receive reads the subscription, calling fn for its events, until a read
// fails (the watcher's ps.Close included) or a reply shows that events may
// have been missed; it returns that error, never nil.
func (s *Store) receive(ctx context.Context, ps *redis.PubSub, fn func(store.Event), alive *atomic.Bool) error {
	ready := false
	for {
		v, err := ps.Receive(ctx)
		if err != nil {
			return err
		}
		alive.Store(true)
		switch v := v.(type) {
		case *redis.Subscription:
			if ready || v.Kind != "subscribe" || v.Channel != s.channel {
				// A second confirmation comes only from a new
				// connection, whose gap nobody announced.
				return fmt.Errorf("%w: %s %s", errResubscribed, v.Kind, v.Channel)
			}
			ready = true
			fn(store.Event{Kind: store.EventReady})
		case *redis.Message:
			if !ready || v.Channel != s.channel {
				return fmt.Errorf("unexpected message on channel %q", v.Channel)
			}
			ev, err := decodeEvent(v.Payload)
			if err != nil {
				return err
			}
			fn(ev)
		case *redis.Pong:
			// a health check's answer: alive is set
		default:
			return fmt.Errorf("unexpected pubsub reply %T", v)
		}
	}
}

// watch runs beside the receive loop until stop is closed, and returns why
// the subscription must end (nil when stop was closed first): ctx ended,
// the Store was closed, a PING could not be sent, or nothing at all
// (not even the PING's answer) came in one FeedCheckInterval after a PING.
func (s *Store) watch(ctx context.Context, ps *redis.PubSub, stop <-chan struct{}, alive *atomic.Bool) error {
	t := time.NewTicker(s.opts.FeedCheckInterval)
	defer t.Stop()
	pinged := false
	for {
		select {
		case <-stop:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-s.done:
			return store.ErrClosed
		case <-t.C:
		}
		if !alive.Swap(false) && pinged {
			return fmt.Errorf("no reply from Redis to a PING within %v", s.opts.FeedCheckInterval)
		}
		if err := ps.Ping(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("health check: %w", err)
		}
		pinged = true
	}
}
