//go:build linux

package main

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"
)

// rooms runs fanout (rate > 0: each publisher sends rate messages a
// second) or saturate (rate 0: each publisher keeps cfg.window messages
// without a receipt, as fast as the hub answers).
//
// Room r has members "r<r>m<j>" (j < M), each on a connection of its own
// (with batch=1 when batch is set), and a publisher "r<r>pub" that is a
// member too but is not counted among the M: the hub sends a room message
// to every member connection except the sending one, so each message makes
// M deliveries. Every member counts, per message number of its room's
// publisher, what it received: a receipted message it never got is lost,
// one it got twice is duplicated.
func (s *session) rooms(batch bool, rate float64) error {
	c := s.cfg
	R, M := c.rooms, c.members
	if R <= 0 || M <= 0 {
		return fmt.Errorf("-rooms and -members must be positive")
	}
	count := c.count
	if rate > 0 && count <= 0 {
		count = int(math.Ceil(rate * c.duration.Seconds()))
	}
	if count <= 0 {
		count = math.MaxInt32
	}
	r := s.run
	r.param("rooms", R)
	r.param("members", M)
	r.param("batch", batch)
	r.param("duration", c.duration)
	r.param("window", c.window)
	if rate > 0 {
		r.param("rate_per_room", rate)
	}

	t := &tally{}
	d := newDialers(s.hub.url, c.perSrc)
	members := make([]*lconn, 0, R*M)
	pubs := make([]*lconn, 0, R)
	for room := range R {
		for j := range M {
			m := newLconn(len(members), "r"+strconv.Itoa(room)+"m"+strconv.Itoa(j), t)
			m.expect = room
			members = append(members, m)
		}
	}
	for room := range R {
		p := newLconn(R*M+room, "r"+strconv.Itoa(room)+"pub", t)
		p.src = room
		p.prefix = []byte(`{"cmd":11,"dstid":"room` + strconv.Itoa(room) + `","cid":"`)
		p.window = make(chan struct{}, max(1, c.window))
		pubs = append(pubs, p)
	}
	all := append(append([]*lconn(nil), members...), pubs...)
	defer closeAll(all)

	setupStart := time.Now()
	prog := startProgress(s.stderr, c.every, "setup", func() string {
		return fmt.Sprintf("connecting and joining %d connections", len(all))
	})
	err := connectAll(s.ctx, all, c.concurrency, func(ctx context.Context, l *lconn) error {
		// Publishers never use batch=1: they read only receipts.
		if err := l.connect(ctx, d, batch && l.src < 0); err != nil {
			return err
		}
		room := l.expect
		if l.src >= 0 {
			room = l.src
		}
		return l.join(ctx, "room"+strconv.Itoa(room))
	})
	prog.end()
	if err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	r.addDur("setup", time.Since(setupStart))
	rssBefore, _ := s.hub.rss()

	// Measured window: from the first publish to the last delivery.
	stop := make(chan struct{}) // closed when the duration is over
	endWindow := s.window()
	t0 := time.Now()
	var lastDeliv int64
	var lastAt = t0
	prog = startProgress(s.stderr, c.every, s.run.Name, func() string {
		now := time.Now()
		dv := t.delivered.Load()
		rateNow := float64(dv-lastDeliv) / now.Sub(lastAt).Seconds()
		lastDeliv, lastAt = dv, now
		snap := t.lat.snapshot()
		return fmt.Sprintf("sent %d receipted %d delivered %d (%.0f/s) p99 %v dups %d closed %d errs %d",
			t.sent.Load(), t.receipted.Load(), dv, rateNow, snap.quantile(0.99).Round(10*time.Microsecond),
			t.dups.Load(), t.closed.Load(), t.errFrames.Load())
	})
	for i, p := range pubs {
		// Spread the publishers of a fixed rate over one period.
		start := t0
		if rate > 0 {
			start = t0.Add(time.Duration(float64(i) / float64(R) / rate * float64(time.Second)))
		}
		go p.writeLoop(stop, start, rate, count)
	}
	s.publishFor(c.duration, stop, pubs)
	tPub := time.Now()
	delivPub := t.delivered.Load()

	// Drain: every sent frame answered, then every receipted message
	// delivered to all M members.
	waitUntil(s.ctx, c.drain, func() bool { return t.receipted.Load()+t.failed.Load() >= t.sent.Load() })
	waitUntil(s.ctx, c.drain, func() bool { return t.delivered.Load() >= t.receipted.Load()*int64(M) })
	tEnd := time.Now()
	prog.end()
	cpu, cpuOK := endWindow()
	s.addRSS("hub_rss")
	if rss, ok := s.hub.rss(); ok && rssBefore > 0 {
		r.add("hub_rss_growth", float64(rss-rssBefore)/(1<<20), "MiB")
	}

	closeAll(all)
	var lost int64
	for _, m := range members {
		lost += m.seen.missingFrom(&pubs[m.expect].receipted)
	}

	pubDur := tPub.Sub(t0)
	total := tEnd.Sub(t0)
	sent, rec := t.sent.Load(), t.receipted.Load()
	dv := t.delivered.Load()
	r.add("messages_sent", float64(sent), "")
	r.add("messages_receipted", float64(rec), "")
	r.add("publish_rate", float64(sent)/pubDur.Seconds(), "msg/s")
	r.add("deliveries", float64(dv), "")
	r.add("deliveries_expected", float64(rec*int64(M)), "")
	r.add("deliveries_per_s", float64(delivPub)/pubDur.Seconds(), "1/s")
	r.add("deliveries_per_s_incl_drain", float64(dv)/total.Seconds(), "1/s")
	t.report(r, int64(lost), "deliveries", pubDur, tEnd.Sub(tPub))
	if cpuOK {
		r.add("hub_cpu_util", 100*cpu.Seconds()/total.Seconds(), "%")
		if dv > 0 {
			r.add("hub_cpu_s_per_million_deliveries", cpu.Seconds()/(float64(dv)/1e6), "s")
		}
	}
	return nil
}
