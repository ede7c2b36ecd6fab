//go:build linux

// Command wshub-bench is the load tool of wshub: it starts a hub in a
// process of its own (or targets one that runs already), drives it with
// thousands of WebSocket connections over loopback, and reports what the
// hub achieved.
//
// Usage:
//
//	wshub-bench serve    [flags]   run a hub for the scenarios (prints its address and PID)
//	wshub-bench idle     [flags]   C idle connections: connect rate, hub RSS per connection
//	wshub-bench fanout   [flags]   R rooms x M members, one publisher per room at a fixed rate
//	wshub-bench saturate [flags]   the same, publishers as fast as the hub takes them
//	wshub-bench direct   [flags]   pairs exchanging direct messages (memory and bolt store, and a forwarder as a yardstick)
//	wshub-bench storm    [flags]   drop every connection at once, time until all are back
//	wshub-bench slowloris [flags]  C connections each holding a partial frame, dripped a byte at a time
//	wshub-bench soak     [flags]   steady traffic with churn for minutes: does the hub's RSS, goroutines, fds level off
//	wshub-bench spread   [flags]   several hub processes sharing Redis, every message crossing them: CPU per delivered message of each
//	wshub-bench growth   [flags]   how cost grows with the data: a store filled to millions of messages, a big pending queue, big rooms
//
// Every scenario is bounded in count and in time (-duration, -timeout),
// prints a progress line to standard error every second and, at the end, a
// Markdown table and a JSON document on standard output (the JSON goes to
// the file named by -json instead, when given). Run a subcommand with -h
// for its flags; docs/benchmarks.md shows the command lines behind the
// published figures.
//
// By default a scenario spawns "wshub-bench serve" as a child process, so
// that the RSS and CPU time it reads from /proc/PID belong to the hub
// alone. With -target ws://HOST:PORT/ws it drives a hub that runs already;
// -hub-pid names that hub's process for the RSS and CPU readings.
//
// Traffic goes to 127.0.0.0/8 only: the tool refuses any other target.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// childEnv marks a process started by the tool itself (a hub or an idle
// worker), so that a test binary standing in for the tool knows to run
// the subcommand instead of the tests.
const childEnv = "WSHUB_BENCH_CHILD"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, errUsage) {
			fmt.Fprintln(os.Stderr, "wshub-bench:", err)
		}
		os.Exit(2)
	}
}

// errUsage is returned after a usage message was printed.
var errUsage = errors.New("usage")

const usage = `usage: wshub-bench <command> [flags]

commands:
  serve     run a hub for the scenarios (prints its address and PID)
  idle      open C idle connections: connect rate, hub RSS per connection
  fanout    R rooms x M members, one publisher per room at a fixed rate
  saturate  R rooms x M members, publishers as fast as the hub takes them
  direct    pairs exchanging direct messages (memory and bolt store; -store
            floor: a forwarder without a store, as a yardstick; floorstore:
            the same storing in a memory store; -rate: fixed rate)
  storm     drop every connection at once and time the reconnection
  slowloris C connections each holding a partial frame, dripped a byte at a
            time: how long the hub holds them, hub RSS per connection
  soak      steady direct and room traffic with users leaving and coming
            back, for -duration: hub RSS, goroutines and descriptors over
            time, whether they level off; lost receipted messages
  spread    several hub processes sharing one store (Redis), each direct
            message from a user on one to a user on the next, rooms spread
            over all: CPU per delivered message of each process, latency,
            lost receipted messages
  growth    how cost grows with the data (issue 14): -case fill fills a
            store (-store bolt, mem or redis) to -to messages over -convs
            conversations, measuring at -points: throughput, receipt and
            history latency, store bytes and hub memory per message;
            -case pending, room, rooms: a user with -pending queued
            messages connecting, a room of -members, -rooms small rooms
  growthplot  draw saved growth reports (-json) into one SVG (-svg)
  worker    (internal) hold idle connections for the idle scenario

Run "wshub-bench <command> -h" for the flags of a command.
`

// run executes the subcommand named by args[0].
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	raiseNoFile()
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return serveMain(ctx, rest, stdout, stderr)
	case "worker":
		return workerMain(ctx, rest, os.Stdin, stdout, stderr)
	case "idle", "fanout", "saturate", "direct", "storm", "slowloris", "spread":
		return scenarioMain(ctx, cmd, rest, stdout, stderr)
	case "soak":
		return soakMain(ctx, rest, stdout, stderr)
	case "growth":
		return growthMain(ctx, rest, stdout, stderr)
	case "growthplot":
		return growthPlotMain(rest, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "wshub-bench: unknown command %q\n\n%s", cmd, usage)
	return errUsage
}

// raiseNoFile lifts the soft limit of open descriptors to the hard limit:
// every connection costs one.
func raiseNoFile() {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
}

// noFileLimit returns the soft limit of open descriptors.
func noFileLimit() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 1024
	}
	return int(lim.Cur)
}
