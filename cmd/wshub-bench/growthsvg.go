//go:build linux

package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
)

// The growth curves as an SVG file without dependencies: small charts side
// by side, x the stored messages on a log scale, one colour per store, the
// line style telling the metrics of a chart apart.

// chartSpec is one small chart.
type chartSpec struct {
	title  string
	unit   string
	logY   bool
	series []seriesSpec
}

// seriesSpec is a metric drawn in a chart, with its dash pattern.
type seriesSpec struct {
	metric string
	label  string
	dash   string // stroke-dasharray, "" for solid
}

var growthCharts = []chartSpec{
	{title: "fill throughput", unit: "msg/s", series: []seriesSpec{
		{metric: "fill_messages_per_s", label: "messages stored per s"}}},
	{title: "receipt latency at a fixed rate", unit: "ms", logY: true, series: []seriesSpec{
		{metric: "receipt_p50", label: "p50"},
		{metric: "receipt_p99", label: "p99", dash: "6,3"}}},
	{title: "history page (cmd 16), hot conversation", unit: "ms", logY: true, series: []seriesSpec{
		{metric: "history_newest_p50", label: "newest p50"},
		{metric: "history_deep_p50", label: "oldest p50", dash: "6,3"},
		{metric: "history_deep_p99", label: "oldest p99", dash: "2,3"}}},
	{title: "store size per message", unit: "bytes", series: []seriesSpec{
		{metric: "store_bytes_per_message", label: "file / Redis used_memory"},
		{metric: "hub_heap_bytes_per_message", label: "hub heap", dash: "6,3"}}},
	{title: "hub memory", unit: "MiB", logY: true, series: []seriesSpec{
		{metric: "hub_rss", label: "RSS"},
		{metric: "hub_rss_anon", label: "RSS without files", dash: "2,3"},
		{metric: "hub_heap_after_gc", label: "heap after GC", dash: "6,3"}}},
	{title: "hub CPU per message while filling", unit: "µs", series: []seriesSpec{
		{metric: "fill_hub_cpu_us_per_message", label: "CPU per message"}}},
}

var storeColors = map[string]string{"bolt": "#1f77b4", "redis": "#d62728", "mem": "#2ca02c"}

// growthPoint is one measurement point of a store.
type growthPoint struct {
	stored float64
	run    *Run
}

// growthSeries gathers the fill runs of the reports per store, in the
// order the stores first appear.
func growthSeries(reps []*Report) (stores []string, pts map[string][]growthPoint) {
	pts = map[string][]growthPoint{}
	for _, rep := range reps {
		for _, r := range rep.Runs {
			v, ok := r.metric("stored_messages")
			if !ok || v <= 0 {
				continue
			}
			s := r.Params["store"]
			if _, seen := pts[s]; !seen {
				stores = append(stores, s)
			}
			pts[s] = append(pts[s], growthPoint{stored: v, run: r})
		}
	}
	for _, s := range stores {
		slices.SortFunc(pts[s], func(a, b growthPoint) int { return int(a.stored - b.stored) })
	}
	return stores, pts
}

