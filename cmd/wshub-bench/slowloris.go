//go:build linux

package main

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// The slowloris scenario: the slow partial-frame attack. Each connection
// upgrades, reads its welcome frame, writes the header of a masked text
// frame announcing -frame payload bytes and the first -sent of them, then
// one more payload byte every -drip (never the last one, so the frame
// never completes), until the hub closes it or the run ends. The hub must
// buffer every partial frame for as long as it lets the connection be;
// the scenario reports how long that is and what it costs.

// lorisPlain is the payload byte of the partial frames, before masking.
const lorisPlain = 'x'

// loris is what the connections of one slowloris run share.
type loris struct {
	frame int           // payload length the header announces
	drip  time.Duration // interval of the single bytes
	key   [4]byte       // masking key of every frame (the hub does not care that it repeats)
	drips atomic.Int64  // single bytes written, all connections
}

// lorisConn is one connection of the slowloris scenario.
type lorisConn struct {
	l    *loris
	ws   *websocket.Conn
	nc   net.Conn
	at   time.Time     // when the partial frame was written; set before the reader and the drips start
	done chan struct{} // closed when the reader returned and the socket is closed

	mu      sync.Mutex
	sent    int           // guarded by mu: payload bytes written
	timer   *time.Timer   // guarded by mu: the next drip
	stopped bool          // guarded by mu: no more drips
	ended   bool          // guarded by mu: the hub ended the connection during the run
	heldFor time.Duration // guarded by mu: from the partial frame to its end, if ended
	why     string        // guarded by mu: closeKind of its end, if ended
	err     error         // guarded by mu: the read error that ended it, if ended
	held    bool          // guarded by mu: still open at the end of the run
}

// partialFrame returns the header of a masked text frame (FIN set)
// announcing size payload bytes, followed by the first sent bytes of its
// payload.
func partialFrame(size, sent int, key [4]byte) []byte {
	b := make([]byte, 0, 14+sent)
	b = append(b, 0x80|websocket.TextMessage)
	switch {
	case size < 126:
		b = append(b, 0x80|byte(size))
	case size <= 0xffff:
		b = binary.BigEndian.AppendUint16(append(b, 0x80|126), uint16(size))
	default:
		b = binary.BigEndian.AppendUint64(append(b, 0x80|127), uint64(size))
	}
	b = append(b, key[:]...)
	for i := range sent {
		b = append(b, lorisPlain^key[i&3])
	}
	return b
}

// drip writes the next payload byte and arms the timer for the one after,
// unless that would be the frame's last byte.
func (lc *lorisConn) drip() {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.stopped || lc.sent >= lc.l.frame-1 { // -sent may be -frame minus one
		lc.stopped = true
		return
	}
	_ = lc.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := lc.nc.Write([]byte{lorisPlain ^ lc.l.key[lc.sent&3]}); err != nil {
		lc.stopped = true // the reader sees why
		return
	}
	lc.sent++
	lc.l.drips.Add(1)
	if lc.sent < lc.l.frame-1 {
		lc.timer.Reset(lc.l.drip)
	} else {
		lc.stopped = true
	}
}

// stop ends the drips.
func (lc *lorisConn) stop() {
	lc.mu.Lock()
	lc.stopped = true
	if lc.timer != nil {
		lc.timer.Stop()
	}
	lc.mu.Unlock()
}

// markHeld records, at the end of the run, that the connection is still
// open, unless the hub ended it already; it reports whether it was held.
func (lc *lorisConn) markHeld() bool {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if !lc.ended {
		lc.held = true
	}
	return lc.held
}

// read reads the connection until it ends (the hub's pings and close
// frame go unanswered: a pong or close written now would land inside the
// partial frame) and records how, unless the run had ended already.
func (lc *lorisConn) read(open, closed *atomic.Int64) {
	err := readLoop(lc.ws, nil)
	lc.mu.Lock()
	byHub := !lc.held
	if byHub {
		lc.ended, lc.heldFor, lc.why, lc.err = true, time.Since(lc.at), closeKind(err), err
		lc.stopped = true
		if lc.timer != nil {
			lc.timer.Stop()
		}
	}
	lc.mu.Unlock()
	if byHub {
		open.Add(-1)
		closed.Add(1)
	}
	lc.ws.Close()
	close(lc.done)
}

// closeKind names how a connection ended, from the error its reading
// ended with: "code_N" for a close frame with code N, "eof" for the end
// of the stream without one, "reset" for a reset, "other" otherwise.
func closeKind(err error) string {
	var ce *websocket.CloseError
	switch {
	case errors.As(err, &ce) && ce.Code == websocket.CloseAbnormalClosure:
		return "eof" // gorilla/websocket's report of an end without a close frame
	case errors.As(err, &ce):
		return "code_" + strconv.Itoa(ce.Code)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	}
	return "other"
}

