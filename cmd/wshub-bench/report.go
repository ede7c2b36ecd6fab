//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Report is the result of one invocation of a scenario: one or more runs
// (e.g. saturate with and without batch=1), each against a fresh hub when
// the tool spawns it.
type Report struct {
	Scenario string  `json:"scenario"`
	Machine  Machine `json:"machine"`
	Started  string  `json:"started"`
	Runs     []*Run  `json:"runs"`
}

// Machine describes where the figures were taken.
type Machine struct {
	CPUs      int    `json:"cpus"`
	MemTotal  string `json:"mem_total"`
	GoVersion string `json:"go_version"`
	NoFile    int    `json:"nofile"`
}

// Run is one measured run: its parameters and its metrics, in order.
type Run struct {
	Name    string            `json:"name"`
	Params  map[string]string `json:"params"`
	Metrics []Metric          `json:"metrics"`
	// LoadBefore and LoadAfter are the machine's 1-minute load averages
	// when the run started and ended: figures taken while other work ran
	// on the machine are worth less.
	LoadBefore float64 `json:"load_before"`
	LoadAfter  float64 `json:"load_after"`
	// Errors lists what went wrong (at most a few of each kind).
	Errors []string `json:"errors,omitempty"`
	// Notes says what the figures alone do not (an outcome, a first
	// error seen that is not the tool's failure).
	Notes []string `json:"notes,omitempty"`
	// Samples follow the run over time, for the scenarios that hold
	// connections for a while (slowloris).
	Samples []Sample `json:"samples,omitempty"`
}

// Sample is the state of a run at one moment.
type Sample struct {
	T      float64 `json:"t_s"`                   // seconds since the run's start
	Open   int64   `json:"open"`                  // connections open
	Closed int64   `json:"closed_by_hub"`         // connections the hub ended so far
	HubRSS float64 `json:"hub_rss_mib,omitempty"` // 0 when unknown
}

// Metric is one figure of a run.
type Metric struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit,omitempty"`
}

func newRun(name string) *Run {
	return &Run{Name: name, Params: map[string]string{}, LoadBefore: loadAvg()}
}

// add appends a metric.
func (r *Run) add(name string, v float64, unit string) {
	r.Metrics = append(r.Metrics, Metric{Name: name, Value: v, Unit: unit})
}

// addDur appends a duration metric in milliseconds.
func (r *Run) addDur(name string, d time.Duration) {
	r.add(name, float64(d)/float64(time.Millisecond), "ms")
}

// param records a parameter.
func (r *Run) param(name string, v any) { r.Params[name] = fmt.Sprint(v) }

// errorf records an error.
func (r *Run) errorf(format string, args ...any) {
	if len(r.Errors) < 20 {
		r.Errors = append(r.Errors, fmt.Sprintf(format, args...))
	}
}

// notef records a note.
func (r *Run) notef(format string, args ...any) {
	if len(r.Notes) < 20 {
		r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
	}
}

// metric returns the value of the named metric.
func (r *Run) metric(name string) (float64, bool) {
	for _, m := range r.Metrics {
		if m.Name == name {
			return m.Value, true
		}
	}
	return 0, false
}

func (r *Run) finish() { r.LoadAfter = loadAvg() }

// loadAvg returns the 1-minute load average, or -1.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), NoFile: noFileLimit()}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				m.MemTotal = strings.TrimSpace(rest)
			}
		}
	}
	return m
}

