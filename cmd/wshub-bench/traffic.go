//go:build linux

package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// tally holds the counters that every connection of a traffic scenario
// adds to.
type tally struct {
	sent      atomic.Int64 // frames written by senders
	receipted atomic.Int64 // receipts (cmd 15) received by senders
	failed    atomic.Int64 // error frames (cmd 40) answering a sent frame
	delivered atomic.Int64 // distinct messages received by receivers
	dups      atomic.Int64 // messages a receiver got again
	strays    atomic.Int64 // messages from a sender the receiver did not expect
	errFrames atomic.Int64 // error frames of any kind
	skipped   atomic.Int64 // paced messages not sent: their sender's window was full
	lat       histogram    // send-to-receive latency
	slow      slowLog      // the deliveries slower than slowLatency
	all       *deliveryLog // every delivery (direct -deliveries), or nil
	connEnds
}

// report adds the figures every traffic scenario reports: what went
// wrong (lost as counted by the caller, duplicated, stray, error frames,
// connections closed by the hub), the latency quantiles, and how long
// publishing and the drain took. unit names what was lost ("messages",
// "deliveries") in the run's error.
func (t *tally) report(r *Run, lost int64, unit string, pubDur, drain time.Duration) {
	r.add("lost", float64(lost), "")
	r.add("duplicated", float64(t.dups.Load()), "")
	r.add("stray", float64(t.strays.Load()), "")
	r.add("error_frames", float64(t.errFrames.Load()), "")
	r.add("closed_by_hub", float64(t.closed.Load()), "")
	snap := t.lat.snapshot()
	r.addDur("latency_p50", snap.quantile(0.50))
	r.addDur("latency_p99", snap.quantile(0.99))
	r.addDur("latency_p999", snap.quantile(0.999))
	r.addDur("latency_max", snap.max)
	r.addDur("publishing", pubDur)
	r.addDur("drain", drain)
	if n := t.skipped.Load(); n > 0 {
		r.add("skipped_window_full", float64(n), "")
	}
	if note := t.slow.summary(); note != "" {
		r.notef("%s", note)
	}
	if msg := t.first(); msg != "" {
		r.errorf("%s", msg)
	}
	if lost > 0 {
		r.errorf("%d %s lost", lost, unit)
	}
}

// absorb adds the counters of o (whose connections received nothing:
// senders only) to t.
func (t *tally) absorb(o *tally) {
	t.sent.Add(o.sent.Load())
	t.receipted.Add(o.receipted.Load())
	t.failed.Add(o.failed.Load())
	t.strays.Add(o.strays.Load())
	t.errFrames.Add(o.errFrames.Load())
	t.skipped.Add(o.skipped.Load())
	t.closed.Add(o.closed.Load())
	if msg := o.first(); msg != "" {
		t.noteErr("%s", msg)
	}
}

// lconn is one lean connection of a traffic scenario: a receiver of the
// messages of one sender (expect), a sender itself (prefix set), or both.
type lconn struct {
	benchConn
	t      *tally
	expect int // the sender number whose messages this connection receives; -1 none
	// deliv, if set, counts this connection's deliveries too (per hub
	// process, in spread).
	deliv *atomic.Int64

	// Sender side (benchConn.window too).
	src    int    // this sender's number in the content of its frames
	prefix []byte // the frame up to the cid value: {"cmd":11,"dstid":"room3","cid":"
	sent   int    // owned by the writer goroutine; read after writerDone
	wErr   error
	// writerDone is closed by the writer goroutine.
	writerDone chan struct{}

	// joined is closed by the reader when the join answer (cmd 12) came.
	joined   chan struct{}
	joinOnce sync.Once

	// Owned by the reader goroutine; read by others only after
	// readerDone is closed.
	seen      seqSet // message numbers received from expect
	receipted seqSet // own message numbers receipted
	ids       []string
	keepIDs   bool
}

func newLconn(idx int, user string, t *tally) *lconn {
	return &lconn{benchConn: benchConn{idx: idx, user: user, readerDone: make(chan struct{})}, t: t, expect: -1, src: -1,
		joined: make(chan struct{}), writerDone: make(chan struct{})}
}

// connect dials the connection and starts its reader.
func (c *lconn) connect(ctx context.Context, d *dialers, batch bool) error {
	return c.benchConn.connect(ctx, d, batch, c.handle, &c.t.connEnds)
}

// join sends cmd 12 for room and waits for the answer.
func (c *lconn) join(ctx context.Context, room string) error {
	f := []byte(`{"cmd":12,"cid":"join","dstid":"` + room + `"}`)
	_ = c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := c.ws.WriteMessage(websocket.TextMessage, f); err != nil {
		return fmt.Errorf("%s: join %s: %w", c.user, room, err)
	}
	select {
	case <-c.joined:
		return nil
	case <-c.readerDone:
		return fmt.Errorf("%s: join %s: connection ended: %v", c.user, room, c.rErr)
	case <-ctx.Done():
		return fmt.Errorf("%s: join %s: %w", c.user, room, ctx.Err())
	}
}

