//go:build !linux

package wsconn

import (
	"errors"
	"time"
)

// poller is Linux only: elsewhere every connection has a reader goroutine.
type poller struct{}

func newPoller(*workers, time.Duration, int) (*poller, error) {
	return nil, errors.New("wsconn: no epoll on this system")
}

func (p *poller) add(n *Conn) bool     { return false }
func (p *poller) removeLocked(n *Conn) {}
func (p *poller) loop()                {}
func (p *poller) close()               {}
func (p *poller) handoff()             {}