// writeMarkdown writes the report as a Markdown table: one row per
// metric, one column per run.
func (rep *Report) writeMarkdown(w io.Writer) {
	fmt.Fprintf(w, "### %s (%d CPUs, %s, %s)\n\n", rep.Scenario, rep.Machine.CPUs, rep.Machine.MemTotal, rep.Machine.GoVersion)
	fmt.Fprint(w, "| |")
	for _, r := range rep.Runs {
		fmt.Fprintf(w, " %s |", r.Name)
	}
	fmt.Fprint(w, "\n|---|")
	for range rep.Runs {
		fmt.Fprint(w, "---:|")
	}
	fmt.Fprintln(w)
	// Parameters first, then metrics, in the order of the first run that
	// has them.
	var params []string
	seen := map[string]bool{}
	for _, r := range rep.Runs {
		for _, k := range sortedKeys(r.Params) {
			if !seen[k] {
				seen[k] = true
				params = append(params, k)
			}
		}
	}
	for _, k := range params {
		fmt.Fprintf(w, "| %s |", k)
		for _, r := range rep.Runs {
			fmt.Fprintf(w, " %s |", r.Params[k])
		}
		fmt.Fprintln(w)
	}
	// A metric only some runs have (spread's per-process rows, the bolt
	// run's durability check) goes after the one before it in its run.
	var names []string
	units := map[string]string{}
	for _, r := range rep.Runs {
		at := 0 // where the run's next new metric goes
		for _, m := range r.Metrics {
			if _, ok := units[m.Name]; ok {
				at = slices.Index(names, m.Name) + 1
				continue
			}
			units[m.Name] = m.Unit
			names = slices.Insert(names, at, m.Name)
			at++
		}
	}
	for _, n := range names {
		label := "**" + n + "**"
		if u := units[n]; u != "" {
			label += " (" + u + ")"
		}
		fmt.Fprintf(w, "| %s |", label)
		for _, r := range rep.Runs {
			if v, ok := r.metric(n); ok {
				fmt.Fprintf(w, " %s |", formatValue(v))
			} else {
				fmt.Fprint(w, " – |")
			}
		}
		fmt.Fprintln(w)
	}
	fmt.Fprint(w, "| load average (1 min) before / after |")
	for _, r := range rep.Runs {
		fmt.Fprintf(w, " %.2f / %.2f |", r.LoadBefore, r.LoadAfter)
	}
	fmt.Fprintln(w)
	for _, r := range rep.Runs {
		for _, n := range r.Notes {
			fmt.Fprintf(w, "\n- %s (note): %s", r.Name, n)
		}
		for _, e := range r.Errors {
			fmt.Fprintf(w, "\n- %s: %s", r.Name, e)
		}
	}
	fmt.Fprintln(w)
	for _, r := range rep.Runs {
		if len(r.Samples) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n#### %s over time\n\n| t (s) | open | closed by hub | hub RSS (MiB) |\n|---:|---:|---:|---:|\n", r.Name)
		for _, sm := range r.Samples {
			rss := "–"
			if sm.HubRSS > 0 {
				rss = strconv.FormatFloat(sm.HubRSS, 'f', 1, 64)
			}
			fmt.Fprintf(w, "| %.1f | %d | %d | %s |\n", sm.T, sm.Open, sm.Closed, rss)
		}
	}
}

// formatValue prints integers without decimals and others with three
// significant decimals.
func formatValue(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	switch a := math.Abs(v); {
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	// Insertion sort: a handful of keys.
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

// writeJSON writes the report as indented JSON.
func (rep *Report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// progress prints a status line every second until stop is closed.
type progress struct {
	w     io.Writer
	start time.Time
	stop  chan struct{} // closed by end
	done  chan struct{} // closed by the printing goroutine
}

// startProgress calls line every interval and prints its result,
// prefixed with the elapsed time. An interval of 0 or less prints
// nothing.
func startProgress(w io.Writer, interval time.Duration, name string, line func() string) *progress {
	p := &progress{w: w, start: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	if interval <= 0 {
		close(p.done)
		return p
	}
	go func() {
		defer close(p.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				fmt.Fprintf(p.w, "[%s %5.1fs] %s\n", name, time.Since(p.start).Seconds(), line())
			}
		}
	}()
	return p
}

func (p *progress) end() {
	close(p.stop)
	<-p.done
}
