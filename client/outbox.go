package client

import "github.com/wshub/wshub"

// kind says when an outbox entry leaves the outbox.
type kind uint8

const (
	// kindMessage: a frame that the server stores and receipts (cmd 10,
	// 11, application commands answered with cmd 15). It stays until a
	// receipt or an error frame with its cid arrives, and is written
	// again on every new connection until then.
	kindMessage kind = iota
	// kindRequest: a question whose answer carries its cid (cmd 12, 16,
	// 17, 18, 21). It stays until the answer or an error frame arrives, and is
	// asked again on every new connection until then (asking twice is
	// harmless).
	kindRequest
	// kindOnce: a frame written once and then dropped (cmd 13, 19, Emit).
	kindOnce
	// kindCall: an application request (Call) answered by a frame that
	// carries its cid. It waits for a connection like the others, but is
	// written only once: when the connection it was written on ends
	// before the answer, it leaves the outbox and its caller gets
	// ErrConnectionLost. The hub does not deduplicate application
	// commands, so writing it again could run it twice.
	kindCall
	// kindLive: an ephemeral frame (cmd 22, Typing) for the connection
	// open when it was made. Written once like kindOnce, and dropped
	// unwritten when that connection ends first: it never waits for the
	// next one.
	kindLive
)

// result is what a waiting caller gets: the answering frame or an error.
type result struct {
	f   *wshub.Frame
	err error
	// presence is the states listed by a cmd 21 reply.
	presence []Presence
}

// entry is one frame in the outbox.
type entry struct {
	cid  string
	kind kind
	cmd  wshub.Cmd
	dst  string
	data []byte // the encoded frame, written as is on every attempt
	sent bool   // written on the current connection

	// done receives the result exactly once, from whoever removed the
	// entry from the outbox (under Client.mu). nil when nobody waits
	// (Post, Emit). Buffered (capacity 1): completing never blocks.
	done chan result

	prev, next *entry
}

// complete hands r to the waiting caller, if any. Only the goroutine that
// removed e from the outbox may call it.
func (e *entry) complete(r result) {
	if e.done != nil {
		e.done <- r
	}
}

// outbox is the ordered list of frames not yet settled. It is not safe for
// concurrent use: Client.mu guards it.
type outbox struct {
	head, tail *entry
	byCID      map[string]*entry // entries that have a cid
	n          int               // number of entries
}

func (o *outbox) len() int { return o.n }

// push appends e.
func (o *outbox) push(e *entry) {
	if o.byCID == nil {
		o.byCID = make(map[string]*entry)
	}
	e.prev, e.next = o.tail, nil
	if o.tail != nil {
		o.tail.next = e
	} else {
		o.head = e
	}
	o.tail = e
	if e.cid != "" {
		o.byCID[e.cid] = e
	}
	o.n++
}

// unlink removes e, which must be in o.
func (o *outbox) unlink(e *entry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		o.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		o.tail = e.prev
	}
	e.prev, e.next = nil, nil
	if e.cid != "" && o.byCID[e.cid] == e {
		delete(o.byCID, e.cid)
	}
	o.n--
}

// get returns the entry with cid, or nil.
func (o *outbox) get(cid string) *entry {
	if cid == "" {
		return nil
	}
	return o.byCID[cid]
}

// remove takes the entry with cid out of the outbox and returns it, or nil
// when there is none.
func (o *outbox) remove(cid string) *entry {
	e := o.get(cid)
	if e != nil {
		o.unlink(e)
	}
	return e
}

// removeEntry takes e out if it is still in the outbox and reports whether
// it was.
func (o *outbox) removeEntry(e *entry) bool {
	if e.cid != "" {
		if o.byCID[e.cid] != e {
			return false
		}
		o.unlink(e)
		return true
	}
	for x := o.head; x != nil; x = x.next {
		if x == e {
			o.unlink(e)
			return true
		}
	}
	return false
}

// firstRequest returns the oldest written request of cmd for dst, used to
// match an answer that carries no cid.
func (o *outbox) firstRequest(cmd wshub.Cmd, dst string) *entry {
	for e := o.head; e != nil; e = e.next {
		if e.kind == kindRequest && e.sent && e.cmd == cmd && e.dst == dst {
			return e
		}
	}
	return nil
}

// takeUnsent appends every entry not yet written on the current
// connection to buf, marks them written, drops the kindOnce and kindLive
// ones, and returns buf.
func (o *outbox) takeUnsent(buf []*entry) []*entry {
	for e := o.head; e != nil; {
		next := e.next
		if !e.sent {
			buf = append(buf, e)
			e.sent = true
			if e.kind == kindOnce || e.kind == kindLive {
				o.unlink(e)
			}
		}
		e = next
	}
	return buf
}

// takeLost removes and returns the kindCall entries written on the
// connection that just ended: their answers can no longer come.
func (o *outbox) takeLost() []*entry {
	var lost []*entry
	for e := o.head; e != nil; {
		next := e.next
		if e.kind == kindCall && e.sent {
			o.unlink(e)
			lost = append(lost, e)
		}
		e = next
	}
	return lost
}

// resetSent marks every entry unwritten, for a new connection, and drops
// the kindLive ones, which were for the connection that ended.
func (o *outbox) resetSent() {
	for e := o.head; e != nil; {
		next := e.next
		e.sent = false
		if e.kind == kindLive {
			o.unlink(e)
		}
		e = next
	}
}

// drain removes and returns every entry.
func (o *outbox) drain() []*entry {
	var all []*entry
	for e := o.head; e != nil; {
		next := e.next
		e.prev, e.next = nil, nil
		all = append(all, e)
		e = next
	}
	o.head, o.tail, o.byCID, o.n = nil, nil, nil, 0
	return all
}
