//go:build linux

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// config is the command line of a scenario. Each scenario registers the
// flags it uses.
type config struct {
	// Hub.
	target    string
	hubPID    int
	stores    string // "mem", "bolt" or "mem,bolt"; direct also "floor"
	dbPath    string
	sendQueue int
	hubProf   string // CPU profile of the hub over the measured window
	floor     bool   // spawn the floor server (floor.go) instead of a hub
	repeat    int    // direct: run the list of variants this many times, alternating

	// Bounds and output.
	duration time.Duration
	timeout  time.Duration
	drain    time.Duration
	jsonPath string
	every    time.Duration // progress interval

	// Connections.
	conns       int
	perSrc      int
	concurrency int
	procs       int
	hold        time.Duration
	settle      time.Duration
	drop        string
	backoff     time.Duration

	// Traffic.
	rooms   int
	members int
	pairs   int
	rate    float64
	timers  bool // direct: a timer per sender instead of pace
	window  int
	count   int
	batches string // "0", "1" or "both"

	deliveries string // direct: write every delivery to this file

	// Slow partial frames.
	frame  int           // payload length the frame header announces
	sent   int           // payload bytes sent at once
	drip   time.Duration // interval of the single bytes after them
	sample time.Duration // interval of the samples in the report

	// Several hub processes (spread).
	sp spreadConfig
}

func (c *config) hubFlags(fs *flag.FlagSet, stores string) {
	fs.StringVar(&c.target, "target", "", "ws:// URL of a running hub (loopback only) instead of spawning \"wshub-bench serve\"")
	fs.IntVar(&c.hubPID, "hub-pid", 0, "PID of the -target hub, for its RSS and CPU readings")
	fs.StringVar(&c.stores, "store", stores, "store of a spawned hub: mem, bolt, or mem,bolt for one run with each; direct also takes floor, the direct floor server (serve -floor-direct), e.g. mem,floor, and floorstore, the same storing its messages in a memory store (serve -floor-direct -floor-direct-store)")
	fs.StringVar(&c.dbPath, "db", "", "bbolt file of a spawned hub with -store bolt (default: a new file in a temporary directory)")
	fs.IntVar(&c.sendQueue, "send-queue", 0, "wshub.Options.SendQueue of a spawned hub (0: the hub's default)")
	fs.StringVar(&c.hubProf, "hub-cpuprofile", "", "write a CPU profile of the hub over the measured window to this file (needs a hub started by serve)")
	fs.BoolVar(&c.floor, "floor", false, "run against the floor server (serve -floor: writes room messages and nothing else) instead of a hub, as a yardstick for fanout and saturate; for direct: the direct floor server (serve -floor-direct) alone, as -store floor")
	c.runFlags(fs, 20000)
}

// runFlags registers the bounds, the output and the dialing flags every
// scenario has; perSrc is the default of -per-src.
func (c *config) runFlags(fs *flag.FlagSet, perSrc int) {
	fs.DurationVar(&c.timeout, "timeout", 3*time.Minute, "upper bound of each run, setup and teardown included")
	fs.StringVar(&c.jsonPath, "json", "", "write the JSON report to this file instead of standard output")
	fs.DurationVar(&c.every, "progress", time.Second, "interval of the progress line on standard error (0: none)")
	fs.IntVar(&c.perSrc, "per-src", perSrc, "connections per loopback source address (127.0.0.1, 127.0.0.2, ...)")
	fs.IntVar(&c.concurrency, "concurrency", 200, "connections dialed at the same time")
}

func (c *config) trafficFlags(fs *flag.FlagSet, dur time.Duration) {
	fs.DurationVar(&c.duration, "duration", dur, "how long the publishers send")
	fs.DurationVar(&c.drain, "drain", 10*time.Second, "after the publishers stop, how long to wait for outstanding receipts and deliveries")
}

