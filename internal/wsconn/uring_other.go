//go:build !linux

package wsconn

// ring is Linux only (io_uring): elsewhere WriteMany writes each socket
// with its own system call.
type ring struct{ entries int }

func (r *ring) send(fds []int, bufs [][]byte, res []int32) error { panic("no io_uring") }

type rings struct{ off bool }

func (rs *rings) get() *ring  { return nil }
func (rs *rings) put(r *ring) {}
func (rs *rings) disable()    {}
func (rs *rings) close()      {}
