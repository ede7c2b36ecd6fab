package boltstore

import (
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/wshub/wshub/store"
)

// appendFill is the FillPercent of buckets whose new keys come last.
const appendFill = 0.95

// writer applies requests inside one write transaction of the committer.
type writer struct {
	s                      *Store
	tx                     *bolt.Tx
	now                    time.Time
	meta, log, acks        *bolt.Bucket
	hist, pend, pendN      *bolt.Bucket
	pendC, pendID, kept    *bolt.Bucket // checkpoints only
	rooms, userRooms       *bolt.Bucket
	maxHistory, maxPending uint64 // 0: unbounded
	maxPerSender           uint64 // 0: unbounded
	counts                 *counter
	keys                   []byte   // slab for the 8-byte keys of this transaction
	slab                   []byte   // slab for other keys and values of this transaction
	trimmed                []uint64 // checkpoint: log positions of messages that left their history
	lastSeq                map[string]uint64
	marks                  map[string]uint64 // string(pairKey(user, conv)) -> marker moved in this batch
	newCIDs                map[string]*entry
}

// newWriter returns a writer for tx. counts, when not nil, counts the
// queues for the pending bounds in batch transactions (nil in checkpoints);
// the caller commits or rolls back w.counts with tx. It is not used when
// both bounds are off.
func (s *Store) newWriter(tx *bolt.Tx, now time.Time, counts *counter) *writer {
	w := &writer{
		s:         s,
		tx:        tx,
		now:       now,
		meta:      tx.Bucket(bucketMeta),
		log:       tx.Bucket(bucketLog),
		acks:      tx.Bucket(bucketAcks),
		hist:      tx.Bucket(bucketHist),
		pend:      tx.Bucket(bucketPend),
		pendN:     tx.Bucket(bucketPendN),
		rooms:     tx.Bucket(bucketRooms),
		userRooms: tx.Bucket(bucketUserRooms),
		lastSeq:   make(map[string]uint64),
		marks:     make(map[string]uint64),
		newCIDs:   make(map[string]*entry),
	}
	// Keys of these buckets only grow, so full pages are best (bbolt's
	// default leaves appended-to pages half empty).
	w.log.FillPercent = appendFill
	w.acks.FillPercent = appendFill
	if s.opts.MaxHistory > 0 {
		w.maxHistory = uint64(s.opts.MaxHistory)
	}
	if s.opts.MaxPending > 0 {
		w.maxPending = uint64(s.opts.MaxPending)
	}
	if s.opts.MaxPendingPerSender > 0 {
		w.maxPerSender = uint64(s.opts.MaxPendingPerSender)
	}
	if counts != nil && (w.maxPending > 0 || w.maxPerSender > 0) {
		w.counts = counts
		w.counts.begin(tx, s.ov)
	}
	return w
}

// logRequest applies one request in the committer's batch transaction: an
// Append becomes a log record, an Ack an ack record (r.rec), a Join or Leave
// is written to the index directly.
func (w *writer) logRequest(r *request) error {
	r.rec, r.dup, r.refused = nil, false, nil
	switch r.kind {
	case opAppend:
		return w.logAppend(r)
	case opAck:
		rec := ackRec{user: r.user, ids: r.ids}
		pos, err := w.log.NextSequence()
		if err != nil {
			return err
		}
		if err := w.acks.Put(w.key(pos), encodeAckRec(rec)); err != nil {
			return err
		}
		if w.counts != nil {
			w.counts.ack(r.user, r.ids)
		}
		r.rec = rec
		return nil
	case opJoin:
		return w.join([]byte(r.room), []byte(r.user))
	case opLeave:
		return w.leave([]byte(r.room), []byte(r.user))
	case opRead:
		return w.logRead(r)
	}
	return fmt.Errorf("wshub/boltstore: unknown request kind %d", r.kind)
}