// scenarioMain parses the flags of scenario name, runs it (once per
// variant, each with a fresh hub when the tool spawns it) and writes the
// report.
func scenarioMain(ctx context.Context, name string, args []string, stdout, stderr io.Writer) error {
	// Progress lines, child processes and errors share stderr.
	stderr = &syncWriter{w: stderr}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &config{}
	switch name {
	case "idle":
		c.hubFlags(fs, "mem")
		fs.IntVar(&c.conns, "conns", 1000, "connections to open (C)")
		fs.IntVar(&c.procs, "procs", 0, "worker processes holding the connections (0: one per 15,000 connections)")
		fs.DurationVar(&c.settle, "settle", 3*time.Second, "wait after the last connection before reading the hub's RSS")
		fs.DurationVar(&c.hold, "hold", 5*time.Second, "how long to hold the connections after reading the RSS, checking none drops")
	case "fanout", "saturate":
		c.hubFlags(fs, "mem")
		fs.IntVar(&c.rooms, "rooms", 10, "rooms (R)")
		fs.IntVar(&c.members, "members", 500, "members per room (M), each on a connection of its own; the publisher comes on top")
		if name == "fanout" {
			c.trafficFlags(fs, 10*time.Second)
			fs.Float64Var(&c.rate, "rate", 5, "messages per second per room")
			fs.IntVar(&c.window, "window", 64, "most messages a publisher has sent without a receipt")
			fs.IntVar(&c.count, "count", 0, "most messages per publisher (0: rate x duration)")
			fs.StringVar(&c.batches, "batch", "0", "batch=1 on the members' connections: 0, 1, or both")
		} else {
			c.trafficFlags(fs, 10*time.Second)
			fs.IntVar(&c.window, "window", 16, "most messages a publisher has sent without a receipt")
			fs.IntVar(&c.count, "count", 1_000_000, "most messages per publisher")
			fs.StringVar(&c.batches, "batch", "both", "batch=1 on the members' connections: 0, 1, or both")
		}
	case "direct":
		c.hubFlags(fs, "mem,bolt")
		c.trafficFlags(fs, 10*time.Second)
		fs.IntVar(&c.pairs, "pairs", 500, "pairs of users, each sending to the other")
		fs.Float64Var(&c.rate, "rate", 0, "messages per second per user (0: as fast as the window allows)")
		fs.BoolVar(&c.timers, "timers", false, "with -rate: a Go timer per sender, as before 2026-12-07, instead of one thread sending each message on time (Go's timers fire at millisecond steps when the process idles, so the senders' messages go in bursts)")
		fs.IntVar(&c.window, "window", 8, "most messages a user has sent without a receipt")
		fs.IntVar(&c.count, "count", 1_000_000, "most messages per user")
		fs.IntVar(&c.repeat, "repeat", 1, "run the -store list this many times, alternating (mem,floor,mem,floor,...)")
		fs.StringVar(&c.deliveries, "deliveries", "", "write every delivery to this file, one line each: arrival (Unix ns), latency (ns), receiving connection (with several runs, FILE.storemem, FILE.floor, ... as -hub-cpuprofile)")
	case "storm":
		c.hubFlags(fs, "mem")
		fs.IntVar(&c.conns, "conns", 2000, "Go clients (client package, default backoff)")
		fs.StringVar(&c.drop, "drop", "hub", "who drops the connections: hub (the hub closes each with 1001; needs serve) or client (the tool closes every socket)")
		fs.DurationVar(&c.settle, "settle", time.Second, "wait after every client connected before dropping them")
		fs.DurationVar(&c.backoff, "backoff", 0, "ceiling of the clients' first reconnect delay, client.Backoff.Base (0: the client's default, 0.5 s)")
	case "spread":
		c.spreadFlags(fs)
	case "slowloris":
		c.hubFlags(fs, "mem")
		fs.IntVar(&c.conns, "conns", 1000, "connections, each holding one partial frame (C)")
		fs.IntVar(&c.frame, "frame", 65536, "payload length the frame's header announces, in bytes (the hub's default read limit is 64 KiB)")
		fs.IntVar(&c.sent, "sent", 61440, "payload bytes written right after the header (less than -frame)")
		fs.DurationVar(&c.drip, "drip", 30*time.Second, "interval of the payload bytes that follow, one at a time (the frame's last byte is never sent)")
		fs.DurationVar(&c.duration, "duration", 120*time.Second, "how long the run goes on once every connection wrote its partial frame, whether or not the hub closed them sooner; -timeout, unless given, is raised to this plus 1 m")
		fs.DurationVar(&c.sample, "sample", 5*time.Second, "interval of the samples (open connections, hub RSS) in the report")
	}
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "wshub-bench %s: unexpected arguments %q\n", name, fs.Args())
		return errUsage
	}
	if name == "slowloris" && !flagSet(fs, "timeout") {
		// The run lasts -duration after its setup: the default bound
		// leaves a minute for the setup and the teardown.
		c.timeout = max(c.timeout, c.duration+time.Minute)
	}
	if c.target != "" {
		if _, err := checkTarget(c.target); err != nil {
			return err
		}
	}
	if name == "direct" && c.target != "" && (c.floor || strings.Contains(c.stores, "floor")) {
		return fmt.Errorf("direct: the floor server is spawned by the tool; it does not go with -target")
	}
	if name == "spread" {
		if err := checkSpread(c); err != nil {
			return err
		}
	}

	rep := &Report{Scenario: name, Machine: machine(), Started: time.Now().UTC().Format(time.RFC3339)}
	for _, v := range variants(name, c) {
		if ctx.Err() != nil {
			break
		}
		run := newRun(v.name)
		rctx, cancel := context.WithTimeout(ctx, c.timeout)
		err := runVariant(rctx, name, c, v, run, stderr)
		cancel()
		if err != nil {
			run.errorf("%v", err)
			fmt.Fprintf(stderr, "wshub-bench %s %s: %v\n", name, v.name, err)
		}
		run.finish()
		rep.Runs = append(rep.Runs, run)
	}

	rep.writeMarkdown(stdout)
	if c.jsonPath != "" {
		f, err := os.Create(c.jsonPath)
		if err != nil {
			return err
		}
		if err := rep.writeJSON(f); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(stdout)
		if err := rep.writeJSON(stdout); err != nil {
			return err
		}
	}
	for _, r := range rep.Runs {
		if len(r.Errors) > 0 {
			return fmt.Errorf("%s: %d run(s) reported errors", name, countErrRuns(rep))
		}
	}
	return ctx.Err()
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func countErrRuns(rep *Report) int {
	n := 0
	for _, r := range rep.Runs {
		if len(r.Errors) > 0 {
			n++
		}
	}
	return n
}

