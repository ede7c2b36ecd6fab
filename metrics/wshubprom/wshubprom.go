// Package wshubprom exports a wshub.Hub's counters (Hub.Stats) to
// Prometheus. It is a module of its own, so that the hub itself does not
// depend on client_golang:
//
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(wshubprom.NewCollector(hub))
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// Every scrape takes one snapshot of the hub's counters; the collector
// keeps no state of its own.
package wshubprom

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wshub/wshub"
)

// Collector is a prometheus.Collector of one hub's Stats.
type Collector struct {
	hub *wshub.Hub

	connections, connectionsTotal, refused, stored, deliveries,
	errorFrames, closeFrames, overflows, appendSeconds *prometheus.Desc
}

// NewCollector returns a collector of h's counters. constLabels are added
// to every metric (to tell several hubs of one process apart, say).
func NewCollector(h *wshub.Hub, constLabels ...prometheus.Labels) *Collector {
	var cl prometheus.Labels
	if len(constLabels) > 0 {
		cl = constLabels[0]
	}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("wshub_"+name, help, labels, cl)
	}
	return &Collector{
		hub:              h,
		connections:      d("connections", "Open WebSocket connections of this process."),
		connectionsTotal: d("connections_total", "WebSocket connections accepted."),
		refused:          d("upgrades_refused_total", "Upgrade requests answered with an HTTP error, by status code.", "code"),
		stored:           d("messages_stored_total", "Messages stored by this process (a resend of a stored cid is not counted)."),
		deliveries:       d("deliveries_total", "Frames of stored messages queued to connections."),
		errorFrames:      d("error_frames_total", "Error frames (cmd 40) sent, by code.", "code"),
		closeFrames:      d("close_frames_total", "Close frames sent by the hub, by close code.", "code"),
		overflows:        d("send_queue_overflows_total", "Connections closed with 1013 because their send queue was full."),
		appendSeconds:    d("store_append_seconds", "Latency of Store.Append, in seconds."),
	}
}

// Describe sends the descriptors of every metric.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.connections, c.connectionsTotal, c.refused, c.stored, c.deliveries,
		c.errorFrames, c.closeFrames, c.overflows, c.appendSeconds} {
		ch <- d
	}
}

// Collect sends the metrics of one snapshot of the hub's counters.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.hub.Stats()
	ch <- prometheus.MustNewConstMetric(c.connections, prometheus.GaugeValue, float64(st.Connections))
	ch <- prometheus.MustNewConstMetric(c.connectionsTotal, prometheus.CounterValue, float64(st.ConnectionsTotal))
	ch <- prometheus.MustNewConstMetric(c.stored, prometheus.CounterValue, float64(st.MessagesStored))
	ch <- prometheus.MustNewConstMetric(c.deliveries, prometheus.CounterValue, float64(st.Deliveries))
	ch <- prometheus.MustNewConstMetric(c.overflows, prometheus.CounterValue, float64(st.QueueOverflows))
	byCode := func(d *prometheus.Desc, m map[int]uint64) {
		for code, n := range m {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(n), strconv.Itoa(code))
		}
	}
	byCode(c.refused, st.Refused)
	byCode(c.errorFrames, st.ErrorFrames)
	byCode(c.closeFrames, st.CloseFrames)
	h := st.StoreAppend
	buckets := make(map[float64]uint64, len(h.Bounds))
	for i, b := range h.Bounds {
		buckets[b] = h.Counts[i]
	}
	ch <- prometheus.MustNewConstHistogram(c.appendSeconds, h.Count, h.Sum, buckets)
}