// logAppend logs an Append, unless it is a duplicate (r.dup) or a queue is
// full (r.refused): then it writes nothing and the rest of the batch goes
// on.
func (w *writer) logAppend(r *request) error {
	if r.cid != "" {
		if m, ok, err := w.findCID(r.cid); err != nil || ok {
			r.out, r.dup = m, ok
			return err
		}
	}
	if w.counts != nil && len(r.pending) > 0 {
		if err := w.counts.check(r.pending, r.msg.From, w.maxPending, w.maxPerSender); err != nil {
			r.refused = err
			return nil
		}
	}
	conv := r.msg.Conv
	last, ok := w.lastSeq[conv]
	fresh := false
	if !ok {
		if last = w.s.ov.lastSeq(conv); last == 0 {
			if hb := w.hist.Bucket([]byte(conv)); hb != nil {
				last = hb.Sequence()
			} else {
				// New, or dropped after its messages expired: above
				// every seq a dropped conversation reached.
				fresh, last = true, seqOf(w.meta.Get(keySeqFloor))
			}
		}
	}
	seq := last + 1
	pos, err := w.log.NextSequence()
	if err != nil {
		return err
	}
	created := w.now.UnixMilli()
	setRecordCreated(r.logRec, created)
	enc := r.logRec[r.encOff:]
	setEncodedSeq(enc, seq)
	if err := w.log.Put(w.key(pos), r.logRec); err != nil {
		return err
	}
	e := &entry{pos: pos, enc: enc, id: r.msg.ID, conv: conv, from: r.msg.From, seq: seq, bodyLen: len(r.msg.Body), created: created,
		to: r.msg.To, ts: r.msg.TS, direct: store.IsDirect(&r.msg), fresh: fresh}
	rec := appendRec{e: e, pending: r.pending, cid: r.cid}
	if w.counts != nil {
		w.counts.enqueue(r.pending, r.msg.From, r.msg.ID)
	}
	w.lastSeq[conv] = seq
	w.marks[string(pairKey(r.msg.From, conv))] = seq
	if k, m, ok := freshMark(e); ok {
		w.marks[k] = max(w.marks[k], m)
	}
	if r.cid != "" {
		w.newCIDs[r.cid] = e
	}
	r.rec = rec
	r.out = r.msg
	r.out.Seq = seq
	return nil
}

// key returns seqKey(n) from a slab: bbolt keeps keys until the commit.
func (w *writer) key(n uint64) []byte {
	if len(w.keys) < 8 {
		w.keys = make([]byte, 8*256)
	}
	k := w.keys[:8:8]
	w.keys = w.keys[8:]
	binary.BigEndian.PutUint64(k, n)
	return k
}

// pairKey returns pairKey(a, b) from a slab.
func (w *writer) pairKey(a, b string) []byte {
	return appendPair(w.bytes(pairKeyLen(a, b))[:0], a, b)
}

// bytesOf returns a copy of s from a slab.
func (w *writer) bytesOf(s string) []byte {
	b := w.bytes(len(s))
	copy(b, s)
	return b
}

// bytes returns n bytes from a slab: bbolt keeps the keys and values it is
// given until the commit.
func (w *writer) bytes(n int) []byte {
	if len(w.slab) < n {
		w.slab = make([]byte, max(n, 32<<10))
	}
	b := w.slab[:n:n]
	w.slab = w.slab[n:]
	return b
}

// findCID looks up the message recorded with cidKey key: in this batch,
// then in the log.
func (w *writer) findCID(key string) (store.Message, bool, error) {
	if e := w.newCIDs[key]; e != nil {
		m, err := decodeMessage(e.enc)
		return m, err == nil, err
	}
	pos, ok := w.s.cids.get(key)
	if !ok {
		return store.Message{}, false, nil
	}
	rec := w.log.Get(seqKey(pos))
	if rec == nil {
		return store.Message{}, false, nil // trimmed from the history
	}
	m, err := logMessage(rec)
	if err != nil {
		return store.Message{}, false, corruptf(w.s.path, "log record %d: %v", pos, err)
	}
	return m, true, nil
}

