package wshub_test

import (
	"bytes"
	"io"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/hubtest"
)

// The benchmarks of the hot paths. Run them with:
//
//	go test -run '^$' -bench . -benchmem .
//
// The dispatch and fan-out benchmarks run a real hub (hubtest, memory
// store) and real WebSocket connections over loopback in this process:
// their ns/op and allocs/op include the benchmark's own clients (which
// write prebuilt frames and only count what they read), so they are an
// upper bound of the hub's cost per message. docs/benchmarks.md has the
// figures; cmd/wshub-bench measures the hub in a process of its own.

// unlimitedQuota is the message quota of a benchmark's sender, which
// sends as fast as the hub answers: so high that it never refuses, while
// the hub still checks and charges it for every message.
const unlimitedQuota = 1e9

// roomFrame is a typical room message as the hub sends it.
var roomFrame = []byte(`{"cmd":11,"id":"0192f7a4-6b1c-7d2e-8f3a-4b5c6d7e8f90","userid":"alice","dstid":"room42","media":1,"content":"hello, this is a typical chat message","seq":12345,"ts":1732590000000}`)

func BenchmarkFrameDecode(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(roomFrame)))
	for b.Loop() {
		f, err := wshub.DecodeFrame(roomFrame)
		if err != nil || f.Cmd != wshub.CmdRoom {
			b.Fatalf("decode: %v %+v", err, f)
		}
	}
}

