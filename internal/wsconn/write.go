package wsconn

import (
	"log/slog"
	"sync"
)

// Frame is one encoded text message waiting to be written to a connection.
// Data may be shared by many connections (one encoding of a room message
// for all its members): it is never modified.
type Frame struct {
	Data []byte
	// Tag, when not empty, is reported to Handler.Written once the frame
	// was written. Such frames are written by a flusher goroutine, which
	// may call the handler; others may be written by the goroutine that
	// queued them (Write).
	Tag string
}

// maxBatchBytes bounds one text frame of several messages on a batch
// connection.
const maxBatchBytes = 32 << 10

// tryBytes bounds the frames Write writes itself; a longer queue goes to
// a flusher.
const tryBytes = maxGather / 2

// frameCost is what a frame counts for in the queue's byte bound: its
// data and its header.
func frameCost(f Frame) int { return len(f.Data) + 10 }

// Queue adds f to the send queue. It reports whether the caller took the
// writer role: the caller must then call Write (once it released its own
// locks) or Flush. It fails with ErrClosing once a close began, and with
// ErrQueueFull when the queue holds Config.SendQueue frames or
// Config.SendQueueBytes bytes already (the caller then closes the
// connection: the transport does not decide what a full queue means).
func (c *Conn) Queue(f Frame) (writer bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.QueueLocked(f)
}

// QueueLocked is Queue for a caller that holds the connection's lock (the
// mutex given to Upgrade).
func (c *Conn) QueueLocked(f Frame) (writer bool, err error) {
	cfg := &c.t.cfg
	switch {
	case c.closing:
		return false, ErrClosing
	case len(c.queue) >= cfg.SendQueue, c.qbytes+frameCost(f) > cfg.SendQueueBytes && len(c.queue) > 0:
		return false, ErrQueueFull
	}
	c.queue = append(c.queue, f)
	c.qbytes += frameCost(f)
	if c.writing {
		return false, nil
	}
	c.writing = true
	// Counted while the connection is, so never from zero.
	cfg.Goroutines.Add(1)
	return true, nil
}

// WaitRoom waits until the send queue is at most half full, in frames and
// in bytes, or the connection is closing; it reports false then. It is
// for a producer of many frames (a backlog sent on connect) that must
// leave room for live ones.
func (c *Conn) WaitRoom() bool {
	cfg := &c.t.cfg
	c.mu.Lock()
	defer c.mu.Unlock()
	for (len(c.queue) >= cfg.SendQueue/2 || c.qbytes >= cfg.SendQueueBytes/2) && !c.closing {
		if c.drained == nil {
			c.drained = sync.NewCond(c.mu)
		}
		c.drained.Wait()
	}
	return !c.closing
}

// broadcastLocked wakes WaitRoom. The caller holds mu.
func (c *Conn) broadcastLocked() {
	if c.drained != nil {
		c.drained.Broadcast()
	}
}

// Flush starts a flusher (on a worker) for a connection whose writer role the
// caller took (Queue said writer).
func (c *Conn) Flush() { c.t.work.run(c, (*Conn).flush) }

// Write writes the queue of a connection whose writer role the caller
// took (Queue said writer), without waiting for the socket: what the
// socket does not take at once, a queue longer than tryBytes, and tagged
// frames go to a flusher goroutine. Writing from the queuing goroutine
// saves a goroutine start, and the stack growth of a fresh goroutine, per
// frame to an idle connection.
func (c *Conn) Write() {
	if !c.gc.canTry() {
		c.t.work.run(c, (*Conn).flush)
		return
	}
	for {
		batch, ok := c.writeBegin()
		if !ok {
			return
		}
		done, err := c.gc.tryFlush()
		if !c.writeEnd(batch, done, err) {
			return
		}
	}
}

// writeBegin starts a pass of Write: it takes the queue and gathers its
// frames, and returns them. It reports false when the pass ended there:
// the queue was empty (the writer role is given up), a flusher took it
// over (a long queue, a tagged frame), or the connection failed.
func (c *Conn) writeBegin() (batch []Frame, ok bool) {
	c.mu.Lock()
	if len(c.queue) == 0 {
		closes := c.giveUpLocked()
		c.mu.Unlock()
		if closes {
			go c.writeClose()
		}
		c.t.cfg.Goroutines.Done()
		return nil, false
	}
	size := 0
	for _, f := range c.queue {
		size += frameCost(f)
		if f.Tag != "" && !c.t.cfg.InlineWritten {
			size = tryBytes
		}
	}
	if size >= tryBytes {
		c.mu.Unlock()
		c.t.work.run(c, (*Conn).flush)
		return nil, false
	}
	batch = c.takeLocked()
	c.mu.Unlock()

	c.gc.gather()
	if err := c.write(batch); err != nil { // under maxGather: gathered only
		c.writeEnd(batch, false, err)
		return nil, false
	}
	return batch, true
}

