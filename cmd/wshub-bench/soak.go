//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/client"
)

// The soak scenario: a steady mix of direct and room messages between
// -users Go clients (the client package, ack=1) for -duration, with
// churn: -churn times a second a user goes away and comes back, half the
// time by closing its client (1000) and dialing a new one after a pause,
// half the time by its socket being cut (the client reconnects by
// itself). Every -sample the hub's RSS, goroutines and open descriptors
// are read, and at the end the report says whether they levelled off:
// the last third of the run against the middle third. A receipted direct
// message that never reached its recipient counts as lost (an error).
//
// The default store is bbolt: the memory store keeps every conversation's
// history (10,000 messages each) in the hub's heap, so with it the hub's
// memory grows with the messages stored, by design, for longer than a
// soak of minutes lasts.

// soakConfig is the command line of soak beyond the hub flags.
type soakConfig struct {
	users     int
	rooms     int
	rate      float64
	churn     float64
	roomShare float64
	offline   time.Duration
	seed      uint64
}

// soakSample is the state of a soak run at one moment.
type soakSample struct {
	T          float64 `json:"t_s"`
	Online     int64   `json:"online"`           // users with an open connection
	Receipted  int64   `json:"receipted"`        // messages receipted so far
	Delivered  int64   `json:"delivered"`        // direct messages delivered so far (distinct)
	HubRSS     float64 `json:"hub_rss_mib"`      // VmRSS; 0 when unknown
	HubAnon    float64 `json:"hub_rss_anon_mib"` // RssAnon: VmRSS less the mapped files (bbolt's) and shared memory
	HeapInuse  float64 `json:"hub_heap_inuse_mib"`
	Goroutines int     `json:"hub_goroutines"`
	FDs        int     `json:"hub_fds"` // open descriptors of the hub's process; 0 when unknown
}

// soakReport is the report of soak: the common report and the samples.
type soakReport struct {
	*Report
	Samples []soakSample `json:"soak_samples"`
}

// soakMsg is one message of the run, by its content.
type soakMsg struct {
	to        string // recipient user, or "" for a room message
	receipted bool
	posted    time.Time // when it was handed to its client
	at        time.Time // when its receipt came
	delivered int       // deliveries to the recipient's application, over all its clients
}

// soakUser is one user: its current client, replaced on a graceful
// churn.
type soakUser struct {
	i     int
	name  string
	rooms []string

	mu      sync.Mutex
	c       *client.Client // guarded by mu; nil while away
	conn    net.Conn       // guarded by mu: the current socket, for a cut
	leaving bool           // guarded by mu: being churned
	dials   []time.Time    // guarded by mu: when each socket was dialed
}

// soak is one soak run.
type soak struct {
	s   *session
	sc  soakConfig
	url string
	d   *dialers

	users []*soakUser

	sent, receipted, refused, delivered, dupDeliv, roomDeliv atomic.Int64
	strays, churnClose, churnCut, dialErrs                   atomic.Int64
	n                                                        atomic.Int64 // message counter

	mu   sync.Mutex
	msgs map[string]*soakMsg // guarded by mu: by content (= cid)
}

