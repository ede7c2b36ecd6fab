//go:build unix

package wsconn

import (
	"errors"
	"net"
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

// rawWrite writes as much of b as the socket takes at once, without
// waiting for it to become writable (Go's sockets are non-blocking), and
// returns how much that was. A full socket is not an error.
func rawWrite(rc syscall.RawConn, b []byte) (int, error) {
	n := 0
	var err error
	rerr := rc.Write(func(fd uintptr) bool {
		for n < len(b) {
			w, e := sockWrite(int(fd), b[n:])
			if w > 0 {
				n += w
			}
			switch {
			case e == syscall.EINTR:
				continue
			case errors.Is(e, syscall.EAGAIN):
				return true
			case e != nil:
				err = e
				return true
			case w <= 0:
				err = syscall.EIO
				return true
			}
		}
		return true
	})
	if err == nil {
		err = rerr
	}
	return n, err
}
