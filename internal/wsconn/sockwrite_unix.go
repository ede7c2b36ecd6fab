//go:build unix && !linux

package wsconn

import "syscall"

// sockWrite is write(2) on a non-blocking socket.
func sockWrite(fd int, b []byte) (int, error) { return syscall.Write(fd, b) }

// sockRead is read(2) on a non-blocking socket.
func sockRead(fd int, b []byte) (int, error) { return syscall.Read(fd, b) }
