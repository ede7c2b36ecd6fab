package redistest

import "syscall"

// dieWithParent makes the kernel kill redis-server when the test binary
// dies, so that a crashed test run leaves no server behind.
func dieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
