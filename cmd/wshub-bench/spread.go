//go:build linux

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// spreadConfig is the command line of spread, the scenario that drives
// several hub processes sharing one store (Redis) at once.
type spreadConfig struct {
	targets  string // ws:// URLs of running hubs, comma-separated
	hubPIDs  string // their PIDs, comma-separated, for the CPU readings
	examples string // example binaries to spawn: PATH or NAME=PATH, comma-separated
	hubs     string // hub processes per run when spawning: "1,3"
	redis    string // -redis of the spawned examples
	exArgs   string // more arguments for the spawned examples
	repeat   int
	redisPID string // PIDs of the Redis servers, for their CPU readings
	users    int    // direct users per hub process
	members  int    // members per room on each process
	roomRate float64
}

func (c *config) spreadFlags(fs *flag.FlagSet) {
	sp := &c.sp
	fs.StringVar(&sp.targets, "targets", "", "ws:// URLs of running hub processes sharing one store, comma-separated (loopback only), instead of -spawn-example")
	fs.StringVar(&sp.hubPIDs, "hub-pids", "", "PIDs of the -targets processes, comma-separated in the same order, for their CPU and RSS readings")
	fs.StringVar(&sp.examples, "spawn-example", "", "example binaries (go build ./examples/stdlib) to start as the hub processes, each run with fresh ones: PATH or NAME=PATH, comma-separated for runs of each in turn")
	fs.StringVar(&sp.hubs, "hubs", "3", "with -spawn-example: hub processes per run, comma-separated for runs of each count (e.g. 1,3)")
	fs.StringVar(&sp.redis, "redis", "127.0.0.1:6379", "with -spawn-example: the examples' -redis (loopback only; comma-separated with -redis-cluster)")
	fs.StringVar(&sp.exArgs, "example-args", "", "with -spawn-example: more arguments for every example, space-separated (e.g. \"-redis-cluster\" or \"-max-pending-per-sender -1\")")
	fs.IntVar(&sp.repeat, "repeat", 1, "with -spawn-example: how many times to run every combination of -spawn-example and -hubs, alternating them")
	fs.StringVar(&sp.redisPID, "redis-pids", "", "PIDs of the Redis servers, comma-separated, for their CPU time over the measured window")
	fs.IntVar(&sp.users, "users", 200, "users per hub process sending direct messages, each to a user on the next process (even: with one process, to its neighbour)")
	fs.Float64Var(&c.rate, "rate", 1, "direct messages per second per user (0: as fast as -window allows; the example's quota is 2 per second after a burst of 1,000)")
	fs.IntVar(&c.window, "window", 8, "most messages a user has sent without a receipt")
	fs.IntVar(&c.count, "count", 0, "most messages per user (0: rate x duration, or 900 with -rate 0: under the example's burst of 1,000)")
	fs.IntVar(&c.rooms, "rooms", 2, "rooms, each with -members members on every process and a publisher on one of them")
	fs.IntVar(&sp.members, "members", 30, "members per room on each process (so that each process delivers as much with 1 process as with 3)")
	fs.Float64Var(&sp.roomRate, "room-rate", 1, "messages per second per room (0: as fast as -window allows)")
	c.trafficFlags(fs, 20*time.Second)
	// The example, like any hub with the default Options, takes at most
	// 256 connections per client address.
	c.runFlags(fs, 200)
}

// spreadVariants lists the runs of spread: one against -targets, or one
// per example, hub count and repetition, alternating the examples.
func spreadVariants(c *config) []variant {
	if c.sp.examples == "" {
		return []variant{{name: "targets"}}
	}
	var vs []variant
	for rep := range max(1, c.sp.repeat) {
		for _, n := range splitList(c.sp.hubs) {
			hubs, _ := strconv.Atoi(n)
			for _, ex := range splitList(c.sp.examples) {
				label, path, ok := strings.Cut(ex, "=")
				if !ok {
					label, path = filepath.Base(ex), ex
				}
				name := label + " x" + strconv.Itoa(hubs)
				if c.sp.repeat > 1 {
					name += " #" + strconv.Itoa(rep+1)
				}
				vs = append(vs, variant{name: name, example: path, hubs: hubs})
			}
		}
	}
	return vs
}

