package boltstore_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub/store"
	"github.com/wshub/wshub/store/boltstore"
)

// retentionChildEnv names the bbolt file a child of
// TestCrash_RetentionSurvivesSIGKILL writes.
const retentionChildEnv = "WSHUB_BOLTSTORE_RETENTION_CHILD"

// retentionPairs is the number of direct conversations the child writes
// in turn.
const retentionPairs = 40

// TestCrash_RetentionSurvivesSIGKILL: a process appends to 40 direct
// conversations with a MaxAge of 20 ms, so that expiry passes (of 5
// records each), checkpoints and appends interleave, and queues every 7th
// message for a user who never acks; it is killed with SIGKILL at some
// point. The file is consistent (histories, log, queues, inboxes), every
// queued message is still queued, and no conversation repeats a seq it
// gave before the kill, whether its messages expired or not.
func TestCrash_RetentionSurvivesSIGKILL(t *testing.T) {
	for run, kill := range []int{300, 900, 1700} {
		t.Run(fmt.Sprint(kill), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "hub.db")
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperRetentionProcess$", "-test.count=1")
			cmd.Env = append(os.Environ(), retentionChildEnv+"="+path)
			stdout, err := cmd.StdoutPipe()
			require.NoError(t, err)
			var stderr lockedBuffer
			cmd.Stderr = &stderr
			require.NoError(t, cmd.Start())
			defer func() {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				if t.Failed() {
					t.Logf("child stderr:\n%s", stderr.String())
				}
			}()

			lastSeq := map[string]uint64{} // receipted
			idAt := map[string]string{}    // conv/seq -> id
			var queued []string
			sc := bufio.NewScanner(stdout)
			for n := 0; n < kill+run && sc.Scan(); n++ {
				var conv, id string
				var seq uint64
				var q int
				_, err := fmt.Sscanf(sc.Text(), "OK %s %d %s %d", &conv, &seq, &id, &q)
				require.NoError(t, err, "line %q", sc.Text())
				require.Greater(t, seq, lastSeq[conv], "%s: seqs increase", conv)
				lastSeq[conv] = seq
				idAt[fmt.Sprint(conv, "/", seq)] = id
				if q == 1 {
					queued = append(queued, id)
				}
			}
			require.Len(t, lastSeq, retentionPairs, "the child wrote: %s", stderr.String())
			require.NoError(t, cmd.Process.Kill())
			_ = cmd.Wait()

			require.NoError(t, boltstore.CheckQueues(path), "the file after SIGKILL")
			s, err := boltstore.Open(path, boltstore.Options{})
			require.NoError(t, err)
			defer func() { _ = s.Close() }()
			pend, err := s.Pending(t.Context(), "q")
			require.NoError(t, err)
			got := ids(pend)
			require.GreaterOrEqual(t, len(got), len(queued))
			assert.Equal(t, queued, got[:len(queued)], "every receipted queued message, in order")
			expired := 0
			for conv, last := range lastSeq {
				p, err := s.History(t.Context(), conv, store.Query{Limit: 10_000})
				require.NoError(t, err)
				if p.First == 0 {
					expired++
				}
				for _, m := range p.Items {
					if want, ok := idAt[fmt.Sprint(conv, "/", m.Seq)]; ok {
						assert.Equal(t, want, m.ID, "%s seq %d", conv, m.Seq)
					}
				}
				m, _, err := s.Append(t.Context(), store.AppendRequest{Msg: p0(conv)})
				require.NoError(t, err)
				assert.Greater(t, m.Seq, last, "%s: no seq repeats after the kill", conv)
			}
			t.Logf("killed after %d appends; %d of %d conversations had nothing left in their history", kill+run, expired, len(lastSeq))
		})
	}
}

// p0 is a message to the conversation that TestHelperRetentionProcess
// wrote as conv.
func p0(conv string) store.Message {
	for i := range retentionPairs {
		a, b := fmt.Sprintf("p%da", i), fmt.Sprintf("p%db", i)
		if store.DirectConv(a, b) == conv {
			return msg(conv, "after-"+conv, a, b)
		}
	}
	panic("unknown conversation " + conv)
}

// TestHelperRetentionProcess is the child of
// TestCrash_RetentionSurvivesSIGKILL: with retentionChildEnv set it appends
// until it is killed, printing "OK conv seq id queued" after each Append
// returned. Without it, it does nothing.
func TestHelperRetentionProcess(t *testing.T) {
	path := os.Getenv(retentionChildEnv)
	if path == "" {
		return
	}
	s, err := boltstore.OpenTuned(path, boltstore.Options{
		MaxAge: 20 * time.Millisecond, CheckpointEvery: 13, CheckpointInterval: 3 * time.Millisecond,
		MaxPendingPerSender: -1, MaxPending: -1,
	}, nil, 5)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(2)
	}
	for i := 0; ; i++ {
		a, b := fmt.Sprintf("p%da", i%retentionPairs), fmt.Sprintf("p%db", i%retentionPairs)
		req := store.AppendRequest{Msg: msg(store.DirectConv(a, b), fmt.Sprintf("m%05d", i), a, b)}
		q := 0
		if i%7 == 0 {
			req.Pending, q = []string{"q"}, 1
		}
		m, _, err := s.Append(t.Context(), req)
		if err != nil {
			fmt.Fprintln(os.Stderr, "append:", err)
			os.Exit(2)
		}
		fmt.Printf("OK %s %d %s %d\n", m.Conv, m.Seq, m.ID, q)
		time.Sleep(200 * time.Microsecond)
	}
}