// syncWriter serializes the writes of several goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer // guarded by mu
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// variant is one run of a scenario.
type variant struct {
	name      string
	batch     bool
	storeKind string
	example   string // spread: the example binary to spawn, or "" for -targets
	hubs      int    // spread: hub processes to spawn
}

// variants lists the runs of a scenario: one per store for direct, one
// per batch setting for fanout and saturate.
func variants(name string, c *config) []variant {
	var vs []variant
	switch name {
	case "spread":
		return spreadVariants(c)
	case "direct":
		// "floor" in the list is the direct floor server (floordirect.go);
		// -floor alone runs only that.
		stores := strings.Split(c.stores, ",")
		if c.floor {
			stores = []string{"floor"}
		}
		for i := range max(1, c.repeat) {
			for _, s := range stores {
				s = strings.TrimSpace(s)
				name := "store=" + s
				if s == "floor" || s == "floorstore" {
					name = s
				}
				if c.repeat > 1 {
					name += "#" + strconv.Itoa(i+1)
				}
				vs = append(vs, variant{name: name, storeKind: s})
			}
		}
	case "fanout", "saturate":
		store := strings.Split(c.stores, ",")[0]
		switch c.batches {
		case "1":
			vs = append(vs, variant{name: "batch=1", batch: true, storeKind: store})
		case "both":
			vs = append(vs, variant{name: "batch=1", batch: true, storeKind: store}, variant{name: "batch=0", storeKind: store})
		default:
			vs = append(vs, variant{name: "batch=0", storeKind: store})
		}
	default:
		vs = append(vs, variant{name: name, storeKind: strings.Split(c.stores, ",")[0]})
	}
	return vs
}

// runVariant starts the hub, runs one variant of the scenario against it
// and stops it.
func runVariant(ctx context.Context, name string, c *config, v variant, run *Run, stderr io.Writer) error {
	if name == "spread" {
		return runSpread(ctx, c, v, run, stderr)
	}
	hc := hubConfig{target: c.target, pid: c.hubPID, storeKind: v.storeKind, dbPath: c.dbPath, sendQueue: c.sendQueue}
	switch {
	case name == "direct" && v.storeKind == "floor":
		hc.storeKind = "mem" // not used by the floor server
		hc.extraArgs = append(hc.extraArgs, "-floor-direct")
		run.param("server", "floor-direct")
	case name == "direct" && v.storeKind == "floorstore":
		hc.storeKind = "mem" // not used by the floor server
		hc.extraArgs = append(hc.extraArgs, "-floor-direct", "-floor-direct-store")
		run.param("server", "floor-direct-store")
	case c.floor:
		hc.extraArgs = append(hc.extraArgs, "-floor")
		run.param("server", "floor")
	}
	var tmpDir string
	if c.target == "" && v.storeKind == "bolt" && hc.dbPath == "" {
		d, err := os.MkdirTemp("", "wshub-bench-")
		if err != nil {
			return err
		}
		tmpDir = d
		defer os.RemoveAll(tmpDir)
		hc.dbPath = d + "/hub.db"
	}
	hub, err := startHub(ctx, hc)
	if err != nil {
		return err
	}
	if c.target == "" {
		run.param("store", hc.storeKind)
		if v.storeKind == "floor" {
			run.param("store", "none")
		}
	} else {
		run.param("target", c.target)
	}
	defer func() {
		if err := hub.stop(); err != nil {
			fmt.Fprintf(stderr, "wshub-bench: stopping the hub: %v\n", err)
		}
	}()
	prof, delivs := c.hubProf, c.deliveries
	if len(variants(name, c)) > 1 {
		suffix := "." + strings.NewReplacer("=", "", ",", "_", "#", "_").Replace(v.name)
		if prof != "" {
			prof += suffix
		}
		if delivs != "" {
			delivs += suffix
		}
	}
	s := &session{ctx: ctx, cfg: c, hub: hub, run: run, stderr: stderr, prof: prof, delivs: delivs, dbPath: hc.dbPath}
	switch name {
	case "idle":
		return s.idle()
	case "fanout":
		return s.rooms(v.batch, c.rate)
	case "saturate":
		return s.rooms(v.batch, 0)
	case "direct":
		return s.direct(v.storeKind == "bolt")
	case "storm":
		return s.storm()
	case "slowloris":
		return s.slowloris()
	}
	return errors.New("unknown scenario " + name)
}