// slowlorisOpen dials connection i, reads its welcome frame and writes the
// partial frame. A connection whose partial frame could not be written
// (the hub ended it at once) is returned with written false: its reader
// still says how it ended.
func (s *session) slowlorisOpen(d *dialers, l *loris, i int, partial []byte) (lc *lorisConn, written bool, err error) {
	ws, err := d.dial(s.ctx, i, "l"+strconv.Itoa(i), false)
	if err != nil {
		return nil, false, err
	}
	ws.SetPingHandler(func(string) error { return nil })
	ws.SetCloseHandler(func(int, string) error { return nil })
	_ = ws.SetReadDeadline(time.Now().Add(15 * time.Second))
	if _, _, err := ws.ReadMessage(); err != nil {
		ws.Close()
		return nil, false, fmt.Errorf("connection %d: welcome: %w", i, err)
	}
	_ = ws.SetReadDeadline(time.Time{})
	lc = &lorisConn{l: l, ws: ws, nc: ws.NetConn(), done: make(chan struct{})}
	_ = lc.nc.SetWriteDeadline(time.Now().Add(15 * time.Second))
	_, werr := lc.nc.Write(partial)
	lc.at = time.Now()
	lc.mu.Lock()
	if werr == nil {
		lc.sent = s.cfg.sent
		lc.timer = time.AfterFunc(l.drip, lc.drip)
	} else {
		lc.stopped = true
	}
	lc.mu.Unlock()
	return lc, werr == nil, nil
}

