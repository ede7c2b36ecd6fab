//go:build linux

package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/wshub/wshub/store"
	"github.com/wshub/wshub/store/boltstore"
)

// direct runs pairs of users "d<i>a" and "d<i>b", each sending direct
// messages (cmd 10) to the other as fast as its window of unreceipted
// frames allows (cfg.rate 0) or cfg.rate a second (the window still
// bounds it), and each counting, per message number of its peer, what
// it received. Messages per second end to end counts the distinct messages
// received by their recipients.
//
// With the bolt store and a spawned hub, durability is checked afterwards:
// the hub is killed with SIGKILL, the file opened, and every receipted
// message must be in its conversation's history.
func (s *session) direct(bolt bool) error {
	c := s.cfg
	P := c.pairs
	if P <= 0 {
		return fmt.Errorf("-pairs must be positive")
	}
	count := c.count
	if count <= 0 {
		count = 1_000_000
	}
	rate := c.rate
	if rate < 0 {
		return fmt.Errorf("-rate must not be negative")
	}
	r := s.run
	r.param("pairs", P)
	r.param("window", c.window)
	r.param("duration", c.duration)
	if rate > 0 {
		r.param("rate_per_user", rate)
		sends := "paced"
		if c.timers {
			sends = "timers"
		}
		r.param("sends", sends)
	}
	verify := bolt && s.hub.cmd != nil && s.dbPath != ""

	t := &tally{}
	if s.delivs != "" {
		t.all = &deliveryLog{}
	}
	d := newDialers(s.hub.url, c.perSrc)
	conns := make([]*lconn, 2*P)
	for i := range P {
		for k, side := range []string{"a", "b"} {
			n := 2*i + k
			l := newLconn(n, "d"+strconv.Itoa(i)+side, t)
			l.src = n
			l.expect = 2*i + 1 - k
			l.keepIDs = verify
			l.window = make(chan struct{}, max(1, c.window))
			conns[n] = l
		}
	}
	for i := range P {
		a, b := conns[2*i], conns[2*i+1]
		a.prefix = []byte(`{"cmd":10,"dstid":"` + b.user + `","cid":"`)
		b.prefix = []byte(`{"cmd":10,"dstid":"` + a.user + `","cid":"`)
	}
	defer closeAll(conns)

	setupStart := time.Now()
	err := connectAll(s.ctx, conns, c.concurrency, func(ctx context.Context, l *lconn) error {
		return l.connect(ctx, d, false)
	})
	if err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	r.addDur("setup", time.Since(setupStart))

	stop := make(chan struct{}) // closed when the duration is over
	endWindow := s.window()
	t0 := time.Now()
	var lastDeliv int64
	lastAt := t0
	prog := startProgress(s.stderr, c.every, s.run.Name, func() string {
		now := time.Now()
		dv := t.delivered.Load()
		rateNow := float64(dv-lastDeliv) / now.Sub(lastAt).Seconds()
		lastDeliv, lastAt = dv, now
		snap := t.lat.snapshot()
		return fmt.Sprintf("sent %d receipted %d delivered %d (%.0f/s) p99 %v dups %d closed %d errs %d",
			t.sent.Load(), t.receipted.Load(), dv, rateNow, snap.quantile(0.99).Round(10*time.Microsecond),
			t.dups.Load(), t.closed.Load(), t.errFrames.Load())
	})
	if rate > 0 && !c.timers {
		go paceWrites(t, conns, stop, t0, rate, count)
	} else {
		for i, l := range conns {
			// At a fixed rate, spread the senders' first messages over
			// one period, as fanout spreads its publishers.
			start := t0
			if rate > 0 {
				start = t0.Add(time.Duration(float64(i) / float64(len(conns)) / rate * float64(time.Second)))
			}
			go l.writeLoop(stop, start, rate, count)
		}
	}
	s.publishFor(c.duration, stop, conns)
	tPub := time.Now()
	delivPub := t.delivered.Load()
	waitUntil(s.ctx, c.drain, func() bool { return t.receipted.Load()+t.failed.Load() >= t.sent.Load() })
	waitUntil(s.ctx, c.drain, func() bool { return t.delivered.Load() >= t.receipted.Load() })
	tEnd := time.Now()
	prog.end()
	cpu, cpuOK := endWindow()
	s.addRSS("hub_rss")
	closeAll(conns)

	var lost int64
	for _, l := range conns {
		lost += l.seen.missingFrom(&conns[l.expect].receipted)
	}
	pubDur, total := tPub.Sub(t0), tEnd.Sub(t0)
	dv := t.delivered.Load()
	r.add("messages_sent", float64(t.sent.Load()), "")
	r.add("messages_receipted", float64(t.receipted.Load()), "")
	r.add("receipts_per_s", float64(t.receipted.Load())/total.Seconds(), "1/s")
	r.add("messages_delivered", float64(dv), "")
	r.add("messages_per_s", float64(delivPub)/pubDur.Seconds(), "msg/s")
	r.add("messages_per_s_incl_drain", float64(dv)/total.Seconds(), "msg/s")
	t.report(r, int64(lost), "messages", pubDur, tEnd.Sub(tPub))
	if cpuOK {
		r.add("hub_cpu_util", 100*cpu.Seconds()/total.Seconds(), "%")
		if dv > 0 {
			r.add("hub_cpu_s_per_million_messages", cpu.Seconds()/(float64(dv)/1e6), "s")
		}
	}
	if t.all != nil {
		if err := t.all.writeFile(s.delivs); err != nil {
			r.errorf("deliveries: %v", err)
		} else {
			r.param("deliveries", s.delivs)
		}
	}
	if verify {
		return s.verifyDurable(conns)
	}
	return nil
}

// verifyDurable kills the hub (SIGKILL, no shutdown) and checks that every
// receipted message is in the bbolt file.
func (s *session) verifyDurable(conns []*lconn) error {
	s.hub.kill()
	st, err := boltstore.Open(s.dbPath, boltstore.Options{})
	if err != nil {
		return fmt.Errorf("durability check: %w", err)
	}
	defer st.Close()
	ctx, cancel := context.WithTimeout(s.ctx, 2*time.Minute)
	defer cancel()
	var checked, missing int64
	for i := 0; i+1 < len(conns); i += 2 {
		a, b := conns[i], conns[i+1]
		have := map[string]bool{}
		// Read backward from the newest message, a page at a time.
		var before uint64
		for {
			page, err := st.History(ctx, store.DirectConv(a.user, b.user), store.Query{Before: before, Limit: 1000})
			if err != nil {
				return fmt.Errorf("durability check: %w", err)
			}
			for _, m := range page.Items {
				have[m.ID] = true
			}
			if !page.More || len(page.Items) == 0 {
				break
			}
			before = page.Items[0].Seq
		}
		for _, l := range []*lconn{a, b} {
			for _, id := range l.ids {
				checked++
				if !have[id] {
					missing++
				}
			}
		}
	}
	s.run.add("durable_checked_after_sigkill", float64(checked), "")
	s.run.add("durable_missing_after_sigkill", float64(missing), "")
	if missing > 0 {
		s.run.errorf("%d receipted messages missing from the bbolt file after SIGKILL", missing)
	}
	return nil
}
