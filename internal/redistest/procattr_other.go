//go:build !linux

package redistest

import "syscall"

// dieWithParent: only Linux can tie the server's life to the test
// binary's; elsewhere Stop and the test's cleanup end it.
func dieWithParent() *syscall.SysProcAttr { return nil }
