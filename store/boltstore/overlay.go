package boltstore

import "time"

// The write path in two steps
//
// A write first goes to the log: the committer appends one record per
// Append (the message, its pending users and cid) or Ack (to the acks
// bucket), in one transaction per batch, and syncs. New records always
// come last in the log, so a batch of hundreds of messages to as many
// conversations dirties a handful of pages instead of several per
// message; that is what makes a durable commit cheap. Once the batch is
// committed, its records are applied to the overlay, an in-memory view of
// the records not yet indexed, and the callers are answered.
//
// Every CheckpointEvery records or CheckpointInterval (and at Close), the
// committer checkpoints: in one transaction it writes the overlay into the
// index (history and pending queues point to log records; cid records),
// trims to the retention bounds, empties the acks bucket and advances
// meta/gen and meta/applied. Then it starts a new, empty overlay. Open
// replays the records after meta/applied into the overlay, so a crash
// loses nothing that was committed.
//
// Readers merge the index with the overlay. A reader copies what it needs
// from the overlay (and its generation) under mu, then reads the index in
// a read transaction: if meta/gen there has reached the overlay's
// generation, the checkpoint of that overlay is already in the index and
// the copy is ignored; otherwise the index holds everything before the
// overlay and the two are joined.

// overlay is the in-memory view of the records of generation
// gen, not yet checkpointed into the index.
//
// The maps and slices reachable from convs and users are guarded by
// Store.mu: the committer writes them under the write lock, readers copy
// from them under the read lock. An entry never changes once created, and
// convLog.ents and userLog.ents only grow (entries are marked acked rather
// than removed), so a reader may keep a copied slice header after
// unlocking. records, lastPos and first are used by the committer only.
type overlay struct {
	gen   uint64
	convs map[string]*convLog
	users map[string]*userLog
	heads map[string]map[string]inboxHead // user -> conv -> newest head
	marks map[string]uint64               // string(pairKey(user, conv)) -> marker

	records int       // log and ack records in this generation
	lastPos uint64    // log position of the newest append record, 0 if none
	first   time.Time // when the first record was committed
}

func newOverlay(gen uint64) *overlay {
	return &overlay{
		gen:   gen,
		convs: make(map[string]*convLog),
		users: make(map[string]*userLog),
		heads: make(map[string]map[string]inboxHead),
		marks: make(map[string]uint64),
	}
}

// entry is one stored message of the overlay. Immutable.
type entry struct {
	pos     uint64 // position of its record in the log
	enc     []byte // appendMessage encoding, seq included (part of the log record)
	id      string
	conv    string
	from    string
	seq     uint64
	bodyLen int   // len(Body): enc ends with it
	created int64 // Unix ms of the commit, the age of its cid record
	to      string
	ts      int64 // the message's TS
	direct  bool  // store.IsDirect: indexed in the inboxes of from and to
	// fresh: the first message of a conversation that has no history
	// bucket (new, or dropped after its messages expired): its seq is one
	// past meta/seqfloor (see retention.go). Not stored: Open recomputes
	// it in replay.
	fresh bool
}

// inboxHead is the head of a direct conversation in a user's inbox.
type inboxHead struct {
	conv, peer string
	seq        uint64
	ts         int64
}

// readRec is a MarkRead that moved a marker, as the acks bucket holds it.
type readRec struct {
	user, conv string
	seq        uint64
}

// convLog holds the overlay's messages of one conversation: ents[i] has
// seq base+i, and base is one past the index's last seq.
type convLog struct {
	base uint64
	ents []*entry
}

func (c *convLog) last() uint64 { return c.base + uint64(len(c.ents)) - 1 }

// userLog holds the overlay's changes to one user's pending queue: the
// messages enqueued (in order; acked ones are marked) and the acked ids
// that were not among them, to be removed from the index's queue.
type userLog struct {
	ents      []*pendEntry
	byID      map[string]*pendEntry // unacked entries of ents by id; nil until the first ack
	indexAcks map[string]struct{}
}

