//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// hubProc is the hub a scenario drives: a child process the tool started,
// or a hub given by -target (with its PID from -hub-pid, if known).
type hubProc struct {
	url  string // ws://HOST:PORT/ws
	base string // http://HOST:PORT, for the control endpoints
	pid  int    // 0 when unknown: no RSS or CPU readings
	cmd  *exec.Cmd
	// exited is closed by the goroutine that waits for cmd; waitErr is
	// set before.
	exited  chan struct{}
	waitErr error
}

// hubConfig says which hub a scenario uses.
type hubConfig struct {
	target    string // ws:// URL of a running hub; "" spawns one
	pid       int    // PID of the target, for readings
	storeKind string // mem or bolt, for a spawned hub
	dbPath    string
	sendQueue int
	pingEvery time.Duration
	extraArgs []string
}

// startHub spawns "wshub-bench serve" (or takes the target) and returns
// once the hub accepts connections.
func startHub(ctx context.Context, c hubConfig) (*hubProc, error) {
	if c.target != "" {
		u, err := checkTarget(c.target)
		if err != nil {
			return nil, err
		}
		return &hubProc{url: u.String(), base: "http://" + u.Host, pid: c.pid}, nil
	}
	args := []string{"serve", "-addr", "127.0.0.1:0", "-store", c.storeKind}
	if c.dbPath != "" {
		args = append(args, "-db", c.dbPath)
	}
	if c.sendQueue > 0 {
		args = append(args, "-send-queue", strconv.Itoa(c.sendQueue))
	}
	if c.pingEvery > 0 {
		args = append(args, "-ping-interval", c.pingEvery.String())
	}
	args = append(args, c.extraArgs...)
	cmd, err := selfCommand(args...)
	if err != nil {
		return nil, err
	}
	return spawnHub(ctx, cmd, os.Stderr, func(line string) (string, bool) {
		if !strings.HasPrefix(line, servingPrefix) {
			return "", false
		}
		return strings.Fields(strings.TrimPrefix(line, servingPrefix))[0], true
	})
}

// spawnHub starts cmd, a hub that prints a line saying where it serves
// once it accepts connections, and returns once parse found the hub's
// ws:// URL in that first line of its standard output. The rest of its
// standard output and its standard error go to logs.
func spawnHub(ctx context.Context, cmd *exec.Cmd, logs io.Writer, parse func(line string) (wsURL string, ok bool)) (*hubProc, error) {
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	h := &hubProc{cmd: cmd, pid: cmd.Process.Pid, exited: make(chan struct{})}
	lines := make(chan string, 1) // the serving line; written once by the reader below
	go func() {
		br := bufio.NewReader(out)
		line, err := br.ReadString('\n')
		if err == nil {
			lines <- line
		}
		close(lines)
		_, _ = io.Copy(logs, br)
	}()
	go func() {
		h.waitErr = cmd.Wait()
		close(h.exited)
	}()
	select {
	case line, ok := <-lines:
		wsURL, parsed := parse(line)
		if !ok || !parsed {
			h.kill()
			return nil, fmt.Errorf("hub did not start (first line %q)", line)
		}
		h.url = wsURL
		u, err := url.Parse(h.url)
		if err != nil {
			h.kill()
			return nil, err
		}
		h.base = "http://" + u.Host
		return h, nil
	case <-time.After(30 * time.Second):
		h.kill()
		return nil, errors.New("hub did not start within 30 s")
	case <-ctx.Done():
		h.kill()
		return nil, ctx.Err()
	}
}

// selfCommand returns a command that runs this program with args as a
// child that dies with the tool.
func selfCommand(args ...string) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd, nil
}

// checkTarget parses a -target URL and refuses anything but loopback.
func checkTarget(target string) (*url.URL, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("-target: %w", err)
	}
	if u.Scheme != "ws" {
		return nil, fmt.Errorf("-target %s: want a ws:// URL", target)
	}
	if err := checkLoopback(u.Hostname()); err != nil {
		return nil, fmt.Errorf("-target %s: %w", target, err)
	}
	return u, nil
}

// checkLoopback accepts a host that is, or resolves only to, 127.0.0.0/8
// or ::1.
func checkLoopback(host string) error {
	ips, err := net.LookupIP(host)
	if err != nil {
		return err
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return fmt.Errorf("%s is not a loopback address: the tool sends traffic to 127.0.0.0/8 only", ip)
		}
	}
	return nil
}

// stop ends a spawned hub with SIGTERM (it closes every connection with
// 1001 and its store), waiting up to 20 s before killing it. A target hub
// is left alone.
func (h *hubProc) stop() error {
	if h.cmd == nil {
		return nil
	}
	select {
	case <-h.exited:
		return nil // killed already
	default:
	}
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.exited:
		return h.waitErr
	case <-time.After(20 * time.Second):
		h.kill()
		return errors.New("hub did not exit within 20 s of SIGTERM")
	}
}

// kill ends a spawned hub with SIGKILL, as a crash would, and waits for it.
func (h *hubProc) kill() {
	if h.cmd == nil {
		return
	}
	_ = h.cmd.Process.Kill()
	<-h.exited
}

// rss returns the hub's resident set size in bytes, from /proc/PID/status.
func (h *hubProc) rss() (int64, bool) {
	if h.pid == 0 {
		return 0, false
	}
	return procRSS(h.pid)
}

// cpu returns the CPU time (user + system) the hub used so far.
func (h *hubProc) cpu() (time.Duration, bool) {
	if h.pid == 0 {
		return 0, false
	}
	return procCPU(h.pid)
}

// procRSS reads VmRSS of process pid.
func procRSS(pid int) (int64, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				return 0, false
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, false
			}
			return kb << 10, true
		}
	}
	return 0, false
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat
// (100 on every Linux architecture the tool runs on).
const clockTicks = 100

// procCPU reads utime + stime of process pid from /proc/PID/stat.
func procCPU(pid int) (time.Duration, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// The command name (field 2) may hold spaces; fields after it start
	// with the state (field 3), so utime (14) and stime (15) are at 11, 12.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, false
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	stt, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(ut+stt) * time.Second / clockTicks, true
}

// machineBusy returns the CPU time all CPUs of the machine spent busy
// (user, nice, system, irq, softirq, steal), from /proc/stat.
func machineBusy() (time.Duration, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, false
	}
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, false
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / clockTicks, true
}

// control calls a control endpoint of a hub started by serve and decodes
// its JSON answer into v (if not nil).
func (h *hubProc) control(ctx context.Context, method, path string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, h.base+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: HTTP %d (is the target a wshub-bench serve?)", method, path, resp.StatusCode)
	}
	if v == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// startProfile starts a CPU profile of a hub started by serve; the
// returned function stops it and writes it to path.
func (h *hubProc) startProfile(ctx context.Context, path string) (stop func() error, err error) {
	if err := h.control(ctx, http.MethodPost, pathProfStart, nil); err != nil {
		return nil, err
	}
	return func() error {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.base+pathProfStop, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("cpu profile: HTTP %d", resp.StatusCode)
		}
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, resp.Body)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	}, nil
}
