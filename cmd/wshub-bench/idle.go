//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// workerStatus is the line an idle worker prints on standard output
// (JSON) every 250 ms and when it ends.
type workerStatus struct {
	Connected int64  `json:"connected"` // welcome frame received
	Failed    int64  `json:"failed"`    // dial or welcome failed
	Dropped   int64  `json:"dropped"`   // connected, then ended by the hub
	Done      bool   `json:"done"`      // every connection was attempted
	Err       string `json:"err,omitempty"`
}

// idle opens C connections, spread over worker processes (each process
// may hold no more descriptors than the limit, which the hub's own
// process shares), and reports how fast they were accepted and how much
// RSS the hub holds per idle connection.
func (s *session) idle() error {
	c := s.cfg
	C := c.conns
	if C <= 0 {
		return fmt.Errorf("-conns must be positive")
	}
	procs := c.procs
	if procs <= 0 {
		procs = (C + 14999) / 15000
	}
	r := s.run
	r.param("conns", C)
	r.param("procs", procs)
	r.param("per_src", c.perSrc)

	// Baseline: the hub with no connection, after a GC when the hub is
	// ours to ask.
	gcOK := s.hub.control(s.ctx, http.MethodPost, pathGC, nil) == nil
	time.Sleep(200 * time.Millisecond)
	rss0, rssOK := s.addRSS("hub_rss_baseline")

	type worker struct {
		status workerStatus // guarded by mu
		stdin  io.WriteCloser
		exited chan struct{} // closed by the goroutine that waits for the process
	}
	var mu sync.Mutex
	workers := make([]*worker, procs)
	total := func() (st workerStatus, done int) {
		mu.Lock()
		defer mu.Unlock()
		for _, w := range workers {
			if w == nil {
				continue
			}
			st.Connected += w.status.Connected
			st.Failed += w.status.Failed
			st.Dropped += w.status.Dropped
			if st.Err == "" {
				st.Err = w.status.Err
			}
			if w.status.Done {
				done++
			}
		}
		return st, done
	}

	endWindow := s.window()
	t0 := time.Now()
	first := 0
	for k := range procs {
		n := C / procs
		if k < C%procs {
			n++
		}
		cmd, err := selfCommand("worker", "-url", s.hub.url, "-n", strconv.Itoa(n), "-first", strconv.Itoa(first),
			"-per-src", strconv.Itoa(c.perSrc), "-concurrency", strconv.Itoa(max(1, c.concurrency/procs)))
		if err != nil {
			return err
		}
		first += n
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		cmd.Stderr = s.stderr
		if err := cmd.Start(); err != nil {
			return err
		}
		w := &worker{stdin: stdin, exited: make(chan struct{})}
		mu.Lock()
		workers[k] = w
		mu.Unlock()
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				var st workerStatus
				if json.Unmarshal(sc.Bytes(), &st) == nil {
					mu.Lock()
					w.status = st
					mu.Unlock()
				}
			}
			_ = cmd.Wait()
			close(w.exited)
		}()
	}
	// Release the workers (EOF on their standard input) at the end, and
	// wait for them.
	defer func() {
		for _, w := range workers {
			if w != nil {
				w.stdin.Close()
			}
		}
		for _, w := range workers {
			if w != nil {
				<-w.exited
			}
		}
	}()

	prog := startProgress(s.stderr, c.every, s.run.Name, func() string {
		st, done := total()
		rss, _ := s.hub.rss()
		return fmt.Sprintf("connected %d/%d failed %d dropped %d workers done %d/%d hub rss %.1f MiB",
			st.Connected, C, st.Failed, st.Dropped, done, procs, float64(rss)/(1<<20))
	})
	waitUntil(s.ctx, c.timeout, func() bool {
		st, done := total()
		return done == procs || st.Connected+st.Failed >= int64(C)
	})
	tConn := time.Since(t0)
	prog.end()
	st, _ := total()
	cpu, cpuOK := endWindow()
	r.add("connected", float64(st.Connected), "")
	r.add("failed", float64(st.Failed), "")
	r.addDur("connect_all", tConn)
	r.add("conns_per_s", float64(st.Connected)/tConn.Seconds(), "1/s")
	if cpuOK && st.Connected > 0 {
		r.add("hub_cpu_us_per_connect", float64(cpu.Microseconds())/float64(st.Connected), "µs")
	}
	if st.Err != "" {
		r.errorf("first failure: %s", st.Err)
	}

	select {
	case <-time.After(c.settle):
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
	rss1, ok := s.addRSS("hub_rss")
	if ok && rssOK && st.Connected > 0 {
		r.add("hub_rss_per_conn", float64(rss1-rss0)/float64(st.Connected)/1024, "KiB")
	}
	var hs hubStats
	if s.hub.control(s.ctx, http.MethodGet, pathStats, &hs) == nil {
		r.add("hub_conns", float64(hs.Conns), "")
		r.add("hub_goroutines", float64(hs.Goroutines), "")
		r.add("hub_heap_inuse", float64(hs.HeapInuse)/(1<<20), "MiB")
		r.add("hub_stack_inuse", float64(hs.StackInuse)/(1<<20), "MiB")
	}
	if gcOK && s.hub.control(s.ctx, http.MethodPost, pathGC, &hs) == nil {
		time.Sleep(200 * time.Millisecond)
		if rss2, ok := s.addRSS("hub_rss_after_gc"); ok && rssOK && st.Connected > 0 {
			r.add("hub_rss_per_conn_after_gc", float64(rss2-rss0)/float64(st.Connected)/1024, "KiB")
		}
		r.add("hub_heap_inuse_after_gc", float64(hs.HeapInuse)/(1<<20), "MiB")
	}

	select {
	case <-time.After(c.hold):
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
	st, _ = total()
	r.addDur("held_for", c.settle+c.hold)
	r.add("held", float64(st.Connected-st.Dropped), "")
	r.add("dropped", float64(st.Dropped), "")
	if st.Dropped > 0 {
		r.errorf("%d connections dropped while idle: %s", st.Dropped, st.Err)
	}
	if st.Connected < int64(C) {
		r.errorf("%d of %d connections failed", int64(C)-st.Connected, C)
	}
	return nil
}

// workerMain holds idle connections for the idle scenario: it dials -n
// connections as users "i<first>", "i<first+1>", ..., reads their frames
// (answering pings) and discards them, reports its counts as JSON lines on
// stdout, and closes everything when its standard input ends.
func workerMain(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	hubURL := fs.String("url", "", "ws:// URL of the hub")
	n := fs.Int("n", 0, "connections")
	first := fs.Int("first", 0, "number of the first connection (user and source address)")
	perSrc := fs.Int("per-src", 20000, "connections per loopback source address")
	conc := fs.Int("concurrency", 100, "dials at the same time")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if _, err := checkTarget(*hubURL); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		_, _ = io.Copy(io.Discard, stdin)
		cancel()
	}()

	var connected, failed, dropped atomic.Int64
	var done atomic.Bool
	var errMu sync.Mutex
	var firstErr string // guarded by errMu
	noteErr := func(err error) {
		errMu.Lock()
		if firstErr == "" {
			firstErr = err.Error()
		}
		errMu.Unlock()
	}
	var outMu sync.Mutex // one status line at a time
	report := func() {
		errMu.Lock()
		st := workerStatus{Connected: connected.Load(), Failed: failed.Load(), Dropped: dropped.Load(), Done: done.Load(), Err: firstErr}
		errMu.Unlock()
		b, _ := json.Marshal(st)
		outMu.Lock()
		fmt.Fprintf(stdout, "%s\n", b)
		outMu.Unlock()
	}
	ticker := time.NewTicker(250 * time.Millisecond)
	defer ticker.Stop()
	go func() {
		for {
			select {
			case <-ticker.C:
				report()
			case <-ctx.Done():
				return
			}
		}
	}()

	d := newDialers(*hubURL, *perSrc)
	var (
		connsMu sync.Mutex
		conns   []*websocket.Conn // guarded by connsMu
	)
	var closing atomic.Bool
	var readers sync.WaitGroup
	sem := make(chan struct{}, max(1, *conc))
	var dialers sync.WaitGroup
	for i := range *n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		dialers.Add(1)
		go func() {
			defer dialers.Done()
			defer func() { <-sem }()
			idx := *first + i
			ws, err := d.dial(ctx, idx, "i"+strconv.Itoa(idx), false)
			if err != nil {
				failed.Add(1)
				noteErr(err)
				return
			}
			welcomed := make(chan struct{}) // closed by the reader at the first frame
			var once sync.Once
			connsMu.Lock()
			conns = append(conns, ws)
			connsMu.Unlock()
			readers.Add(1)
			go func() {
				defer readers.Done()
				err := readLoop(ws, func([]byte, int64) { once.Do(func() { close(welcomed) }) })
				select {
				case <-welcomed:
					if !closing.Load() {
						dropped.Add(1)
						noteErr(fmt.Errorf("connection %d dropped: %w", idx, err))
					}
				default:
				}
			}()
			select {
			case <-welcomed:
				connected.Add(1)
			case <-time.After(15 * time.Second):
				failed.Add(1)
				noteErr(errors.New("no welcome frame within 15 s"))
				ws.Close()
			case <-ctx.Done():
			}
		}()
	}
	dialers.Wait()
	done.Store(true)
	report()
	<-ctx.Done()
	closing.Store(true)
	connsMu.Lock()
	for _, ws := range conns {
		ws.Close()
	}
	connsMu.Unlock()
	readers.Wait()
	report()
	return nil
}
