//go:build linux

package main

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/client"
)

// stormClient is one Go client of the storm scenario.
type stormClient struct {
	c     *client.Client
	opens atomic.Int32
	// conn is the client's current socket, for -drop client.
	conn atomic.Pointer[net.Conn]
}

// storm connects C clients of the client package (its default backoff:
// full jitter, first delay under 0.5 s), drops every connection at once
// and measures the time until every client is connected again.
//
// With -drop hub the hub closes every connection with 1001 (through the
// /bench/drop endpoint of serve), as a rolling restart would; with -drop
// client the tool closes every socket without a close frame, as a network
// failure would.
func (s *session) storm() error {
	c := s.cfg
	C := c.conns
	if C <= 0 {
		return fmt.Errorf("-conns must be positive")
	}
	r := s.run
	r.param("conns", C)
	r.param("drop", c.drop)
	r.param("backoff_base", cmp.Or(c.backoff, client.DefaultBackoffBase))
	if c.drop != "hub" && c.drop != "client" {
		return fmt.Errorf("-drop %q: want hub or client", c.drop)
	}

	d := newDialers(s.hub.url, c.perSrc)
	var reopened atomic.Int64
	var attempts, dialErrs atomic.Int64
	var dropAt atomic.Int64 // UnixNano of the drop; 0 before
	var reconnect histogram
	clients := make([]*stormClient, C)
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	for i := range clients {
		sc := &stormClient{}
		base := d.dialer(i)
		wd := *base
		wd.NetDialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			nc, err := base.NetDialContext(ctx, network, addr)
			if err == nil {
				sc.conn.Store(&nc)
			}
			return nc, err
		}
		cl, err := client.New(s.hub.url, client.Options{
			Token:     "s" + strconv.Itoa(i),
			Backoff:   client.Backoff{Base: c.backoff},
			Dialer:    &wd,
			OnMessage: func(*wshub.Frame) {},
			OnOpen: func(*wshub.Frame) {
				if sc.opens.Add(1) == 2 {
					reopened.Add(1)
					if at := dropAt.Load(); at > 0 {
						reconnect.record(time.Duration(time.Now().UnixNano()-at), i)
					}
				}
			},
			OnReconnecting: func(int, time.Duration) { attempts.Add(1) },
			OnError:        func(error) { dialErrs.Add(1) },
			Header:         http.Header{},
		})
		if err != nil {
			return err
		}
		sc.c = cl
		clients[i] = sc
	}
	defer func() {
		var wg sync.WaitGroup
		for _, sc := range clients {
			wg.Add(1)
			go func() { defer wg.Done(); sc.c.Close() }()
		}
		wg.Wait()
	}()

	t0 := time.Now()
	prog := startProgress(s.stderr, c.every, "connect", func() string {
		return fmt.Sprintf("open %d/%d", countOpen(clients), C)
	})
	// Start the clients at most concurrency at a time: a slot is given
	// back when the client's first connection opened (or it gave up).
	sem := make(chan struct{}, max(1, c.concurrency))
	go func() {
		for _, sc := range clients {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			go func() { _ = sc.c.Run(ctx) }()
			go func() {
				defer func() { <-sem }()
				for sc.opens.Load() == 0 && ctx.Err() == nil {
					select {
					case <-sc.c.Done():
						return
					case <-time.After(5 * time.Millisecond):
					}
				}
			}()
		}
	}()
	ok := waitUntil(ctx, s.cfg.timeout, func() bool { return countOpen(clients) >= C })
	prog.end()
	if !ok {
		return fmt.Errorf("only %d of %d clients connected", countOpen(clients), C)
	}
	connectDur := time.Since(t0)
	r.addDur("connect_all", connectDur)
	r.add("conns_per_s", float64(C)/connectDur.Seconds(), "1/s")
	time.Sleep(c.settle)
	attempts.Store(0)
	dialErrs.Store(0)

	endWindow := s.window()
	tDrop := time.Now()
	dropAt.Store(tDrop.UnixNano())
	prog = startProgress(s.stderr, c.every, s.run.Name, func() string {
		return fmt.Sprintf("reconnected %d/%d attempts %d dial errors %d", reopened.Load(), C, attempts.Load(), dialErrs.Load())
	})
	switch c.drop {
	case "hub":
		var res map[string]int
		if err := s.hub.control(ctx, http.MethodPost, pathDrop, &res); err != nil {
			prog.end()
			return fmt.Errorf("drop: %w", err)
		}
		r.add("dropped_by_hub", float64(res["dropped"]), "")
	case "client":
		for _, sc := range clients {
			if p := sc.conn.Load(); p != nil {
				_ = (*p).Close()
			}
		}
	}
	dropDur := time.Since(tDrop)
	ok = waitUntil(ctx, s.cfg.timeout, func() bool { return reopened.Load() >= int64(C) })
	tAll := time.Now()
	prog.end()
	endWindow()
	r.addDur("drop_call", dropDur)
	r.add("reconnected", float64(reopened.Load()), "")
	r.addDur("time_to_all_reconnected", tAll.Sub(tDrop))
	snap := reconnect.snapshot()
	r.addDur("reconnect_p50", snap.quantile(0.5))
	r.addDur("reconnect_p99", snap.quantile(0.99))
	r.add("reconnect_attempts", float64(attempts.Load()), "")
	r.add("dial_errors", float64(dialErrs.Load()), "")
	if !ok {
		r.errorf("only %d of %d clients reconnected", reopened.Load(), C)
	}
	return nil
}

// countOpen counts the clients whose connection is open.
func countOpen(clients []*stormClient) int {
	n := 0
	for _, sc := range clients {
		if sc.c.State() == client.StateOpen {
			n++
		}
	}
	return n
}
