//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
	"github.com/redis/go-redis/v9"

	"github.com/wshub/wshub/internal/redistest"
)

// growth measures how the cost of the hub grows with the data it holds
// (issue 14). Its cases, each against a fresh hub and store:
//
//   - fill: users on connections of their own send direct messages over
//     -convs conversations until -to messages are stored, pausing at every
//     one of -points to measure: the fill's throughput, the receipt and
//     delivery latency at a fixed moderate rate, the latency of a history
//     page (cmd 16) of a long ("hot") conversation, newest and oldest, the
//     size of the store per message and the hub's memory.
//   - pending: one user with -pending messages queued connects: time to
//     the first and to the last delivered.
//   - room: a room of -members members: time of one message's fan-out to
//     the first and the last member, hub CPU per message.
//   - rooms: -rooms rooms of -room-size members joined over the protocol
//     (cmd 12): join throughput, the hub's memory with them, the latency
//     of room messages.
type growthConfig struct {
	storeKind string
	dbPath    string
	redisAddr string
	cases     string

	convs    int
	users    int
	to       int64
	points   string
	window   int
	hotConns int
	hotShare float64

	measure     time.Duration
	measureRate float64
	histN       int
	histLimit   int

	pending int

	members  int
	roomMsgs int

	rooms        int
	roomSize     int
	roomsPerUser int

	svgPath string
	maxAge  time.Duration // -max-age: the bolt store's MaxAge
}

// growthRing is how many send times a connection keeps, by cid modulo
// growthRing: the bound of -window.
const growthRing = 64 // send times kept per connection: the window's bound

func growthMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	stderr = &syncWriter{w: stderr}
	fs := flag.NewFlagSet("growth", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &config{}
	g := &growthConfig{}
	fs.StringVar(&g.storeKind, "store", "bolt", "store of the spawned hub: mem, bolt or redis")
	fs.StringVar(&g.dbPath, "db", "", "bbolt file with -store bolt (default: a new file in a temporary directory, removed at the end); only with one -case")
	fs.StringVar(&g.redisAddr, "redis", "", "with -store redis: an empty Redis database to use (loopback only; only with one -case); default: start redis-server on a free port of 127.0.0.1 for the run")
	fs.StringVar(&g.cases, "case", "fill", "what to measure, comma-separated: fill, pending, room, rooms")
	fs.IntVar(&g.convs, "convs", 100_000, "fill: direct conversations (pairs of users) the messages are spread over")
	fs.IntVar(&g.users, "users", 2000, "fill: users, each on a connection of its own, sending round-robin over its -convs/-users conversations and receiving on the others'")
	fs.Int64Var(&g.to, "to", 10_000_000, "fill: messages to store in all")
	fs.StringVar(&g.points, "points", "100000,300000,1000000,3000000,10000000", "fill: stored message counts at which to pause and measure (those above -to are dropped; -to is added)")
	fs.IntVar(&g.window, "window", 4, "most messages a connection has sent without a receipt (at most 64)")
	fs.IntVar(&g.hotConns, "hot-conns", 8, "fill: connections of user gh, sending to ghp: the hot conversation, whose newest and oldest history pages are measured")
	fs.Float64Var(&g.hotShare, "hot-share", 0.01, "fill: the hot conversation's share of the stored messages; at each point, after the fill, gh's connections alone top it up to this share")
	fs.DurationVar(&g.measure, "measure", 3*time.Second, "fill, rooms: how long the fixed-rate latency measurement runs at each point")
	fs.Float64Var(&g.measureRate, "measure-rate", 1000, "fill, rooms: messages per second in all during the latency measurement")
	fs.IntVar(&g.histN, "history", 200, "fill: history requests per kind (newest page, deep page) at each point")
	fs.IntVar(&g.histLimit, "history-limit", 50, "fill: items per history page")
	fs.IntVar(&g.pending, "pending", 100_000, "pending: messages queued for the user that connects")
	fs.IntVar(&g.members, "members", 10_000, "room: members of the room, each on a connection of its own")
	fs.IntVar(&g.roomMsgs, "room-msgs", 10, "room: messages sent one at a time, each waited for at every member")
	fs.IntVar(&g.rooms, "rooms", 100_000, "rooms: rooms")
	fs.IntVar(&g.roomSize, "room-size", 10, "rooms: members per room")
	fs.IntVar(&g.roomsPerUser, "rooms-per-user", 100, "rooms: rooms each user joins (users = rooms x size / this)")
	fs.StringVar(&g.svgPath, "svg", "", "fill: write the growth curves as an SVG chart to this file")
	fs.DurationVar(&g.maxAge, "max-age", 0, "with -store bolt: the hub's store keeps messages this long (boltstore.Options.MaxAge; 0: for ever): with it the file stops growing")
	c.runFlags(fs, 20000)
	c.timeout = 40 * time.Minute
	fs.Lookup("timeout").DefValue = "40m0s"
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "wshub-bench growth: unexpected arguments %q\n", fs.Args())
		return errUsage
	}
	cases := splitList(g.cases)
	if err := checkGrowth(g, cases); err != nil {
		return err
	}

	rep := &Report{Scenario: "growth", Machine: machine(), Started: time.Now().UTC().Format(time.RFC3339)}
	var redisSrv *redistest.Server
	if g.storeKind == "redis" && g.redisAddr == "" {
		dir, err := os.MkdirTemp("", "wshub-bench-redis-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if redisSrv, err = redistest.StartIn(dir, 0); err != nil {
			return fmt.Errorf("starting redis-server: %w", err)
		}
		defer redisSrv.Stop()
	}
	for _, cs := range cases {
		if ctx.Err() != nil {
			break
		}
		rctx, cancel := context.WithTimeout(ctx, c.timeout)
		gs := &growthSession{ctx: rctx, cfg: c, g: g, stderr: stderr, caseName: cs}
		if redisSrv != nil {
			gs.redisAddr = redisSrv.Addr
		} else {
			gs.redisAddr = g.redisAddr
		}
		runs, err := gs.runCase()
		cancel()
		if err != nil {
			r := gs.cur
			if r == nil {
				r = newRun(g.storeKind + " " + cs)
				runs = append(runs, r)
			}
			r.errorf("%v", err)
			fmt.Fprintf(stderr, "wshub-bench growth %s: %v\n", cs, err)
		}
		for _, r := range runs {
			if r.LoadAfter == 0 { // a fill's points are finished as they end
				r.finish()
			}
		}
		rep.Runs = append(rep.Runs, runs...)
	}

	rep.writeMarkdown(stdout)
	if c.jsonPath != "" {
		if err := writeReportFile(rep, c.jsonPath); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(stdout)
		if err := rep.writeJSON(stdout); err != nil {
			return err
		}
	}
	if g.svgPath != "" {
		if err := writeGrowthSVG(g.svgPath, []*Report{rep}); err != nil {
			return err
		}
	}
	if n := countErrRuns(rep); n > 0 {
		return fmt.Errorf("growth: %d run(s) reported errors", n)
	}
	return ctx.Err()
}

