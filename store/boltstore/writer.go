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
	rooms, userRooms       *bolt.Bucket
	maxHistory, maxPending uint64 // 0: unbounded

	keys []byte // slab for the 8-byte keys of this transaction

	// Logged by this transaction, not yet in the overlay.
	lastSeq map[string]uint64 // conv -> last seq assigned
	newCIDs map[string]*entry // cidKey -> message
}

func (s *Store) newWriter(tx *bolt.Tx, now time.Time) *writer {
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
	return w
}

// logRequest applies one request in the committer's batch transaction: an
// Append becomes a log record, an Ack an ack record (r.rec), a Join or Leave
// is written to the index directly.
func (w *writer) logRequest(r *request) error {
	r.rec, r.dup = nil, false
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
		r.rec = rec
		return nil
	case opJoin:
		return w.join([]byte(r.room), []byte(r.user))
	case opLeave:
		return w.leave([]byte(r.room), []byte(r.user))
	}
	return fmt.Errorf("wshub/boltstore: unknown request kind %d", r.kind)
}

func (w *writer) logAppend(r *request) error {
	if r.cid != "" {
		if m, ok, err := w.findCID(r.cid); err != nil || ok {
			r.out, r.dup = m, ok
			return err
		}
	}
	conv := r.msg.Conv
	last, ok := w.lastSeq[conv]
	if !ok {
		if last = w.s.ov.lastSeq(conv); last == 0 {
			if hb := w.hist.Bucket([]byte(conv)); hb != nil {
				last = hb.Sequence()
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
	e := &entry{pos: pos, enc: enc, id: r.msg.ID, conv: conv, seq: seq, bodyLen: len(r.msg.Body), created: created}
	rec := appendRec{e: e, pending: r.pending, cid: r.cid}
	w.lastSeq[conv] = seq
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
		if err := w.updateQueue([]byte(user), ul.indexAcks, live); err != nil {
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
// MaxHistory, deleting the trimmed messages from the log.
func (w *writer) writeHistory(conv string, cl *convLog) error {
	if len(cl.ents) == 0 {
		return nil
	}
	hb, err := w.hist.CreateBucketIfNotExists([]byte(conv))
	if err != nil {
		return err
	}
	hb.FillPercent = appendFill
	last := cl.last()
	if hb.Sequence() != cl.base-1 {
		return corruptf(w.s.path, "history %q ends at seq %d, the log continues at %d", conv, hb.Sequence(), cl.base)
	}
	for _, e := range cl.ents {
		if w.maxHistory > 0 && e.seq+w.maxHistory <= last {
			// Trimmed at once.
			if err := w.log.Delete(seqKey(e.pos)); err != nil {
				return err
			}
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
			if err := w.log.Delete(append([]byte(nil), v...)); err != nil {
				return err
			}
			if err := c.Delete(); err != nil {
				return err
			}
		}
	}
	return nil
}

// updateQueue removes the acked ids from user's pending queue, appends
// ents, and drops the oldest entries beyond MaxPending.
func (w *writer) updateQueue(user []byte, acked map[string]struct{}, ents []*entry) error {
	q := w.pend.Bucket(user)
	if q == nil && len(ents) == 0 {
		return nil
	}
	if q == nil {
		var err error
		if q, err = w.pend.CreateBucket(user); err != nil {
			return err
		}
	}
	q.FillPercent = appendFill
	count := seqOf(w.pendN.Get(user))
	if len(acked) > 0 {
		// Entries whose message left the history go too.
		left := len(acked)
		c := q.Cursor()
		for k, _ := c.First(); k != nil && left > 0; {
			rec := w.log.Get(k)
			if rec != nil {
				id, err := logMessageID(rec)
				if err != nil {
					return corruptf(w.s.path, "log record %d: %v", seqOf(k), err)
				}
				if _, ok := acked[id]; !ok {
					k, _ = c.Next()
					continue
				}
				left--
			}
			count--
			deleted := append([]byte(nil), k...)
			if err := c.Delete(); err != nil {
				return err
			}
			k, _ = c.Seek(deleted) // the key after the deleted one
		}
	}
	for _, e := range ents {
		if err := q.Put(w.key(e.pos), emptyValue); err != nil {
			return err
		}
		count++
	}
	if w.maxPending > 0 && count > w.maxPending {
		c := q.Cursor()
		for k, _ := c.First(); k != nil && count > w.maxPending; k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return err
			}
			count--
		}
	}
	if k, _ := q.Cursor().First(); k == nil {
		if err := w.pend.DeleteBucket(user); err != nil {
			return err
		}
		return w.pendN.Delete(user)
	}
	return w.pendN.Put(user, seqKey(count))
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
