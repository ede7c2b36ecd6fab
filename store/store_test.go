package store_test

import (
	"testing"

	"github.com/wshub/wshub/store"
)

// IsDirect says what m.Conv == DirectConv(m.From, m.To) says (for a
// message with m.To set), without building the key.
func TestIsDirect_MatchesDirectConv(t *testing.T) {
	users := []string{"a", "b", "ab", "c", "bc", "alice", "bob", "x:y", "0123456789", "0123456789a", ""}
	var convs []string
	for _, a := range users {
		for _, b := range users {
			convs = append(convs, store.DirectConv(a, b))
		}
	}
	convs = append(convs, "r:a", "d:", "d:1:a", "d:1:a:", "d:x:a:b", "d:01:a:b", "d:1:ab:c", "d:2:ab")
	for _, from := range users {
		for _, to := range users {
			for _, conv := range convs {
				m := &store.Message{From: from, To: to, Conv: conv}
				want := to != "" && conv == store.DirectConv(from, to)
				if got := store.IsDirect(m); got != want {
					t.Errorf("IsDirect(from %q, to %q, conv %q) = %v, want %v", from, to, conv, got, want)
				}
			}
		}
	}
	m := &store.Message{From: "alice", To: "bob", Conv: store.DirectConv("bob", "alice")}
	if n := testing.AllocsPerRun(100, func() { store.IsDirect(m) }); n != 0 {
		t.Errorf("IsDirect allocates %v times", n)
	}
}

// FuzzIsDirect compares IsDirect with its definition on any ids and key.
func FuzzIsDirect(f *testing.F) {
	f.Add("alice", "bob", store.DirectConv("alice", "bob"))
	f.Add("ab", "c", "d:1:a:bc")
	f.Fuzz(func(t *testing.T, from, to, conv string) {
		m := &store.Message{From: from, To: to, Conv: conv}
		want := to != "" && conv == store.DirectConv(from, to)
		if got := store.IsDirect(m); got != want {
			t.Fatalf("IsDirect(from %q, to %q, conv %q) = %v, want %v", from, to, conv, got, want)
		}
	})
}