// soakMain parses the flags of soak, runs it against a fresh hub (or the
// target) and writes the report.
func soakMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	stderr = &syncWriter{w: stderr}
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &config{}
	var sc soakConfig
	c.hubFlags(fs, "bolt")
	fs.DurationVar(&c.duration, "duration", 5*time.Minute, "how long the traffic and the churn go on; -timeout, unless given, is raised to this plus 1 m")
	fs.DurationVar(&c.drain, "drain", 15*time.Second, "after the traffic stops, how long to wait for outstanding receipts and deliveries")
	fs.DurationVar(&c.sample, "sample", 10*time.Second, "interval of the samples (hub RSS, goroutines, descriptors)")
	fs.IntVar(&sc.users, "users", 200, "users, one Go client each (ack=1)")
	fs.IntVar(&sc.rooms, "rooms", 10, "rooms; every user joins two")
	fs.Float64Var(&sc.rate, "rate", 100, "messages per second, all users together")
	fs.Float64Var(&sc.churn, "churn", 2, "users going away and coming back per second")
	fs.Float64Var(&sc.roomShare, "room-share", 0.3, "fraction of the messages sent to a room")
	fs.DurationVar(&sc.offline, "offline", 2*time.Second, "longest pause of a user that closed its client before it dials again")
	fs.Uint64Var(&sc.seed, "seed", 1, "seed of the choices of senders, recipients and churned users")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "wshub-bench soak: unexpected arguments %q\n", fs.Args())
		return errUsage
	}
	switch {
	case sc.users < 2 || sc.rooms < 1:
		return fmt.Errorf("-users must be at least 2 and -rooms at least 1")
	case sc.rate <= 0 || sc.churn < 0 || c.duration <= 0 || c.sample <= 0:
		return fmt.Errorf("-rate, -duration and -sample must be positive, -churn not negative")
	case strings.Contains(c.stores, ","):
		return fmt.Errorf("-store %q: soak runs with one store", c.stores)
	}
	if !flagSet(fs, "timeout") {
		c.timeout = max(c.timeout, c.duration+c.drain+time.Minute)
	}
	if c.target != "" {
		if _, err := checkTarget(c.target); err != nil {
			return err
		}
	}

	rep := &Report{Scenario: "soak", Machine: machine(), Started: time.Now().UTC().Format(time.RFC3339)}
	run := newRun("soak")
	rctx, cancel := context.WithTimeout(ctx, c.timeout)
	samples, err := runSoak(rctx, c, sc, run, stderr)
	cancel()
	if err != nil {
		run.errorf("%v", err)
		fmt.Fprintf(stderr, "wshub-bench soak: %v\n", err)
	}
	run.finish()
	rep.Runs = append(rep.Runs, run)
	sr := soakReport{Report: rep, Samples: samples}

	rep.writeMarkdown(stdout)
	writeSoakSamples(stdout, samples)
	if c.jsonPath != "" {
		f, err := os.Create(c.jsonPath)
		if err != nil {
			return err
		}
		if err := writeSoakJSON(f, sr); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(stdout)
		if err := writeSoakJSON(stdout, sr); err != nil {
			return err
		}
	}
	if len(run.Errors) > 0 {
		return errors.New("soak: the run reported errors")
	}
	return ctx.Err()
}

func writeSoakJSON(w io.Writer, sr soakReport) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(sr)
}

