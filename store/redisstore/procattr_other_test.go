//go:build !linux

package redisstore_test

import "syscall"

// killWithParent returns nil: only Linux can tie a child's life to its
// parent's.
func killWithParent() *syscall.SysProcAttr { return nil }
