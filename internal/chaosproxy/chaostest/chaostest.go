// Package chaostest is the workload of the chaos tests: Go clients (the
// client package) exchanging direct and room messages through chaosproxy
// proxies while faults are injected at random, and the check of what
// arrived where.
//
// Every message carries a unique content ("from#n"), so the check counts
// deliveries per message, not per id: a message that the hub stored twice
// (under two ids) shows up as a duplicate even though the client's
// dedupe by id cannot see it. Each client's socket is also tapped: the
// frames that reached the client on the wire are counted separately from
// the ones the client handed to the application (after its dedupe), so a
// duplicate the client hid is still reported.
package chaostest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/client"
	"github.com/wshub/wshub/internal/chaosproxy"
)

// Config describes a workload.
type Config struct {
	// URLs are the hub's WebSocket URLs (normally through a proxy); user i
	// dials URLs[(i/2)%len(URLs)], so that users with and without ack=1
	// are on every URL.
	URLs []string
	// Users is the number of users, one client each; the users with an
	// even number connect with ack=1.
	Users int
	// Rooms and RoomsPerUser: user i joins rooms i, i+1, ... (mod Rooms).
	Rooms, RoomsPerUser int
	// Interval is the mean pause of a user between two messages (drawn
	// uniformly from 0 to twice it).
	Interval time.Duration
	// RoomShare is the fraction of messages sent to a room.
	RoomShare float64
	// Seed makes the choices of recipients reproducible.
	Seed uint64
	// Client options of every user: heartbeat and backoff (the rest is
	// set by the workload).
	HeartbeatInterval, HeartbeatTimeout time.Duration
	Backoff                             client.Backoff
	// Logf receives progress lines (testing.T.Logf); nil means none.
	Logf func(format string, args ...any)
}

// msg is one logical message: one content, sent (and resent) with one cid.
type msg struct {
	key  string // the content, unique
	from string
	to   string // the recipient of a direct message, or ""
	room string // the room of a room message, or ""
	cid  string

	// Set by the sender's goroutine before it publishes the message as
	// done (under Workload.mu).
	receipted bool
	id        string
	seq       uint64
	refused   string        // the error that refused it for good, if any
	at        time.Duration // when the receipt came, since the workload started
}

// user is one user and its client.
type user struct {
	name  string
	ack   bool
	rooms []string
	c     *client.Client

	opens, hbTimeouts atomic.Int64

	mu             sync.Mutex
	app            map[string]int            // guarded by mu: content -> deliveries to the application
	raw            map[string]int            // guarded by mu: content -> frames that reached the client
	lastSeq        map[string]uint64         // guarded by mu: direct conversation (peer) -> last seq delivered
	outOfOrder     int                       // guarded by mu: direct messages delivered below the last seq of their conversation
	roomSeqs       map[string]map[uint64]int // guarded by mu: room -> seq -> deliveries
	lastRoomSeq    map[string]uint64         // guarded by mu
	roomOutOfOrder int                       // guarded by mu
	recoveredFalse map[string]int            // guarded by mu: room -> rejoins answered recovered false
	strays         int                       // guarded by mu: messages that no sender of the workload sent
	trace          []traceEvent              // guarded by mu: what happened to the client, for a failure's report
}

// traceEvent is one line of a user's timeline: a connection opened or
// closed, a join answer, a room message on the wire, an error.
type traceEvent struct {
	at   time.Duration // since the workload started
	room string        // the room it concerns, or "" for the connection
	what string
}

// maxTrace bounds a user's timeline.
const maxTrace = 20000

// note adds an event to u's timeline.
func (u *user) note(start time.Time, room, format string, args ...any) {
	u.mu.Lock()
	u.noteLocked(start, room, format, args...)
	u.mu.Unlock()
}

func (u *user) noteLocked(start time.Time, room, format string, args ...any) {
	if len(u.trace) < maxTrace {
		u.trace = append(u.trace, traceEvent{at: time.Since(start), room: room, what: fmt.Sprintf(format, args...)})
	}
}

// Workload runs the users of a chaos test.
type Workload struct {
	cfg   Config
	start time.Time
	users []*user
	byKey map[string]*user // written before the clients start

	stop     chan struct{} // closed by StopSending or Close (stopOnce): no new messages
	stopOnce sync.Once
	// sendCtx is cancelled (giveUp) by StopSending after its timeout, or
	// when the senders are done: stop retrying.
	sendCtx context.Context
	giveUp  context.CancelFunc
	senders sync.WaitGroup

	retries atomic.Int64 // Send calls repeated with the same cid

	mu   sync.Mutex
	msgs map[string]*msg // guarded by mu: by content
	all  []*msg          // guarded by mu: in the order sent
}