// checkSpread validates the flags of spread.
func checkSpread(c *config) error {
	sp := &c.sp
	if (sp.targets == "") == (sp.examples == "") {
		return errors.New("spread: give either -targets or -spawn-example")
	}
	for _, t := range splitList(sp.targets) {
		if _, err := checkTarget(t); err != nil {
			return err
		}
	}
	if sp.targets != "" && sp.hubPIDs != "" && len(splitList(sp.hubPIDs)) != len(splitList(sp.targets)) {
		return errors.New("spread: -hub-pids needs one PID per -targets URL")
	}
	if _, err := parsePIDs(sp.hubPIDs); err != nil {
		return fmt.Errorf("-hub-pids: %w", err)
	}
	if _, err := parsePIDs(sp.redisPID); err != nil {
		return fmt.Errorf("-redis-pids: %w", err)
	}
	if sp.examples != "" {
		for _, n := range splitList(sp.hubs) {
			if k, err := strconv.Atoi(n); err != nil || k <= 0 {
				return fmt.Errorf("-hubs %q: want positive counts", sp.hubs)
			}
		}
		for _, a := range splitList(sp.redis) {
			host, _, ok := strings.Cut(strings.TrimPrefix(a, "redis://"), ":")
			if !ok {
				return fmt.Errorf("-redis %s: want HOST:PORT", a)
			}
			if err := checkLoopback(host); err != nil {
				return fmt.Errorf("-redis %s: %w", a, err)
			}
		}
	}
	if sp.users <= 0 || sp.users%2 != 0 {
		return errors.New("-users must be positive and even")
	}
	if c.rooms < 0 || (c.rooms > 0 && sp.members <= 0) {
		return errors.New("-rooms must not be negative and -members positive")
	}
	return nil
}

// parsePIDs parses a comma-separated list of PIDs.
func parsePIDs(s string) ([]int, error) {
	var pids []int
	for _, f := range splitList(s) {
		p, err := strconv.Atoi(f)
		if err != nil || p <= 0 {
			return nil, fmt.Errorf("%q is not a PID", f)
		}
		pids = append(pids, p)
	}
	return pids, nil
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// startHubs starts the hub processes of a spread run (or takes the
// targets) and returns them once all accept connections.
func startHubs(ctx context.Context, c *config, v variant, stderr io.Writer) ([]*hubProc, error) {
	sp := &c.sp
	if sp.targets != "" {
		pids, _ := parsePIDs(sp.hubPIDs)
		var hubs []*hubProc
		for i, t := range splitList(sp.targets) {
			hc := hubConfig{target: t}
			if i < len(pids) {
				hc.pid = pids[i]
			}
			h, err := startHub(ctx, hc)
			if err != nil {
				return nil, err
			}
			hubs = append(hubs, h)
		}
		return hubs, nil
	}
	hubs := make([]*hubProc, v.hubs)
	errs := make([]error, v.hubs)
	var wg sync.WaitGroup
	for i := range hubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hubs[i], errs[i] = startExample(ctx, v.example, sp.redis, strings.Fields(sp.exArgs), stderr)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		stopHubs(hubs, stderr)
		return nil, err
	}
	return hubs, nil
}