// writeSoakSamples writes the samples as a Markdown table.
func writeSoakSamples(w io.Writer, samples []soakSample) {
	if len(samples) == 0 {
		return
	}
	fmt.Fprint(w, "\n#### soak over time\n\n| t (s) | online | receipted | delivered | hub RSS (MiB) | of it anonymous (MiB) | heap in use (MiB) | hub goroutines | hub fds |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	mib := func(v float64) string { return orDash(v > 0, strconv.FormatFloat(v, 'f', 1, 64)) }
	for _, sm := range samples {
		fmt.Fprintf(w, "| %.0f | %d | %d | %d | %s | %s | %s | %s | %s |\n", sm.T, sm.Online, sm.Receipted, sm.Delivered,
			mib(sm.HubRSS), mib(sm.HubAnon), mib(sm.HeapInuse),
			orDash(sm.Goroutines > 0, strconv.Itoa(sm.Goroutines)),
			orDash(sm.FDs > 0, strconv.Itoa(sm.FDs)))
	}
}

func orDash(ok bool, s string) string {
	if !ok {
		return "–"
	}
	return s
}

// runSoak starts the hub, runs the soak against it and stops it.
func runSoak(ctx context.Context, c *config, sc soakConfig, run *Run, stderr io.Writer) ([]soakSample, error) {
	storeKind := c.stores
	hc := hubConfig{target: c.target, pid: c.hubPID, storeKind: storeKind, dbPath: c.dbPath, sendQueue: c.sendQueue}
	if c.target == "" && storeKind == "bolt" && hc.dbPath == "" {
		d, err := os.MkdirTemp("", "wshub-bench-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		hc.dbPath = d + "/hub.db"
	}
	hub, err := startHub(ctx, hc)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := hub.stop(); err != nil {
			fmt.Fprintf(stderr, "wshub-bench: stopping the hub: %v\n", err)
		}
	}()
	if c.target == "" {
		run.param("store", storeKind)
	} else {
		run.param("target", c.target)
	}
	s := &session{ctx: ctx, cfg: c, hub: hub, run: run, stderr: stderr, dbPath: hc.dbPath}
	k := &soak{s: s, sc: sc, url: hub.url, d: newDialers(hub.url, c.perSrc), msgs: make(map[string]*soakMsg)}
	return k.run()
}

// run is the soak itself.
func (k *soak) run() ([]soakSample, error) {
	s, c, sc, r := k.s, k.s.cfg, k.sc, k.s.run
	r.param("users", sc.users)
	r.param("rooms", sc.rooms)
	r.param("rate", sc.rate)
	r.param("churn", sc.churn)
	r.param("room_share", sc.roomShare)
	r.param("duration", c.duration)
	r.param("sample", c.sample)
	r.param("seed", sc.seed)

	for i := range sc.users {
		u := &soakUser{i: i, name: "k" + strconv.Itoa(i)}
		for j := range min(2, sc.rooms) {
			u.rooms = append(u.rooms, "r"+strconv.Itoa((i+j)%sc.rooms))
		}
		k.users = append(k.users, u)
	}
	// Connect everyone, at most -concurrency at a time.
	sem := make(chan struct{}, max(1, c.concurrency))
	var wg sync.WaitGroup
	errs := make([]error, len(k.users))
	for i, u := range k.users {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs[i] = k.connect(u)
		}()
	}
	wg.Wait()
	defer k.closeAll()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("connecting: %w", err)
	}

	_ = s.hub.control(s.ctx, http.MethodPost, pathGC, nil)
	t0 := time.Now()
	sample := func() soakSample {
		sm := soakSample{T: time.Since(t0).Seconds(), Online: k.online(), Receipted: k.receipted.Load(), Delivered: k.delivered.Load()}
		if rss, ok := s.hub.rss(); ok {
			sm.HubRSS = float64(rss) / (1 << 20)
		}
		var hs hubStats
		if s.hub.control(s.ctx, http.MethodGet, pathStats, &hs) == nil {
			sm.Goroutines = hs.Goroutines
			sm.HeapInuse = float64(hs.HeapInuse) / (1 << 20)
		}
		if s.hub.pid != 0 {
			sm.FDs, _ = procFDs(s.hub.pid)
			if anon, ok := procStatusKiB(s.hub.pid, "RssAnon:"); ok {
				sm.HubAnon = float64(anon) / 1024
			}
		}
		return sm
	}
	smp := startSampler(c.sample, sample)
	stop := make(chan struct{})
	var bg sync.WaitGroup
	bg.Add(2)
	endWindow := s.window()
	prog := startProgress(s.stderr, c.every, r.Name, func() string {
		rss, _ := s.hub.rss()
		return fmt.Sprintf("online %d/%d sent %d receipted %d delivered %d churned %d+%d hub rss %.1f MiB",
			k.online(), sc.users, k.sent.Load(), k.receipted.Load(), k.delivered.Load(), k.churnClose.Load(), k.churnCut.Load(), float64(rss)/(1<<20))
	})
	rnd := rand.New(rand.NewPCG(sc.seed, 0x50a4))
	var rndMu sync.Mutex // rnd is shared by the sender and the churner
	go func() {          // sender
		defer bg.Done()
		k.every(stop, time.Duration(float64(time.Second)/sc.rate), func() {
			rndMu.Lock()
			from, to, room := k.pick(rnd)
			rndMu.Unlock()
			k.post(from, to, room)
		})
	}()
	var churning sync.WaitGroup
	go func() { // churner
		defer bg.Done()
		if sc.churn <= 0 {
			<-stop
			return
		}
		k.every(stop, time.Duration(float64(time.Second)/sc.churn), func() {
			rndMu.Lock()
			u := k.users[rnd.IntN(len(k.users))]
			graceful := rnd.IntN(2) == 0
			pause := time.Duration(rnd.Int64N(int64(sc.offline) + 1))
			rndMu.Unlock()
			churning.Add(1)
			go func() { defer churning.Done(); k.churn(u, graceful, pause) }()
		})
	}()

	select {
	case <-time.After(c.duration):
	case <-s.ctx.Done():
	}
	close(stop)
	bg.Wait()
	samples := smp.stop()
	churning.Wait()
	tStop := time.Now()
	prog.end()

	// Drain: every user is back; wait for the receipts and deliveries.
	waitUntil(s.ctx, c.drain, func() bool { return k.outstanding() == 0 && k.lost() == 0 })
	drain := time.Since(tStop)
	endWindow()
	samples = append(samples, sample())

	lost := k.lost()
	r.add("sent", float64(k.sent.Load()), "")
	r.add("receipted", float64(k.receipted.Load()), "")
	r.add("unreceipted", float64(k.outstanding()), "")
	r.add("refused", float64(k.refused.Load()), "")
	r.add("direct_delivered", float64(k.delivered.Load()), "")
	r.add("lost", float64(lost), "")
	r.add("redelivered", float64(k.dupDeliv.Load()), "")
	r.add("room_deliveries", float64(k.roomDeliv.Load()), "")
	r.add("strays", float64(k.strays.Load()), "")
	r.add("churn_closed", float64(k.churnClose.Load()), "")
	r.add("churn_cut", float64(k.churnCut.Load()), "")
	r.add("dial_errors", float64(k.dialErrs.Load()), "")
	r.addDur("drain", drain)
	levelOff(r, samples)
	if lost > 0 {
		r.errorf("%d receipted direct messages lost: %s", lost, k.lostDetail(5))
	}
	if n := k.strays.Load(); n > 0 {
		r.errorf("%d messages nobody sent", n)
	}
	return samples, nil
}

