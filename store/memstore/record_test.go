package memstore

import (
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/wshub/wshub/store"
)

func TestRecord_RoundTrip(t *testing.T) {
	cases := []struct {
		name string
		m    store.Message
		cid  string
	}{
		{"direct", store.Message{ID: "0192f7a4-6b1c-7d2e-8f3a-4b5c6d7e8f90", Conv: store.DirectConv("alice", "bob"),
			TS: 1732590000000, Cmd: 10, From: "alice", To: "bob", Body: []byte(`{"content":"hi"}`)}, "c1"},
		{"empty fields", store.Message{ID: "x", Conv: "r:room", Cmd: 11, From: "a"}, ""},
		{"negative and extreme numbers", store.Message{ID: "y", Conv: "c", TS: math.MinInt64, Cmd: -7, From: "f", To: "t",
			Body: []byte{}}, "cid"},
		{"largest numbers", store.Message{ID: "z", Conv: "c", TS: math.MaxInt64, Cmd: math.MaxInt32, From: "f"}, ""},
		{"long fields", store.Message{ID: strings.Repeat("i", 300), Conv: strings.Repeat("c", 70000), From: "é😀",
			To: strings.Repeat("t", 128), Body: []byte(strings.Repeat("b", 1<<20))}, strings.Repeat("k", 200)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, seq := range []uint64{0, 1, 300, math.MaxUint64} {
				r := newRecord(&tc.m, seq, tc.cid)
				assert.Equal(t, len(r), cap(r), "sized exactly")
				want := tc.m
				want.Seq = seq
				if len(want.Body) == 0 {
					want.Body = nil
				}
				assert.Equal(t, want, r.message())
				assert.Equal(t, tc.m.ID, r.message().ID)
				assert.Equal(t, tc.m.From, r.from())
				_, cid := r.decode()
				assert.Equal(t, tc.cid, cid)
			}
		})
	}
}

// The caller's strings and body may be reused after Append: the record
// holds copies.
func TestRecord_CopiesTheCallersBytes(t *testing.T) {
	body := []byte(`{"content":"hi"}`)
	id := []byte("id-1")
	m := store.Message{ID: string(id), Conv: "c", From: "a", To: "b", Body: body}
	r := newRecord(&m, 1, "cid")
	copy(body, "XXXXXXXXXXXXXXXX")
	got := r.message()
	assert.Equal(t, `{"content":"hi"}`, string(got.Body))
	assert.Equal(t, "id-1", got.ID)
}

// FuzzRecord checks that any message, seq and cid come back from their
// record as they went in.
func FuzzRecord(f *testing.F) {
	f.Add("id", "conv", "from", "to", "cid", []byte(`{"content":"hi"}`), uint64(1), int64(1732590000000), 10)
	f.Add("", "", "", "", "", []byte(nil), uint64(0), int64(-1), -1)
	f.Fuzz(func(t *testing.T, id, conv, from, to, cid string, body []byte, seq uint64, ts int64, cmd int) {
		m := store.Message{ID: id, Conv: conv, TS: ts, Cmd: cmd, From: from, To: to, Body: body}
		r := newRecord(&m, seq, cid)
		if len(r) != cap(r) {
			t.Fatalf("record of %d bytes in %d", len(r), cap(r))
		}
		got, gotCID := r.decode()
		m.Seq = seq
		if len(m.Body) == 0 {
			m.Body = nil
		}
		assert.Equal(t, m, got)
		assert.Equal(t, cid, gotCID)
		assert.Equal(t, id, got.ID)
		assert.Equal(t, from, r.from())
	})
}