func writeReportFile(rep *Report, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := rep.writeJSON(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func checkGrowth(g *growthConfig, cases []string) error {
	switch g.storeKind {
	case "mem", "bolt", "redis":
	default:
		return fmt.Errorf("-store %q: want mem, bolt or redis", g.storeKind)
	}
	if len(cases) == 0 {
		return errors.New("-case: name at least one case")
	}
	for _, cs := range cases {
		switch cs {
		case "fill", "pending", "room", "rooms":
		default:
			return fmt.Errorf("-case %q: want fill, pending, room or rooms", cs)
		}
	}
	if (g.dbPath != "" || g.redisAddr != "") && len(cases) > 1 {
		return errors.New("-db and -redis name one store: give one -case with them (each case starts from an empty store)")
	}
	if g.window < 1 || g.window > growthRing {
		return fmt.Errorf("-window %d: want 1 to %d", g.window, growthRing)
	}
	if slices.Contains(cases, "fill") {
		if g.users < 3 || g.convs < 1 || g.to < 1 {
			return errors.New("-users (at least 3), -convs and -to must be positive")
		}
		if d := (g.convs + g.users - 1) / g.users; d > (g.users-1)/2 {
			return fmt.Errorf("-convs %d over -users %d: %d conversations per user, at most %d keep every pair distinct; raise -users", g.convs, g.users, d, (g.users-1)/2)
		}
		if _, err := growthPoints(g.points, g.to); err != nil {
			return err
		}
	}
	if slices.Contains(cases, "pending") && g.pending < 1 {
		return errors.New("-pending must be positive")
	}
	if slices.Contains(cases, "room") && (g.members < 1 || g.roomMsgs < 1) {
		return errors.New("-members and -room-msgs must be positive")
	}
	if slices.Contains(cases, "rooms") {
		if g.rooms < 1 || g.roomSize < 2 || g.roomsPerUser < 1 {
			return errors.New("-rooms, -rooms-per-user must be positive and -room-size at least 2")
		}
		if g.rooms%g.roomsPerUser != 0 {
			return fmt.Errorf("-rooms %d is not a multiple of -rooms-per-user %d (users come in blocks of -room-size sharing -rooms-per-user rooms)", g.rooms, g.roomsPerUser)
		}
	}
	if g.redisAddr != "" {
		host, _, ok := strings.Cut(g.redisAddr, ":")
		if !ok {
			return fmt.Errorf("-redis %s: want HOST:PORT", g.redisAddr)
		}
		if err := checkLoopback(host); err != nil {
			return fmt.Errorf("-redis %s: %w", g.redisAddr, err)
		}
	}
	return nil
}

// growthPoints parses -points: the counts up to to, ascending, ending
// with to.
func growthPoints(list string, to int64) ([]int64, error) {
	var ps []int64
	for _, f := range splitList(list) {
		v, err := strconv.ParseInt(strings.ReplaceAll(f, "_", ""), 10, 64)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("-points: %q is not a positive count", f)
		}
		if v < to {
			ps = append(ps, v)
		}
	}
	ps = append(ps, to)
	slices.Sort(ps)
	return slices.Compact(ps), nil
}

// growthSession is one case against one hub.
type growthSession struct {
	ctx       context.Context
	cfg       *config
	g         *growthConfig
	stderr    io.Writer
	caseName  string
	redisAddr string
	hub       *hubProc
	dbPath    string
	d         *dialers
	st        *gstate
	cur       *Run // the run being measured, for an error
}

func (gs *growthSession) runCase() ([]*Run, error) {
	g := gs.g
	hc := hubConfig{storeKind: g.storeKind, dbPath: g.dbPath, extraArgs: []string{"-log", "error"}}
	if g.maxAge > 0 {
		hc.extraArgs = append(hc.extraArgs, "-max-age", g.maxAge.String())
	}
	switch gs.caseName {
	case "fill":
		// The hot conversation's sender may be ahead of its recipient's
		// acknowledgements by more than the default 1,000.
		hc.extraArgs = append(hc.extraArgs, "-max-pending-per-sender", "10000")
	case "pending":
		n := strconv.Itoa(g.pending)
		hc.extraArgs = append(hc.extraArgs, "-max-pending", n, "-max-pending-per-sender", n)
	case "rooms":
		if g.roomsPerUser > 1000 {
			hc.extraArgs = append(hc.extraArgs, "-max-rooms", strconv.Itoa(g.roomsPerUser))
		}
	}
	if g.storeKind == "redis" {
		if err := gs.redisEmpty(); err != nil {
			return nil, err
		}
		hc.extraArgs = append(hc.extraArgs, "-redis", gs.redisAddr)
	}
	if g.storeKind == "bolt" && hc.dbPath == "" {
		dir, err := os.MkdirTemp("", "wshub-bench-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		hc.dbPath = filepath.Join(dir, "hub.db")
	}
	gs.dbPath = hc.dbPath
	hub, err := startHub(gs.ctx, hc)
	if err != nil {
		return nil, err
	}
	gs.hub = hub
	defer func() {
		if err := hub.stop(); err != nil {
			fmt.Fprintf(gs.stderr, "wshub-bench: stopping the hub: %v\n", err)
		}
	}()
	gs.d = newDialers(hub.url, gs.cfg.perSrc)
	gs.st = newGstate()
	switch gs.caseName {
	case "fill":
		return gs.fill()
	case "pending":
		return gs.pendingCase()
	case "room":
		return gs.roomCase()
	case "rooms":
		return gs.roomsCase()
	}
	return nil, errors.New("unknown case " + gs.caseName)
}

// redisEmpty flushes the Redis the tool started, or checks that the one
// given by -redis holds nothing.
func (gs *growthSession) redisEmpty() error {
	cl := redis.NewClient(&redis.Options{Addr: gs.redisAddr})
	defer cl.Close()
	ctx, cancel := context.WithTimeout(gs.ctx, 30*time.Second)
	defer cancel()
	if gs.g.redisAddr == "" {
		return cl.FlushAll(ctx).Err()
	}
	n, err := cl.DBSize(ctx).Result()
	if err != nil {
		return fmt.Errorf("-redis %s: %w", gs.redisAddr, err)
	}
	if n != 0 {
		return fmt.Errorf("-redis %s: the database holds %d keys; growth measures from an empty one", gs.redisAddr, n)
	}
	return nil
}

// redisMemory returns used_memory and used_memory_rss of the Redis.
func (gs *growthSession) redisMemory() (used, rss int64, err error) {
	cl := redis.NewClient(&redis.Options{Addr: gs.redisAddr})
	defer cl.Close()
	ctx, cancel := context.WithTimeout(gs.ctx, 10*time.Second)
	defer cancel()
	info, err := cl.Info(ctx, "memory").Result()
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		switch k {
		case "used_memory":
			used, _ = strconv.ParseInt(v, 10, 64)
		case "used_memory_rss":
			rss, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	return used, rss, nil
}

// hubGC collects the hub's garbage and returns its stats after (heap in
// use).
func (gs *growthSession) hubGC() (hubStats, error) {
	var hs hubStats
	err := gs.hub.control(gs.ctx, http.MethodPost, pathGC, &hs)
	return hs, err
}

// gstate holds the counters all connections of a case add to.
type gstate struct {
	sent      atomic.Int64 // cmd 10/11 frames written
	receipted atomic.Int64 // receipts (cmd 15)
	failed    atomic.Int64 // error frames answering a sent message
	delivered atomic.Int64 // cmd 10 frames received
	roomDeliv atomic.Int64 // cmd 11 frames received
	errFrames atomic.Int64
	recLat    atomic.Pointer[histogram]
	delLat    atomic.Pointer[histogram]

	// fan follows the messages of the room case: slot k is message k.
	fan []fanSlot

	connEnds
}

type fanSlot struct {
	sent  atomic.Int64 // unix ns
	first atomic.Int64 // unix ns of the first delivery, 0 before
	last  atomic.Int64
	n     atomic.Int64
}

func newGstate() *gstate {
	s := &gstate{}
	s.resetLat()
	return s
}

// resetLat starts new latency histograms and returns the old ones.
func (s *gstate) resetLat() (rec, del *histogram) {
	return s.recLat.Swap(&histogram{}), s.delLat.Swap(&histogram{})
}

// gconn is one connection of a growth case: it sends direct or room
// messages round-robin to its targets, and it receives.
type gconn struct {
	benchConn
	st *gstate

	wmu     sync.Mutex               // serializes writes
	sentAt  [growthRing]atomic.Int64 // send time of the message with cid n, at n % growthRing
	seq     int                      // next cid; owned by the sending goroutine
	targets [][]byte                 // frame prefixes up to the cid value
	next    int                      // owned by the sending goroutine

	reply chan []byte // answers to requests (cmd 12, 16, 17, or an error frame)
	// onDirect, if set, is called for every cmd 10 received (pending case).
	onDirect func(line []byte, now int64)
}

func newGconn(idx int, user string, st *gstate, window int) *gconn {
	return &gconn{benchConn: benchConn{idx: idx, user: user, window: make(chan struct{}, max(1, window)), readerDone: make(chan struct{})},
		st: st, reply: make(chan []byte, 1)}
}

// directTo adds a direct conversation with user to the targets.
func (c *gconn) directTo(user string) {
	c.targets = append(c.targets, []byte(`{"cmd":10,"dstid":"`+user+`","cid":"`))
}

// roomTo adds room to the targets.
func (c *gconn) roomTo(room string) {
	c.targets = append(c.targets, []byte(`{"cmd":11,"dstid":"`+room+`","cid":"`))
}

func (c *gconn) connect(ctx context.Context, d *dialers) error {
	return c.benchConn.connect(ctx, d, false, c.handle, &c.st.connEnds)
}

func (c *gconn) handle(line []byte, now int64) {
	st := c.st
	switch cmd := lineCmd(line); cmd {
	case 10:
		st.delivered.Add(1)
		if _, _, sent, ok := parseContent(strField(line, "content")); ok {
			st.delLat.Load().record(time.Duration(now-sent), c.idx)
		}
		if c.onDirect != nil {
			c.onDirect(line, now)
		}
	case 11:
		st.roomDeliv.Add(1)
		_, seq, sent, ok := parseContent(strField(line, "content"))
		if !ok {
			return
		}
		st.delLat.Load().record(time.Duration(now-sent), c.idx)
		if seq < len(st.fan) {
			f := &st.fan[seq]
			f.first.CompareAndSwap(0, now)
			for {
				l := f.last.Load()
				if now <= l || f.last.CompareAndSwap(l, now) {
					break
				}
			}
			f.n.Add(1)
		}
	case 15:
		n, ok := parseUint(strField(line, "cid"))
		if !ok {
			return
		}
		st.receipted.Add(1)
		st.recLat.Load().record(time.Duration(now-c.sentAt[n%growthRing].Load()), c.idx)
		c.release()
	case 12, 16, 17:
		select {
		case c.reply <- bytes.Clone(line):
		default:
		}
	case 40:
		st.errFrames.Add(1)
		st.noteErr("%s: error frame %s", c.user, line)
		if _, ok := parseUint(strField(line, "cid")); ok {
			st.failed.Add(1)
			c.release()
			return
		}
		select {
		case c.reply <- bytes.Clone(line):
		default:
		}
	}
}

// write sends one frame.
func (c *gconn) write(f []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return c.ws.WriteMessage(websocket.TextMessage, f)
}

// sendNext sends a message to the next target; the caller holds a
// window token.
func (c *gconn) sendNext(buf []byte) ([]byte, error) {
	now := time.Now()
	seq := c.seq
	c.seq++
	p := c.targets[c.next]
	c.next = (c.next + 1) % len(c.targets)
	buf = append(buf[:0], p...)
	// The cid is unique per user (a hub drops a second frame with the
	// same sender and cid), also across the connections of user gh; its
	// low bits are seq, so cid % growthRing == seq % growthRing.
	buf = strconv.AppendInt(buf, int64(c.idx)<<32|int64(seq), 10)
	buf = append(buf, `","content":"`...)
	buf = appendContent(buf, c.idx, seq, now.UnixNano())
	buf = append(buf, `"}`...)
	c.sentAt[seq%growthRing].Store(now.UnixNano())
	if err := c.write(buf); err != nil {
		c.st.noteErr("%s: write: %v", c.user, err)
		return buf, err
	}
	c.st.sent.Add(1)
	return buf, nil
}

// fillLoop sends as fast as the window allows while budget lasts.
func (c *gconn) fillLoop(budget *atomic.Int64, stop <-chan struct{}) {
	buf := make([]byte, 0, 160)
	for {
		select {
		case c.window <- struct{}{}:
		case <-stop:
			return
		}
		if budget.Add(-1) < 0 {
			budget.Add(1)
			c.release()
			return
		}
		var err error
		if buf, err = c.sendNext(buf); err != nil {
			return
		}
	}
}

// rateLoop sends rate messages a second from start until stop.
func (c *gconn) rateLoop(start time.Time, rate float64, stop <-chan struct{}) {
	buf := make([]byte, 0, 160)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for k := 0; ; k++ {
		due := start.Add(time.Duration(float64(k) / rate * float64(time.Second)))
		timer.Reset(max(0, time.Until(due)))
		select {
		case <-timer.C:
		case <-stop:
			return
		}
		select {
		case c.window <- struct{}{}:
		case <-stop:
			return
		}
		var err error
		if buf, err = c.sendNext(buf); err != nil {
			return
		}
	}
}

// request sends f and waits for its answer (cmd 12, 16, 17, or an error).
func (c *gconn) request(ctx context.Context, f []byte) ([]byte, time.Duration, error) {
	select { // a late answer to an earlier request
	case <-c.reply:
	default:
	}
	t0 := time.Now()
	if err := c.write(f); err != nil {
		return nil, 0, fmt.Errorf("%s: %w", c.user, err)
	}
	select {
	case r := <-c.reply:
		d := time.Since(t0)
		if lineCmd(r) == 40 {
			return r, d, fmt.Errorf("%s: %s", c.user, r)
		}
		return r, d, nil
	case <-c.readerDone:
		return nil, 0, fmt.Errorf("%s: connection ended: %v", c.user, c.rErr)
	case <-time.After(30 * time.Second):
		return nil, 0, fmt.Errorf("%s: no answer to %s within 30 s", c.user, f)
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	}
}

func closeGconns(conns []*gconn) {
	for _, c := range conns {
		c.close()
	}
	for _, c := range conns {
		if c.ws != nil {
			<-c.readerDone
		}
	}
}

// connectG dials conns, at most concurrency at a time.
func connectG(ctx context.Context, d *dialers, conns []*gconn, concurrency int) error {
	return eachBounded(ctx, conns, concurrency, func(ctx context.Context, c *gconn) error { return c.connect(ctx, d) })
}

// drain waits (up to d) until every message sent got a receipt or an
// error.
func (gs *growthSession) drain(d time.Duration) bool {
	st := gs.st
	return waitUntil(gs.ctx, d, func() bool { return st.receipted.Load()+st.failed.Load() >= st.sent.Load() })
}

// fill runs the fill case: one Run per point.
func (gs *growthSession) fill() ([]*Run, error) {
	g, st := gs.g, gs.st
	points, _ := growthPoints(g.points, g.to)
	U := g.users
	users := make([]*gconn, U)
	for u := range U {
		users[u] = newGconn(u, "g"+strconv.Itoa(u), st, g.window)
	}
	// Conversation k is between users k mod U and (k mod U) + k/U + 1
	// (mod U): with at most (U-1)/2 per user, every pair is distinct.
	for k := range g.convs {
		u, dd := k%U, k/U+1
		users[u].directTo(users[(u+dd)%U].user)
	}
	var senders, hots []*gconn
	for _, c := range users {
		if len(c.targets) > 0 {
			senders = append(senders, c)
		}
	}
	all := slices.Clone(users)
	for i := range g.hotConns {
		c := newGconn(U+i, "gh", st, g.window)
		c.directTo("ghp")
		hots = append(hots, c)
		all = append(all, c)
	}
	hotPeer := newGconn(U+g.hotConns, "ghp", st, g.window)
	all = append(all, hotPeer)
	defer closeGconns(all)

	setup := time.Now()
	if err := connectG(gs.ctx, gs.d, all, gs.cfg.concurrency); err != nil {
		return nil, fmt.Errorf("setup: %w", err)
	}
	setupDur := time.Since(setup)
	fmt.Fprintf(gs.stderr, "[growth fill] %d connections (%d users, %d + %d hot senders) in %v\n", len(all), U, len(senders), g.hotConns, setupDur.Round(time.Millisecond))

	// What the store and the heap hold before the first message: the
	// figures per message leave it out.
	baseSize, err := gs.storeSize()
	if err != nil {
		return nil, err
	}
	baseDisk, _ := gs.boltDisk()
	hs0, err := gs.hubGC()
	if err != nil {
		return nil, err
	}
	baseHeap := float64(hs0.HeapInuse)

	var runs []*Run
	var lastStored, hotSent int64
	lastSize, lastHeap := baseSize, baseHeap
	for pi, p := range points {
		r := newRun(fmt.Sprintf("%s %s", g.storeKind, countLabel(p)))
		gs.cur = r
		runs = append(runs, r)
		r.param("store", g.storeKind)
		r.param("convs", g.convs)
		r.param("users", U)
		r.param("hot_conns", g.hotConns)
		r.param("hot_share", g.hotShare)
		r.param("window", g.window)
		if pi == 0 {
			r.addDur("setup", setupDur)
		}

		// Fill up to p, less what the hot conversation is topped up with
		// after.
		hotWant := max(hotSent, int64(g.hotShare*float64(p)))
		if len(hots) == 0 {
			hotWant = hotSent
		}
		var budget atomic.Int64
		budget.Store(max(0, p-st.sent.Load()-(hotWant-hotSent)))
		gs.st.resetLat()
		cpu0, cpuOK0 := gs.hub.cpu()
		rec0 := st.receipted.Load()
		t0 := time.Now()
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for _, c := range senders {
			wg.Add(1)
			go func() { defer wg.Done(); c.fillLoop(&budget, stop) }()
		}
		var lastRec = rec0
		lastAt := t0
		prog := startProgress(gs.stderr, gs.cfg.every, "growth "+g.storeKind+" fill", func() string {
			now := time.Now()
			rc := st.receipted.Load()
			rate := float64(rc-lastRec) / now.Sub(lastAt).Seconds()
			lastRec, lastAt = rc, now
			return fmt.Sprintf("stored %d of %d (%.0f/s) next point %d; p99 receipt %v; failed %d closed %d",
				rc, g.to, rate, p, st.recLat.Load().snapshot().quantile(0.99).Round(100*time.Microsecond), st.failed.Load(), st.closed.Load())
		})
		filled := make(chan struct{})
		go func() { wg.Wait(); close(filled) }()
		select {
		case <-filled:
		case <-gs.ctx.Done():
			close(stop)
			<-filled
		}
		if !gs.drain(time.Minute) {
			prog.end()
			return runs, fmt.Errorf("fill to %d: %d sent, %d receipted, %d failed after a minute", p, st.sent.Load(), st.receipted.Load(), st.failed.Load())
		}
		fillDur := time.Since(t0)
		prog.end()
		cpu1, cpuOK1 := gs.hub.cpu()
		fillRec, _ := gs.st.resetLat()
		stored := st.receipted.Load()
		r.add("stored_messages", float64(stored+hotWant-hotSent), "")
		r.add("fill_messages_per_s", float64(stored-rec0)/fillDur.Seconds(), "msg/s")
		fs := fillRec.snapshot()
		r.addDur("fill_receipt_p50", fs.quantile(0.5))
		r.addDur("fill_receipt_p99", fs.quantile(0.99))
		if cpuOK0 && cpuOK1 && stored > rec0 {
			r.add("fill_hub_cpu_us_per_message", (cpu1-cpu0).Seconds()*1e6/float64(stored-rec0), "µs")
		}
		r.add("failed", float64(st.failed.Load()), "")
		if gs.ctx.Err() != nil {
			return runs, gs.ctx.Err()
		}
		// Top up the hot conversation: its senders alone.
		if need := hotWant - hotSent; need > 0 {
			rec1 := st.receipted.Load()
			t1 := time.Now()
			var hb atomic.Int64
			hb.Store(need)
			prog := startProgress(gs.stderr, gs.cfg.every, "growth "+g.storeKind+" hot", func() string {
				return fmt.Sprintf("hot conversation: %d of %d", hotSent+st.receipted.Load()-rec1, hotWant)
			})
			var wg sync.WaitGroup
			for _, c := range hots {
				wg.Add(1)
				go func() { defer wg.Done(); c.fillLoop(&hb, gs.ctx.Done()) }()
			}
			wg.Wait()
			ok := gs.drain(time.Minute)
			prog.end()
			if !ok {
				return runs, fmt.Errorf("hot conversation: receipts missing after a minute")
			}
			hotSent += need
			r.add("hot_topup_messages_per_s", float64(st.receipted.Load()-rec1)/time.Since(t1).Seconds(), "msg/s")
		}
		r.add("hot_conversation_messages", float64(hotSent), "")
		// Let the deliveries of the last messages (and their
		// acknowledgements) settle.
		time.Sleep(500 * time.Millisecond)

		// Latency at a fixed rate.
		if err := gs.measureLatency(r, senders[:min(len(senders), 200)]); err != nil {
			return runs, err
		}
		// History pages: the hot conversation, newest and oldest, and an
		// ordinary one.
		if err := gs.measureHistory(r, hotPeer, "gh", users[0], users[1].user); err != nil {
			return runs, err
		}
		// Sizes.
		stored = st.receipted.Load()
		size, err := gs.storeSize()
		if err != nil {
			return runs, err
		}
		if disk, ok := gs.boltDisk(); ok {
			// bbolt grows its file in steps (16 MiB, then more): the
			// blocks written follow the data more closely.
			r.add("store_disk_mib", float64(disk)/(1<<20), "MiB")
			r.add("store_disk_bytes_per_message", float64(disk-baseDisk)/float64(stored), "B")
		}
		if size > 0 {
			r.add("store_mib", float64(size)/(1<<20), "MiB")
			r.add("store_bytes_per_message", float64(size-baseSize)/float64(stored), "B")
			if pi > 0 && stored > lastStored {
				r.add("store_bytes_per_message_marginal", float64(size-lastSize)/float64(stored-lastStored), "B")
			}
		}
		gs.addRSS(r, "hub_rss")
		if a, ok := procStatusField(gs.hub.pid, "RssAnon:"); ok {
			r.add("hub_rss_anon", float64(a)/(1<<20), "MiB")
		}
		hs, err := gs.hubGC()
		if err != nil {
			return runs, err
		}
		heap := float64(hs.HeapInuse)
		r.add("hub_heap_after_gc", heap/(1<<20), "MiB")
		r.add("hub_heap_bytes_per_message", (heap-baseHeap)/float64(stored), "B")
		if stored > lastStored && pi > 0 {
			r.add("hub_heap_bytes_per_message_marginal", (heap-lastHeap)/float64(stored-lastStored), "B")
		}
		gs.addRSS(r, "hub_rss_after_gc")
		lastStored, lastSize, lastHeap = stored, size, heap
		if msg := st.first(); msg != "" {
			r.notef("first error seen: %s", msg)
		}
		if f := st.failed.Load(); f > 0 {
			r.errorf("%d messages refused", f)
		}
		if n := st.closed.Load(); n > 0 {
			return runs, fmt.Errorf("%d connections ended by the hub: %s", n, st.first())
		}
		r.finish()
		fmt.Fprintf(gs.stderr, "[growth %s] point %d: %d stored\n", g.storeKind, p, stored)
	}
	return runs, nil
}

// procStatusField reads a field in kB of /proc/PID/status, in bytes.
func procStatusField(pid int, field string) (int64, bool) {
	if pid == 0 {
		return 0, false
	}
	kb, ok := procStatusKiB(pid, field)
	return kb << 10, ok
}

// countLabel prints 100000 as 100k and 3000000 as 3M.
func countLabel(n int64) string {
	switch {
	case n >= 1_000_000 && n%100_000 == 0:
		return strconv.FormatFloat(float64(n)/1e6, 'f', -1, 64) + "M"
	case n >= 1000 && n%100 == 0:
		return strconv.FormatFloat(float64(n)/1e3, 'f', -1, 64) + "k"
	}
	return strconv.FormatInt(n, 10)
}

func (gs *growthSession) addRSS(r *Run, name string) {
	if rss, ok := gs.hub.rss(); ok {
		r.add(name, float64(rss)/(1<<20), "MiB")
	}
}

// storeSize returns what the store takes: the bbolt file's size, Redis's
// used_memory, or 0 for the memory store (its size is the hub's heap).
func (gs *growthSession) storeSize() (int64, error) {
	switch gs.g.storeKind {
	case "bolt":
		fi, err := os.Stat(gs.dbPath)
		if err != nil {
			return 0, err
		}
		return fi.Size(), nil
	case "redis":
		used, _, err := gs.redisMemory()
		return used, err
	}
	return 0, nil
}

// boltDisk returns the bytes of disk the bbolt file takes (its blocks).
func (gs *growthSession) boltDisk() (int64, bool) {
	if gs.g.storeKind != "bolt" {
		return 0, false
	}
	fi, err := os.Stat(gs.dbPath)
	if err != nil {
		return 0, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return st.Blocks * 512, true
}

// measureLatency sends at -measure-rate in all from conns for -measure,
// and records the receipt and delivery latency.
func (gs *growthSession) measureLatency(r *Run, conns []*gconn) error {
	g, st := gs.g, gs.st
	if len(conns) == 0 || g.measure <= 0 || g.measureRate <= 0 {
		return nil
	}
	sent0, rec0 := st.sent.Load(), st.receipted.Load()
	st.resetLat()
	per := g.measureRate / float64(len(conns))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	t0 := time.Now()
	for i, c := range conns {
		start := t0.Add(time.Duration(float64(i) / float64(len(conns)) / per * float64(time.Second)))
		wg.Add(1)
		go func() { defer wg.Done(); c.rateLoop(start, per, stop) }()
	}
	select {
	case <-time.After(g.measure):
	case <-gs.ctx.Done():
	}
	close(stop)
	wg.Wait()
	if !gs.drain(30 * time.Second) {
		return fmt.Errorf("latency measurement: receipts missing after 30 s")
	}
	time.Sleep(200 * time.Millisecond) // the last deliveries
	rec, del := st.resetLat()
	rs, ds := rec.snapshot(), del.snapshot()
	r.add("measured_messages", float64(st.sent.Load()-sent0), "")
	r.add("measured_rate", float64(st.receipted.Load()-rec0)/g.measure.Seconds(), "msg/s")
	r.addDur("receipt_p50", rs.quantile(0.5))
	r.addDur("receipt_p99", rs.quantile(0.99))
	r.addDur("delivery_p50", ds.quantile(0.5))
	r.addDur("delivery_p99", ds.quantile(0.99))
	return nil
}

// measureHistory times cmd 16 requests: the newest page and the oldest
// page (since 1: the oldest retained) of the conversation of hot and
// peer, and the newest page of an ordinary conversation.
func (gs *growthSession) measureHistory(r *Run, hot *gconn, peer string, ord *gconn, ordPeer string) error {
	g := gs.g
	if g.histN <= 0 {
		return nil
	}
	lim := strconv.Itoa(g.histLimit)
	kinds := []struct {
		name string
		c    *gconn
		f    string
	}{
		{"history_newest", hot, `{"cmd":16,"cid":"h","dstid":"` + peer + `","limit":` + lim + `}`},
		{"history_deep", hot, `{"cmd":16,"cid":"h","dstid":"` + peer + `","since":1,"limit":` + lim + `}`},
		{"history_other_newest", ord, `{"cmd":16,"cid":"h","dstid":"` + ordPeer + `","limit":` + lim + `}`},
	}
	for _, k := range kinds {
		durs := make([]time.Duration, 0, g.histN)
		items := 0
		for range g.histN {
			reply, d, err := k.c.request(gs.ctx, []byte(k.f))
			if err != nil {
				return fmt.Errorf("%s: %w", k.name, err)
			}
			durs = append(durs, d)
			items = bytes.Count(reply, []byte(`{"cmd":10,`))
		}
		slices.Sort(durs)
		r.addDur(k.name+"_p50", durs[len(durs)/2])
		r.addDur(k.name+"_p99", durs[min(len(durs)-1, len(durs)*99/100)])
		r.add(k.name+"_items", float64(items), "")
	}
	return nil
}

// pendingCase queues -pending messages for user pq, offline, from 50
// senders, then connects pq and times the first and the last delivery.
func (gs *growthSession) pendingCase() ([]*Run, error) {
	g, st := gs.g, gs.st
	N := g.pending
	r := newRun(g.storeKind + " pending " + countLabel(int64(N)))
	gs.cur = r
	r.param("store", g.storeKind)
	r.param("pending", N)
	S := min(50, N)
	senders := make([]*gconn, S)
	for i := range S {
		senders[i] = newGconn(i, "ps"+strconv.Itoa(i), st, g.window)
		senders[i].directTo("pq")
	}
	defer closeGconns(senders)
	if err := connectG(gs.ctx, gs.d, senders, gs.cfg.concurrency); err != nil {
		return []*Run{r}, fmt.Errorf("setup: %w", err)
	}
	var budget atomic.Int64
	budget.Store(int64(N))
	t0 := time.Now()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, c := range senders {
		wg.Add(1)
		go func() { defer wg.Done(); c.fillLoop(&budget, stop) }()
	}
	prog := startProgress(gs.stderr, gs.cfg.every, "growth pending queue", func() string {
		return fmt.Sprintf("queued %d of %d, failed %d", st.receipted.Load(), N, st.failed.Load())
	})
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-gs.ctx.Done():
		close(stop)
		<-done
	}
	ok := gs.drain(time.Minute)
	prog.end()
	if !ok || st.failed.Load() > 0 {
		return []*Run{r}, fmt.Errorf("queueing: %d sent, %d receipted, %d failed: %s", st.sent.Load(), st.receipted.Load(), st.failed.Load(), st.first())
	}
	r.add("queued", float64(st.receipted.Load()), "")
	r.add("queue_messages_per_s", float64(st.receipted.Load())/time.Since(t0).Seconds(), "msg/s")
	if size, err := gs.storeSize(); err == nil && size > 0 {
		r.add("store_mib", float64(size)/(1<<20), "MiB")
	}
	closeGconns(senders)
	gs.addRSS(r, "hub_rss_before")

	// The user connects.
	var got seqSet
	var n, dups atomic.Int64
	var first, last atomic.Int64
	pq := newGconn(S, "pq", st, 1)
	pq.onDirect = func(line []byte, now int64) {
		src, seq, _, ok := parseContent(strField(line, "content"))
		if !ok {
			return
		}
		if got.add(src*N + seq) {
			dups.Add(1)
			return
		}
		if n.Add(1) == 1 {
			first.Store(now)
		}
		last.Store(now)
	}
	cpu0, cpuOK0 := gs.hub.cpu()
	peak := startSampler(50*time.Millisecond, func() int64 { v, _ := gs.hub.rss(); return v })
	prog = startProgress(gs.stderr, gs.cfg.every, "growth pending deliver", func() string {
		return fmt.Sprintf("delivered %d of %d", n.Load(), N)
	})
	c0 := time.Now()
	if err := pq.connect(gs.ctx, gs.d); err != nil {
		prog.end()
		peak.stop()
		return []*Run{r}, err
	}
	defer pq.close()
	dialed := time.Since(c0)
	all := waitUntil(gs.ctx, 5*time.Minute, func() bool { return n.Load() >= int64(N) })
	prog.end()
	// Writes without ack=1 leave the queue: give the acknowledgements a
	// moment before the connection goes.
	time.Sleep(time.Second)
	rss := peak.stop()
	cpu1, cpuOK1 := gs.hub.cpu()
	r.addDur("connect", dialed)
	if n.Load() > 0 {
		r.addDur("time_to_first", time.Duration(first.Load()-c0.UnixNano()))
		r.addDur("time_to_last", time.Duration(last.Load()-c0.UnixNano()))
		if d := time.Duration(last.Load() - first.Load()); d > 0 {
			r.add("delivered_per_s", float64(n.Load())/d.Seconds(), "msg/s")
		}
	}
	r.add("delivered", float64(n.Load()), "")
	r.add("duplicated", float64(dups.Load()), "")
	r.add("hub_rss_peak", float64(slices.Max(rss))/(1<<20), "MiB")
	if cpuOK0 && cpuOK1 {
		r.add("hub_cpu_s", (cpu1 - cpu0).Seconds(), "s")
	}
	if !all {
		r.errorf("the user got %d of %d pending messages", n.Load(), N)
	}
	pq.close()
	<-pq.readerDone

	// Nothing is left for the next connect.
	again := newGconn(S+1, "pq", st, 1)
	var more atomic.Int64
	again.onDirect = func([]byte, int64) { more.Add(1) }
	if err := again.connect(gs.ctx, gs.d); err != nil {
		return []*Run{r}, err
	}
	time.Sleep(time.Second)
	again.close()
	<-again.readerDone
	r.add("delivered_again_on_reconnect", float64(more.Load()), "")
	if n := st.closed.Load(); n > 0 {
		r.errorf("%d connections ended by the hub: %s", n, st.first())
	}
	return []*Run{r}, nil
}

// roomCase: -members members in one room; -room-msgs messages, one at a
// time, each timed to its first and its last member.
func (gs *growthSession) roomCase() ([]*Run, error) {
	g, st := gs.g, gs.st
	M, K := g.members, g.roomMsgs
	r := newRun(fmt.Sprintf("%s room of %s", g.storeKind, countLabel(int64(M))))
	gs.cur = r
	r.param("store", g.storeKind)
	r.param("members", M)
	r.param("messages", K)
	conns := make([]*gconn, M+1)
	for i := range M + 1 {
		conns[i] = newGconn(i, "rm"+strconv.Itoa(i), st, 1)
	}
	pub := conns[M]
	pub.roomTo("big")
	defer closeGconns(conns)
	t0 := time.Now()
	if err := connectG(gs.ctx, gs.d, conns, gs.cfg.concurrency); err != nil {
		return []*Run{r}, fmt.Errorf("setup: %w", err)
	}
	r.addDur("connect_all", time.Since(t0))
	rss0, _ := gs.hub.rss()
	var joined atomic.Int64
	prog := startProgress(gs.stderr, gs.cfg.every, "growth room join", func() string {
		return fmt.Sprintf("joined %d of %d", joined.Load(), M+1)
	})
	t0 = time.Now()
	err := forEachG(gs.ctx, conns, gs.cfg.concurrency, func(c *gconn) error {
		_, _, err := c.request(gs.ctx, []byte(`{"cmd":12,"cid":"j","dstid":"big"}`))
		joined.Add(1)
		return err
	})
	prog.end()
	if err != nil {
		return []*Run{r}, fmt.Errorf("join: %w", err)
	}
	jd := time.Since(t0)
	r.addDur("join_all", jd)
	r.add("joins_per_s", float64(M+1)/jd.Seconds(), "1/s")
	if rss1, ok := gs.hub.rss(); ok {
		r.add("hub_rss", float64(rss1)/(1<<20), "MiB")
		r.add("hub_rss_per_member", float64(rss1-rss0)/float64(M+1), "B")
	}

	st.fan = make([]fanSlot, K)
	cpu0, cpuOK0 := gs.hub.cpu()
	var firsts, lasts []time.Duration
	buf := make([]byte, 0, 160)
	for k := range K {
		pub.window <- struct{}{}
		st.fan[k].sent.Store(time.Now().UnixNano())
		if buf, err = pub.sendNext(buf); err != nil {
			return []*Run{r}, err
		}
		f := &st.fan[k]
		if !waitUntil(gs.ctx, time.Minute, func() bool { return f.n.Load() >= int64(M) }) {
			r.errorf("message %d reached %d of %d members in a minute", k, f.n.Load(), M)
			break
		}
		firsts = append(firsts, time.Duration(f.first.Load()-f.sent.Load()))
		lasts = append(lasts, time.Duration(f.last.Load()-f.sent.Load()))
		time.Sleep(100 * time.Millisecond)
	}
	cpu1, cpuOK1 := gs.hub.cpu()
	gs.drain(10 * time.Second)
	time.Sleep(200 * time.Millisecond)
	r.add("receipted", float64(st.receipted.Load()), "")
	r.add("deliveries", float64(st.roomDeliv.Load()), "")
	r.add("expected_deliveries", float64(K*M), "")
	if len(firsts) > 0 {
		slices.Sort(firsts)
		slices.Sort(lasts)
		r.addDur("fanout_first_p50", firsts[len(firsts)/2])
		r.addDur("fanout_last_p50", lasts[len(lasts)/2])
		r.addDur("fanout_last_max", lasts[len(lasts)-1])
	}
	if cpuOK0 && cpuOK1 {
		// Includes the 100 ms pauses, when the hub is idle.
		r.add("hub_cpu_ms_per_message", (cpu1-cpu0).Seconds()*1e3/float64(K), "ms")
	}
	if d := st.roomDeliv.Load(); d != int64(K*M) {
		r.errorf("%d deliveries, want %d", d, K*M)
	}
	if n := st.closed.Load(); n > 0 {
		r.errorf("%d connections ended by the hub: %s", n, st.first())
	}
	return []*Run{r}, nil
}

// forEachG runs fn on every connection, at most concurrency at a time.
func forEachG(ctx context.Context, conns []*gconn, concurrency int, fn func(*gconn) error) error {
	return eachBounded(ctx, conns, concurrency, func(_ context.Context, c *gconn) error { return fn(c) })
}

// roomsCase: -rooms rooms of -room-size members. Users come in blocks of
// -room-size; every user of block b joins the block's -rooms-per-user
// rooms, so each room has exactly -room-size members.
func (gs *growthSession) roomsCase() ([]*Run, error) {
	g, st := gs.g, gs.st
	S, P := g.roomSize, g.roomsPerUser
	blocks := g.rooms / P
	U := blocks * S
	r := newRun(fmt.Sprintf("%s %s rooms of %d", g.storeKind, countLabel(int64(g.rooms)), S))
	gs.cur = r
	r.param("store", g.storeKind)
	r.param("rooms", g.rooms)
	r.param("room_size", S)
	r.param("rooms_per_user", P)
	r.param("users", U)
	conns := make([]*gconn, U)
	for i := range U {
		conns[i] = newGconn(i, "ru"+strconv.Itoa(i), st, g.window)
	}
	roomOf := func(block, j int) string { return "rr" + strconv.Itoa(block*P+j) }
	defer closeGconns(conns)
	t0 := time.Now()
	if err := connectG(gs.ctx, gs.d, conns, gs.cfg.concurrency); err != nil {
		return []*Run{r}, fmt.Errorf("setup: %w", err)
	}
	r.addDur("connect_all", time.Since(t0))
	hs0, err := gs.hubGC()
	if err != nil {
		return []*Run{r}, err
	}
	rss0, _ := gs.hub.rss()
	r.add("hub_heap_connections_only", float64(hs0.HeapInuse)/(1<<20), "MiB")
	r.add("hub_rss_connections_only", float64(rss0)/(1<<20), "MiB")

	var joined atomic.Int64
	var lastJ int64
	lastAt := time.Now()
	prog := startProgress(gs.stderr, gs.cfg.every, "growth rooms join", func() string {
		now := time.Now()
		j := joined.Load()
		rate := float64(j-lastJ) / now.Sub(lastAt).Seconds()
		lastJ, lastAt = j, now
		return fmt.Sprintf("joins %d of %d (%.0f/s)", j, U*P, rate)
	})
	cpu0, cpuOK0 := gs.hub.cpu()
	t0 = time.Now()
	err = forEachG(gs.ctx, conns, len(conns), func(c *gconn) error {
		b := c.idx / S
		for j := range P {
			if _, _, err := c.request(gs.ctx, []byte(`{"cmd":12,"cid":"j","dstid":"`+roomOf(b, j)+`"}`)); err != nil {
				return err
			}
			joined.Add(1)
		}
		return nil
	})
	prog.end()
	if err != nil {
		return []*Run{r}, fmt.Errorf("join: %w", err)
	}
	jd := time.Since(t0)
	cpu1, cpuOK1 := gs.hub.cpu()
	memberships := float64(U * P)
	r.add("memberships", memberships, "")
	r.addDur("join_all", jd)
	r.add("joins_per_s", memberships/jd.Seconds(), "1/s")
	if cpuOK0 && cpuOK1 {
		r.add("join_hub_cpu_us", (cpu1-cpu0).Seconds()*1e6/memberships, "µs")
	}
	gs.addRSS(r, "hub_rss")
	hs1, err := gs.hubGC()
	if err != nil {
		return []*Run{r}, err
	}
	r.add("hub_heap_after_gc", float64(hs1.HeapInuse)/(1<<20), "MiB")
	r.add("hub_heap_bytes_per_membership", (float64(hs1.HeapInuse)-float64(hs0.HeapInuse))/memberships, "B")
	if size, err := gs.storeSize(); err == nil && size > 0 {
		r.add("store_mib", float64(size)/(1<<20), "MiB")
		r.add("store_bytes_per_membership", float64(size)/memberships, "B")
	}

	// Room messages at a fixed rate from the first member of up to 200
	// blocks, each round-robin over its block's rooms.
	var pubs []*gconn
	for b := range min(blocks, 200) {
		c := conns[b*S]
		for j := range P {
			c.roomTo(roomOf(b, j))
		}
		pubs = append(pubs, c)
	}
	if err := gs.measureLatency(r, pubs); err != nil {
		return []*Run{r}, err
	}
	rec := st.receipted.Load()
	r.add("room_deliveries", float64(st.roomDeliv.Load()), "")
	r.add("expected_room_deliveries", float64(rec*int64(S-1)), "")
	if d := st.roomDeliv.Load(); d != rec*int64(S-1) {
		r.errorf("%d room deliveries, want %d (%d receipted x %d members besides the sender)", d, rec*int64(S-1), rec, S-1)
	}
	if n := st.closed.Load(); n > 0 {
		r.errorf("%d connections ended by the hub: %s", n, st.first())
	}
	if f := st.failed.Load(); f > 0 {
		r.errorf("%d messages refused: %s", f, st.first())
	}
	return []*Run{r}, nil
}
