package redisstore

import (
	"encoding/binary"
	"errors"
	"runtime"
	"testing"

	"github.com/wshub/wshub/store"
)

// TestDecodeEvent_SignalAndPresence: signal and presence announcements
// decode to what was encoded, and every announcement cut before the end
// of its fixed fields (for a presence, before the first byte of the user)
// is ErrCorrupt.
func TestDecodeEvent_SignalAndPresence(t *testing.T) {
	sigs := []store.Signal{
		{Users: []string{"alice", "b\x00b"}, Room: "room", Origin: "conn", Data: []byte("\x00frame\xff")},
		{Users: []string{"carol"}},
		{Room: "r"},
	}
	for _, sig := range sigs {
		p := encodeSignal(&sig)
		ev, err := decodeEvent(p)
		if err != nil {
			t.Fatalf("%+v: %v", sig, err)
		}
		if ev.Kind != store.EventSignal || !equalSignal(ev.Signal, sig) {
			t.Errorf("decoded %+v, want %+v", ev, sig)
		}
		for n := range len(p) - len(sig.Data) {
			if _, err := decodeEvent(p[:n]); !errors.Is(err, ErrCorrupt) {
				t.Errorf("%q (cut at %d of %d): %v, want ErrCorrupt", p[:n], n, len(p), err)
			}
		}
	}

	for _, ev := range []store.Event{
		{Kind: store.EventPresence, User: "alice", Online: true, TS: 1_700_000_000_123},
		{Kind: store.EventPresence, User: "b\x00b", Online: false, TS: 0},
	} {
		state := byte('0')
		if ev.Online {
			state = '1'
		}
		p := string(append(binary.AppendUvarint([]byte{wirePresence, state}, uint64(ev.TS)), ev.User...))
		got, err := decodeEvent(p)
		if err != nil || got.Kind != store.EventPresence || got.User != ev.User || got.Online != ev.Online || got.TS != ev.TS {
			t.Errorf("%q: %+v, %v; want %+v", p, got, err, ev)
		}
		for n := range len(p) - len(ev.User) + 1 {
			if _, err := decodeEvent(p[:n]); !errors.Is(err, ErrCorrupt) {
				t.Errorf("%q (cut at %d of %d): %v, want ErrCorrupt", p[:n], n, len(p), err)
			}
		}
	}
	tooBig := string(binary.AppendUvarint([]byte{wirePresence, '1'}, 1<<63)) + "u"
	if _, err := decodeEvent(tooBig); !errors.Is(err, ErrCorrupt) {
		t.Errorf("a TS beyond int64: %v, want ErrCorrupt", err)
	}
}

// TestDecodeEvent_SignalCountIsBoundedByItsBytes: a signal announcement
// claiming more users than it has bytes is refused before the users are
// allocated.
func TestDecodeEvent_SignalCountIsBoundedByItsBytes(t *testing.T) {
	p := string(binary.AppendUvarint([]byte{wireSignal}, 1<<24)) + "\x01a\x00\x00"
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := decodeEvent(p)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrCorrupt) {
		t.Errorf("%v, want ErrCorrupt", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Errorf("decoding allocated %d bytes", n)
	}
}

func equalSignal(a, b store.Signal) bool {
	if len(a.Users) != len(b.Users) || a.Room != b.Room || a.Origin != b.Origin || string(a.Data) != string(b.Data) {
		return false
	}
	if (a.Data == nil) != (b.Data == nil) {
		return false
	}
	for i := range a.Users {
		if a.Users[i] != b.Users[i] {
			return false
		}
	}
	return true
}
