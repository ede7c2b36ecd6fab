// Command stdlib serves the wshub demo chat with net/http: the page at /,
// the hub at /ws and at /chat (the reference article's path).
//
//	go run ./examples/stdlib [-addr localhost:8080] [-store bolt|mem|redis] [-db wshub.db] [-redis 127.0.0.1:6379]
//	    [-max-pending 10000] [-max-pending-per-sender 1000]
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
	"syscall"
	"time"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/examples/internal/demo"
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
	redisAddr := fs.String("redis", "127.0.0.1:6379", "Redis address for -store redis")
	var bounds demo.Bounds
	fs.IntVar(&bounds.MaxPending, "max-pending", 10000, "most messages queued for one user; past it a message gets error 507 (negative: unbounded)")
	fs.IntVar(&bounds.MaxPendingPerSender, "max-pending-per-sender", 1000, "most messages queued for one user from one sender; past it error 507 (negative: unbounded)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	st, err := demo.OpenStore(*storeKind, *dbPath, *redisAddr, bounds)
	if err != nil {
		return err
	}
	defer st.Close()

	log.Warn("DEVELOPMENT AUTHENTICATION: the token is the user id, anyone can sign in as anyone; never expose this example to untrusted networks")
	hub, err := wshub.New(wshub.Options{
		Store:        st,
		Authenticate: wshub.DevAuthenticate,
		Logger:       log,
	})
	if err != nil {
		return err
	}

	mux := http.NewServeMux()
	mux.Handle("/ws", hub)
	mux.Handle("/chat", hub)
	mux.Handle("/", demo.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "listening on http://%s\n", displayAddr(*addr, ln.Addr()))
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

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
