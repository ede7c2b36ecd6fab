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
	s                        *Store
	tx                       *bolt.Tx
	now                      time.Time
	meta, journalB           *bolt.Bucket
	hist, pend, cids, cidlog *bolt.Bucket
	rooms, userRooms         *bolt.Bucket
	maxHistory, maxPending   uint64 // 0: unbounded
	maxCIDs                  uint64 // 0: unbounded
	cidCutoff                int64  // records created before (Unix ms) may go

	// Journaled by this transaction, not yet in the overlay.
	lastSeq map[string]uint64 // conv -> last seq assigned
	newCIDs map[string]*entry // cidKey -> message
}

func (s *Store) newWriter(tx *bolt.Tx, now time.Time) *writer {
	w := &writer{
		s:         s,
		tx:        tx,
		now:       now,
		meta:      tx.Bucket(bucketMeta),
		journalB:  tx.Bucket(bucketJournal),
		hist:      tx.Bucket(bucketHist),
		pend:      tx.Bucket(bucketPend),
		cids:      tx.Bucket(bucketCIDs),
		cidlog:    tx.Bucket(bucketCIDLog),
		rooms:     tx.Bucket(bucketRooms),
		userRooms: tx.Bucket(bucketUserRooms),
		cidCutoff: now.Add(-s.opts.CIDRetention).UnixMilli(),
		lastSeq:   make(map[string]uint64),
		newCIDs:   make(map[string]*entry),
	}
	// Keys of these buckets only grow, so full pages are best (bbolt's
	// default leaves appended-to pages half empty).
	w.journalB.FillPercent = appendFill
	w.cidlog.FillPercent = appendFill
	if s.opts.MaxHistory > 0 {
		w.maxHistory = uint64(s.opts.MaxHistory)
	}
	if s.opts.MaxPending > 0 {
		w.maxPending = uint64(s.opts.MaxPending)
	}
	if s.opts.MaxCIDs > 0 {
		w.maxCIDs = uint64(s.opts.MaxCIDs)
	}
	return w
}

// journal applies one request in the committer's batch transaction: an
// Append or Ack becomes a journal record (r.rec), a Join or Leave is written
// to the index directly.
func (w *writer) journal(r *request) error {
	r.rec, r.dup = nil, false
	switch r.kind {
	case opAppend:
		return w.journalAppend(r)
	case opAck:
		rec := ackRec{user: r.user, ids: r.ids}
		if err := w.putJournal(encodeAckRec(rec)); err != nil {
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

func (w *writer) putJournal(rec []byte) error {
	n, err := w.journalB.NextSequence()
	if err != nil {
		return err
	}
	return w.journalB.Put(seqKey(n), rec)
}

func (w *writer) journalAppend(r *request) error {
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
	setEncodedSeq(r.enc, seq)
	e := &entry{enc: r.enc, id: r.msg.ID, conv: conv, seq: seq, bodyLen: len(r.msg.Body), created: w.now.UnixMilli()}
	rec := appendRec{e: e, pending: r.pending, cid: r.cid}
	if err := w.putJournal(encodeAppendRec(rec)); err != nil {
		return err
	}
	w.lastSeq[conv] = seq
	if r.cid != "" {
		w.newCIDs[r.cid] = e
	}
	r.rec = rec
	r.out = r.msg
	r.out.Seq = seq
	return nil
}

// findCID looks up the message recorded with cidKey key: in this batch, in
// the overlay, then in the index. A message from the index whose history
// was trimmed comes back without its body.
func (w *writer) findCID(key string) (store.Message, bool, error) {
	e := w.newCIDs[key]
	if e == nil {
		e = w.s.ov.cids[key]
	}
	if e != nil {
		m, err := decodeMessage(e.enc)
		return m, err == nil, err
	}
	v := w.cids.Get([]byte(key))
	if v == nil {
		return store.Message{}, false, nil
	}
	if len(v) < 8 {
		return store.Message{}, false, corruptf(w.s.path, "cid record")
	}
	m, err := decodeMessage(v[8:])
	if err != nil {
		return store.Message{}, false, corruptf(w.s.path, "cid record: %v", err)
	}
	if hb := w.hist.Bucket([]byte(m.Conv)); hb != nil {
		if hv := hb.Get(seqKey(m.Seq)); hv != nil {
			if full, err := decodeMessage(hv); err == nil && full.ID == m.ID {
				return full, true, nil
			}
		}
	}
	return m, true, nil
}

// checkpoint writes the overlay ov into the index and empties the journal.
// Keys are written in sorted order, which keeps bbolt's page splits cheap.
func (w *writer) checkpoint(ov *overlay) error {
	for _, conv := range sortedKeys(ov.convs) {
		if err := w.writeHistory(conv, ov.convs[conv]); err != nil {
			return err
		}
	}
	for _, user := range sortedKeys(ov.users) {
		ul := ov.users[user]
		if len(ul.indexAcks) > 0 {
			if err := w.ack([]byte(user), ul.indexAcks); err != nil {
				return err
			}
		}
		live := make([]*entry, 0, len(ul.ents))
		for _, pe := range ul.ents {
			if !pe.acked {
				live = append(live, pe.e)
			}
		}
		if w.maxPending > 0 && uint64(len(live)) > w.maxPending {
			live = live[uint64(len(live))-w.maxPending:]
		}
		if err := w.enqueue([]byte(user), live); err != nil {
			return err
		}
	}
	for _, key := range sortedKeys(ov.cids) {
		if err := w.recordCID([]byte(key), ov.cids[key]); err != nil {
			return err
		}
	}
	if err := w.trimCIDs(len(ov.cids)); err != nil {
		return err
	}
	if err := w.tx.DeleteBucket(bucketJournal); err != nil {
		return err
	}
	if _, err := w.tx.CreateBucket(bucketJournal); err != nil {
		return err
	}
	return w.meta.Put(keyApplied, seqKey(ov.gen))
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// writeHistory appends cl's messages to conv's history and trims it to
// MaxHistory.
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
		return corruptf(w.s.path, "history %q ends at seq %d, the journal continues at %d", conv, hb.Sequence(), cl.base)
	}
	for _, e := range cl.ents {
		if w.maxHistory > 0 && e.seq+w.maxHistory <= last {
			continue // trimmed anyway
		}
		if err := hb.Put(seqKey(e.seq), e.enc); err != nil {
			return err
		}
	}
	if err := hb.SetSequence(last); err != nil {
		return err
	}
	if w.maxHistory > 0 && last > w.maxHistory {
		limit := last - w.maxHistory
		c := hb.Cursor()
		for k, _ := c.First(); k != nil && seqOf(k) <= limit; k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return err
			}
		}
	}
	return nil
}