// every calls fn every interval (at a steady rate: a slow call does not
// shift the next ones) until stop is closed.
func (k *soak) every(stop <-chan struct{}, interval time.Duration, fn func()) {
	next := time.Now()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		fn()
		next = next.Add(interval)
		t.Reset(time.Until(next))
	}
}

// connect gives u a new client, connected, in its rooms.
func (k *soak) connect(u *soakUser) error {
	base := k.d.dialer(u.i)
	wd := *base
	wd.NetDialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := base.NetDialContext(ctx, network, addr)
		if err == nil {
			u.mu.Lock()
			u.conn = nc
			u.dials = append(u.dials, time.Now())
			u.mu.Unlock()
		}
		return nc, err
	}
	ctx, cancel := context.WithTimeout(k.s.ctx, 30*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, k.url, client.Options{
		Token:     u.name,
		Ack:       true,
		Dialer:    &wd,
		Header:    http.Header{},
		Backoff:   client.Backoff{Base: 200 * time.Millisecond, Max: 2 * time.Second},
		OnMessage: func(f *wshub.Frame) { k.onMessage(u, f) },
		OnReceipt: func(f *wshub.Frame) { k.onReceipt(f) },
		OnError: func(err error) {
			var se *client.ServerError
			if errors.As(err, &se) {
				k.onRefused(se)
			}
		},
	})
	if err != nil {
		k.dialErrs.Add(1)
		return fmt.Errorf("%s: %w", u.name, err)
	}
	for _, room := range u.rooms {
		if _, err := cl.Join(ctx, room); err != nil {
			_ = cl.Close()
			return fmt.Errorf("%s: join %s: %w", u.name, room, err)
		}
	}
	u.mu.Lock()
	u.c = cl
	u.mu.Unlock()
	return nil
}