// session is one run against one hub.
type session struct {
	ctx    context.Context
	cfg    *config
	hub    *hubProc
	run    *Run
	stderr io.Writer
	prof   string // hub CPU profile path, or ""
	delivs string // file of every delivery (direct -deliveries), or ""
	dbPath string // the spawned hub's bbolt file, if any
}

// window marks the start of a measured window and returns a function that
// ends it: it records the CPU time the hub (hub_cpu_s) and the tool
// (tool_cpu_s, this process only) used within it, stops the hub's CPU
// profile if one was asked for, and returns the hub's CPU time. It also
// records other_cpu_s: the CPU time the rest of the machine used
// meanwhile (other processes; for idle, the tool's workers too), which
// says how much the figures were disturbed.
func (s *session) window() func() (time.Duration, bool) {
	cpu0, ok0 := s.hub.cpu()
	self0, _ := procCPU(os.Getpid())
	busy0, okb0 := machineBusy()
	var stopProf func() error
	if s.prof != "" {
		var err error
		if stopProf, err = s.hub.startProfile(s.ctx, s.prof); err != nil {
			s.run.errorf("hub cpu profile: %v", err)
		}
	}
	return func() (time.Duration, bool) {
		cpu1, ok1 := s.hub.cpu()
		self1, _ := procCPU(os.Getpid())
		busy1, okb1 := machineBusy()
		if stopProf != nil {
			if err := stopProf(); err != nil {
				s.run.errorf("hub cpu profile: %v", err)
			} else {
				s.run.param("hub_cpuprofile", s.prof)
			}
		}
		s.run.add("tool_cpu_s", (self1 - self0).Seconds(), "s")
		if !ok0 || !ok1 {
			return 0, false
		}
		s.run.add("hub_cpu_s", (cpu1 - cpu0).Seconds(), "s")
		if okb0 && okb1 {
			other := (busy1 - busy0) - (cpu1 - cpu0) - (self1 - self0)
			s.run.add("other_cpu_s", max(0, other).Seconds(), "s")
		}
		return cpu1 - cpu0, true
	}
}

// addRSS records the hub's RSS in MiB.
func (s *session) addRSS(name string) (int64, bool) {
	rss, ok := s.hub.rss()
	if ok {
		s.run.add(name, float64(rss)/(1<<20), "MiB")
	}
	return rss, ok
}

// sampler takes a sample with take every interval, on a goroutine of its
// own, from startSampler (which takes the first at once) until stop.
type sampler[T any] struct {
	mu      sync.Mutex
	samples []T // guarded by mu
	quit    chan struct{}
	done    chan struct{} // closed by the sampling goroutine when it returns
}

// startSampler takes a first sample and starts sampling every interval.
func startSampler[T any](every time.Duration, take func() T) *sampler[T] {
	s := &sampler[T]{samples: []T{take()}, quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				sm := take()
				s.mu.Lock()
				s.samples = append(s.samples, sm)
				s.mu.Unlock()
			case <-s.quit:
				return
			}
		}
	}()
	return s
}

// stop ends the sampling and returns the samples, oldest first.
func (s *sampler[T]) stop() []T {
	close(s.quit)
	<-s.done
	return s.samples
}
