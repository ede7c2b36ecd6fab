package redisstore_test

import (
	"fmt"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/hubtest"
	"github.com/wshub/wshub/store/redisstore"
)

// The pending-queue case of issue 10 over real WebSockets on Redis (the
// root package runs it on the memory and bbolt stores): alice's receipted
// messages to an offline bob survive mallory's flood, which gets error
// 507 past her share, stores nothing of the refused frames, and bob
// receives alice's messages, then mallory's share, in order.
func TestHubs_PendingFloodDoesNotEraseReceiptedMessages(t *testing.T) {
	const maxPending, perSender = 50, 10
	st, _ := newStore(t, redisstore.Options{Prefix: newPrefix("pending"), MaxPending: maxPending, MaxPendingPerSender: perSender})
	srv := hubtest.New(t, wshub.Options{Store: st, Logger: slog.New(slog.DiscardHandler)})
	waitReady(t, srv)

	burst := func(c *hubtest.Conn, prefix string, n int) []*wshub.Frame {
		for i := 1; i <= n; i++ {
			cid := fmt.Sprintf("%s-%d", prefix, i)
			c.Send(t, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", CID: cid, Content: cid})
		}
		out := make([]*wshub.Frame, n)
		for i := range out {
			out[i] = c.Recv(t)
			require.Equal(t, fmt.Sprintf("%s-%d", prefix, i+1), out[i].CID)
		}
		return out
	}
	var want []string
	for _, f := range burst(srv.Dial(t, "alice"), "a", 5) {
		require.Equal(t, wshub.CmdReceipt, f.Cmd)
		want = append(want, f.ID)
	}
	mallory := srv.Dial(t, "mallory")
	for i, f := range burst(mallory, "m", 3*maxPending) {
		if i < perSender {
			require.Equal(t, wshub.CmdReceipt, f.Cmd, "%+v", f)
			want = append(want, f.ID)
			continue
		}
		require.Equal(t, wshub.CmdError, f.Cmd, "%+v", f)
		assert.Equal(t, 507, f.Code)
	}
	mallory.Send(t, &wshub.Frame{Cmd: wshub.CmdHistory, DstID: "bob", Limit: 3 * maxPending})
	assert.Len(t, mallory.Expect(t, wshub.CmdHistory).Items, perSender, "nothing of the refused frames is stored")

	bob := srv.Dial(t, "bob", "ack=1")
	var got []string
	for range want {
		got = append(got, bob.Expect(t, wshub.CmdSingle).ID)
	}
	assert.Equal(t, want, got)
}
