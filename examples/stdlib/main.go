// Command stdlib serves the wshub demo chat with net/http: the page at /,
// the hub at /ws and at /chat (the reference article's path).
//
//	go run ./examples/stdlib [-addr localhost:8080] [-store bolt|mem|redis] [-db wshub.db] [-redis 127.0.0.1:6379]
//	    [-max-pending 10000] [-max-pending-per-sender 1000] [-max-rooms 1000]
//	    [-tls-cert cert.pem -tls-key key.pem] [-trusted-proxies 127.0.0.1] [-allowed-origins https://chat.example.com]
//
// It also serves /healthz (200 while the process serves HTTP) and /readyz
// (200 while the hub accepts connections, else 503 and why), and prints
// "listening on http://ADDR" once the hub accepts connections: with
// -store redis, once its store feed is subscribed. Redis may be down at
// start: the example serves /healthz and /readyz meanwhile and keeps
// trying.
//
// Authentication is development mode: the token is the user id. Do not
// expose it to a network you do not trust.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/examples/internal/demo"
	"github.com/wshub/wshub/metrics/wshubprom"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "stdlib:", err)
		os.Exit(1)
	}
}

// run serves until ctx ends, then shuts down gracefully.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("stdlib", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "localhost:8080", "listen address")
	storeKind := fs.String("store", "bolt", "store: mem, bolt or redis")
	dbPath := fs.String("db", "wshub.db", "bbolt file for -store bolt")
	redisAddr := fs.String("redis", "127.0.0.1:6379", "Redis address for -store redis; a comma-separated list with -redis-cluster")
	tlsCert := fs.String("tls-cert", "", "TLS certificate file (PEM); with -tls-key, serve HTTPS and wss://")
	tlsKey := fs.String("tls-key", "", "TLS private key file (PEM), with -tls-cert")
	maxRooms := fs.Int("max-rooms", 1000, "most rooms one user may be in; a join beyond: error 429 (negative: no limit)")
	trusted := fs.String("trusted-proxies", "", "comma-separated IPs or CIDRs of reverse proxies whose X-Forwarded-*/Forwarded headers are believed")
	origins := fs.String("allowed-origins", "", "comma-separated origin patterns (https://chat.example.com, https://*.example.com) instead of same origin")
	presenceTTL := fs.Duration("presence-ttl", 15*time.Second, "with -store redis: lease of this process's presence entries; a killed process's users go offline after it")
	var bounds demo.Bounds
	fs.IntVar(&bounds.MaxPending, "max-pending", 10000, "most messages queued for one user; past it a message gets error 507 (negative: unbounded)")
	fs.BoolVar(&bounds.RedisCluster, "redis-cluster", false, "the -redis addresses (comma-separated) are seed nodes of a Redis Cluster")
	fs.IntVar(&bounds.MaxPendingPerSender, "max-pending-per-sender", 1000, "most messages queued for one user from one sender; past it error 507 (negative: unbounded)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		return errors.New("-tls-cert and -tls-key go together")
	}
	scheme := "http"
	if *tlsCert != "" {
		scheme = "https"
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	st, err := demo.OpenStore(*storeKind, *dbPath, *redisAddr, bounds)
	if err != nil {
		return err
	}
	defer st.Close()

	log.Warn("DEVELOPMENT AUTHENTICATION: the token is the user id, anyone can sign in as anyone; never expose this example to untrusted networks")
	hub, err := wshub.New(wshub.Options{
		Store:          st,
		Authenticate:   wshub.DevAuthenticate,
		Logger:         log,
		MaxRooms:       *maxRooms,
		TrustedProxies: splitList(*trusted),
		AllowedOrigins: splitList(*origins),
		PresenceTTL:    *presenceTTL,
	})
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(wshubprom.NewCollector(hub), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	mux := http.NewServeMux()
	mux.Handle("/ws", hub)
	mux.Handle("/chat", hub)
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", demo.Healthz)
	mux.Handle("/readyz", demo.Readyz(ctx, hub))
	mux.Handle("/", demo.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	// Serve at once, so that /healthz and /readyz answer while the hub
	// waits for its store's feed (with -store redis, Redis may be down:
	// the hub retries, logging each failure); announce the address once
	// the hub accepts connections.
	serveErr := make(chan error, 1) // written once by the serving goroutine
	go func() {
		if scheme == "https" {
			serveErr <- srv.ServeTLS(ln, *tlsCert, *tlsKey)
			return
		}
		serveErr <- srv.Serve(ln)
	}()
	ready := make(chan error, 1) // written once by the waiting goroutine
	go func() { ready <- hub.WaitReady(ctx) }()
	if !hub.Ready() {
		log.Info("serving /healthz and /readyz; waiting for the store feed before accepting connections",
			slog.String("addr", ln.Addr().String()))
	}

	select {
	case err := <-serveErr:
		return err
	case err := <-ready:
		if err == nil {
			fmt.Fprintf(stdout, "listening on %s://%s\n", scheme, displayAddr(*addr, ln.Addr()))
		} // else ctx ended before the hub was ready: shut down
	}
	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The hub first, so that clients get 1001; hijacked connections are
	// not the http.Server's to close.
	herr := hub.Shutdown(sctx)
	serr := srv.Shutdown(sctx)
	cerr := st.Close()
	return errors.Join(herr, serr, cerr)
}

// displayAddr is the address to print: the host as given, with the port
// actually bound (which differs for port 0).
func displayAddr(flagAddr string, bound net.Addr) string {
	host, _, err := net.SplitHostPort(flagAddr)
	_, port, perr := net.SplitHostPort(bound.String())
	if err != nil || perr != nil || host == "" {
		return bound.String()
	}
	return net.JoinHostPort(host, port)
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