// churn takes u away and brings it back: gracefully (its client closed
// once its outbox is empty, a new one dialed after pause) or by cutting its socket (the client
// reconnects by itself).
func (k *soak) churn(u *soakUser, graceful bool, pause time.Duration) {
	u.mu.Lock()
	if u.leaving || u.c == nil {
		u.mu.Unlock()
		return
	}
	if !graceful {
		if u.conn != nil {
			_ = u.conn.Close()
			k.churnCut.Add(1)
		}
		u.mu.Unlock()
		return
	}
	u.leaving = true
	cl := u.c
	u.c = nil
	u.mu.Unlock()
	k.churnClose.Add(1)
	// The user leaves once what it sent is receipted (bounded: what is
	// still in the outbox then counts as unreceipted).
	waitUntil(k.s.ctx, 5*time.Second, func() bool { return cl.Pending() == 0 })
	_ = cl.Close()
	select {
	case <-time.After(pause):
	case <-k.s.ctx.Done():
	}
	for k.s.ctx.Err() == nil {
		if err := k.connect(u); err == nil {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	u.mu.Lock()
	u.leaving = false
	u.mu.Unlock()
}

// pick chooses a sender that has a client, and a recipient (another
// user) or one of its rooms.
func (k *soak) pick(rnd *rand.Rand) (from *soakUser, to *soakUser, room string) {
	from = k.users[rnd.IntN(len(k.users))]
	if rnd.Float64() < k.sc.roomShare {
		return from, nil, from.rooms[rnd.IntN(len(from.rooms))]
	}
	j := rnd.IntN(len(k.users) - 1)
	if j >= from.i {
		j++
	}
	return from, k.users[j], ""
}

// post sends one message from u with Post (no waiting): its receipt
// comes to onReceipt. A user that is away sends nothing.
func (k *soak) post(u *soakUser, to *soakUser, room string) {
	u.mu.Lock()
	cl := u.c
	u.mu.Unlock()
	if cl == nil {
		return
	}
	key := u.name + "#" + strconv.FormatInt(k.n.Add(1), 10)
	f := &wshub.Frame{Cmd: wshub.CmdSingle, CID: key, Content: key}
	m := &soakMsg{posted: time.Now()}
	if to != nil {
		f.DstID, m.to = to.name, to.name
	} else {
		f.Cmd, f.DstID = wshub.CmdRoom, room
	}
	k.mu.Lock()
	k.msgs[key] = m
	k.mu.Unlock()
	if _, err := cl.Post(f); err != nil {
		k.mu.Lock()
		delete(k.msgs, key) // the client closed meanwhile: not sent
		k.mu.Unlock()
		return
	}
	k.sent.Add(1)
}

func (k *soak) onReceipt(f *wshub.Frame) {
	k.mu.Lock()
	m := k.msgs[f.CID]
	if m != nil && !m.receipted {
		m.receipted, m.at = true, time.Now()
		k.receipted.Add(1)
	}
	k.mu.Unlock()
}

func (k *soak) onRefused(se *client.ServerError) {
	if se.Frame == nil || se.Frame.CID == "" {
		return
	}
	k.mu.Lock()
	if m := k.msgs[se.Frame.CID]; m != nil && !m.receipted {
		delete(k.msgs, se.Frame.CID)
		k.refused.Add(1)
	}
	k.mu.Unlock()
}

func (k *soak) onMessage(u *soakUser, f *wshub.Frame) {
	if f.UserID == u.name {
		return // a copy of its own message, for its other connections
	}
	if f.Cmd == wshub.CmdRoom {
		k.roomDeliv.Add(1)
		return
	}
	if f.Cmd != wshub.CmdSingle {
		return
	}
	k.mu.Lock()
	m := k.msgs[f.Content]
	switch {
	case m == nil || m.to != u.name:
		k.strays.Add(1)
	case m.delivered == 0:
		k.delivered.Add(1)
		m.delivered++
	default:
		// Delivered again to a new client of the user: its ack was lost
		// with the old one. At least once, by design.
		k.dupDeliv.Add(1)
		m.delivered++
	}
	k.mu.Unlock()
}

// online counts the users whose client has an open connection.
func (k *soak) online() int64 {
	var n int64
	for _, u := range k.users {
		u.mu.Lock()
		if u.c != nil && u.c.State() == client.StateOpen {
			n++
		}
		u.mu.Unlock()
	}
	return n
}

// outstanding counts the messages sent and not yet receipted.
func (k *soak) outstanding() int64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	var n int64
	for _, m := range k.msgs {
		if !m.receipted {
			n++
		}
	}
	return n
}

// lost counts the receipted direct messages not delivered (yet).
func (k *soak) lost() int64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	var n int64
	for _, m := range k.msgs {
		if m.receipted && m.to != "" && m.delivered == 0 {
			n++
		}
	}
	return n
}

// lostDetail describes up to max lost messages: when each was posted and
// receipted (long apart: receipted for a resend, after its sender's
// reconnect), its recipient's client, and when the sender's and the
// recipient's sockets were dialed, for the diagnosis of a run that lost one.
func (k *soak) lostDetail(max int) string {
	now := time.Now()
	type lostMsg struct {
		key, to    string
		posted, at time.Time
	}
	var lost []lostMsg
	k.mu.Lock()
	for key, m := range k.msgs {
		if len(lost) < max && m.receipted && m.to != "" && m.delivered == 0 {
			lost = append(lost, lostMsg{key, m.to, m.posted, m.at})
		}
	}
	k.mu.Unlock()
	out := make([]string, 0, len(lost))
	dials := func(u *soakUser) string { // the caller holds u.mu
		ago := make([]string, 0, len(u.dials))
		for _, d := range u.dials {
			ago = append(ago, fmt.Sprintf("%.2f", now.Sub(d).Seconds()))
		}
		return strings.Join(ago, ", ")
	}
	for _, l := range lost {
		from, _, _ := strings.Cut(l.key, "#")
		state, toDials, fromDials := "unknown", "", ""
		for _, u := range k.users {
			u.mu.Lock()
			switch u.name {
			case l.to:
				state = "away"
				if u.c != nil {
					state = u.c.State().String()
				}
				toDials = dials(u)
			case from:
				fromDials = dials(u)
			}
			u.mu.Unlock()
		}
		out = append(out, fmt.Sprintf("%s to %s posted %.2f s and receipted %.2f s before the end (its client %s; "+
			"its sockets dialed %s s before the end; the sender's %s)",
			l.key, l.to, now.Sub(l.posted).Seconds(), now.Sub(l.at).Seconds(), state, toDials, fromDials))
	}
	return strings.Join(out, "; ")
}

