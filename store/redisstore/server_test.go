package redisstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// shared is the redis-server of this test package, started by TestMain.
// It is written once before the tests run and only read after.
var shared struct {
	srv *redisServer // nil when redis-server is missing or failed to start
	err error        // why srv is nil
}

func TestMain(m *testing.M) {
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "redisstore-test-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		shared.srv, shared.err = startRedis(dir, 0, "--appendonly", "no")
		if shared.srv != nil {
			defer shared.srv.stop()
		}
		return m.Run()
	}())
}

// needRedis returns the package's server, or skips the test when
// redis-server is not installed (fails under CI=true, and whenever it is
// installed but did not start).
func needRedis(tb testing.TB) *redisServer {
	tb.Helper()
	if shared.srv != nil {
		return shared.srv
	}
	if errors.Is(shared.err, exec.ErrNotFound) && os.Getenv("CI") != "true" {
		tb.Skipf("redis-server not available: %v", shared.err)
	}
	tb.Fatalf("redis-server: %v", shared.err)
	return nil
}

// redisServer is a redis-server process on 127.0.0.1. Its methods are
// called by one goroutine at a time.
type redisServer struct {
	addr string
	dir  string
	args []string
	path string // of the redis-server binary

	cmd *exec.Cmd
	// exited is closed by the goroutine waiting for cmd when the process
	// has exited.
	exited chan struct{}
	// log is the server's output: written by exec until exited is
	// closed, read only after.
	log *bytes.Buffer
}

// startRedis starts redis-server in the working directory dir, on port
// (0: a free port), with no RDB snapshots and the extra args, and waits
// until it answers PING.
func startRedis(dir string, port int, args ...string) (*redisServer, error) {
	path, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, err
	}
	var lastErr error
	for range 3 { // a free port may be taken before redis binds it
		p := port
		if p == 0 {
			if p, err = freePort(); err != nil {
				return nil, err
			}
		}
		s := &redisServer{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), dir: dir, args: args, path: path}
		if lastErr = s.start(); lastErr == nil {
			return s, nil
		}
		if port != 0 {
			break
		}
	}
	return nil, lastErr
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// start runs the process and waits until it answers PING.
func (s *redisServer) start() error {
	_, port, _ := net.SplitHostPort(s.addr)
	args := append([]string{
		"--port", port, "--bind", "127.0.0.1", "--dir", s.dir,
		"--save", "", "--daemonize", "no", "--loglevel", "warning",
	}, s.args...)
	s.log = new(bytes.Buffer)
	s.cmd = exec.Command(s.path, args...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.SysProcAttr = killWithParent()
	if err := s.cmd.Start(); err != nil {
		return err
	}
	s.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) {
		_ = cmd.Wait()
		close(exited)
	}(s.cmd, s.exited)

	c := redis.NewClient(&redis.Options{Addr: s.addr, MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-s.exited:
			return fmt.Errorf("redis-server %v exited at start: %s", args, s.log.String())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			s.kill()
			return fmt.Errorf("redis-server at %s did not answer PING in 10 s: %v: %s", s.addr, err, s.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill ends the process with SIGKILL, as a crash would, and waits for it.
func (s *redisServer) kill() {
	_ = s.cmd.Process.Kill()
	<-s.exited
}

// stop asks the process to shut down (SIGTERM) and waits for it; it kills
// it if it has not exited within 10 s.
func (s *redisServer) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.kill()
	}
}

// client returns a client of the server, closed at the end of the test.
func (s *redisServer) client(tb testing.TB) *redis.Client {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.addr, ContextTimeoutEnabled: true})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// prefixSeq numbers the key prefixes of the tests' stores.
var prefixSeq atomic.Int64

// newPrefix returns a key prefix no other store of this test run uses.
func newPrefix(name string) string {
	return fmt.Sprintf("test%d-%s:", prefixSeq.Add(1), name)
}

// keysWithPrefix returns the keys of the server starting with prefix,
// which must hold no glob characters.
func keysWithPrefix(tb testing.TB, c *redis.Client, prefix string) []string {
	tb.Helper()
	var keys []string
	iter := c.Scan(tb.Context(), 0, prefix+"*", 1000).Iterator()
	for iter.Next(tb.Context()) {
		keys = append(keys, iter.Val())
	}
	require.NoError(tb, iter.Err())
	return keys
}