// checkpoint writes the overlay ov into the index, empties the acks bucket
// and advances meta/gen and meta/applied. Keys are written in sorted
// order, which keeps bbolt's page splits cheap.
func (w *writer) checkpoint(ov *overlay) error {
	// Only checkpoints write these: a batch does not open them (opening a
	// bucket costs allocations).
	w.pendC, w.pendID, w.kept = w.tx.Bucket(bucketPendC), w.tx.Bucket(bucketPendID), w.tx.Bucket(bucketKept)
	for _, conv := range sortedKeys(ov.convs) {
		if err := w.writeHistory(conv, ov.convs[conv]); err != nil {
			return err
		}
	}
	for _, user := range sortedKeys(ov.users) {
		ul := ov.users[user]
		live := make([]*entry, 0, len(ul.ents))
		for _, pe := range ul.ents {
			if !pe.acked {
				live = append(live, pe.e)
			}
		}
		if err := w.updateQueue(user, ul.indexAcks, live); err != nil {
			return err
		}
	}
	if err := w.writeInbox(ov); err != nil {
		return err
	}
	// The messages that left their history leave the log, unless a
	// queue still holds them: they stay until acked.
	for _, pos := range w.trimmed {
		if err := w.release(pos, false); err != nil {
			return err
		}
	}
	if err := w.tx.DeleteBucket(bucketAcks); err != nil {
		return err
	}
	if _, err := w.tx.CreateBucket(bucketAcks); err != nil {
		return err
	}
	if err := w.meta.Put(keyGen, seqKey(ov.gen)); err != nil {
		return err
	}
	if ov.lastPos > 0 {
		return w.meta.Put(keyApplied, seqKey(ov.lastPos))
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// writeHistory indexes cl's messages in conv's history and trims it to
// MaxHistory. The trimmed messages' log positions go to w.trimmed: the
// checkpoint deletes them from the log once the queues are written, unless
// a queue holds them.
func (w *writer) writeHistory(conv string, cl *convLog) error {
	if len(cl.ents) == 0 {
		return nil
	}
	hb := w.hist.Bucket([]byte(conv))
	if hb == nil {
		var err error
		if hb, err = w.hist.CreateBucket([]byte(conv)); err != nil {
			return err
		}
		// Above 1 when it starts at meta/seqfloor (retention.go).
		if err := hb.SetSequence(cl.base - 1); err != nil {
			return err
		}
	}
	hb.FillPercent = appendFill
	last := cl.last()
	if hb.Sequence() != cl.base-1 {
		return corruptf(w.s.path, "history %q ends at seq %d, the log continues at %d", conv, hb.Sequence(), cl.base)
	}
	for _, e := range cl.ents {
		if w.maxHistory > 0 && e.seq+w.maxHistory <= last {
			w.trimmed = append(w.trimmed, e.pos) // trimmed at once
			continue
		}
		if err := hb.Put(seqKey(e.seq), seqKey(e.pos)); err != nil {
			return err
		}
	}
	if err := hb.SetSequence(last); err != nil {
		return err
	}
	if w.maxHistory > 0 && last > w.maxHistory {
		limit := last - w.maxHistory
		c := hb.Cursor()
		for k, v := c.First(); k != nil && seqOf(k) <= limit; k, v = c.First() {
			w.trimmed = append(w.trimmed, seqOf(v))
			if err := c.Delete(); err != nil {
				return err
			}
		}
	}
	return nil
}

// release deletes the log record at pos, which is in no history, unless a
// pending queue still holds it; then it is marked kept (once queued is
// false: the record just left its history). A kept record is released
// again when a queue drops it, and goes with the last one.
func (w *writer) release(pos uint64, wasKept bool) error {
	key := seqKey(pos)
	rec := w.log.Get(key)
	if rec == nil {
		return w.kept.Delete(key)
	}
	users, err := recordPending(rec)
	if err != nil {
		return corruptf(w.s.path, "log record %d: %v", pos, err)
	}
	for _, u := range users {
		if q := w.pend.Bucket([]byte(u)); q != nil && q.Get(key) != nil {
			if wasKept {
				return nil
			}
			return w.kept.Put(key, emptyValue)
		}
	}
	if err := w.log.Delete(key); err != nil {
		return err
	}
	if wasKept {
		return w.kept.Delete(key)
	}
	return nil
}

// updateQueue removes the acked ids from user's pending queue and appends
// ents, keeping pendn, pendc and pendid in step with it. Nothing else
// leaves a queue.
func (w *writer) updateQueue(user string, acked map[string]struct{}, ents []*entry) error {
	ub := []byte(user)
	q := w.pend.Bucket(ub)
	if q == nil && len(ents) == 0 {
		return nil
	}
	if q == nil {
		var err error
		if q, err = w.pend.CreateBucket(ub); err != nil {
			return err
		}
	}
	q.FillPercent = appendFill
	// A user's message ids are time-ordered (the hub's UUIDv7s), so its
	// keys in pendid come last in its range as well.
	w.pendID.FillPercent = appendFill
	count := seqOf(w.pendN.Get(ub))
	senders := make(map[string]int64) // changes of pendc
	for id := range acked {
		idKey := pairKey(user, id)
		v := w.pendID.Get(idKey)
		if v == nil {
			continue // not in the queue
		}
		key := append([]byte(nil), v...)
		if from := q.Get(key); from != nil {
			senders[string(from)]--
			count--
			if err := q.Delete(key); err != nil {
				return err
			}
			if w.kept.Get(key) != nil {
				if err := w.release(seqOf(key), true); err != nil {
					return err
				}
			}
		}
		if err := w.pendID.Delete(idKey); err != nil {
			return err
		}
	}
	for _, e := range ents {
		key := w.key(e.pos)
		if err := q.Put(key, w.bytesOf(e.from)); err != nil {
			return err
		}
		if err := w.pendID.Put(w.pairKey(user, e.id), key); err != nil {
			return err
		}
		senders[e.from]++
		count++
	}
	for _, from := range sortedKeys(senders) {
		pair := pairKey(user, from)
		n := int64(seqOf(w.pendC.Get(pair))) + senders[from]
		var err error
		if n > 0 {
			err = w.pendC.Put(pair, seqKey(uint64(n)))
		} else {
			err = w.pendC.Delete(pair)
		}
		if err != nil {
			return err
		}
	}
	if count == 0 {
		if err := w.pend.DeleteBucket(ub); err != nil {
			return err
		}
		return w.pendN.Delete(ub)
	}
	return w.pendN.Put(ub, seqKey(count))
}

func (w *writer) join(room, user []byte) error {
	rb, err := w.rooms.CreateBucketIfNotExists(room)
	if err != nil {
		return err
	}
	if err := rb.Put(user, emptyValue); err != nil {
		return err
	}
	ub, err := w.userRooms.CreateBucketIfNotExists(user)
	if err != nil {
		return err
	}
	return ub.Put(room, emptyValue)
}

func (w *writer) leave(room, user []byte) error {
	if err := deleteMember(w.rooms, room, user); err != nil {
		return err
	}
	return deleteMember(w.userRooms, user, room)
}

// deleteMember deletes key from the bucket top/name, and the bucket once it
// is empty.
func deleteMember(top *bolt.Bucket, name, key []byte) error {
	b := top.Bucket(name)
	if b == nil {
		return nil
	}
	if err := b.Delete(key); err != nil {
		return err
	}
	if k, _ := b.Cursor().First(); k == nil {
		return top.DeleteBucket(name)
	}
	return nil
}
