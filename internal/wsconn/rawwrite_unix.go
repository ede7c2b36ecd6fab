//go:build unix

package wsconn

import (
	"errors"
	"net"
	"sync"
	"syscall"
)

// rawConnOf returns the raw connection under nc for non-blocking writes,
// or nil when nc is not a plain TCP socket (a TLS connection, say).
func rawConnOf(nc net.Conn) syscall.RawConn {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// rawOp is one raw read or write: its buffer, result and the functions
// handed to RawConn.Read and Write, made once per rawOp. A closure made
// at each call would escape into the RawConn interface and take three
// allocations per call; rawOps keeps them for reuse.
type rawOp struct {
	b       []byte
	n       int
	err     error
	readFn  func(fd uintptr) bool
	writeFn func(fd uintptr) bool
}

var rawOps = sync.Pool{New: func() any {
	o := &rawOp{}
	o.readFn, o.writeFn = o.read, o.write
	return o
}}

func getRawOp(b []byte) *rawOp {
	o := rawOps.Get().(*rawOp)
	o.b, o.n, o.err = b, 0, nil
	return o
}

// put returns o to rawOps without keeping its buffer.
func (o *rawOp) put() {
	o.b, o.err = nil, nil
	rawOps.Put(o)
}

// read is one non-blocking read(2) into b, retried on EINTR only.
func (o *rawOp) read(fd uintptr) bool {
	for {
		o.n, o.err = sockRead(int(fd), o.b)
		if o.err != syscall.EINTR {
			return true // one attempt: never wait
		}
	}
}

// write writes as much of b as the socket takes at once.
func (o *rawOp) write(fd uintptr) bool {
	for o.n < len(o.b) {
		w, e := sockWrite(int(fd), o.b[o.n:])
		if w > 0 {
			o.n += w
		}
		switch {
		case e == syscall.EINTR:
			continue
		case errors.Is(e, syscall.EAGAIN):
			return true
		case e != nil:
			o.err = e
			return true
		case w <= 0:
			o.err = syscall.EIO
			return true
		}
	}
	return true
}

// rawWrite writes as much of b as the socket takes at once, without
// waiting for it to become writable (Go's sockets are non-blocking), and
// returns how much that was. A full socket is not an error.
func rawWrite(rc syscall.RawConn, b []byte) (int, error) {
	o := getRawOp(b)
	rerr := rc.Write(o.writeFn)
	n, err := o.n, o.err
	o.put()
	if err == nil {
		err = rerr
	}
	return n, err
}