type pendEntry struct {
	e     *entry
	acked bool
}

// appendRec is a committed Append, as the log holds it.
type appendRec struct {
	e       *entry
	pending []string
	cid     string // cidKey, "" without a CID
}

// ackRec is a committed Ack, as the acks bucket holds it.
type ackRec struct {
	user string
	ids  []string
}

// applyAppend records a committed append. Called with Store.mu held for
// writing (or before the store is shared).
func (ov *overlay) applyAppend(r appendRec, now time.Time) {
	ov.touch(now)
	ov.lastPos = max(ov.lastPos, r.e.pos)
	cl := ov.convs[r.e.conv]
	if cl == nil {
		cl = &convLog{base: r.e.seq}
		ov.convs[r.e.conv] = cl
	}
	cl.ents = append(cl.ents, r.e)
	ov.marks[string(pairKey(r.e.from, r.e.conv))] = r.e.seq
	if k, m, ok := freshMark(r.e); ok {
		ov.marks[k] = max(ov.marks[k], m)
	}
	if r.e.direct {
		ov.head(r.e.from, inboxHead{conv: r.e.conv, peer: r.e.to, seq: r.e.seq, ts: r.e.ts})
		ov.head(r.e.to, inboxHead{conv: r.e.conv, peer: r.e.from, seq: r.e.seq, ts: r.e.ts})
	}
	for _, u := range r.pending {
		ul := ov.user(u)
		pe := &pendEntry{e: r.e}
		ul.ents = append(ul.ents, pe)
		if ul.byID != nil {
			ul.byID[r.e.id] = pe
		}
	}
}

// applyAck records a committed ack. Called with Store.mu held for writing
// (or before the store is shared).
func (ov *overlay) applyAck(r ackRec, now time.Time) {
	ov.touch(now)
	ul := ov.user(r.user)
	if ul.byID == nil { // built at the first ack: appends alone need no index
		ul.byID = make(map[string]*pendEntry, len(ul.ents))
		for _, pe := range ul.ents {
			if !pe.acked {
				ul.byID[pe.e.id] = pe
			}
		}
	}
	for _, id := range r.ids {
		if pe := ul.byID[id]; pe != nil {
			pe.acked = true
			delete(ul.byID, id)
		} else {
			ul.indexAcks[id] = struct{}{} // maybe enqueued in an earlier generation
		}
	}
}

// head records h as the newest head of h.conv in user's inbox.
func (ov *overlay) head(user string, h inboxHead) {
	m := ov.heads[user]
	if m == nil {
		m = make(map[string]inboxHead)
		ov.heads[user] = m
	}
	m[h.conv] = h
}

// applyRead records a committed MarkRead. Called with Store.mu held for
// writing (or before the store is shared).
func (ov *overlay) applyRead(r readRec, now time.Time) {
	ov.touch(now)
	k := string(pairKey(r.user, r.conv))
	ov.marks[k] = max(ov.marks[k], r.seq)
}

func (ov *overlay) touch(now time.Time) {
	if ov.records == 0 {
		ov.first = now
	}
	ov.records++
}

func (ov *overlay) user(u string) *userLog {
	ul := ov.users[u]
	if ul == nil {
		ul = &userLog{indexAcks: make(map[string]struct{})}
		ov.users[u] = ul
	}
	return ul
}

// lastSeq returns the last seq the overlay assigned in conv, or 0.
func (ov *overlay) lastSeq(conv string) uint64 {
	if cl := ov.convs[conv]; cl != nil {
		return cl.last()
	}
	return 0
}

// freshMark returns the read marker an append sets for the recipient of a
// direct conversation that starts above seq 1 (e.fresh): seq-1, so that
// Seq - Read counts the one message and not the seqs below it, which
// never existed in this conversation or expired from it.
func freshMark(e *entry) (pair string, marker uint64, ok bool) {
	if !e.fresh || !e.direct || e.seq <= 1 || e.to == e.from {
		return "", 0, false
	}
	return string(pairKey(e.to, e.conv)), e.seq - 1, true
}
