//go:build !linux

package wshub

import "errors"

// poller is Linux only: elsewhere every connection has a reader goroutine.
type poller struct{}

func newPoller() (*poller, error) { return nil, errors.New("wshub: no epoll on this system") }

func (p *poller) add(n *Node) bool          { return false }
func (p *poller) rearmLocked(n *Node) error { return nil }
func (p *poller) removeLocked(n *Node)      {}
func (p *poller) loop()                     {}
func (p *poller) close()                    {}
