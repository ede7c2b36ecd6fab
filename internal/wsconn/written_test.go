//go:build linux

package wsconn

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// With Config.InlineWritten, Write writes tagged frames itself and
// reports their tags once the socket took them; the tags of frames that
// the socket did not take whole are reported by the flusher once it wrote
// the rest. Here the client reads nothing until the socket is full, so the
// last Write leaves its frame to the flusher: every tag is reported, once,
// in order.
func TestWrite_InlineWrittenReportsEveryTagOnce(t *testing.T) {
	_, dial := pollServerWith(t, func(c *Config) {
		c.InlineWritten = true
		c.SendQueue, c.SendQueueBytes = 1<<20, 1<<30
	})
	ws, h := dial()
	c := h.conn.Load()
	payload := strings.Repeat("x", tryBytes/2)
	var want []string
	inline := 0
	deadline := time.Now().Add(10 * time.Second)
	for {
		tag := fmt.Sprint("m", len(want))
		writer, err := c.Queue(Frame{Data: []byte(payload), Tag: tag})
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, tag)
		if !writer {
			t.Fatal("a writer holds the role though every Write so far was whole")
		}
		c.Write()
		c.mu.Lock()
		flusher := c.writing // a flusher took the rest over
		c.mu.Unlock()
		if flusher {
			break
		}
		inline++
		if time.Now().After(deadline) {
			t.Fatal("the socket took everything for 10 s")
		}
	}
	if inline == 0 {
		t.Fatal("no Write was whole: nothing was reported inline")
	}
	h.mu.Lock()
	got := slices.Clone(h.written)
	h.mu.Unlock()
	if !slices.Equal(got, want[:inline]) {
		t.Fatalf("reported inline %v, want %v", got, want[:inline])
	}
	for range want { // the client reads everything now
		if _, _, err := ws.ReadMessage(); err != nil {
			t.Fatal(err)
		}
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		h.mu.Lock()
		got = slices.Clone(h.written)
		h.mu.Unlock()
		if len(got) >= len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("reported %d tags %v..., want %d", len(got), got[max(0, len(got)-3):], len(want))
	}
}