// handle accounts for one incoming frame.
func (c *lconn) handle(line []byte, now int64) {
	t := c.t
	switch lineCmd(line) {
	case 10, 11:
		src, seq, sent, ok := parseContent(strField(line, "content"))
		if !ok || src != c.expect {
			t.strays.Add(1)
			return
		}
		if c.seen.add(seq) {
			t.dups.Add(1)
			return
		}
		t.delivered.Add(1)
		if c.deliv != nil {
			c.deliv.Add(1)
		}
		t.lat.record(time.Duration(now-sent), c.idx)
		t.slow.add(now, time.Duration(now-sent), c.idx)
		t.all.add(now, time.Duration(now-sent), c.idx)
	case 15:
		seq, ok := parseUint(strField(line, "cid"))
		if !ok {
			return
		}
		if !c.receipted.add(seq) {
			t.receipted.Add(1)
			if c.keepIDs {
				c.ids = append(c.ids, string(strField(line, "id")))
			}
		}
		c.release()
	case 12:
		c.joinOnce.Do(func() { close(c.joined) })
	case 40:
		t.errFrames.Add(1)
		t.noteErr("%s: error frame %s", c.user, line)
		if _, ok := parseUint(strField(line, "cid")); ok {
			t.failed.Add(1)
			c.release()
		}
	}
}

// writeLoop sends up to count frames: at rate per second from start
// (rate 0: as fast as the window allows) until stop is closed.
func (c *lconn) writeLoop(stop <-chan struct{}, start time.Time, rate float64, count int) {
	defer close(c.writerDone)
	buf := make([]byte, 0, 160)
	var timer *time.Timer
	for seq := 0; seq < count; seq++ {
		if rate > 0 {
			due := start.Add(time.Duration(float64(seq) / rate * float64(time.Second)))
			if wait := time.Until(due); wait > 0 {
				if timer == nil {
					timer = time.NewTimer(wait)
				} else {
					timer.Reset(wait)
				}
				select {
				case <-timer.C:
				case <-stop:
					return
				}
			}
		}
		select {
		case c.window <- struct{}{}:
		case <-stop:
			return
		}
		select {
		case <-stop:
			return
		default:
		}
		var err error
		if buf, err = c.writeNumbered(buf, seq); err != nil {
			return
		}
	}
}

// writeNumbered writes c's message number seq, stamped with the time of
// the write, using buf, and returns buf for the next one. The caller holds
// a place in c's window.
func (c *lconn) writeNumbered(buf []byte, seq int) ([]byte, error) {
	now := time.Now()
	buf = append(buf[:0], c.prefix...)
	buf = strconv.AppendInt(buf, int64(seq), 10)
	buf = append(buf, `","content":"`...)
	buf = appendContent(buf, c.src, seq, now.UnixNano())
	buf = append(buf, `"}`...)
	_ = c.ws.SetWriteDeadline(now.Add(10 * time.Second))
	if err := c.ws.WriteMessage(websocket.TextMessage, buf); err != nil {
		c.wErr = err
		c.t.noteErr("%s: write: %v", c.user, err)
		return buf, err
	}
	c.sent++
	c.t.sent.Add(1)
	return buf, nil
}

// paceWrites sends up to count frames from each of conns at rate per
// second from t0, the senders spread over each period, on one goroutine
// (pace) until stop is closed, then closes every writerDone. A sender
// whose window is full at its time skips that message (counted in
// t.skipped): one sender's missing receipts hold up none of the others.
func paceWrites(t *tally, conns []*lconn, stop <-chan struct{}, t0 time.Time, rate float64, count int) {
	defer func() {
		for _, c := range conns {
			close(c.writerDone)
		}
	}()
	bufs := make([][]byte, len(conns))
	pace(len(conns), stop, t0, rate, count, func(i, k int) {
		c := conns[i]
		if c.wErr != nil {
			return
		}
		select {
		case c.window <- struct{}{}:
		default:
			t.skipped.Add(1)
			return
		}
		if bufs[i] == nil {
			bufs[i] = make([]byte, 0, 160)
		}
		bufs[i], _ = c.writeNumbered(bufs[i], k)
	})
}

// connectAll dials conns with at most concurrency dials at a time, each
// followed by setup (e.g. a join), and returns the first error.
func connectAll(ctx context.Context, conns []*lconn, concurrency int, setup func(ctx context.Context, c *lconn) error) error {
	return eachBounded(ctx, conns, concurrency, setup)
}

// eachBounded calls fn for each item, at most concurrency calls at a
// time; the first error cancels the ctx of the others and the calls not
// started yet, and is returned (or ctx's error, when it ended first).
func eachBounded[T any](ctx context.Context, items []T, concurrency int, fn func(ctx context.Context, item T) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, max(1, concurrency))
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for _, it := range items {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := fn(ctx, it); err != nil {
				once.Do(func() { first = err; cancel() })
			}
		}()
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	return first
}

// closeAll closes every connection and waits for the readers and writers.
func closeAll(conns []*lconn) {
	for _, c := range conns {
		c.close()
	}
	for _, c := range conns {
		if c.ws != nil {
			<-c.readerDone
		}
	}
}

// waitUntil polls cond every 5 ms until it holds, d passed or ctx ended;
// it reports whether cond held.
func waitUntil(ctx context.Context, d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return cond()
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// publishFor lets the writers of conns run until d passed, all of them
// returned, or the session ends; then it closes stop and waits for every
// writer to return.
func (s *session) publishFor(d time.Duration, stop chan struct{}, conns []*lconn) {
	allWritten := make(chan struct{}) // closed when every writer returned
	go func() {
		for _, l := range conns {
			<-l.writerDone
		}
		close(allWritten)
	}()
	select {
	case <-time.After(d):
	case <-allWritten:
	case <-s.ctx.Done():
	}
	close(stop)
	<-allWritten
}
