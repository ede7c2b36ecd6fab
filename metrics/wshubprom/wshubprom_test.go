package wshubprom_test

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/hubtest"
	"github.com/wshub/wshub/metrics/wshubprom"
)

func TestCollector_ExportsTheHubsCounters(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	c := wshubprom.NewCollector(srv.Hub)
	require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(`
# HELP wshub_connections Open WebSocket connections of this process.
# TYPE wshub_connections gauge
wshub_connections 0
# HELP wshub_messages_stored_total Messages stored by this process (a resend of a stored cid is not counted).
# TYPE wshub_messages_stored_total counter
wshub_messages_stored_total 0
`), "wshub_connections", "wshub_messages_stored_total"))

	alice, bob := srv.Dial(t, "alice"), srv.Dial(t, "bob")
	for _, cid := range []string{"a", "b", "a"} { // the second "a" is a resend
		alice.Send(t, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", CID: cid, Content: "hi"})
		alice.Expect(t, wshub.CmdReceipt)
	}
	bob.Expect(t, wshub.CmdSingle)
	alice.Send(t, &wshub.Frame{Cmd: wshub.CmdSingle})
	alice.Expect(t, wshub.CmdError)

	require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(`
# HELP wshub_connections Open WebSocket connections of this process.
# TYPE wshub_connections gauge
wshub_connections 2
# HELP wshub_connections_total WebSocket connections accepted.
# TYPE wshub_connections_total counter
wshub_connections_total 2
# HELP wshub_messages_stored_total Messages stored by this process (a resend of a stored cid is not counted).
# TYPE wshub_messages_stored_total counter
wshub_messages_stored_total 2
# HELP wshub_deliveries_total Frames of stored messages queued to connections.
# TYPE wshub_deliveries_total counter
wshub_deliveries_total 2
# HELP wshub_error_frames_total Error frames (cmd 40) sent, by code.
# TYPE wshub_error_frames_total counter
wshub_error_frames_total{code="400"} 1
`), "wshub_connections", "wshub_connections_total", "wshub_messages_stored_total", "wshub_deliveries_total", "wshub_error_frames_total"))

	// The latency histogram has every Append, and a registry takes the
	// collector as it is (its descriptors are consistent).
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == "wshub_store_append_seconds" {
			assert.EqualValues(t, 3, mf.GetMetric()[0].GetHistogram().GetSampleCount())
			return
		}
	}
	t.Fatal("no wshub_store_append_seconds")
}