func writeGrowthSVG(path string, reps []*Report) error {
	stores, pts := growthSeries(reps)
	if len(stores) == 0 {
		return errors.New("growth svg: no fill runs (stored_messages) in the report")
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	renderGrowthSVG(f, stores, pts)
	return f.Close()
}

const (
	chartW, chartH       = 330, 230
	padL, padR           = 58, 12
	padT, padB           = 34, 38
	chartCols            = 3
	legendH              = 34
	svgFont              = `font-family="sans-serif"`
	minLogValue          = 1e-3
	axisColor, gridColor = "#444", "#ddd"
)

func renderGrowthSVG(w io.Writer, stores []string, pts map[string][]growthPoint) {
	rows := (len(growthCharts) + chartCols - 1) / chartCols
	W, H := chartCols*chartW, rows*chartH+legendH
	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" %s font-size="11">`+"\n", W, H, W, H, svgFont)
	fmt.Fprintf(w, `<rect width="%d" height="%d" fill="white"/>`+"\n", W, H)
	// x range: every store's points.
	xmin, xmax := math.Inf(1), math.Inf(-1)
	for _, s := range stores {
		for _, p := range pts[s] {
			xmin, xmax = math.Min(xmin, p.stored), math.Max(xmax, p.stored)
		}
	}
	lx0, lx1 := math.Floor(math.Log10(xmin)), math.Ceil(math.Log10(xmax))
	if lx1 <= lx0 {
		lx1 = lx0 + 1
	}
	for i, ch := range growthCharts {
		ox, oy := (i%chartCols)*chartW, (i/chartCols)*chartH
		renderChart(w, ch, ox, oy, lx0, lx1, stores, pts)
	}
	// Legend: the stores' colours.
	y := rows*chartH + 20
	x := 12
	fmt.Fprintf(w, `<text x="%d" y="%d">x: messages stored (log scale). Colour: store —</text>`+"\n", x, y)
	x += 290
	for _, s := range stores {
		fmt.Fprintf(w, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2.5"/>`+"\n", x, y-4, x+22, y-4, colorOf(s))
		fmt.Fprintf(w, `<text x="%d" y="%d">%s</text>`+"\n", x+26, y, xmlEscape(s))
		x += 80
	}
	fmt.Fprintln(w, `</svg>`)
}

func colorOf(store string) string {
	if c, ok := storeColors[store]; ok {
		return c
	}
	return "#555"
}

func renderChart(w io.Writer, ch chartSpec, ox, oy int, lx0, lx1 float64, stores []string, pts map[string][]growthPoint) {
	pl, pt := float64(ox+padL), float64(oy+padT)
	pw, ph := float64(chartW-padL-padR), float64(chartH-padT-padB)
	// y range.
	ymin, ymax := math.Inf(1), math.Inf(-1)
	for _, s := range stores {
		for _, p := range pts[s] {
			for _, se := range ch.series {
				if v, ok := p.run.metric(se.metric); ok && !math.IsNaN(v) && !math.IsInf(v, 0) {
					if ch.logY && v <= 0 {
						v = minLogValue
					}
					ymin, ymax = math.Min(ymin, v), math.Max(ymax, v)
				}
			}
		}
	}
	fmt.Fprintf(w, `<text x="%d" y="%d" font-weight="bold">%s (%s)</text>`+"\n", ox+padL, oy+14, xmlEscape(ch.title), xmlEscape(ch.unit))
	// The series' legend under the title.
	lx := ox + padL
	for _, se := range ch.series {
		fmt.Fprintf(w, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="1.5"%s/>`+"\n", lx, oy+24, lx+18, oy+24, axisColor, dashAttr(se.dash))
		fmt.Fprintf(w, `<text x="%d" y="%d" font-size="10">%s</text>`+"\n", lx+21, oy+27, xmlEscape(se.label))
		lx += 28 + 6*len(se.label)
	}
	if math.IsInf(ymin, 1) {
		fmt.Fprintf(w, `<text x="%.0f" y="%.0f" fill="#888">no data</text>`+"\n", pl+pw/2-20, pt+ph/2)
		return
	}
	var ly0, ly1 float64
	var yticks []float64
	if ch.logY {
		ly0, ly1 = math.Floor(math.Log10(ymin)), math.Ceil(math.Log10(ymax))
		if ly1 <= ly0 {
			ly1 = ly0 + 1
		}
		for e := ly0; e <= ly1; e++ {
			yticks = append(yticks, math.Pow(10, e))
		}
	} else {
		step := niceStep(ymax / 4)
		ly0, ly1 = 0, math.Max(step, math.Ceil(ymax/step)*step)
		for v := 0.0; v <= ly1+step/2; v += step {
			yticks = append(yticks, v)
		}
	}
	ypos := func(v float64) float64 {
		if ch.logY {
			v = math.Log10(math.Max(v, minLogValue))
		}
		return pt + ph - (v-ly0)/(ly1-ly0)*ph
	}
	xpos := func(v float64) float64 { return pl + (math.Log10(v)-lx0)/(lx1-lx0)*pw }
	// Grid and axes.
	for _, t := range yticks {
		y := ypos(t)
		fmt.Fprintf(w, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`+"\n", pl, y, pl+pw, y, gridColor)
		fmt.Fprintf(w, `<text x="%.1f" y="%.1f" text-anchor="end" font-size="10">%s</text>`+"\n", pl-4, y+3, tickLabel(t))
	}
	for e := lx0; e <= lx1; e++ {
		for _, m := range []float64{1, 3} {
			v := m * math.Pow(10, e)
			if math.Log10(v) > lx1+1e-9 {
				continue
			}
			x := xpos(v)
			fmt.Fprintf(w, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`+"\n", x, pt, x, pt+ph, gridColor)
			fmt.Fprintf(w, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="10">%s</text>`+"\n", x, pt+ph+13, countLabel(int64(v)))
		}
	}
	fmt.Fprintf(w, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="%s"/>`+"\n", pl, pt, pw, ph, axisColor)
	if ch.logY {
		fmt.Fprintf(w, `<text x="%.1f" y="%.1f" font-size="9" fill="#666">log scale</text>`+"\n", pl+pw-42, pt+ph+26)
	}
	// Lines.
	for _, s := range stores {
		for _, se := range ch.series {
			var b strings.Builder
			n := 0
			for _, p := range pts[s] {
				v, ok := p.run.metric(se.metric)
				if !ok || math.IsNaN(v) || math.IsInf(v, 0) {
					continue
				}
				fmt.Fprintf(&b, "%.1f,%.1f ", xpos(p.stored), ypos(v))
				n++
			}
			if n == 0 {
				continue
			}
			fmt.Fprintf(w, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s/>`+"\n", strings.TrimSpace(b.String()), colorOf(s), dashAttr(se.dash))
			for _, p := range pts[s] {
				if v, ok := p.run.metric(se.metric); ok && !math.IsNaN(v) && !math.IsInf(v, 0) {
					fmt.Fprintf(w, `<circle cx="%.1f" cy="%.1f" r="2.5" fill="%s"><title>%s %s at %s: %s %s</title></circle>`+"\n",
						xpos(p.stored), ypos(v), colorOf(s), xmlEscape(s), xmlEscape(se.label), countLabel(int64(p.stored)), formatValue(v), xmlEscape(ch.unit))
				}
			}
		}
	}
}

func dashAttr(d string) string {
	if d == "" {
		return ""
	}
	return ` stroke-dasharray="` + d + `"`
}

// niceStep rounds v up to 1, 2 or 5 times a power of ten.
func niceStep(v float64) float64 {
	if v <= 0 {
		return 1
	}
	e := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*e >= v {
			return m * e
		}
	}
	return 10 * e
}

func tickLabel(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'g', 3, 64) + "M"
	case v >= 1e4:
		return strconv.FormatFloat(v/1e3, 'g', 3, 64) + "k"
	case v >= 1:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}

// growthPlotMain draws the fill runs of saved growth reports (-json
// files) into one SVG: several stores in one chart.
func growthPlotMain(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("growthplot", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("svg", "growth.svg", "the SVG file to write")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "usage: wshub-bench growthplot -svg FILE REPORT.json...")
		return errUsage
	}
	var reps []*Report
	for _, p := range fs.Args() {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var rep Report
		if err := json.Unmarshal(b, &rep); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		reps = append(reps, &rep)
	}
	return writeGrowthSVG(*out, reps)
}