// startExample starts one example process (examples/stdlib) with the
// Redis store on a free loopback port.
func startExample(ctx context.Context, exe, redis string, extra []string, stderr io.Writer) (*hubProc, error) {
	args := append([]string{"-addr", "127.0.0.1:0", "-store", "redis", "-redis", redis}, extra...)
	cmd := exec.Command(exe, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	h, err := spawnHub(ctx, cmd, stderr, func(line string) (string, bool) {
		// "listening on http://127.0.0.1:PORT"
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on http://")
		if !ok {
			return "", false
		}
		return "ws://" + rest + "/ws", true
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", exe, err)
	}
	return h, nil
}

// stopHubs stops the spawned hub processes.
func stopHubs(hubs []*hubProc, stderr io.Writer) {
	for _, h := range hubs {
		if h == nil {
			continue
		}
		if err := h.stop(); err != nil {
			var ee *exec.ExitError
			if !errors.As(err, &ee) { // an example ended by SIGTERM may exit 1
				fmt.Fprintf(stderr, "wshub-bench: stopping a hub: %v\n", err)
			}
		}
	}
}

// runSpread runs one variant of spread.
func runSpread(ctx context.Context, c *config, v variant, run *Run, stderr io.Writer) error {
	hubs, err := startHubs(ctx, c, v, stderr)
	if err != nil {
		return err
	}
	defer stopHubs(hubs, stderr)
	if v.example != "" {
		run.param("example", v.example)
		run.param("redis", c.sp.redis)
		if c.sp.exArgs != "" {
			run.param("example_args", c.sp.exArgs)
		}
	} else {
		run.param("targets", c.sp.targets)
	}
	s := &session{ctx: ctx, cfg: c, run: run, stderr: stderr}
	return s.spread(hubs)
}

// spread drives N hub processes sharing one store at once, so that every
// message crosses processes: user j of process h ("…h<h>u<j>") sends
// direct messages to user j^1 of process (h+1)%N at -rate per second,
// and each room has -members members on every process and a publisher on
// process r%N. Every connection counts what
// it received as in direct and fanout; what each process delivered is
// what its own connections received. The figures are per process: its CPU
// time over the measured window, the messages it delivered, and CPU per
// million of them; then the totals.
func (s *session) spread(hubs []*hubProc) error {
	c, sp, r := s.cfg, &s.cfg.sp, s.run
	N, U, R := len(hubs), sp.users, c.rooms
	M := sp.members * N // members per room
	dur := c.duration
	countFor := func(rate float64) int {
		switch {
		case c.count > 0:
			return c.count
		case rate > 0:
			return int(math.Ceil(rate * dur.Seconds()))
		}
		return 900
	}
	r.param("hubs", N)
	r.param("users_per_hub", U)
	r.param("rate_per_user", c.rate)
	r.param("rooms", R)
	if R > 0 {
		r.param("members_per_room_per_hub", sp.members)
		r.param("rate_per_room", sp.roomRate)
	}
	r.param("duration", dur)
	r.param("window", c.window)

	// Names are new for every run, so that runs on the same Redis do not
	// share histories, pending queues or rooms.
	run := strconv.FormatInt(time.Now().UnixNano()%(36*36*36*36*36), 36)
	t := &tally{}  // direct users and room members: everything received
	tp := &tally{} // room publishers: they only send
	delivered := make([]atomic.Int64, N)
	dials := make([]*dialers, N)
	for h, hub := range hubs {
		dials[h] = newDialers(hub.url, c.perSrc)
	}
	var conns []*lconn
	hubOf := map[*lconn]int{}
	add := func(l *lconn, h int) {
		l.deliv = &delivered[h]
		conns = append(conns, l)
		hubOf[l] = h
	}
	// Direct users: connection number h*U+j is user j of process h.
	for h := range N {
		for j := range U {
			n := h*U + j
			l := newLconn(n, run+"h"+strconv.Itoa(h)+"u"+strconv.Itoa(j), t)
			l.src = n
			l.expect = ((h+N-1)%N)*U + (j ^ 1)
			l.window = make(chan struct{}, max(1, c.window))
			add(l, h)
		}
	}
	for _, l := range conns {
		h, j := hubOf[l], l.src%U
		to := conns[((h+1)%N)*U+(j^1)]
		l.prefix = []byte(`{"cmd":10,"dstid":"` + to.user + `","cid":"`)
	}
	senders := append([]*lconn(nil), conns...)
	var members, pubs []*lconn
	for room := range R {
		for k := range M {
			m := newLconn(len(conns), run+"r"+strconv.Itoa(room)+"m"+strconv.Itoa(k), t)
			m.expect = N*U + room
			members = append(members, m)
			add(m, k%N)
		}
	}
	for room := range R {
		p := newLconn(len(conns), run+"r"+strconv.Itoa(room)+"pub", tp)
		p.src = N*U + room
		p.prefix = []byte(`{"cmd":11,"dstid":"` + run + "room" + strconv.Itoa(room) + `","cid":"`)
		p.window = make(chan struct{}, max(1, c.window))
		pubs = append(pubs, p)
		add(p, room%N)
	}
	defer closeAll(conns)

	setupStart := time.Now()
	prog := startProgress(s.stderr, c.every, "setup", func() string {
		return fmt.Sprintf("connecting %d connections to %d hub processes", len(conns), N)
	})
	err := connectAll(s.ctx, conns, c.concurrency, func(ctx context.Context, l *lconn) error {
		if err := l.connect(ctx, dials[hubOf[l]], false); err != nil {
			return err
		}
		switch {
		case l.src >= N*U: // a publisher
			return l.join(ctx, run+"room"+strconv.Itoa(l.src-N*U))
		case l.expect >= N*U: // a member
			return l.join(ctx, run+"room"+strconv.Itoa(l.expect-N*U))
		}
		return nil
	})
	prog.end()
	if err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	r.addDur("setup", time.Since(setupStart))

	// Measured window: from the first message to the last delivery.
	redisPIDs, _ := parsePIDs(sp.redisPID)
	endWindow := spreadWindow(hubs, redisPIDs)
	stop := make(chan struct{})
	t0 := time.Now()
	var lastDeliv int64
	lastAt := t0
	prog = startProgress(s.stderr, c.every, s.run.Name, func() string {
		now := time.Now()
		dv := t.delivered.Load()
		rateNow := float64(dv-lastDeliv) / now.Sub(lastAt).Seconds()
		lastDeliv, lastAt = dv, now
		per := make([]string, N)
		for h := range N {
			per[h] = strconv.FormatInt(delivered[h].Load(), 10)
		}
		snap := t.lat.snapshot()
		return fmt.Sprintf("sent %d receipted %d delivered %d (%.0f/s; per process %s) p99 %v dups %d closed %d errs %d",
			t.sent.Load()+tp.sent.Load(), t.receipted.Load()+tp.receipted.Load(), dv, rateNow, strings.Join(per, "/"),
			snap.quantile(0.99).Round(10*time.Microsecond), t.dups.Load(), t.closed.Load()+tp.closed.Load(),
			t.errFrames.Load()+tp.errFrames.Load())
	})
	// Spread the senders of a fixed rate over one period.
	for i, l := range senders {
		start := t0
		if c.rate > 0 {
			start = t0.Add(time.Duration(float64(i) / float64(len(senders)) / c.rate * float64(time.Second)))
		}
		go l.writeLoop(stop, start, c.rate, countFor(c.rate))
	}
	for i, p := range pubs {
		start := t0
		if sp.roomRate > 0 {
			start = t0.Add(time.Duration(float64(i) / float64(R) / sp.roomRate * float64(time.Second)))
		}
		go p.writeLoop(stop, start, sp.roomRate, countFor(sp.roomRate))
	}
	s.publishFor(dur, stop, append(append([]*lconn(nil), senders...), pubs...))
	tPub := time.Now()
	delivPub := t.delivered.Load()
	// Drain: every frame answered, then every receipted message delivered
	// (a room message to its M members).
	waitUntil(s.ctx, c.drain, func() bool {
		return t.receipted.Load()+t.failed.Load() >= t.sent.Load() && tp.receipted.Load()+tp.failed.Load() >= tp.sent.Load()
	})
	waitUntil(s.ctx, c.drain, func() bool {
		return t.delivered.Load() >= t.receipted.Load()+tp.receipted.Load()*int64(M)
	})
	tEnd := time.Now()
	prog.end()
	win := endWindow()
	rss := make([]int64, N)
	for h, hub := range hubs {
		rss[h], _ = hub.rss()
	}
	closeAll(conns)

	var lost int64
	for _, l := range senders {
		lost += l.seen.missingFrom(&senders[l.expect].receipted)
	}
	for _, m := range members {
		lost += m.seen.missingFrom(&pubs[m.expect-N*U].receipted)
	}
	directRec, roomRec := t.receipted.Load(), tp.receipted.Load()
	t.absorb(tp)
	pubDur, total := tPub.Sub(t0), tEnd.Sub(t0)
	dv := t.delivered.Load()
	r.add("messages_sent", float64(t.sent.Load()), "")
	r.add("direct_receipted", float64(directRec), "")
	r.add("room_receipted", float64(roomRec), "")
	r.add("delivered", float64(dv), "")
	r.add("delivered_expected", float64(directRec+roomRec*int64(M)), "")
	r.add("delivered_per_s", float64(delivPub)/pubDur.Seconds(), "msg/s")
	r.add("delivered_per_s_incl_drain", float64(dv)/total.Seconds(), "msg/s")
	t.report(r, lost, "messages", pubDur, tEnd.Sub(tPub))

	var cpuSum time.Duration
	worst := 0.0
	cpuOK := true
	for h := range N {
		p := "hub" + strconv.Itoa(h) + "_"
		d := delivered[h].Load()
		r.add(p+"delivered", float64(d), "")
		if !win.hubOK[h] {
			cpuOK = false
			continue
		}
		cpu := win.hubCPU[h]
		cpuSum += cpu
		r.add(p+"cpu_s", cpu.Seconds(), "s")
		if d > 0 {
			per := cpu.Seconds() / (float64(d) / 1e6)
			r.add(p+"cpu_s_per_million_delivered", per, "s")
			worst = max(worst, per)
		}
		if rss[h] > 0 {
			r.add(p+"rss", float64(rss[h])/(1<<20), "MiB")
		}
	}
	if cpuOK {
		r.add("hubs_cpu_s", cpuSum.Seconds(), "s")
		if dv > 0 {
			r.add("hubs_cpu_s_per_million_delivered", cpuSum.Seconds()/(float64(dv)/1e6), "s")
			r.add("worst_hub_cpu_s_per_million_delivered", worst, "s")
		}
	}
	if len(redisPIDs) > 0 {
		if win.redisOK {
			r.add("redis_cpu_s", win.redisCPU.Seconds(), "s")
			if dv > 0 {
				r.add("redis_cpu_s_per_million_delivered", win.redisCPU.Seconds()/(float64(dv)/1e6), "s")
			}
		} else {
			r.errorf("could not read the CPU time of -redis-pids %s", sp.redisPID)
		}
	}
	r.add("tool_cpu_s", win.tool.Seconds(), "s")
	if win.otherOK {
		r.add("other_cpu_s", win.other.Seconds(), "s")
	}
	if dv == 0 {
		r.errorf("nothing was delivered")
	}
	return nil
}

// spreadReadings are the CPU times over a measured window of spread.
type spreadReadings struct {
	hubCPU   []time.Duration
	hubOK    []bool
	redisCPU time.Duration
	redisOK  bool
	tool     time.Duration // this process
	other    time.Duration // the rest of the machine
	otherOK  bool
}

// spreadWindow marks the start of a measured window over several hub
// processes (and Redis servers) and returns the function that ends it.
func spreadWindow(hubs []*hubProc, redisPIDs []int) func() spreadReadings {
	read := func() (hub []time.Duration, hubOK []bool, redis time.Duration, redisOK bool) {
		redisOK = true
		for _, h := range hubs {
			cpu, ok := h.cpu()
			hub, hubOK = append(hub, cpu), append(hubOK, ok)
		}
		for _, p := range redisPIDs {
			cpu, ok := procCPU(p)
			redis += cpu
			redisOK = redisOK && ok
		}
		return
	}
	hub0, ok0, redis0, rok0 := read()
	self0, _ := procCPU(os.Getpid())
	busy0, bok0 := machineBusy()
	return func() spreadReadings {
		hub1, ok1, redis1, rok1 := read()
		self1, _ := procCPU(os.Getpid())
		busy1, bok1 := machineBusy()
		w := spreadReadings{tool: self1 - self0, redisCPU: redis1 - redis0, redisOK: rok0 && rok1}
		known := w.tool
		for i := range hubs {
			w.hubCPU = append(w.hubCPU, hub1[i]-hub0[i])
			w.hubOK = append(w.hubOK, ok0[i] && ok1[i])
			known += hub1[i] - hub0[i]
		}
		if w.redisOK {
			known += w.redisCPU
		}
		if bok0 && bok1 {
			w.other, w.otherOK = max(0, busy1-busy0-known), true
		}
		return w
	}
}