// closeAll closes every client.
func (k *soak) closeAll() {
	var wg sync.WaitGroup
	for _, u := range k.users {
		u.mu.Lock()
		cl := u.c
		u.c = nil
		u.mu.Unlock()
		if cl != nil {
			wg.Add(1)
			go func() { defer wg.Done(); _ = cl.Close() }()
		}
	}
	wg.Wait()
}

// procStatusKiB reads a field in kB (e.g. "RssAnon:") of
// /proc/PID/status.
func procStatusKiB(pid int, field string) (int64, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				return 0, false
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			return kb, err == nil
		}
	}
	return 0, false
}

// procFDs counts the open descriptors of process pid.
func procFDs(pid int) (int, bool) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, false
	}
	return len(ents), true
}

// levelOff compares the last third of the samples with the middle third,
// for the hub's RSS, anonymous RSS, heap in use, goroutines and
// descriptors: the means of both, the slope of the last third (per
// minute), and whether the series levelled off: the last third's mean at
// most 10 % (plus a small slack) over the middle third's, for all but
// VmRSS, which grows with the pages of the bbolt file the hub touched.
// The first third is the warm-up.
func levelOff(r *Run, samples []soakSample) {
	// The last sample is taken after the drain: leave it out.
	if len(samples) > 1 {
		samples = samples[:len(samples)-1]
	}
	if len(samples) < 6 {
		r.notef("too few samples (%d) to say whether the hub levels off: run longer or sample more often", len(samples))
		return
	}
	n := len(samples)
	mid, last := samples[n/3:2*n/3], samples[2*n/3:]
	series := []struct {
		name  string
		unit  string
		slack float64
		get   func(soakSample) float64

		verdict bool // counts for levels_off
	}{
		{"hub_rss", "MiB", 4, func(s soakSample) float64 { return s.HubRSS }, false},
		{"hub_rss_anon", "MiB", 4, func(s soakSample) float64 { return s.HubAnon }, true},
		{"hub_heap_inuse", "MiB", 4, func(s soakSample) float64 { return s.HeapInuse }, true},
		{"hub_goroutines", "", 20, func(s soakSample) float64 { return float64(s.Goroutines) }, true},
		{"hub_fds", "", 10, func(s soakSample) float64 { return float64(s.FDs) }, true},
	}
	var growing []string
	for _, se := range series {
		if se.get(samples[0]) == 0 {
			continue // not read (a target without serve's endpoints, or no PID)
		}
		mMid, mLast := mean(mid, se.get), mean(last, se.get)
		slope := slopePerMin(last, se.get)
		r.add(se.name+"_mid_mean", mMid, se.unit)
		r.add(se.name+"_last_mean", mLast, se.unit)
		r.add(se.name+"_last_slope_per_min", slope, se.unit)
		if se.verdict && mLast > mMid*1.10+se.slack {
			growing = append(growing, se.name)
		}
	}
	if len(growing) == 0 {
		r.notef("levelled off: in the last third, the means of anonymous RSS, heap in use, goroutines and descriptors are within 10 %% (plus a small slack) of the middle third's (VmRSS, which counts the pages of bbolt's mapped file, is reported but not judged)")
		r.add("levels_off", 1, "")
	} else {
		r.notef("still growing in the last third: %v", growing)
		r.add("levels_off", 0, "")
	}
}

func mean(ss []soakSample, get func(soakSample) float64) float64 {
	var sum float64
	for _, s := range ss {
		sum += get(s)
	}
	return sum / float64(len(ss))
}

// slopePerMin is the least-squares slope of get over time, per minute.
func slopePerMin(ss []soakSample, get func(soakSample) float64) float64 {
	var st, sv, stt, stv float64
	n := float64(len(ss))
	for _, s := range ss {
		t, v := s.T/60, get(s)
		st, sv, stt, stv = st+t, sv+v, stt+t*t, stv+t*v
	}
	den := n*stt - st*st
	if den == 0 {
		return 0
	}
	return (n*stv - st*sv) / den
}
