package storetest

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub/store"
)

// oddIDs are user, room and conversation ids a store must keep apart and
// return unchanged: separators, glob and hash-tag characters of key-value
// stores, prefixes of one another, unicode, control bytes.
var oddIDs = []string{
	"plain",
	"with space",
	" padded ",
	"ünïcødé",
	"emoji 🎉",
	"中文",
	"a",
	"a:",
	":a",
	"a:b:c",
	"a:b",
	"new\nline",
	"tab\tand\rcr",
	`quote"and'`,
	`back\slash/and/slash`,
	"glob*",
	"glob?",
	"[glob]",
	"{hash}tag",
	"nul\x00byte",
	"%s%d",
	"..",
	strings.Repeat("long", 256),
}

var keyTests = []test{
	{"DirectConvIsSymmetric", func(t *testing.T, _ store.Store) {
		for _, pair := range [][2]string{{"alice", "bob"}, {"a:1", "b"}, {"", "x"}, {"same", "same"}, {"ü", "u"}} {
			assert.Equal(t, store.DirectConv(pair[0], pair[1]), store.DirectConv(pair[1], pair[0]), "%q", pair)
		}
	}},
	{"ConversationKeysDoNotCollide", func(t *testing.T, s store.Store) {
		convs := []string{
			store.DirectConv("a:1", "b"),
			store.DirectConv("a", "1:b"),
			store.DirectConv("a", "b:c"),
			store.DirectConv("a:b", "c"),
			store.DirectConv("a", "b"),
			store.DirectConv("1:a", "b"),
			store.DirectConv("a", "1"),
			store.RoomConv("a"),
			store.RoomConv("d:1:a:b"),
			store.RoomConv("a:b"),
			"c", "c:", "c:1", "c*", "c?",
		}
		seen := make(map[string]int)
		for i, conv := range convs {
			if j, ok := seen[conv]; ok {
				t.Fatalf("conversation keys %d and %d are both %q", j, i, conv)
			}
			seen[conv] = i
		}
		for i, conv := range convs {
			appendOK(t, s, store.AppendRequest{Msg: msg(conv, fmt.Sprintf("m%d", i), "alice", "bob")})
		}
		for i, conv := range convs {
			p := history(t, s, conv, store.Query{})
			assert.Equal(t, []string{fmt.Sprintf("m%d", i)}, idsOf(p.Items), "history of %q", conv)
			assert.Equal(t, uint64(1), p.Last, "Last of %q", conv)
		}
	}},
	{"ArbitraryBytesInIDs", func(t *testing.T, s store.Store) {
		want := make(map[string]store.Message)
		for _, id := range oddIDs {
			m := msg(store.RoomConv(id), id+"#msg", id, id)
			want[id] = appendOK(t, s, store.AppendRequest{Msg: m, Pending: []string{id}, CID: id})
			require.NoError(t, s.Join(t.Context(), id, id), "Join(%q, %q)", id, id)
		}
		for _, id := range oddIDs {
			p := history(t, s, store.RoomConv(id), store.Query{})
			if assert.Len(t, p.Items, 1, "history of %q", id) {
				assertSameMessage(t, want[id], p.Items[0], "history of %q", id)
			}
			q := pending(t, s, id)
			if assert.Len(t, q, 1, "pending of %q", id) {
				assertSameMessage(t, want[id], q[0], "pending of %q", id)
			}
			assert.Equal(t, []string{id}, rooms(t, s, id), "rooms of %q", id)
			assert.Equal(t, []string{id}, members(t, s, id), "members of %q", id)
			// The resend goes to the same conversation, as a client's
			// does (store/redisstore scopes a cid to its conversation).
			got, dup, err := s.Append(t.Context(), store.AppendRequest{Msg: msg(store.RoomConv(id), "resend", id, id), CID: id})
			require.NoError(t, err)
			assert.True(t, dup, "resend of cid %q from %q", id, id)
			assert.Equal(t, want[id].ID, got.ID, "resend of cid %q from %q", id, id)
		}
		for _, id := range oddIDs {
			require.NoError(t, s.Ack(t.Context(), id, id+"#msg"))
			assert.Empty(t, pending(t, s, id), "pending of %q after its ack", id)
			require.NoError(t, s.Leave(t.Context(), id, id))
			assert.Empty(t, rooms(t, s, id), "rooms of %q after Leave", id)
		}
		for _, id := range oddIDs {
			assert.Len(t, history(t, s, store.RoomConv(id), store.Query{}).Items, 1, "history of %q after the resend", id)
		}
	}},
}
