// Command gin runs a wshub hub inside a gin engine, with the demo chat page.
//
//	go run ./examples/gin -addr localhost:8080 -store bolt -db wshub.db
//
// The hub is an http.Handler, so gin mounts it with gin.WrapH at /ws and at
// /chat (the reference article's path). A gin middleware authenticates
// those routes and hands the user id to the hub through the request's
// context; the hub's Authenticate hook only reads it. In this example the
// authentication is development mode: the token is the user id. It comes
// from an "Authorization: Bearer" header, the token or authToken query
// parameter, or the wshub_token cookie (in that order: browsers cannot set
// headers on a WebSocket, and a cookie is shared by every tab of a browser,
// so an explicit token wins).
//
// Every other path is the demo page (examples/internal/demo).
//
// Flags: -addr (default localhost:8080), -store mem|bolt|redis (default
// bolt), -db (bbolt file, default wshub.db), -redis (default
// 127.0.0.1:6379), -max-rooms (most rooms one user may be in, default
// 1000). It serves /healthz (200 while the process serves HTTP)
// and /readyz (200 while the hub accepts connections, else 503 and why),
// prints "listening on http://ADDR" once the hub accepts connections
// (with -store redis: once its store feed is subscribed; Redis may be
// down at start, the hub keeps trying), and on SIGINT or SIGTERM closes
// every connection with 1001, closes the store and exits 0.
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

	"github.com/gin-gonic/gin"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/examples/internal/demo"
)

func main() {
	gin.SetMode(gin.ReleaseMode)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gin example:", err)
		os.Exit(1)
	}
}

// run serves until ctx is done, then shuts down in order: the hub (every
// socket closed with 1001), the HTTP server, the store.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gin", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "localhost:8080", "listen address")
	kind := fs.String("store", "bolt", "store: mem, bolt or redis")
	db := fs.String("db", "wshub.db", "bbolt file for -store bolt")
	redisAddr := fs.String("redis", "127.0.0.1:6379", "Redis address for -store redis; a comma-separated list with -redis-cluster")
	maxRooms := fs.Int("max-rooms", 1000, "most rooms one user may be in; a join beyond: error 429 (negative: no limit)")
	var bounds demo.Bounds
	fs.BoolVar(&bounds.RedisCluster, "redis-cluster", false, "the -redis addresses (comma-separated) are seed nodes of a Redis Cluster")
	fs.IntVar(&bounds.MaxPending, "max-pending", 10000, "most messages queued for one user; past it a message gets error 507 (negative: unbounded)")
	fs.IntVar(&bounds.MaxPendingPerSender, "max-pending-per-sender", 1000, "most messages queued for one user from one sender; past it error 507 (negative: unbounded)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))

	st, err := demo.OpenStore(*kind, *db, *redisAddr, bounds)
	if err != nil {
		return err
	}
	hub, err := wshub.New(wshub.Options{
		Store:        st,
		Authenticate: authenticated,
		Logger:       log,
		MaxRooms:     *maxRooms,
	})
	if err != nil {
		_ = st.Close()
		return err
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		_ = st.Close()
		return err
	}
	srv := &http.Server{
		Handler:           newEngine(ctx, hub, log),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	// Serve at once, so that /healthz and /readyz answer while the hub
	// waits for its store's feed; announce the address once it accepts
	// connections.
	serveErr := make(chan error, 1) // written once by the serving goroutine
	go func() { serveErr <- srv.Serve(ln) }()
	ready := make(chan error, 1) // written once by the waiting goroutine
	go func() { ready <- hub.WaitReady(ctx) }()
	if !hub.Ready() {
		log.Info("serving /healthz and /readyz; waiting for the store feed before accepting connections",
			slog.String("addr", ln.Addr().String()))
	}

	serveFailed := func(err error) error {
		_ = hub.Shutdown(context.Background())
		_ = st.Close()
		return err
	}
	select {
	case err := <-serveErr:
		return serveFailed(err)
	case err := <-ready:
		if err == nil {
			fmt.Fprintf(stdout, "listening on http://%s\n", ln.Addr())
		} // else ctx ended before the hub was ready: shut down
	}
	select {
	case err := <-serveErr:
		return serveFailed(err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = errors.Join(
		hub.Shutdown(sctx),
		srv.Shutdown(sctx),
		st.Close(),
	)
	return err
}

// newEngine builds the gin engine: the hub at /ws and /chat behind the
// authentication middleware, /healthz and /readyz (whose 503 says
// "shutting down" once ctx ended), the demo page everywhere else.
func newEngine(ctx context.Context, hub *wshub.Hub, log *slog.Logger) *gin.Engine {
	r := gin.New()
	r.Use(gin.Recovery(), requestLog(log))
	r.GET("/healthz", gin.WrapF(demo.Healthz))
	r.GET("/readyz", gin.WrapH(demo.Readyz(ctx, hub)))
	ws := r.Group("/", authenticate())
	ws.GET("/ws", gin.WrapH(hub))
	ws.GET("/chat", gin.WrapH(hub))
	r.NoRoute(gin.WrapH(demo.Handler()))
	return r
}

// userKey is the request-context key of the authenticated user id.
type userKey struct{}

// authenticate is the gin middleware of the hub's routes. It finds the
// token (header, query, cookie; see the package comment), turns it into a
// user id and puts the id into the gin context ("user") and into the
// request's context, where the hub's Authenticate hook finds it. Without a
// valid token it answers 401.
//
// Development mode: the token is the user id. A real application verifies
// a session or a signed token here.
func authenticate() gin.HandlerFunc {
	return func(c *gin.Context) {
		token := ""
		if a := c.GetHeader("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
			token = strings.TrimSpace(a[7:])
		}
		if token == "" {
			token = c.Query("token")
		}
		if token == "" {
			token = c.Query("authToken")
		}
		if token == "" {
			token, _ = c.Cookie("wshub_token")
		}
		if token == "" || len(token) > 64 {
			c.AbortWithStatusJSON(http.StatusUnauthorized, gin.H{"error": "unauthorized"})
			return
		}
		user := token
		c.Set("user", user)
		c.Request = c.Request.WithContext(context.WithValue(c.Request.Context(), userKey{}, user))
		c.Next()
	}
}

// authenticated is the hub's Authenticate hook: the user id that the gin
// middleware put into the request's context.
func authenticated(r *http.Request) (string, error) {
	if user, ok := r.Context().Value(userKey{}).(string); ok && user != "" {
		return user, nil
	}
	return "", wshub.ErrUnauthorized
}

// requestLog logs each request when it is done (a WebSocket request is
// done when its connection ends).
func requestLog(log *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		log.Debug("request",
			slog.String("method", c.Request.Method),
			slog.String("path", c.Request.URL.Path),
			slog.Int("status", c.Writer.Status()),
			slog.Duration("took", time.Since(start)),
			slog.String("user", c.GetString("user")))
	}
}