// writeEnd ends a pass of Write once the gathered bytes were offered to
// the socket (done: all taken), and reports whether Write goes on with
// the frames queued meanwhile: a rest goes to a flusher, a failure ends
// the connection.
func (c *Conn) writeEnd(batch []Frame, done bool, err error) (again bool) {
	var tags []string
	if err == nil && c.t.cfg.InlineWritten {
		if c.tags != nil {
			tags = c.tags.buf[:0]
		}
		if tags = appendTags(tags, batch); len(tags) > 0 && c.tags == nil {
			c.tags = new(writerTags)
		}
	}
	c.recycle(batch)
	if err != nil {
		c.writeFailed(err)
		c.t.cfg.Goroutines.Done()
		return false
	}
	if !done {
		if len(tags) > 0 {
			c.tags.held, c.tags.buf = tags, nil // reported by the flusher
		}
		c.t.work.run(c, (*Conn).flush) // writes the rest first
		return false
	}
	if len(tags) > 0 {
		c.h.Written(tags)
		clear(tags)
		c.tags.buf = tags[:0]
	}
	return true
}

// appendTags appends the tags of batch's tagged frames to tags.
func appendTags(tags []string, batch []Frame) []string {
	for _, f := range batch {
		if f.Tag != "" {
			tags = append(tags, f.Tag)
		}
	}
	return tags
}

// takeLocked takes the queued frames for a writer's pass. Their bytes
// still count in qbytes until the pass is over (recycle): the byte bound
// covers what the writer holds too. The caller holds mu.
func (c *Conn) takeLocked() []Frame {
	batch := c.queue
	c.queue, c.spare = c.spare[:0], nil
	c.broadcastLocked()
	return batch
}

// recycle ends a writer's pass: it uncounts the batch's bytes and keeps
// its array for the next queue.
func (c *Conn) recycle(batch []Frame) {
	cost := 0
	for _, f := range batch {
		cost += frameCost(f)
	}
	clear(batch)
	c.mu.Lock()
	if !c.finished {
		c.qbytes = max(0, c.qbytes-cost)
		c.spare = batch[:0]
		c.broadcastLocked()
	}
	c.mu.Unlock()
}

// giveUpLocked ends the writer role once the queue is empty and reports
// whether the close frame is the writer's to send (a draining close). The
// caller holds mu.
func (c *Conn) giveUpLocked() (closes bool) {
	c.writing = false
	return c.writerCloses
}

// writeFailed ends the connection after a failed write.
func (c *Conn) writeFailed(err error) {
	c.mu.Lock()
	c.closing, c.writing = true, false
	clear(c.queue)
	c.queue, c.qbytes = nil, 0
	c.broadcastLocked()
	c.mu.Unlock()
	c.t.cfg.Logger.Debug("wsconn: write failed", slog.Any("err", err))
	c.finish(err)
}

// flush writes queued frames until the queue is empty, then exits; it
// first writes what a Write left. Only one flusher runs per connection
// (guarded by writing).
func (c *Conn) flush() {
	defer c.t.cfg.Goroutines.Done()
	if err := c.gc.flush(); err != nil {
		if c.tags != nil {
			c.tags.held = nil
		}
		c.writeFailed(err)
		return
	}
	if ts := c.tags; ts != nil && len(ts.held) > 0 {
		held := ts.held
		ts.held = nil
		c.h.Written(held) // a Write's frames, written whole now
		clear(held)
		ts.buf = held[:0]
	}
	var tags []string
	for {
		c.mu.Lock()
		if len(c.queue) == 0 {
			closes := c.giveUpLocked()
			c.mu.Unlock()
			if closes {
				c.writeClose()
			}
			return
		}
		batch := c.takeLocked()
		c.mu.Unlock()

		c.gc.gather()
		err := c.write(batch)
		if ferr := c.gc.flush(); err == nil {
			err = ferr
		}
		tags = tags[:0]
		if err == nil {
			tags = appendTags(tags, batch)
		}
		c.recycle(batch)
		if err != nil {
			c.writeFailed(err)
			return
		}
		if len(tags) > 0 {
			c.h.Written(tags)
		}
	}
}

// write writes a batch of frames into the gatherConn, several per text
// frame on a batch connection, writing out whenever maxGather is reached.
// The caller gathers before and flushes after; the gatherConn's lock keeps
// control frames whole between these.
func (c *Conn) write(batch []Frame) error {
	if err := c.gc.extendWriteDeadline(c.t.cfg.WriteTimeout); err != nil {
		return err
	}
	var group [][]byte // for batch: the messages of one text frame
	size := 0
	for _, f := range batch {
		if !c.batch {
			c.gc.appendText(f.Data)
		} else {
			if len(group) > 0 && size+1+len(f.Data) > maxBatchBytes {
				c.gc.appendText(group...)
				group, size = group[:0], 0
			}
			group = append(group, f.Data)
			size += len(f.Data) + 1
		}
		if c.gc.full() {
			if err := c.gc.flush(); err != nil {
				return err
			}
			c.gc.gather()
		}
	}
	if len(group) > 0 {
		c.gc.appendText(group...)
	}
	return nil
}
