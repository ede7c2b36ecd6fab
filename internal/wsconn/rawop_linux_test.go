package wsconn

import (
	"net"
	"runtime/debug"
	"testing"

	"github.com/gorilla/websocket"
)

func raceBuild() bool {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" {
				return s.Value == "true"
			}
		}
	}
	return false
}

// rawWrite and readNow move the bytes, report an empty socket as
// errWouldBlock, and take no allocation per call (their functions for
// RawConn are made once per pooled rawOp, not per call).
func TestRawOp_WritesAndReadsWithoutAllocating(t *testing.T) {
	a, b := tcpPair(t)
	w := rawConnOf(a)
	rc, err := b.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	r := rawConn{rc}
	msg := []byte("hello, raw socket")
	buf := make([]byte, 64)

	if n, err := r.readNow(buf); n != 0 || err != errWouldBlock {
		t.Fatalf("read of an empty socket = %d, %v; want 0, errWouldBlock", n, err)
	}
	if n, err := rawWrite(w, msg); n != len(msg) || err != nil {
		t.Fatalf("rawWrite = %d, %v; want %d, nil", n, err, len(msg))
	}
	got := 0
	for got < len(msg) { // loopback: the bytes are there at once, but read until all came
		n, err := r.readNow(buf[got:])
		if err != nil && err != errWouldBlock {
			t.Fatal(err)
		}
		got += n
	}
	if string(buf[:got]) != string(msg) {
		t.Fatalf("read %q, want %q", buf[:got], msg)
	}

	if raceBuild() {
		t.Log("allocations not counted: the race detector makes sync.Pool drop items")
		return
	}
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := rawWrite(w, msg); err != nil {
			t.Fatal(err)
		}
		for n := 0; n < len(msg); {
			k, err := r.readNow(buf[n:])
			if err != nil && err != errWouldBlock {
				t.Fatal(err)
			}
			n += k
		}
	})
	if allocs != 0 {
		t.Fatalf("a write and its read take %v allocations, want 0", allocs)
	}
}

// A message read by the poller takes no allocation in the poller: its
// wait for events hands RawConn.Read a function made once, and its read a
// pooled rawOp (the handler's copy of the message is the test's own).
func TestPoller_AMessageTakesNoAllocationInThePoller(t *testing.T) {
	if raceBuild() {
		t.Skip("allocations not counted: the race detector makes sync.Pool drop items")
	}
	_, dial := pollServer(t)
	ws, h := dial()
	send(t, ws, "warm")
	expectGot(t, h, "warm")
	msg := []byte("x")
	allocs := testing.AllocsPerRun(200, func() {
		if err := ws.WriteMessage(websocket.TextMessage, msg); err != nil {
			t.Fatal(err)
		}
		<-h.got
	})
	// Left: the handler's string(p) (it sends the message on a channel).
	t.Logf("%.1f allocations per message", allocs)
	if allocs > 1 {
		t.Fatalf("a message read by the poller takes %v allocations, want at most 1 (the handler's own)", allocs)
	}
}