func BenchmarkFrameEncode(b *testing.B) {
	f, err := wshub.DecodeFrame(roomFrame)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(roomFrame)))
	for b.Loop() {
		if _, err := f.Encode(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDispatchDirect measures one direct message (cmd 10 with a cid)
// from one connection to another: the hub decodes it, stores it, delivers
// it and answers the receipt. The sender keeps 16 frames without a receipt
// in flight.
func BenchmarkDispatchDirect(b *testing.B) {
	srv := hubtest.New(b, wshub.Options{MessageRate: unlimitedQuota, MessageBurst: unlimitedQuota})
	alice := srv.Dial(b, "alice")
	bob := srv.Dial(b, "bob")
	prefix := []byte(`{"cmd":10,"dstid":"bob","content":"hello, this is a typical chat message","cid":"`)
	delivered := countFrames(b, bob.WS, `{"cmd":10,`, nil)
	pump(b, alice.WS, prefix, delivered, 1)
}

// BenchmarkDispatchRoom measures one room message (cmd 11 with a cid) to
// a room of two members: the sender and one receiver.
func BenchmarkDispatchRoom(b *testing.B) {
	srv := hubtest.New(b, wshub.Options{MessageRate: unlimitedQuota, MessageBurst: unlimitedQuota})
	alice := srv.Dial(b, "alice")
	bob := srv.Dial(b, "bob")
	join(b, alice, "room")
	join(b, bob, "room")
	prefix := []byte(`{"cmd":11,"dstid":"room","content":"hello, this is a typical chat message","cid":"`)
	delivered := countFrames(b, bob.WS, `{"cmd":11,`, nil)
	pump(b, alice.WS, prefix, delivered, 1)
}

// BenchmarkRoomFanout1000 measures one room message delivered to 1,000
// member connections (plus the sender's), read by 1,000 goroutines; an op
// is one message, that is 1,000 deliveries. batch=1 lets the hub put
// several queued messages into one WebSocket message.
func BenchmarkRoomFanout1000(b *testing.B) {
	const members = 1000
	for _, batch := range []bool{false, true} {
		b.Run("batch="+strconv.FormatBool(batch), func(b *testing.B) {
			srv := hubtest.New(b, wshub.Options{
				MessageRate: unlimitedQuota, MessageBurst: unlimitedQuota,
				// 1,001 connections from 127.0.0.1.
				MaxConnsPerIP: -1, UpgradeRate: -1,
			})
			pub := srv.Dial(b, "pub")
			join(b, pub, "room")
			var q []string
			if batch {
				q = append(q, "batch=1")
			}
			var delivered atomic.Int64
			for i := range members {
				c := srv.Dial(b, "m"+strconv.Itoa(i), q...)
				join(b, c, "room")
				countFrames(b, c.WS, `{"cmd":11,`, &delivered)
			}
			prefix := []byte(`{"cmd":11,"dstid":"room","content":"hello, this is a typical chat message","cid":"`)
			pump(b, pub.WS, prefix, &delivered, members)
		})
	}
}

// join makes c's user a member of room.
func join(b *testing.B, c *hubtest.Conn, room string) {
	b.Helper()
	c.Send(b, &wshub.Frame{Cmd: wshub.CmdJoin, DstID: room})
	c.Expect(b, wshub.CmdJoin)
}

// countFrames reads ws in a goroutine until it closes, adding to n the
// number of frames that start with prefix (n may be shared; nil makes a
// new counter). It returns n.
func countFrames(b *testing.B, ws *websocket.Conn, prefix string, n *atomic.Int64) *atomic.Int64 {
	if n == nil {
		n = new(atomic.Int64)
	}
	p := []byte(prefix)
	go readMessages(ws, func(data []byte) { n.Add(int64(bytes.Count(data, p))) })
	return n
}

// readMessages calls fn with every message read from ws, in a buffer it
// reuses, until ws fails.
func readMessages(ws *websocket.Conn, fn func(data []byte)) {
	buf := make([]byte, 0, 4096)
	for {
		_, r, err := ws.NextReader()
		if err != nil {
			return
		}
		buf = buf[:0]
		for {
			if len(buf) == cap(buf) {
				buf = append(buf, 0)[:len(buf)]
			}
			k, err := r.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+k]
			if err == io.EOF {
				break
			}
			if err != nil {
				return
			}
		}
		fn(buf)
	}
}

// pump sends b.N frames prefix+cid+`"}` on ws, keeping at most 16 without
// a receipt and at most 256 messages ahead of the slowest delivery
// count (delivered/perMsg), and waits until all b.N*perMsg deliveries
// arrived. It reports deliveries per second.
func pump(b *testing.B, ws *websocket.Conn, prefix []byte, delivered *atomic.Int64, perMsg int64) {
	const window = 16
	sem := make(chan struct{}, window) // a token per frame without a receipt
	receipts := []byte(`{"cmd":15,`)
	var failed atomic.Pointer[string]
	go readMessages(ws, func(data []byte) {
		if bytes.Contains(data, []byte(`{"cmd":40,`)) {
			s := string(data)
			failed.Store(&s)
		}
		for range bytes.Count(data, receipts) {
			<-sem
		}
	})
	base := delivered.Load()
	buf := make([]byte, 0, 256)
	// stalled fails the benchmark when the hub stopped answering (an
	// error frame, or a connection it closed).
	deadline := time.Now().Add(time.Minute)
	stalled := func() {
		if f := failed.Load(); f != nil {
			b.Fatalf("error frame: %s", *f)
		}
		if time.Now().After(deadline) {
			b.Fatalf("stalled: delivered %d of %d", delivered.Load()-base, int64(b.N)*perMsg)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		for {
			select {
			case sem <- struct{}{}:
			case <-time.After(time.Second):
				stalled()
				continue
			}
			break
		}
		for int64(i)-(delivered.Load()-base)/perMsg > 256 {
			time.Sleep(20 * time.Microsecond)
			stalled()
		}
		buf = append(append(buf[:0], prefix...), strconv.Itoa(i)...)
		buf = append(buf, `"}`...)
		if err := ws.WriteMessage(websocket.TextMessage, buf); err != nil {
			b.Fatal(err)
		}
	}
	want := int64(b.N) * perMsg
	for delivered.Load()-base < want {
		time.Sleep(50 * time.Microsecond)
		stalled()
	}
	b.StopTimer()
	b.ReportMetric(float64(want)/b.Elapsed().Seconds(), "deliveries/s")
}
