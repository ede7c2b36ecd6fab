package wsconn

import (
	"sync"
	"testing"
	"time"
)

// waitFor polls cond until it holds or a generous bound passed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still not %s after 10s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func (w *workers) idleCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.idle)
}

// One task after another runs on the same worker: no goroutine per task.
func TestWorkers_ReuseAnIdleWorker(t *testing.T) {
	var w workers
	defer w.stop()
	done := make(chan struct{}, 1)
	for i := range 100 {
		w.run(nil, func(*Conn) { done <- struct{}{} })
		<-done
		waitFor(t, "idle again", func() bool { return w.idleCount() == 1 })
		if n := w.live.Load(); n != 1 {
			t.Fatalf("task %d: %d workers running, want the one reused", i, n)
		}
	}
}

// Tasks that run at once get a worker each; all become idle afterwards
// and leave after the idle time; a task after that starts a new one.
func TestWorkers_ConcurrentTasksThenRetire(t *testing.T) {
	w := workers{idleFor: 50 * time.Millisecond}
	defer w.stop()
	var started, release sync.WaitGroup
	gate := make(chan struct{})
	started.Add(8)
	release.Add(8)
	for range 8 {
		w.run(nil, func(*Conn) { started.Done(); <-gate; release.Done() })
	}
	started.Wait() // all 8 at once: none waited for another
	if n := w.live.Load(); n != 8 {
		t.Fatalf("%d workers for 8 concurrent tasks", n)
	}
	close(gate)
	release.Wait()
	waitFor(t, "all retired", func() bool { return w.live.Load() == 0 })
	if n := w.idleCount(); n != 0 {
		t.Fatalf("%d idle workers listed after they retired", n)
	}
	ran := make(chan struct{})
	w.run(nil, func(*Conn) { close(ran) })
	<-ran
}

// stop ends the idle workers at once, and a busy one after its task.
func TestWorkers_StopEndsThem(t *testing.T) {
	var w workers
	gate := make(chan struct{})
	busy := make(chan struct{})
	w.run(nil, func(*Conn) {})
	waitFor(t, "idle", func() bool { return w.idleCount() == 1 })
	w.run(nil, func(*Conn) { close(busy); <-gate }) // takes the idle one
	<-busy
	w.run(nil, func(*Conn) {})
	waitFor(t, "second idle", func() bool { return w.idleCount() == 1 })
	w.stop()
	waitFor(t, "the idle one gone", func() bool { return w.live.Load() == 1 })
	close(gate)
	waitFor(t, "the busy one gone", func() bool { return w.live.Load() == 0 })
}

// deep uses about n KiB of stack, as the dispatch path under a read does.
//
//go:noinline
func deep(n int) byte {
	var pad [1000]byte
	pad[n%len(pad)] = byte(n)
	if n <= 1 {
		return pad[0]
	}
	return deep(n-1) + pad[n%len(pad)]
}

// BenchmarkTasks: a task that needs 16 KiB of stack, handed to the
// workers (Transport's way) or to a goroutine started for it (the way
// before): the fresh goroutine grows its stack every time.
func BenchmarkTasks(b *testing.B) {
	task := func(done chan struct{}) func(*Conn) {
		return func(*Conn) { deep(16); done <- struct{}{} }
	}
	b.Run("workers", func(b *testing.B) {
		var w workers
		defer w.stop()
		done := make(chan struct{})
		fn := task(done)
		for b.Loop() {
			w.run(nil, fn)
			<-done
		}
	})
	b.Run("goroutine", func(b *testing.B) {
		done := make(chan struct{})
		fn := task(done)
		for b.Loop() {
			go fn(nil)
			<-done
		}
	})
}
