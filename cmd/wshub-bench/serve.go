//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"runtime/debug"
	runpprof "runtime/pprof"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/store"
	"github.com/wshub/wshub/store/boltstore"
	"github.com/wshub/wshub/store/memstore"
	"github.com/wshub/wshub/store/redisstore"
)

// servingPrefix starts the line serve prints once it accepts connections:
// "serving ws://ADDR/ws pid PID".
const servingPrefix = "serving "

// Control endpoints of a hub started by serve, next to /ws on the same
// listener (loopback only).
const (
	pathWS    = "/ws"
	pathStats = "/bench/stats" // GET: hubStats as JSON
	pathGC    = "/bench/gc"    // POST: runtime.GC and debug.FreeOSMemory, then hubStats
	pathDrop  = "/bench/drop"  // POST: close every connection with 1001; the hub stays up
	pathPprof = "/debug/pprof/"
	// POST: start a CPU profile; POST stop: stop it and answer with it.
	pathProfStart = "/bench/cpuprofile/start"
	pathProfStop  = "/bench/cpuprofile/stop"
)

// serveConfig is the command line of serve.
type serveConfig struct {
	addr         string
	storeKind    string
	dbPath       string
	sendQueue    int
	maxConns     int
	cpuProfile   string
	memProfile   string
	logLevel     string
	pingInterval time.Duration
	floor        bool
	floorDirect  bool
	floorStored  bool
	// Store bounds and the Redis store (growth).
	redisAddr  string
	maxPending int
	maxPerSndr int
	maxRooms   int
	maxAge     time.Duration // boltstore.Options.MaxAge (retention)
}

func serveFlags(fs *flag.FlagSet, c *serveConfig) {
	fs.StringVar(&c.addr, "addr", "127.0.0.1:0", "listen address (loopback only; port 0 picks a free one)")
	fs.StringVar(&c.storeKind, "store", "mem", "store: mem, bolt or redis")
	fs.StringVar(&c.redisAddr, "redis", "127.0.0.1:6379", "Redis address (loopback only) for -store redis")
	fs.IntVar(&c.maxPending, "max-pending", 0, "the store's MaxPending: most messages queued for one user (0: the store's default, 10,000; negative: unbounded)")
	fs.IntVar(&c.maxPerSndr, "max-pending-per-sender", 0, "the store's MaxPendingPerSender (0: the store's default, 1,000; negative: unbounded)")
	fs.IntVar(&c.maxRooms, "max-rooms", 0, "wshub.Options.MaxRooms (0: the hub's default, 1,000; negative: no limit)")
	fs.DurationVar(&c.maxAge, "max-age", 0, "with -store bolt: boltstore.Options.MaxAge, messages older than this leave their history and, once delivered, the file (0: kept)")
	fs.StringVar(&c.dbPath, "db", "", "bbolt file for -store bolt (default: a new file in a temporary directory, removed at exit)")
	fs.IntVar(&c.sendQueue, "send-queue", 0, "wshub.Options.SendQueue (0: the hub's default)")
	fs.IntVar(&c.maxConns, "max-conns-per-user", 64, "wshub.Options.MaxConnsPerUser")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole life of the hub to this file")
	fs.StringVar(&c.memProfile, "memprofile", "", "write a heap profile to this file at exit")
	fs.StringVar(&c.logLevel, "log", "warn", "log level: debug, info, warn or error")
	fs.DurationVar(&c.pingInterval, "ping-interval", 0, "wshub.Options.PingInterval (0: the hub's default)")
	fs.BoolVar(&c.floor, "floor", false, "serve the floor server (floor.go), a yardstick that only writes room messages, instead of a hub")
	fs.BoolVar(&c.floorDirect, "floor-direct", false, "serve the direct floor server (floordirect.go), a yardstick that forwards direct messages (cmd 10) and answers receipts, without a store, instead of a hub")
	fs.BoolVar(&c.floorStored, "floor-direct-store", false, "with -floor-direct: store each message in a memory store as the hub does, and take it out of the pending queue once written")
}

