//go:build linux

package wsconn

import (
	"io"
	"net"
	"sync"
	"testing"
	"unsafe"
)

// TestUringLayout checks the kernel structures' sizes.
func TestUringLayout(t *testing.T) {
	if s := unsafe.Sizeof(uringSQE{}); s != 64 {
		t.Fatalf("io_uring_sqe is %d bytes, want 64", s)
	}
	if s := unsafe.Sizeof(uringCQE{}); s != 16 {
		t.Fatalf("io_uring_cqe is %d bytes, want 16", s)
	}
	if s := unsafe.Sizeof(uringParams{}); s != 120 {
		t.Fatalf("io_uring_params is %d bytes, want 120", s)
	}
}

// loopbackSockets opens n loopback connections whose far ends are read
// and discarded, and returns the near ends' descriptors.
func loopbackSockets(b *testing.B, n int) []int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var fds []int
	var keep []net.Conn
	var wg sync.WaitGroup
	for range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
		keep = append(keep, s)
		rc, _ := s.(*net.TCPConn).SyscallConn()
		rc.Control(func(fd uintptr) { fds = append(fds, int(fd)) })
		wg.Go(func() { io.Copy(io.Discard, c); c.Close() })
	}
	b.Cleanup(func() {
		for _, s := range keep {
			s.Close()
		}
		ln.Close()
		wg.Wait()
	})
	return fds
}

// benchFrame is a room delivery's size (a 102-byte frame).
var benchFrame = append([]byte{0x81, 100}, make([]byte, 100)...)

// BenchmarkSocketWrites: one frame to each of 500 loopback sockets, a
// write(2) each (what Conn.Write does per connection).
func BenchmarkSocketWrites(b *testing.B) {
	fds := loopbackSockets(b, 500)
	for b.Loop() {
		for _, fd := range fds {
			if n, err := sockWrite(fd, benchFrame); err != nil || n != len(benchFrame) {
				b.Fatal(n, err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(fds)), "ns/socket")
}

// BenchmarkRingSends: the same through a ring, ringEntries sockets per
// submission (what WriteMany does).
func BenchmarkRingSends(b *testing.B) {
	fds := loopbackSockets(b, 500)
	r, err := newRing(ringEntries)
	if err != nil {
		b.Skipf("no io_uring: %v", err)
	}
	defer r.close()
	bufs := make([][]byte, ringEntries)
	res := make([]int32, ringEntries)
	for i := range bufs {
		bufs[i] = benchFrame
	}
	for b.Loop() {
		for i := 0; i < len(fds); i += ringEntries {
			part := fds[i:min(i+ringEntries, len(fds))]
			if err := r.send(part, bufs[:len(part)], res[:len(part)]); err != nil {
				b.Fatal(err)
			}
			for _, n := range res[:len(part)] {
				if int(n) != len(benchFrame) {
					b.Fatal(n)
				}
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(fds)), "ns/socket")
}
