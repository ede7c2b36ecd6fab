package redisstore_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub/store"
	"github.com/wshub/wshub/store/redisstore"
)

// longTTL is the lease of the test processes that stay alive: far longer
// than any test, so it never ends by itself.
const longTTL = time.Minute

// transitions returns the presence events of evs as "+user" (online) and
// "-user" (offline), in order, failing the test on any other kind and on
// a TS outside [from, to] (the window of the calls that announced them,
// with a second of slack each way for the two clocks).
func transitions(t *testing.T, evs []store.Event, from, to time.Time) []string {
	t.Helper()
	out := []string{}
	for _, ev := range withoutSentinels(evs) {
		if !assert.Equal(t, store.EventPresence, ev.Kind, "%+v", ev) {
			continue
		}
		assert.GreaterOrEqual(t, ev.TS, from.Add(-time.Second).UnixMilli(), "TS of %+v", ev)
		assert.LessOrEqual(t, ev.TS, to.Add(time.Second).UnixMilli(), "TS of %+v", ev)
		if ev.Online {
			out = append(out, "+"+ev.User)
		} else {
			out = append(out, "-"+ev.User)
		}
	}
	return out
}

// withoutSentinels returns evs without the announcements of sentinels
// (another subscription's sentinel comes through this one as well).
func withoutSentinels(evs []store.Event) []store.Event {
	return slices.DeleteFunc(evs, func(ev store.Event) bool {
		return ev.Kind == store.EventMessage && ev.Msg.Conv == "sentinel"
	})
}

// announced returns the transitions announced to sub before a sentinel
// appended by s (so, by every write that returned before this call).
func (sub *subscription) announced(t *testing.T, s *redisstore.Store, from time.Time) []string {
	t.Helper()
	return transitions(t, sub.sentinel(t, s), from, time.Now())
}

// hashFields returns the fields of the hash at key, sorted.
func hashFields(t *testing.T, c *redis.Client, key string) []string {
	t.Helper()
	fields, err := c.HKeys(t.Context(), key).Result()
	require.NoError(t, err)
	slices.Sort(fields)
	return fields
}

func setPresence(t *testing.T, s *redisstore.Store, proc string, ttl time.Duration, on, off []string) bool {
	t.Helper()
	reset, err := s.SetPresence(t.Context(), proc, ttl, on, off)
	require.NoError(t, err)
	return reset
}

func online(t *testing.T, s *redisstore.Store, users ...string) []bool {
	t.Helper()
	got, err := s.Online(t.Context(), users)
	require.NoError(t, err)
	return got
}