// serveMain runs a hub until ctx ends (SIGINT, SIGTERM), then shuts it
// down: connections are closed with 1001 and the store is closed.
func serveMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c serveConfig
	serveFlags(fs, &c)
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return fmt.Errorf("-log: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	host, _, err := net.SplitHostPort(c.addr)
	if err != nil {
		return fmt.Errorf("-addr: %w", err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-addr %s: the bench hub listens on a loopback address only", c.addr)
	}

	st, closeStore, err := openStore(ctx, c)
	if err != nil {
		return err
	}
	defer closeStore()

	if c.cpuProfile != "" {
		f, err := os.Create(c.cpuProfile)
		if err != nil {
			return err
		}
		if err := runpprof.StartCPUProfile(f); err != nil {
			f.Close()
			return err
		}
		defer func() { runpprof.StopCPUProfile(); f.Close() }()
	}

	mux := http.NewServeMux()
	var h *wshub.Hub
	if c.floor && c.floorDirect {
		return errors.New("-floor and -floor-direct: one server at a time")
	}
	switch {
	case c.floor:
		mux.Handle(pathWS, newFloorServer(log))
	case c.floorDirect:
		mux.Handle(pathWS, newDirectFloor(log, c.floorStored))
	default:
		h, err = newBenchHub(mux, st, c, log)
	}
	if err != nil {
		return err
	}
	if h != nil {
		// With -store redis, the first client is not served before the
		// hub's store feed is subscribed.
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := h.WaitReady(wctx)
		cancel()
		if err != nil {
			return fmt.Errorf("hub not ready: %w", err)
		}
	}
	prof := &cpuProfiler{}
	mux.HandleFunc("POST "+pathProfStart, prof.start)
	mux.HandleFunc("POST "+pathProfStop, prof.stop)
	mux.HandleFunc(pathPprof, pprof.Index)
	mux.HandleFunc(pathPprof+"cmdline", pprof.Cmdline)
	mux.HandleFunc(pathPprof+"profile", pprof.Profile)
	mux.HandleFunc(pathPprof+"symbol", pprof.Symbol)
	mux.HandleFunc(pathPprof+"trace", pprof.Trace)

	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	served := make(chan error, 1) // written once by the Serve goroutine
	go func() { served <- srv.Serve(ln) }()
	kind := c.storeKind
	if c.floor {
		kind = "none (floor server)"
	}
	if c.floorDirect {
		kind = "none (direct floor server)"
		if c.floorStored {
			kind = "mem (direct floor server)"
		}
	}
	fmt.Fprintf(stdout, "%sws://%s%s pid %d store %s\n", servingPrefix, ln.Addr(), pathWS, os.Getpid(), kind)

	select {
	case <-ctx.Done():
	case err := <-served:
		return err
	}
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var herr error
	if h != nil {
		herr = h.Shutdown(sctx)
	}
	_ = srv.Shutdown(sctx)
	if c.memProfile != "" {
		if err := writeHeapProfile(c.memProfile); err != nil {
			log.Warn("heap profile", "err", err)
		}
	}
	if herr != nil && !errors.Is(herr, context.DeadlineExceeded) {
		return herr
	}
	return nil
}

// openStore opens the store c names and returns it with its closer.
func openStore(ctx context.Context, c serveConfig) (store.Store, func(), error) {
	switch c.storeKind {
	case "mem":
		st := memstore.New(memstore.Options{MaxPending: c.maxPending, MaxPendingPerSender: c.maxPerSndr})
		return st, func() { st.Close() }, nil
	case "bolt":
		dbPath := c.dbPath
		cleanup := func() {}
		if dbPath == "" {
			dir, err := os.MkdirTemp("", "wshub-bench-")
			if err != nil {
				return nil, nil, err
			}
			dbPath = dir + "/hub.db"
			cleanup = func() { os.RemoveAll(dir) }
		}
		// Durable: every commit is synced before Append returns, so every
		// receipt follows an fsync (boltstore.Options.NoSync is false).
		st, err := boltstore.Open(dbPath, boltstore.Options{MaxPending: c.maxPending, MaxPendingPerSender: c.maxPerSndr, MaxAge: c.maxAge})
		if err != nil {
			cleanup()
			return nil, nil, err
		}
		return st, func() { st.Close(); cleanup() }, nil
	case "redis":
		host, _, err := net.SplitHostPort(c.redisAddr)
		if err != nil {
			return nil, nil, fmt.Errorf("-redis %s: want HOST:PORT", c.redisAddr)
		}
		if err := checkLoopback(host); err != nil {
			return nil, nil, fmt.Errorf("-redis %s: %w", c.redisAddr, err)
		}
		octx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		st, err := redisstore.Open(octx, c.redisAddr, redisstore.Options{MaxPending: c.maxPending, MaxPendingPerSender: c.maxPerSndr})
		if err != nil {
			return nil, nil, err
		}
		return st, func() { st.Close() }, nil
	}
	return nil, nil, fmt.Errorf("-store %q: want mem, bolt or redis", c.storeKind)
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	runtime.GC()
	if err := runpprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// hubStats is what /bench/stats reports about the hub's process.
type hubStats struct {
	Users      int    `json:"users"`
	Conns      int    `json:"conns"`
	Goroutines int    `json:"goroutines"`
	HeapInuse  uint64 `json:"heap_inuse"`
	StackInuse uint64 `json:"stack_inuse"`
	Sys        uint64 `json:"sys"`
	NumGC      uint32 `json:"num_gc"`
}

func readHubStats(h *wshub.Hub) hubStats {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s := hubStats{Goroutines: runtime.NumGoroutine(), HeapInuse: ms.HeapInuse, StackInuse: ms.StackInuse, Sys: ms.Sys, NumGC: ms.NumGC}
	users := h.Users()
	s.Users = len(users)
	for _, u := range users {
		s.Conns += len(h.Conns(u))
	}
	return s
}

// cpuProfiler runs one CPU profile at a time for the control endpoints,
// so that a scenario profiles exactly its measured window.
type cpuProfiler struct {
	mu  sync.Mutex
	buf *bytes.Buffer // guarded by mu: the running profile, nil when none
}

func (p *cpuProfiler) start(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.buf != nil {
		http.Error(w, "a profile is running", http.StatusConflict)
		return
	}
	buf := &bytes.Buffer{}
	if err := runpprof.StartCPUProfile(buf); err != nil {
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	p.buf = buf
}

func (p *cpuProfiler) stop(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.buf == nil {
		http.Error(w, "no profile is running", http.StatusConflict)
		return
	}
	runpprof.StopCPUProfile()
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = w.Write(p.buf.Bytes())
	p.buf = nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// newBenchHub makes the hub serve runs and mounts it, with its control
// endpoints, on mux.
func newBenchHub(mux *http.ServeMux, st store.Store, c serveConfig, log *slog.Logger) (*wshub.Hub, error) {
	h, err := wshub.New(wshub.Options{
		Store:           st,
		Authenticate:    wshub.DevAuthenticate,
		CheckOrigin:     func(*http.Request) bool { return true },
		SendQueue:       c.sendQueue,
		MaxConnsPerUser: c.maxConns,
		MaxRooms:        c.maxRooms,
		PingInterval:    c.pingInterval,
		Logger:          log,
		// The load comes from one loopback address, thousands of
		// connections and a few users sending as fast as they can: the
		// bounds for the open internet would refuse it.
		MaxConnsPerIP: -1,
		UpgradeRate:   -1,
		MessageRate:   -1,
		MaxRecipients: -1,
	})
	if err != nil {
		return nil, err
	}
	mux.Handle(pathWS, h)
	mux.HandleFunc("GET "+pathStats, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, readHubStats(h))
	})
	mux.HandleFunc("POST "+pathGC, func(w http.ResponseWriter, r *http.Request) {
		runtime.GC()
		debug.FreeOSMemory()
		writeJSON(w, readHubStats(h))
	})
	mux.HandleFunc("POST "+pathDrop, func(w http.ResponseWriter, r *http.Request) {
		n := 0
		for _, u := range h.Users() {
			for _, node := range h.Conns(u) {
				node.Close(websocket.CloseGoingAway, "bench: dropped")
				n++
			}
		}
		writeJSON(w, map[string]int{"dropped": n})
	})
	return h, nil
}
