package wsconn

import (
	"sync"
	"sync/atomic"
	"time"
)

// workerIdle is how long an idle worker waits for a task before it exits.
const workerIdle = 10 * time.Second

// workers runs the transport's short tasks (a read of a ready socket, a
// flusher's pass) on goroutines that outlive them: a task goes to the
// worker that became idle last, or to a new goroutine when none is idle.
// Starting a goroutine per task costs its creation, the wake-up of a
// thread to run it and, above all, the growth of its fresh stack down
// the dispatch path (measured: 14 % of the hub's CPU for direct
// messages); a reused worker has its stack grown already. The most
// recently idle worker is taken first, so a light load keeps reusing a few
// hot ones, and a worker idle for workerIdle exits, so a burst's
// goroutines do not stay.
type workers struct {
	mu      sync.Mutex
	idle    []*worker // idle workers, the most recently idle last
	stopped bool
	sweep   *time.Timer   // retires workers idle too long; nil when none is idle
	idleFor time.Duration // zero: workerIdle (tests shorten it)
	live    atomic.Int32  // worker goroutines running, idle or not
}

// worker is one goroutine waiting for tasks on its channel.
type worker struct {
	tasks chan task
	since time.Time // when it became idle
}

// task is one call of fn on c.
type task struct {
	c  *Conn
	fn func(*Conn)
}

// run calls fn(c) on an idle worker or on a new goroutine. The caller
// accounted for the task in Config.Goroutines; fn ends that accounting.
func (w *workers) run(c *Conn, fn func(*Conn)) {
	w.mu.Lock()
	if n := len(w.idle); n > 0 {
		wk := w.idle[n-1]
		w.idle[n-1] = nil
		w.idle = w.idle[:n-1]
		w.mu.Unlock()
		wk.tasks <- task{c, fn} // buffered: never waits
		return
	}
	w.mu.Unlock()
	go w.loop(task{c, fn})
}

// loop runs t, then the tasks handed to it, until it idled for
// idleTime or the transport closed.
func (w *workers) loop(t task) {
	w.live.Add(1)
	defer w.live.Add(-1)
	wk := &worker{tasks: make(chan task, 1)}
	for {
		t.fn(t.c)
		t = task{}
		w.mu.Lock()
		if w.stopped {
			w.mu.Unlock()
			return
		}
		wk.since = time.Now()
		w.idle = append(w.idle, wk)
		if w.sweep == nil {
			w.sweep = time.AfterFunc(w.idleTime(), w.retire)
		}
		w.mu.Unlock()
		var ok bool
		if t, ok = <-wk.tasks; !ok {
			return
		}
	}
}

// retire ends the workers idle for idleTime or longer (the oldest are
// first in idle), and comes back for the others.
func (w *workers) retire() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sweep = nil
	if w.stopped {
		return
	}
	now, idle := time.Now(), w.idleTime()
	k := 0
	for k < len(w.idle) && now.Sub(w.idle[k].since) >= idle {
		close(w.idle[k].tasks)
		k++
	}
	w.idle = append(w.idle[:0], w.idle[k:]...)
	clear(w.idle[len(w.idle):cap(w.idle)])
	if len(w.idle) > 0 {
		w.sweep = time.AfterFunc(idle-now.Sub(w.idle[0].since), w.retire)
	}
}

// idleTime is how long a worker may stay idle.
func (w *workers) idleTime() time.Duration {
	if w.idleFor > 0 {
		return w.idleFor
	}
	return workerIdle
}

// stop ends the idle workers and makes busy ones exit after their task.
func (w *workers) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	for _, wk := range w.idle {
		close(wk.tasks)
	}
	w.idle = nil
	if w.sweep != nil {
		w.sweep.Stop()
		w.sweep = nil
	}
}