// Start connects every user (waiting for each first connection) and
// joins its rooms. The faults should start after it returns.
func Start(ctx context.Context, cfg Config) (*Workload, error) {
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	w := &Workload{cfg: cfg, start: time.Now(), stop: make(chan struct{}), msgs: make(map[string]*msg), byKey: map[string]*user{}}
	w.sendCtx, w.giveUp = context.WithCancel(context.Background())
	for i := range cfg.Users {
		u := &user{
			name: fmt.Sprintf("u%02d", i), ack: i%2 == 0,
			app: map[string]int{}, raw: map[string]int{}, lastSeq: map[string]uint64{},
			roomSeqs: map[string]map[uint64]int{}, lastRoomSeq: map[string]uint64{}, recoveredFalse: map[string]int{},
		}
		for k := range min(cfg.RoomsPerUser, cfg.Rooms) {
			u.rooms = append(u.rooms, fmt.Sprintf("room%d", (i+k)%cfg.Rooms))
		}
		w.users = append(w.users, u)
		w.byKey[u.name] = u
	}
	errs := make([]error, len(w.users))
	var wg sync.WaitGroup
	for i, u := range w.users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = w.connect(ctx, i, u)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}

// connect dials user i's client and joins its rooms.
func (w *Workload) connect(ctx context.Context, i int, u *user) error {
	hb := w.cfg.HeartbeatTimeout
	c, err := client.Dial(ctx, w.cfg.URLs[(i/2)%len(w.cfg.URLs)], client.Options{
		Token: u.name,
		Ack:   u.ack,
		Dialer: &websocket.Dialer{
			HandshakeTimeout: 2 * hb,
			NetDialContext:   tapDial(func(b []byte) { u.onWire(w.start, b) }),
		},
		Header:            http.Header{},
		HeartbeatInterval: w.cfg.HeartbeatInterval,
		HeartbeatTimeout:  hb,
		Backoff:           w.cfg.Backoff,
		ReconnectAlways:   true,
		OnMessage:         u.onMessage,
		OnOpen: func(f *wshub.Frame) {
			u.opens.Add(1)
			u.note(w.start, "", "open %s", f.ID)
		},
		OnClose: func(code int, reason string) { u.note(w.start, "", "closed %d %q", code, reason) },
		OnRejoin: func(room string, recovered bool) {
			u.note(w.start, room, "rejoined, recovered %v", recovered)
			u.onRejoin(room, recovered)
		},
		OnError: func(err error) {
			if errors.Is(err, client.ErrHeartbeatTimeout) {
				u.hbTimeouts.Add(1)
			}
			u.note(w.start, "", "error: %v", err)
		},
	})
	if err != nil {
		return fmt.Errorf("%s: dial: %w", u.name, err)
	}
	u.c = c
	for _, room := range u.rooms {
		jctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := c.Join(jctx, room)
		cancel()
		if err != nil {
			return fmt.Errorf("%s: join %s: %w", u.name, room, err)
		}
	}
	return nil
}