// enqueue appends ents to user's pending queue, dropping the oldest entries
// beyond MaxPending.
func (w *writer) enqueue(user []byte, ents []*entry) error {
	if len(ents) == 0 {
		return nil
	}
	ub, err := w.pend.CreateBucketIfNotExists(user)
	if err != nil {
		return err
	}
	q, err := ub.CreateBucketIfNotExists(keyPendQueue)
	if err != nil {
		return err
	}
	q.FillPercent = appendFill
	ix, err := ub.CreateBucketIfNotExists(keyPendIndex)
	if err != nil {
		return err
	}
	count := seqOf(ub.Get(keyPendCount))
	for _, e := range ents {
		id := []byte(e.id)
		if old := ix.Get(id); old != nil { // the same id again: keep the newest
			if err := q.Delete(append([]byte(nil), old...)); err != nil {
				return err
			}
			count--
		}
		n, err := q.NextSequence()
		if err != nil {
			return err
		}
		k := seqKey(n)
		if err := q.Put(k, e.enc); err != nil {
			return err
		}
		if err := ix.Put(id, k); err != nil {
			return err
		}
		count++
	}
	for w.maxPending > 0 && count > w.maxPending {
		c := q.Cursor()
		_, v := c.First()
		oldID, err := decodedID(v)
		if err != nil {
			return corruptf(w.s.path, "pending %q: %v", user, err)
		}
		oldID = append([]byte(nil), oldID...)
		if err := c.Delete(); err != nil {
			return err
		}
		if err := ix.Delete(oldID); err != nil {
			return err
		}
		count--
	}
	return ub.Put(keyPendCount, seqKey(count))
}

// ack removes ids from user's pending queue in the index.
func (w *writer) ack(user []byte, ids map[string]struct{}) error {
	ub := w.pend.Bucket(user)
	if ub == nil {
		return nil
	}
	q, ix := ub.Bucket(keyPendQueue), ub.Bucket(keyPendIndex)
	if q == nil || ix == nil {
		return nil
	}
	count := seqOf(ub.Get(keyPendCount))
	removed := false
	for id := range ids {
		k := ix.Get([]byte(id))
		if k == nil {
			continue
		}
		k = append([]byte(nil), k...)
		if err := q.Delete(k); err != nil {
			return err
		}
		if err := ix.Delete([]byte(id)); err != nil {
			return err
		}
		count--
		removed = true
	}
	if !removed {
		return nil
	}
	if first, _ := q.Cursor().First(); first == nil {
		return w.pend.DeleteBucket(user)
	}
	return ub.Put(keyPendCount, seqKey(count))
}

// recordCID writes the (sender, cid) record of e: its creation time and the
// message without its body, which the history holds.
func (w *writer) recordCID(key []byte, e *entry) error {
	rec := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(e.enc)-e.bodyLen), uint64(e.created))
	rec = append(rec, headerOf(e.enc, e.bodyLen)...)
	if err := w.cids.Put(key, rec); err != nil {
		return err
	}
	n, err := w.cidlog.NextSequence()
	if err != nil {
		return err
	}
	logEntry := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(key)), uint64(e.created))
	return w.cidlog.Put(seqKey(n), append(logEntry, key...))
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

// trimCIDs removes (sender, cid) records that are past their retention or
// beyond MaxCIDs, oldest first, at most about budget of them plus a fixed
// amount, so that one checkpoint never does unbounded work.
func (w *writer) trimCIDs(budget int) error {
	budget += 1024
	c := w.cidlog.Cursor()
	last := w.cidlog.Sequence()
	for k, v := c.First(); k != nil && budget > 0; k, v = c.First() {
		if len(v) < 8 {
			return corruptf(w.s.path, "cid log entry %d", seqOf(k))
		}
		count := last - seqOf(k) + 1
		created := int64(binary.BigEndian.Uint64(v))
		if created >= w.cidCutoff && (w.maxCIDs == 0 || count <= w.maxCIDs) {
			return nil
		}
		key := append([]byte(nil), v[8:]...)
		if err := c.Delete(); err != nil {
			return err
		}
		// The record may have been written again later under the same key;
		// delete it only if it is this entry's.
		if rec := w.cids.Get(key); len(rec) >= 8 && int64(binary.BigEndian.Uint64(rec)) == created {
			if err := w.cids.Delete(key); err != nil {
				return err
			}
		}
		budget--
	}
	return nil
}