// slowloris holds C connections, each with a partial frame buffered in
// the hub, for -duration after the last one sent it (or until the hub
// closes them: the run goes on for -duration regardless), sampling the
// open connections and the hub's RSS every -sample.
func (s *session) slowloris() error {
	c := s.cfg
	C := c.conns
	switch {
	case C <= 0:
		return fmt.Errorf("-conns must be positive")
	case c.sent <= 0 || c.sent >= c.frame:
		return fmt.Errorf("-sent %d: want 0 < -sent < -frame (%d)", c.sent, c.frame)
	case c.drip <= 0 || c.sample <= 0 || c.duration <= 0:
		return fmt.Errorf("-drip, -sample and -duration must be positive")
	}
	if need := C + 64; need > noFileLimit() {
		return fmt.Errorf("-conns %d needs about %d descriptors in this process; the limit is %d", C, need, noFileLimit())
	}
	r := s.run
	r.param("conns", C)
	r.param("frame", c.frame)
	r.param("sent", c.sent)
	r.param("drip", c.drip)
	r.param("duration", c.duration)
	r.param("per_src", c.perSrc)

	l := &loris{frame: c.frame, drip: c.drip}
	if _, err := rand.Read(l.key[:]); err != nil {
		return err
	}
	partial := partialFrame(c.frame, c.sent, l.key)

	// Baseline: the hub with no connection, after a GC when the hub is
	// ours to ask.
	gcOK := s.hub.control(s.ctx, http.MethodPost, pathGC, nil) == nil
	if gcOK {
		time.Sleep(200 * time.Millisecond)
	}
	rss0, rssOK := s.addRSS("hub_rss_baseline")

	var dialed, failed, written, open, closed atomic.Int64
	var errMu sync.Mutex
	var firstErr string // guarded by errMu
	t0 := time.Now()
	sample := func() Sample {
		sm := Sample{T: time.Since(t0).Seconds(), Open: open.Load(), Closed: closed.Load()}
		if rss, ok := s.hub.rss(); ok {
			sm.HubRSS = float64(rss) / (1 << 20)
		}
		return sm
	}
	smp := startSampler(c.sample, sample)

	endWindow := s.window()
	prog := startProgress(s.stderr, c.every, r.Name, func() string {
		rss, _ := s.hub.rss()
		return fmt.Sprintf("dialed %d/%d failed %d open %d closed by hub %d drips %d hub rss %.1f MiB",
			dialed.Load(), C, failed.Load(), open.Load(), closed.Load(), l.drips.Load(), float64(rss)/(1<<20))
	})

	d := newDialers(s.hub.url, c.perSrc)
	conns := make([]*lorisConn, C) // slot i written by the goroutine dialing i only
	sem := make(chan struct{}, max(1, c.concurrency))
	var dialing sync.WaitGroup
	for i := range C {
		select {
		case sem <- struct{}{}:
		case <-s.ctx.Done():
		}
		if s.ctx.Err() != nil {
			break
		}
		dialing.Add(1)
		go func() {
			defer dialing.Done()
			defer func() { <-sem }()
			lc, ok, err := s.slowlorisOpen(d, l, i, partial)
			if err != nil {
				failed.Add(1)
				errMu.Lock()
				if firstErr == "" {
					firstErr = err.Error()
				}
				errMu.Unlock()
				return
			}
			dialed.Add(1)
			if ok {
				written.Add(1)
			}
			open.Add(1)
			conns[i] = lc
			go lc.read(&open, &closed)
		}()
	}
	dialing.Wait()
	tSetup := time.Now()

	// Hold for -duration, even once the hub closed every connection: the
	// samples show whether it gives the memory back.
	select {
	case <-time.After(c.duration):
	case <-s.ctx.Done():
	}
	tEnd := time.Now()
	var heldToEnd int64
	for _, lc := range conns {
		if lc != nil {
			lc.stop()
			if lc.markHeld() {
				heldToEnd++
			}
		}
	}
	samples := smp.stop()
	prog.end()
	endWindow()
	if last := sample(); last.T-samples[len(samples)-1].T < c.sample.Seconds()/10 {
		samples[len(samples)-1] = last // the ticker's sample of this moment
	} else {
		samples = append(samples, last)
	}
	r.Samples = samples

	r.add("dialed", float64(dialed.Load()), "")
	r.add("failed", float64(failed.Load()), "")
	r.add("partial_frames", float64(written.Load()), "")
	r.addDur("setup", tSetup.Sub(t0))
	r.addDur("hold", tEnd.Sub(tSetup))
	r.add("drip_bytes", float64(l.drips.Load()), "")

	// Memory: the peak sample, and what stays after a GC while the held
	// connections are still open.
	var peak Sample
	for _, sm := range samples {
		if sm.HubRSS > peak.HubRSS {
			peak = sm
		}
	}
	if peak.HubRSS > 0 {
		r.add("hub_rss_peak", peak.HubRSS, "MiB")
		r.add("hub_rss_end", samples[len(samples)-1].HubRSS, "MiB")
		if rssOK && peak.Open > 0 {
			r.add("hub_rss_per_held_conn", (peak.HubRSS*(1<<20)-float64(rss0))/float64(peak.Open)/1024, "KiB")
		}
	}
	var hs hubStats
	if s.hub.control(s.ctx, http.MethodGet, pathStats, &hs) == nil {
		r.add("hub_conns", float64(hs.Conns), "")
		r.add("hub_heap_inuse", float64(hs.HeapInuse)/(1<<20), "MiB")
	}
	if gcOK && s.hub.control(s.ctx, http.MethodPost, pathGC, &hs) == nil {
		time.Sleep(200 * time.Millisecond)
		if rss2, ok := s.addRSS("hub_rss_after_gc"); ok && rssOK && heldToEnd > 0 {
			r.add("hub_rss_per_held_conn_after_gc", float64(rss2-rss0)/float64(heldToEnd)/1024, "KiB")
		}
		r.add("hub_heap_inuse_after_gc", float64(hs.HeapInuse)/(1<<20), "MiB")
	}

	for _, lc := range conns {
		if lc != nil {
			lc.ws.Close()
		}
	}
	var heldFor []time.Duration
	kinds := map[string]int{}
	var otherErr error
	for _, lc := range conns {
		if lc == nil {
			continue
		}
		<-lc.done
		if lc.ended { // the reader returned: no more writes to these fields
			heldFor = append(heldFor, lc.heldFor)
			kinds[lc.why]++
			if lc.why == "other" && otherErr == nil {
				otherErr = lc.err
			}
		}
	}
	r.add("held_to_end", float64(heldToEnd), "")
	r.add("closed_by_hub", float64(len(heldFor)), "")
	for _, k := range slices.Sorted(maps.Keys(kinds)) {
		r.add("closed_"+k, float64(kinds[k]), "")
	}
	if len(heldFor) > 0 {
		slices.Sort(heldFor)
		r.addDur("held_min", heldFor[0])
		r.addDur("held_p50", heldFor[(len(heldFor)-1)/2])
		r.addDur("held_max", heldFor[len(heldFor)-1])
	}
	switch n := dialed.Load(); {
	case n == 0:
	case heldToEnd == n:
		r.notef("all %d connections held past the end of the run: the hub still buffered their partial frames %.0f s after the last one was sent", n, tEnd.Sub(tSetup).Seconds())
	case heldToEnd == 0:
		r.notef("the hub closed all %d connections, %.1f / %.1f / %.1f s (min / median / max) after their partial frame",
			n, heldFor[0].Seconds(), heldFor[(len(heldFor)-1)/2].Seconds(), heldFor[len(heldFor)-1].Seconds())
	default:
		r.notef("the hub closed %d connections (after %.1f to %.1f s) and held %d past the end of the run",
			len(heldFor), heldFor[0].Seconds(), heldFor[len(heldFor)-1].Seconds(), heldToEnd)
	}
	if otherErr != nil {
		r.notef("first end of kind other: %v", otherErr)
	}
	if f := failed.Load(); f > 0 {
		r.errorf("%d of %d connections failed: %s", f, C, firstErr)
	}
	return nil
}
