package redisstore_test

import "syscall"

// killWithParent makes the kernel kill redis-server when the test binary
// dies, so that a crashed test run leaves no server behind.
func killWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
