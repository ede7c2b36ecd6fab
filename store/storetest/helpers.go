package storetest

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub/store"
)

// baseTS is the TS of the messages the suite writes: any fixed time works,
// the store keeps it as given.
const baseTS = int64(1_700_000_000_000)

// msg returns a direct-message-shaped message with a body naming its id.
func msg(conv, id, from, to string) store.Message {
	return store.Message{
		ID:   id,
		Conv: conv,
		TS:   baseTS,
		Cmd:  10,
		From: from,
		To:   to,
		Body: []byte(`{"content":` + fmt.Sprintf("%q", id) + `}`),
	}
}

// appendOK appends req and requires success and a first (non-duplicate)
// write.
func appendOK(t *testing.T, s store.Store, req store.AppendRequest) store.Message {
	t.Helper()
	m, dup, err := s.Append(t.Context(), req)
	require.NoError(t, err, "Append %q to %q", req.Msg.ID, req.Msg.Conv)
	require.False(t, dup, "Append %q to %q reported a duplicate", req.Msg.ID, req.Msg.Conv)
	return m
}

// appendN appends n messages from alice to bob in conv (ids prefix-1 ...
// prefix-n) with no pending users and returns what Append returned.
func appendN(t *testing.T, s store.Store, conv, prefix string, n int) []store.Message {
	t.Helper()
	out := make([]store.Message, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, appendOK(t, s, store.AppendRequest{
			Msg: msg(conv, fmt.Sprintf("%s-%d", prefix, i), "alice", "bob"),
		}))
	}
	return out
}

func history(t *testing.T, s store.Store, conv string, q store.Query) store.Page {
	t.Helper()
	p, err := s.History(t.Context(), conv, q)
	require.NoError(t, err, "History(%q, %+v)", conv, q)
	return p
}

func pending(t *testing.T, s store.Store, user string) []store.Message {
	t.Helper()
	ms, err := s.Pending(t.Context(), user)
	require.NoError(t, err, "Pending(%q)", user)
	return ms
}

func rooms(t *testing.T, s store.Store, user string) []string {
	t.Helper()
	rs, err := s.Rooms(t.Context(), user)
	require.NoError(t, err, "Rooms(%q)", user)
	return rs
}

func members(t *testing.T, s store.Store, room string) []string {
	t.Helper()
	us, err := s.Members(t.Context(), room)
	require.NoError(t, err, "Members(%q)", room)
	return us
}

func seqsOf(ms []store.Message) []uint64 {
	out := make([]uint64, len(ms))
	for i, m := range ms {
		out[i] = m.Seq
	}
	return out
}

func idsOf(ms []store.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

// seqRange returns lo, lo+1, ..., hi (nil when hi < lo).
func seqRange(lo, hi uint64) []uint64 {
	var out []uint64
	for s := lo; s <= hi && hi != 0; s++ {
		out = append(out, s)
	}
	return out
}

// assertSameMessage checks that got carries every field of want. A nil and
// an empty Body are the same.
func assertSameMessage(t *testing.T, want, got store.Message, msgAndArgs ...any) bool {
	t.Helper()
	wantBody, gotBody := want.Body, got.Body
	want.Body, got.Body = nil, nil
	ok := assert.Equal(t, want, got, msgAndArgs...)
	if !bytes.Equal(wantBody, gotBody) {
		ok = assert.Fail(t, fmt.Sprintf("Body differs: want %q, got %q", wantBody, gotBody), msgAndArgs...)
	}
	return ok
}

// assertSameMessages checks want and got pairwise with assertSameMessage.
func assertSameMessages(t *testing.T, want, got []store.Message, msgAndArgs ...any) {
	t.Helper()
	if !assert.Equal(t, idsOf(want), idsOf(got), msgAndArgs...) {
		return
	}
	for i := range want {
		assertSameMessage(t, want[i], got[i], msgAndArgs...)
	}
}

// withSeq returns m with Seq set.
func withSeq(m store.Message, seq uint64) store.Message {
	m.Seq = seq
	return m
}
