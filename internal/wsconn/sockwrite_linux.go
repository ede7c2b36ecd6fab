package wsconn

import (
	"syscall"
	"unsafe"
)

// sockWrite is write(2) on a non-blocking socket, as a raw system call:
// it never blocks, so the Go scheduler need not be told of it, and a
// burst of them (a delivery to a big room) does not keep the runtime's
// monitor busy taking processors back from goroutines "in a system call".
func sockWrite(fd int, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