// onWire counts a message that reached the client's socket, and notes
// room messages, join answers and errors in the timeline.
func (u *user) onWire(start time.Time, b []byte) {
	f, err := wshub.DecodeFrame(b)
	if err != nil {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	switch f.Cmd {
	case wshub.CmdJoin:
		rec := "-"
		if f.Recovered != nil {
			rec = strconv.FormatBool(*f.Recovered)
		}
		u.noteLocked(start, f.DstID, "wire: join answer cid %s seq %d epoch %q recovered %s", f.CID, f.Seq, f.Epoch, rec)
	case wshub.CmdError:
		u.noteLocked(start, "", "wire: error cid %s %d %s", f.CID, f.Code, f.Reason)
	case wshub.CmdRoom:
		u.noteLocked(start, f.DstID, "wire: seq %d %s", f.Seq, f.Content)
	}
	if (f.Cmd != wshub.CmdSingle && f.Cmd != wshub.CmdRoom) || f.UserID == u.name {
		return
	}
	u.raw[f.Content]++
}

// onMessage records a message the client handed to the application.
// Copies of the user's own messages (sent to its other connections) are
// not deliveries.
func (u *user) onMessage(f *wshub.Frame) {
	if f.UserID == u.name {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if !strings.HasPrefix(f.Content, f.UserID+"#") {
		u.strays++
		return
	}
	u.app[f.Content]++
	switch f.Cmd {
	case wshub.CmdSingle:
		if f.Seq <= u.lastSeq[f.UserID] {
			u.outOfOrder++
		}
		u.lastSeq[f.UserID] = max(u.lastSeq[f.UserID], f.Seq)
	case wshub.CmdRoom:
		seqs := u.roomSeqs[f.DstID]
		if seqs == nil {
			seqs = map[uint64]int{}
			u.roomSeqs[f.DstID] = seqs
		}
		seqs[f.Seq]++
		if f.Seq <= u.lastRoomSeq[f.DstID] {
			u.roomOutOfOrder++
		}
		u.lastRoomSeq[f.DstID] = max(u.lastRoomSeq[f.DstID], f.Seq)
	}
}

func (u *user) onRejoin(room string, recovered bool) {
	if recovered {
		return
	}
	u.mu.Lock()
	u.recoveredFalse[room]++
	u.mu.Unlock()
}

// StartSending starts one sender per user: each sends a message, waits for
// its receipt (resending with the same cid until it comes), pauses, and
// so on, until StopSending.
func (w *Workload) StartSending() {
	for i, u := range w.users {
		w.senders.Add(1)
		go func() {
			defer w.senders.Done()
			w.sendLoop(rand.New(rand.NewPCG(w.cfg.Seed, uint64(i))), u)
		}()
	}
}

func (w *Workload) sendLoop(rnd *rand.Rand, u *user) {
	t := time.NewTimer(0)
	defer t.Stop()
	<-t.C
	for n := 1; ; n++ {
		t.Reset(time.Duration(rnd.Int64N(int64(2*w.cfg.Interval) + 1)))
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		m := &msg{key: u.name + "#" + strconv.Itoa(n), from: u.name}
		m.cid = "chaos-" + m.key
		f := &wshub.Frame{Cmd: wshub.CmdSingle, CID: m.cid, Content: m.key}
		if len(u.rooms) > 0 && rnd.Float64() < w.cfg.RoomShare {
			m.room = u.rooms[rnd.IntN(len(u.rooms))]
			f.Cmd, f.DstID = wshub.CmdRoom, m.room
		} else {
			k := rnd.IntN(len(w.users) - 1)
			if w.users[k] == u {
				k = len(w.users) - 1
			}
			m.to = w.users[k].name
			f.DstID = m.to
		}
		w.mu.Lock()
		w.msgs[m.key] = m
		w.all = append(w.all, m)
		w.mu.Unlock()
		w.send(u, f, m)
	}
}

// send sends f until its receipt comes, an error refuses it for good, or
// StopSending gives up.
func (w *Workload) send(u *user, f *wshub.Frame, m *msg) {
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			w.retries.Add(1)
		}
		ctx, cancel := context.WithTimeout(w.sendCtx, 10*time.Second)
		r, err := u.c.Send(ctx, f)
		cancel()
		var se *client.ServerError
		switch {
		case err == nil:
			w.mu.Lock()
			m.receipted, m.id, m.seq, m.at = true, r.ID, r.Seq, time.Since(w.start)
			w.mu.Unlock()
			return
		case errors.As(err, &se) && (se.Code >= 500 && se.Code != 507 || se.Code == 429):
			// The store is unavailable (a Redis restart) or a limit: try
			// again with the same cid.
		case errors.As(err, &se), errors.Is(err, client.ErrClosed):
			w.mu.Lock()
			m.refused = err.Error()
			w.mu.Unlock()
			return
		}
		select {
		case <-w.sendCtx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// StopSending stops new messages and waits for the receipts of those in
// flight (they are resent until they come), at most timeout; after it the
// senders give up and those messages count as unreceipted.
func (w *Workload) StopSending(timeout time.Duration) {
	w.stopOnce.Do(func() { close(w.stop) })
	done := make(chan struct{})
	go func() { w.senders.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
	}
	w.giveUp()
	<-done
}

// Close stops the senders, closes every client and waits for them.
func (w *Workload) Close() {
	w.stopOnce.Do(func() { close(w.stop) })
	w.giveUp()
	defer w.senders.Wait()
	var wg sync.WaitGroup
	for _, u := range w.users {
		if u.c != nil {
			wg.Add(1)
			go func() { defer wg.Done(); _ = u.c.Close() }()
		}
	}
	wg.Wait()
}

// Result is what the check found.
type Result struct {
	Sent        int // messages sent (each once, with resends under the same cid)
	Receipted   int // of those, receipted
	Unreceipted int // neither receipted nor refused when the senders stopped
	Refused     int // refused for good by an error frame
	Retries     int64

	// Direct messages.
	Direct            int // receipted direct messages
	DirectAck         int // of those, to a user with ack=1
	Delivered         int // receipted direct messages the recipient's application got
	Duplicated        int // extra deliveries to the application (after the client's dedupe by id)
	WireDuplicated    int // extra copies that reached the recipient's socket (resends the client dropped, and the above)
	Lost              int // receipted, to an ack=1 recipient, never delivered: must be 0
	LostNoAck         int // receipted, to a recipient without ack=1, never delivered: allowed (SPEC §4: written counts as delivered)
	OutOfOrder        int // direct deliveries below the latest seq of their conversation
	DeliveredUnrecpt  int // unreceipted direct messages that arrived anyway
	Strays            int // deliveries of messages the workload did not send
	RoomMessages      int // receipted room messages
	RoomExpected      int // (room message, other member) pairs
	RoomDelivered     int // of those, received live or by replay
	RoomDuplicated    int // extra deliveries of room messages to the application
	RoomWireDup       int // extra copies of room messages on the wire
	RoomNotRecovered  int // missing, but the member's rejoin of that room said recovered false
	RoomLost          int // missing with no recovered false: must be 0
	RoomOutOfOrder    int // room deliveries below the latest seq seen in that room (replays after live ones)
	RecoveredFalse    int // rejoins answered recovered false
	Reconnects        int64
	HeartbeatTimeouts int64
	// FirstLost names a few lost messages, for the failure message.
	FirstLost []string
	// Trace is the timeline of the first recipient that lost a room
	// message (its connections, and the joins and messages of that room),
	// with the receipt times of what it lost: for a failure's report.
	Trace string
}

// Check counts what arrived. It can be called while clients still drain.
func (w *Workload) Check() Result {
	w.mu.Lock()
	all := append([]*msg(nil), w.all...)
	w.mu.Unlock()
	for _, u := range w.users {
		u.mu.Lock()
		defer u.mu.Unlock()
	}
	r := Result{Retries: w.retries.Load()}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range all {
		r.Sent++
		switch {
		case m.receipted:
			r.Receipted++
		case m.refused != "":
			r.Refused++
		default:
			r.Unreceipted++
		}
		if m.to != "" {
			to := w.byKey[m.to]
			app, raw := to.app[m.key], to.raw[m.key]
			r.Duplicated += max(0, app-1)
			r.WireDuplicated += max(0, raw-1)
			if !m.receipted {
				if app > 0 {
					r.DeliveredUnrecpt++
				}
				continue
			}
			r.Direct++
			if to.ack {
				r.DirectAck++
			}
			switch {
			case app > 0:
				r.Delivered++
			case to.ack:
				r.Lost++
				if len(r.FirstLost) < 5 {
					r.FirstLost = append(r.FirstLost, fmt.Sprintf("%s -> %s (id %s seq %d)", m.key, m.to, m.id, m.seq))
				}
			default:
				r.LostNoAck++
			}
			continue
		}
		if !m.receipted {
			continue
		}
		r.RoomMessages++
		for _, u := range w.users {
			if u.name == m.from || !contains(u.rooms, m.room) {
				continue
			}
			r.RoomExpected++
			r.RoomDuplicated += max(0, u.app[m.key]-1)
			r.RoomWireDup += max(0, u.raw[m.key]-1)
			switch {
			case u.roomSeqs[m.room][m.seq] > 0:
				r.RoomDelivered++
			case u.recoveredFalse[m.room] > 0:
				r.RoomNotRecovered++
			default:
				r.RoomLost++
				if len(r.FirstLost) < 5 {
					r.FirstLost = append(r.FirstLost, fmt.Sprintf("%s in %s (seq %d, receipted at %v, %d on the wire) -> %s",
						m.key, m.room, m.seq, m.at.Round(time.Millisecond), u.raw[m.key], u.name))
				}
				if r.Trace == "" {
					r.Trace = u.timeline(m.room)
				}
			}
		}
	}
	for _, u := range w.users {
		r.OutOfOrder += u.outOfOrder
		r.RoomOutOfOrder += u.roomOutOfOrder
		r.Strays += u.strays
		for _, n := range u.recoveredFalse {
			r.RecoveredFalse += n
		}
		r.Reconnects += max(0, u.opens.Load()-1)
		r.HeartbeatTimeouts += u.hbTimeouts.Load()
	}
	return r
}

// timeline formats u's events of the connection and of room. The caller
// holds u.mu.
func (u *user) timeline(room string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "timeline of %s (connection, and room %s):\n", u.name, room)
	for _, e := range u.trace {
		if e.room == "" || e.room == room {
			fmt.Fprintf(&b, "  %9v %s\n", e.at.Round(time.Microsecond), e.what)
		}
	}
	return b.String()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Drain waits, at most timeout, until every receipted message that must
// arrive has arrived (direct messages to ack=1 users; room messages, or a
// recovered false), then until the deliveries to the other users stopped
// changing for a second, and returns the final check.
func (w *Workload) Drain(timeout time.Duration) Result {
	deadline := time.Now().Add(timeout)
	r := w.Check()
	for (r.Lost > 0 || r.RoomLost > 0) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		r = w.Check()
	}
	for time.Now().Before(deadline) {
		time.Sleep(time.Second)
		next := w.Check()
		if next.Delivered == r.Delivered && next.LostNoAck == r.LostNoAck {
			return next
		}
		r = next
	}
	return w.Check()
}

// String formats the figures for a test log.
func (r Result) String() string {
	return fmt.Sprintf("sent %d, receipted %d (unreceipted %d, refused %d, Send calls repeated with the same cid %d); "+
		"direct: receipted %d (%d to ack=1 users), delivered %d, duplicated %d (on the wire %d), lost %d, "+
		"not delivered to users without ack=1 %d, out of order %d, strays %d, unreceipted but delivered %d; "+
		"rooms: receipted %d, expected deliveries %d, delivered %d, duplicated %d (on the wire %d), "+
		"missed with recovered false %d, lost %d, replays after live ones %d, recovered false %d; "+
		"reconnects %d, heartbeat timeouts %d",
		r.Sent, r.Receipted, r.Unreceipted, r.Refused, r.Retries,
		r.Direct, r.DirectAck, r.Delivered, r.Duplicated, r.WireDuplicated, r.Lost, r.LostNoAck, r.OutOfOrder, r.Strays, r.DeliveredUnrecpt,
		r.RoomMessages, r.RoomExpected, r.RoomDelivered, r.RoomDuplicated, r.RoomWireDup, r.RoomNotRecovered, r.RoomLost, r.RoomOutOfOrder, r.RecoveredFalse,
		r.Reconnects, r.HeartbeatTimeouts)
}

// FaultStats counts the faults injected.
type FaultStats struct {
	Cut, Reset, Blackholed, Delayed, CutAll int
}

func (f FaultStats) String() string {
	return fmt.Sprintf("cut %d, reset %d, blackholed %d, delayed %d, all cut at once %d", f.Cut, f.Reset, f.Blackholed, f.Delayed, f.CutAll)
}

// Faults injects faults into the open connections of the proxies, one
// every 0 to 2×every (seeded), until ctx ends; then it removes every delay
// (blackholed connections stay blackholed until the peers' heartbeats
// drop them). The mix: a delay of up to maxDelay on one connection (30 %),
// a cut (30 %), a reset (15 %), a blackhole (20 %), every connection of a
// proxy cut at once (5 %).
func Faults(ctx context.Context, proxies []*chaosproxy.Proxy, seed uint64, every, maxDelay time.Duration) FaultStats {
	rnd := rand.New(rand.NewPCG(seed, 0xfa17))
	var st FaultStats
	t := time.NewTimer(0)
	defer t.Stop()
	<-t.C
	for {
		t.Reset(time.Duration(rnd.Int64N(int64(2*every) + 1)))
		select {
		case <-ctx.Done():
			for _, p := range proxies {
				p.SetLatency(0)
			}
			return st
		case <-t.C:
		}
		p := proxies[rnd.IntN(len(proxies))]
		action := rnd.IntN(100)
		if action >= 95 {
			p.CutAll()
			st.CutAll++
			continue
		}
		cs := p.Conns()
		if len(cs) == 0 {
			continue
		}
		c := cs[rnd.IntN(len(cs))]
		switch {
		case action < 30:
			c.SetLatency(time.Duration(rnd.Int64N(int64(maxDelay) + 1)))
			st.Delayed++
		case action < 60:
			c.Cut()
			st.Cut++
		case action < 75:
			c.Reset()
			st.Reset++
		default:
			c.Blackhole()
			st.Blackholed++
		}
	}
}