// waitOffline waits until Online reports user offline: its lease ended.
func waitOffline(t *testing.T, s *redisstore.Store, user string) {
	t.Helper()
	for deadline := time.Now().Add(waitBound); online(t, s, user)[0]; {
		if time.Now().After(deadline) {
			t.Fatalf("%s still online after %v", user, waitBound)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPresence_TransitionsAcrossProcesses: two Stores (two hub processes)
// report users on and off; the feed, seen from both, announces a user
// online when the first process reports it, offline when the last one
// does, and nothing in between or for repeats.
func TestPresence_TransitionsAcrossProcesses(t *testing.T) {
	prefix := newPrefix("presence")
	a, _ := newStore(t, redisstore.Options{Prefix: prefix})
	b, _ := newStore(t, redisstore.Options{Prefix: prefix})
	subA, subB := subscribe(t, a), subscribe(t, b)
	alice, bob, carol := "alice", "b\x00b:\xff", "carol" // binary-safe

	start := time.Now()
	assert.True(t, setPresence(t, a, "A", longTTL, []string{alice}, nil), "first call: reset")
	assert.Equal(t, []string{"+alice"}, subA.announced(t, a, start))
	assert.Equal(t, []string{"+alice"}, subB.announced(t, b, start))

	start = time.Now()
	assert.True(t, setPresence(t, b, "B", longTTL, []string{alice, bob}, nil), "first call of B: reset")
	assert.False(t, setPresence(t, a, "A", longTTL, []string{alice}, nil), "renewal: no reset")
	assert.False(t, setPresence(t, b, "B", longTTL, []string{bob}, nil))
	assert.Equal(t, []string{"+" + bob}, subA.announced(t, b, start), "alice was online already")
	assert.Equal(t, []string{"+" + bob}, subB.announced(t, a, start))
	assert.Equal(t, []bool{true, true, false}, online(t, a, alice, bob, carol))
	assert.Equal(t, []bool{true, true, false}, online(t, b, alice, bob, carol))

	start = time.Now()
	setPresence(t, a, "A", longTTL, nil, []string{alice})
	setPresence(t, a, "A", longTTL, nil, []string{alice, carol})
	assert.Empty(t, subA.announced(t, a, start), "alice is still online on B; carol never was")
	assert.Equal(t, []bool{true, true, false}, online(t, a, alice, bob, carol))

	start = time.Now()
	setPresence(t, b, "B", longTTL, []string{carol}, []string{alice, bob})
	assert.Equal(t, []string{"+carol", "-alice", "-" + bob}, subA.announced(t, a, start))
	assert.Equal(t, []string{"+carol", "-alice", "-" + bob}, subB.announced(t, a, start))
	assert.Equal(t, []bool{false, false, true}, online(t, a, alice, bob, carol))

	start = time.Now()
	setPresence(t, a, "A", longTTL, []string{carol, alice}, []string{alice}) // on, then off
	assert.Equal(t, []string{"+alice", "-alice"}, subA.announced(t, a, start))
	assert.Equal(t, []bool{false, false, true}, online(t, b, alice, bob, carol))
	assert.Empty(t, online(t, a))
}

// TestPresence_DeadProcessIsReaped: a process that stops renewing its
// lease (killed) counts as offline as soon as the lease ended, without an
// announcement; the next SetPresence of another process removes its
// entries and announces offline those of its users online nowhere else.
// Coming back, it is told to reset.
func TestPresence_DeadProcessIsReaped(t *testing.T) {
	prefix := newPrefix("reap")
	killed, client := newStore(t, redisstore.Options{Prefix: prefix})
	other, _ := newStore(t, redisstore.Options{Prefix: prefix})
	sub := subscribe(t, other)

	start := time.Now()
	setPresence(t, other, "L", longTTL, []string{"bob"}, nil)
	assert.True(t, setPresence(t, killed, "K", 300*time.Millisecond, []string{"alice", "bob", "carol"}, nil))
	assert.Equal(t, []string{"+bob", "+alice", "+carol"}, sub.announced(t, other, start))

	start = time.Now()
	waitOffline(t, other, "alice") // K's lease ended
	assert.Equal(t, []bool{false, true, false}, online(t, other, "alice", "bob", "carol"),
		"a lease that ended counts as offline before it is reaped")
	assert.Empty(t, sub.announced(t, other, start), "nothing announced before the reap")

	start = time.Now()
	assert.False(t, setPresence(t, other, "L", longTTL, nil, nil))
	got := sub.announced(t, other, start)
	slices.Sort(got)
	assert.Equal(t, []string{"-alice", "-carol"}, got, "bob is online on L")
	assert.Equal(t, []string{prefix + "{presence}po:1:L"}, keysWithPrefix(t, client, prefix+"{presence}po:"), "K's entries are gone")
	setPresence(t, other, "L", longTTL, nil, nil)
	assert.Empty(t, sub.announced(t, other, start), "reaped once")

	start = time.Now()
	assert.True(t, setPresence(t, killed, "K", longTTL, []string{"alice"}, nil), "reaped: reset")
	assert.Equal(t, []string{"+alice"}, sub.announced(t, other, start))
	assert.Equal(t, []bool{true, true, false}, online(t, other, "alice", "bob", "carol"))
}

// TestPresence_LateRenewalResets: a process whose lease ended but was not
// reaped yet is told to reset, and its old entries are not revived: a
// user it does not report again is offline and is announced offline by
// the reap, even though it was never announced offline before.
func TestPresence_LateRenewalResets(t *testing.T) {
	prefix := newPrefix("late")
	s, _ := newStore(t, redisstore.Options{Prefix: prefix})
	sub := subscribe(t, s)

	start := time.Now()
	assert.True(t, setPresence(t, s, "P", 300*time.Millisecond, []string{"alice", "bob"}, nil))
	assert.Equal(t, []string{"+alice", "+bob"}, sub.announced(t, s, start))
	waitOffline(t, s, "alice")

	start = time.Now()
	assert.True(t, setPresence(t, s, "P", longTTL, nil, nil), "the lease ended: reset")
	assert.Equal(t, []bool{false, false}, online(t, s, "alice", "bob"), "the old entries stay dead")
	got := sub.announced(t, s, start)
	slices.Sort(got)
	assert.Equal(t, []string{"-alice", "-bob"}, got, "and are reaped")
	assert.False(t, setPresence(t, s, "P", longTTL, []string{"alice"}, nil))
	assert.Equal(t, []bool{true, false}, online(t, s, "alice", "bob"))
}

// TestPresence_ReapIsBounded: one SetPresence reaps at most 1,000 users of
// dead processes; the following calls reap the rest.
func TestPresence_ReapIsBounded(t *testing.T) {
	prefix := newPrefix("reapbound")
	s, client := newStore(t, redisstore.Options{Prefix: prefix})
	sub := subscribe(t, s)
	users := make([]string, 2500)
	for i := range users {
		users[i] = fmt.Sprintf("user%04d", i)
	}
	// Three script calls: the lease is short only from the last renewal
	// on, so that a slow machine does not end it between them.
	setPresence(t, s, "dead", longTTL, users, nil)
	assert.False(t, setPresence(t, s, "dead", 300*time.Millisecond, nil, nil))
	assert.Len(t, sub.announced(t, s, time.Now().Add(-time.Minute)), len(users))
	waitOffline(t, s, users[0])

	var reaped []string
	for _, want := range []int{1000, 1000, 500, 0} {
		start := time.Now()
		setPresence(t, s, "live", longTTL, nil, nil)
		got := sub.announced(t, s, start)
		assert.Len(t, got, want)
		reaped = append(reaped, got...)
	}
	slices.Sort(reaped)
	for i, u := range users {
		assert.Equal(t, "-"+u, reaped[i])
	}
	assert.Empty(t, keysWithPrefix(t, client, prefix+"{presence}pu:"), "no user entries left")
	assert.Empty(t, keysWithPrefix(t, client, prefix+"{presence}po:"), "no process entries left")
}

// TestPresence_RetireAnnouncesOffline: RetirePresence ends the lease at
// once and announces offline every user of the process (here more than
// one script call removes) that is online nowhere else.
func TestPresence_RetireAnnouncesOffline(t *testing.T) {
	prefix := newPrefix("retire")
	a, client := newStore(t, redisstore.Options{Prefix: prefix})
	b, _ := newStore(t, redisstore.Options{Prefix: prefix})
	sub := subscribe(t, b)
	users := make([]string, 2500)
	for i := range users {
		users[i] = fmt.Sprintf("user%04d", i)
	}
	setPresence(t, b, "B", longTTL, []string{users[0], "bob"}, nil)
	assert.True(t, setPresence(t, a, "A", longTTL, users, nil))
	assert.Len(t, sub.announced(t, b, time.Now().Add(-time.Minute)), len(users)+1)

	start := time.Now()
	require.NoError(t, a.RetirePresence(t.Context(), "A"))
	got := sub.announced(t, b, start)
	assert.Len(t, got, len(users)-1)
	assert.NotContains(t, got, "-"+users[0], "online on B")
	assert.Equal(t, []bool{true, false, false, true}, online(t, a, users[0], users[1], users[2499], "bob"))
	assert.Equal(t, []string{prefix + "{presence}po:1:B"}, keysWithPrefix(t, client, prefix+"{presence}po:"), "A's entries are gone")
	assert.Equal(t, []string{"B"}, hashFields(t, client, prefix+"{presence}pi"), "A has no incarnation")

	require.NoError(t, a.RetirePresence(t.Context(), "A"), "retiring again")
	require.NoError(t, a.RetirePresence(t.Context(), "never"), "a proc without a lease")
	assert.Empty(t, sub.announced(t, b, start))

	start = time.Now()
	assert.True(t, setPresence(t, a, "A", longTTL, []string{users[1]}, nil), "after retiring: reset")
	assert.Equal(t, []string{"+" + users[1]}, sub.announced(t, b, start))
}

// TestPresence_RejectsInvalid: empty names and a ttl under 1ms are
// store.ErrInvalid; a closed Store is store.ErrClosed; a done ctx is its
// error; none of them writes anything.
func TestPresence_RejectsInvalid(t *testing.T) {
	prefix := newPrefix("presinvalid")
	s, client := newStore(t, redisstore.Options{Prefix: prefix})
	ctx := t.Context()
	_, err := s.SetPresence(ctx, "", longTTL, []string{"alice"}, nil)
	assert.ErrorIs(t, err, store.ErrInvalid)
	_, err = s.SetPresence(ctx, "P", 0, []string{"alice"}, nil)
	assert.ErrorIs(t, err, store.ErrInvalid)
	_, err = s.SetPresence(ctx, "P", longTTL, []string{"alice"}, []string{""})
	assert.ErrorIs(t, err, store.ErrInvalid)
	assert.ErrorIs(t, s.RetirePresence(ctx, ""), store.ErrInvalid)
	_, err = s.Online(ctx, []string{"alice", ""})
	assert.ErrorIs(t, err, store.ErrInvalid)
	assert.ErrorIs(t, s.Signal(ctx, store.Signal{Users: []string{"a", ""}, Data: []byte("x")}), store.ErrInvalid)

	done, cancel := context.WithCancel(ctx)
	cancel()
	_, err = s.SetPresence(done, "P", longTTL, []string{"alice"}, nil)
	assert.ErrorIs(t, err, context.Canceled)
	assert.ErrorIs(t, s.RetirePresence(done, "P"), context.Canceled)
	_, err = s.Online(done, []string{"alice"})
	assert.ErrorIs(t, err, context.Canceled)
	assert.ErrorIs(t, s.Signal(done, store.Signal{Users: []string{"alice"}}), context.Canceled)
	assert.Empty(t, keysWithPrefix(t, client, prefix))

	require.NoError(t, s.Close())
	_, err = s.SetPresence(ctx, "P", longTTL, []string{"alice"}, nil)
	assert.ErrorIs(t, err, store.ErrClosed)
	assert.ErrorIs(t, s.RetirePresence(ctx, "P"), store.ErrClosed)
	_, err = s.Online(ctx, []string{"alice"})
	assert.ErrorIs(t, err, store.ErrClosed)
	assert.ErrorIs(t, s.Signal(ctx, store.Signal{Users: []string{"alice"}}), store.ErrClosed)
}

// TestPresence_WrongTypeKeyWritesNothing: a presence key of the wrong type
// fails SetPresence before it wrote or announced anything.
func TestPresence_WrongTypeKeyWritesNothing(t *testing.T) {
	for _, key := range []string{"{presence}pl", "{presence}pi", "{presence}pn", "{presence}pu:bob"} {
		t.Run(key, func(t *testing.T) {
			prefix := newPrefix("preswrongtype")
			s, client := newStore(t, redisstore.Options{Prefix: prefix})
			sub := subscribe(t, s)
			require.NoError(t, client.HSet(t.Context(), prefix+key, "x", "y").Err())
			if key == "{presence}pi" || key == "{presence}pn" {
				require.NoError(t, client.Del(t.Context(), prefix+key).Err())
				require.NoError(t, client.SAdd(t.Context(), prefix+key, "x").Err())
			}
			_, err := s.SetPresence(t.Context(), "P", longTTL, []string{"alice", "bob"}, nil)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "WRONGTYPE")
			assert.Equal(t, []string{prefix + key}, keysWithPrefix(t, client, prefix))
			assert.Empty(t, sub.sentinel(t, s))
		})
	}
}

// TestPresence_WrongTypeProcessSetWritesNothing: the set of a live
// process's users clobbered with another type fails its SetPresence
// before the lease is renewed or anything is announced.
func TestPresence_WrongTypeProcessSetWritesNothing(t *testing.T) {
	prefix := newPrefix("preswrongset")
	s, client := newStore(t, redisstore.Options{Prefix: prefix})
	sub := subscribe(t, s)
	start := time.Now()
	setPresence(t, s, "P", longTTL, []string{"alice"}, nil)
	assert.Equal(t, []string{"+alice"}, sub.announced(t, s, start))
	deadline, err := client.ZScore(t.Context(), prefix+"{presence}pl", "1:P").Result()
	require.NoError(t, err)
	require.NoError(t, client.Del(t.Context(), prefix+"{presence}po:1:P").Err())
	require.NoError(t, client.HSet(t.Context(), prefix+"{presence}po:1:P", "x", "y").Err())
	waitChange(t, client) // Redis's clock moves on: a renewal would move the deadline

	_, err = s.SetPresence(t.Context(), "P", longTTL, []string{"bob"}, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "WRONGTYPE")
	again, err := client.ZScore(t.Context(), prefix+"{presence}pl", "1:P").Result()
	require.NoError(t, err)
	assert.Equal(t, deadline, again, "the lease was not renewed")
	assert.Equal(t, []bool{true, false}, online(t, s, "alice", "bob"))
	assert.Empty(t, sub.sentinel(t, s))
}

// waitChange waits until Redis's clock (TIME) moved by at least one ms.
func waitChange(t *testing.T, c *redis.Client) {
	t.Helper()
	first, err := c.Time(t.Context()).Result()
	require.NoError(t, err)
	for deadline := time.Now().Add(waitBound); ; time.Sleep(time.Millisecond) {
		now, err := c.Time(t.Context()).Result()
		require.NoError(t, err)
		if now.Sub(first) >= 2*time.Millisecond {
			return
		}
		require.True(t, time.Now().Before(deadline), "Redis's clock did not move in %v", waitBound)
	}
}

// TestPresence_KeysDocumented: the keys presence leaves are the documented
// ones.
func TestPresence_KeysDocumented(t *testing.T) {
	prefix := newPrefix("preskeys")
	s, client := newStore(t, redisstore.Options{Prefix: prefix})
	setPresence(t, s, "P", longTTL, []string{"alice"}, nil)
	keys := keysWithPrefix(t, client, prefix)
	slices.Sort(keys)
	assert.Equal(t, []string{prefix + "{presence}pi", prefix + "{presence}pl", prefix + "{presence}pn", prefix + "{presence}po:1:P", prefix + "{presence}pu:alice"}, keys)
	for _, k := range keys {
		assert.True(t, strings.HasPrefix(k, prefix))
	}
}
