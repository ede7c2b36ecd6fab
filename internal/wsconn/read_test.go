package wsconn

import (
	"log/slog"
	"sync"
	"testing"
	"time"
)

// scriptedReader hands out its chunks one read at a time, then reports
// errWouldBlock; it counts the reads.
type scriptedReader struct {
	chunks [][]byte
	reads  int
	rearm  bool
}

func (r *scriptedReader) rearms() bool { return r.rearm }

func (r *scriptedReader) readNow(p []byte) (int, error) {
	r.reads++
	if len(r.chunks) == 0 {
		return 0, errWouldBlock
	}
	n := copy(p, r.chunks[0])
	if n < len(r.chunks[0]) {
		r.chunks[0] = r.chunks[0][n:]
	} else {
		r.chunks = r.chunks[1:]
	}
	return n, nil
}

// messages records the messages a Conn hands its handler.
type messages struct{ got []string }

func (m *messages) Message(p []byte) { m.got = append(m.got, string(p)) }
func (m *messages) Written([]string) {}
func (m *messages) Closed(err error) {}

// testConn is a Conn with no socket, for readReady.
func testConn(h Handler) *Conn {
	c := &Conn{t: &Transport{cfg: Config{ReadLimit: 1 << 20, FrameTimeout: time.Hour, Goroutines: new(sync.WaitGroup), Logger: slog.New(slog.DiscardHandler)}}, h: h, mu: new(sync.Mutex)}
	c.p.limit = c.t.cfg.ReadLimit
	return c
}

// A read that comes back short took all the socket had: with a reader
// whose socket is armed again (the poller's), readReady returns without
// the read that would only say errWouldBlock; a read that filled the
// buffer is followed by another, and a reader that is not re-armed reads
// on to errWouldBlock.
func TestReadReady_ShortReadEndsTheEvent(t *testing.T) {
	small := clientFrame(true, 1, []byte("hello"))
	// Longer than the read buffer: the first read fills it.
	big := clientFrame(true, 1, make([]byte, readChunk+maxHeader+100))
	for _, tc := range []struct {
		name      string
		rearm     bool
		frame     []byte
		wantReads int
	}{
		{"short read, re-armed", true, small, 1},
		{"short read, not re-armed", false, small, 2},
		{"a full read, then a short one, re-armed", true, big, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &messages{}
			c := testConn(h)
			defer func() {
				c.mu.Lock()
				if c.frameTimer != nil {
					c.frameTimer.Stop()
				}
				c.mu.Unlock()
			}()
			r := &scriptedReader{chunks: [][]byte{tc.frame}, rearm: tc.rearm}
			if !c.readReady(r) {
				t.Fatal("readReady ended the connection")
			}
			if r.reads != tc.wantReads || len(h.got) != 1 {
				t.Fatalf("%d reads, %d messages; want %d reads, 1 message", r.reads, len(h.got), tc.wantReads)
			}
		})
	}
}
