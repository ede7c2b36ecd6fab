//go:build !unix

package wsconn

import (
	"errors"
	"net"
	"syscall"
)

// rawConnOf returns nil: non-blocking writes are Unix only; elsewhere a
// flusher goroutine writes every connection.
func rawConnOf(net.Conn) syscall.RawConn { return nil }

// rawWrite is not called where rawConnOf returns nil.
func rawWrite(syscall.RawConn, []byte) (int, error) {
	return 0, errors.New("wsconn: non-blocking writes are not supported here")
}
