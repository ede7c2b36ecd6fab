// Package redistest starts real redis-server processes for tests.
//
// A test that needs Redis calls Start; where redis-server is not installed
// the test is skipped, except under CI=true, where it fails: CI never
// passes by skipping.
package redistest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is a redis-server process on 127.0.0.1. Its methods are called
// by one goroutine at a time.
type Server struct {
	// Addr is host:port of the server.
	Addr string
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

// Start starts a redis-server for the test, in a temporary directory, on
// a free port, with no RDB snapshots and the extra args, and stops it when
// the test ends. It skips the test when redis-server is missing, unless
// CI=true.
func Start(tb testing.TB, args ...string) *Server {
	tb.Helper()
	s, err := StartIn(tb.TempDir(), 0, args...)
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) && os.Getenv("CI") != "true" {
			tb.Skipf("redis-server not available: %v", err)
		}
		tb.Fatalf("redis-server: %v", err)
	}
	tb.Cleanup(s.Stop)
	return s
}

// StartIn starts redis-server in the working directory dir, on port (0:
// a free port), with no RDB snapshots and the extra args, and waits until
// it answers PING. The caller stops it.
func StartIn(dir string, port int, args ...string) (*Server, error) {
	path, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, err
	}
	var lastErr error
	for range 3 { // a free port may be taken before redis binds it
		p := port
		if p == 0 {
			if p, err = FreePort(); err != nil {
				return nil, err
			}
		}
		s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), dir: dir, args: args, path: path}
		if lastErr = s.start(); lastErr == nil {
			return s, nil
		}
		if port != 0 {
			break
		}
	}
	return nil, lastErr
}

// FreePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// start runs the process and waits until it answers PING.
func (s *Server) start() error {
	_, port, _ := net.SplitHostPort(s.Addr)
	args := append([]string{
		"--port", port, "--bind", "127.0.0.1", "--dir", s.dir,
		"--save", "", "--daemonize", "no", "--loglevel", "warning",
	}, s.args...)
	s.log = new(bytes.Buffer)
	s.cmd = exec.Command(s.path, args...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.SysProcAttr = dieWithParent()
	if err := s.cmd.Start(); err != nil {
		return err
	}
	s.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) {
		_ = cmd.Wait()
		close(exited)
	}(s.cmd, s.exited)

	c := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1, DialTimeout: time.Second})
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
			s.Kill()
			return fmt.Errorf("redis-server at %s did not answer PING in 10 s: %v: %s", s.Addr, err, s.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Restart starts the server again on the same address and directory
// after Kill or Stop.
func (s *Server) Restart() error { return s.start() }

// Kill ends the process with SIGKILL, as a crash would, and waits for it.
func (s *Server) Kill() {
	_ = s.cmd.Process.Kill()
	<-s.exited
}

// Pause stops the process with SIGSTOP: it holds its connections open but
// answers nothing (a hung server, or a replica that stopped acknowledging)
// until Resume.
func (s *Server) Pause() { _ = s.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume continues a process stopped by Pause (SIGCONT).
func (s *Server) Resume() { _ = s.cmd.Process.Signal(syscall.SIGCONT) }

// Stop asks the process to shut down (SIGTERM) and waits for it; it kills
// it if it has not exited within 10 s. Stopping a stopped server does
// nothing.
func (s *Server) Stop() {
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGCONT) // if paused
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.Kill()
	}
}

// Log returns what the server printed; call it after the server exited.
func (s *Server) Log() string { return s.log.String() }

// Client returns a client of the server, closed at the end of the test.
func (s *Server) Client(tb testing.TB) *redis.Client {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr, ContextTimeoutEnabled: true})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}
