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
