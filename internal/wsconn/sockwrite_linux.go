package wsconn

import (
	"syscall"
	"unsafe"
)

// sockWrite is write(2) on a non-blocking socket, as a raw system call:
// it never blocks, so the Go scheduler need not be told of it, and a
// burst of them (a delivery to a big room) does not keep the runtime's
// monitor busy taking processors back from goroutines "in a system call".
func sockWrite(fd int, b []byte) (int, error) { return rawIO(syscall.SYS_WRITE, fd, b) }

// sockRead is read(2) on a non-blocking socket, as a raw system call, for
// the same reasons as sockWrite: it never blocks. Telling the scheduler of
// a system call also wakes its monitor thread when that sleeps, which the
// first read after an idle moment (most of them at a light load) did.
func sockRead(fd int, b []byte) (int, error) { return rawIO(syscall.SYS_READ, fd, b) }

// rawIO is read(2) or write(2) (trap) of b on fd as a raw system call.
func rawIO(trap uintptr, fd int, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, _, e := syscall.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// epollTake is a non-blocking epoll_wait (epoll_pwait with no signal mask,
// which every Linux architecture has) as a raw system call: it takes the
// ready events and never waits.
func epollTake(epfd int, events []syscall.EpollEvent) (int, error) {
	n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
