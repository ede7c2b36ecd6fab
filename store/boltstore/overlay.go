package boltstore

import "time"

// The write path in two steps
//
// A write first goes to the journal: the committer appends one record per
// Append or Ack to the journal bucket, in one transaction per batch, and
// syncs. The journal's pages are the tail of one bucket, so a batch of
// hundreds of messages to as many conversations dirties a handful of pages
// instead of several per message; that is what makes a durable commit
// cheap. Once the batch is committed, its records are applied to the
// overlay, an in-memory view of the journal, and the callers are answered.
//
// Every CheckpointEvery records or CheckpointInterval (and at Close), the
// committer checkpoints: in one transaction it applies the whole overlay
// to the index buckets (history, pending queues, cid records), empties the
// journal and increments meta/applied. Then it starts a new, empty
// overlay. Open replays a journal left by a crash into the overlay.
//
// Readers merge the index with the overlay. A reader copies what it needs
// from the overlay (and its generation) under mu, then reads the index in
// a read transaction: if meta/applied there has reached the overlay's
// generation, the checkpoint of that overlay is already in the index and
// the copy is ignored; otherwise the index holds everything before the
// overlay and the two are joined.

// overlay is the in-memory view of the journal: the records of generation
// gen, not yet checkpointed into the index.
//
// The maps and slices reachable from convs and users are guarded by
// Store.mu: the committer writes them under the write lock, readers copy
// from them under the read lock. An entry never changes once created, and
// convLog.ents and userLog.ents only grow (entries are marked acked rather
// than removed), so a reader may keep a copied slice header after
// unlocking. cids, records and first are used by the committer only.
type overlay struct {
	gen   uint64
	convs map[string]*convLog
	users map[string]*userLog

	cids    map[string]*entry // cidKey -> the message stored with it
	records int               // journal records in this generation
	first   time.Time         // when the first of them was committed
}

func newOverlay(gen uint64) *overlay {
	return &overlay{
		gen:   gen,
		convs: make(map[string]*convLog),
		users: make(map[string]*userLog),
		cids:  make(map[string]*entry),
	}
}

// entry is one stored message of the overlay. Immutable.
type entry struct {
	enc     []byte // encodeMessage, seq included
	id      string
	conv    string
	seq     uint64
	bodyLen int   // len(Body): enc ends with it
	created int64 // Unix ms of the commit, the age of its cid record
}

// convLog holds the overlay's messages of one conversation: ents[i] has
// seq base+i, and base is one past the index's last seq.
type convLog struct {
	base uint64
	ents []*entry
}

func (c *convLog) last() uint64 { return c.base + uint64(len(c.ents)) - 1 }

// userLog holds the overlay's changes to one user's pending queue: the
// messages enqueued (in order; acked ones are marked) and every id acked,
// to be removed from the index's queue too.
type userLog struct {
	ents      []*pendEntry
	byID      map[string]*pendEntry // the newest entry of each id in ents
	indexAcks map[string]struct{}
}

type pendEntry struct {
	e     *entry
	acked bool
}

// appendRec is a committed Append, as the journal holds it.
type appendRec struct {
	e       *entry
	pending []string
	cid     string // cidKey, "" without a CID
}

// ackRec is a committed Ack, as the journal holds it.
type ackRec struct {
	user string
	ids  []string
}

// applyAppend records a committed append. Called with Store.mu held for
// writing (or before the store is shared).
func (ov *overlay) applyAppend(r appendRec, now time.Time) {
	ov.touch(now)
	cl := ov.convs[r.e.conv]
	if cl == nil {
		cl = &convLog{base: r.e.seq}
		ov.convs[r.e.conv] = cl
	}
	cl.ents = append(cl.ents, r.e)
	for _, u := range r.pending {
		ul := ov.user(u)
		if old := ul.byID[r.e.id]; old != nil {
			old.acked = true // the same id again: the newest copy replaces it
		}
		pe := &pendEntry{e: r.e}
		ul.ents = append(ul.ents, pe)
		ul.byID[r.e.id] = pe
	}
	if r.cid != "" {
		ov.cids[r.cid] = r.e
	}
}

// applyAck records a committed ack. Called with Store.mu held for writing
// (or before the store is shared).
func (ov *overlay) applyAck(r ackRec, now time.Time) {
	ov.touch(now)
	ul := ov.user(r.user)
	for _, id := range r.ids {
		if pe := ul.byID[id]; pe != nil {
			pe.acked = true
			delete(ul.byID, id)
		}
		// The index may hold the id too (enqueued in an earlier generation).
		ul.indexAcks[id] = struct{}{}
	}
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
		ul = &userLog{byID: make(map[string]*pendEntry), indexAcks: make(map[string]struct{})}
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
