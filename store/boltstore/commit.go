package boltstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/wshub/wshub/store"
)

// opKind tells the committer what a request does.
type opKind uint8

const (
	opAppend opKind = iota + 1
	opAck
	opJoin
	opLeave
)

// request is one queued write. The caller fills the input fields before
// queueing it and reads the results only after receiving from res, which
// the committer sends on exactly once, after writing the results.
type request struct {
	ctx  context.Context
	kind opKind

	// opAppend inputs.
	msg     store.Message // as given, Seq 0
	enc     []byte        // encodeMessage(&msg); the committer patches the seq
	pending [][]byte      // distinct recipients
	cid     []byte        // cidKey(msg.From, CID), nil without a CID

	// opAck, opJoin, opLeave inputs.
	user []byte
	room []byte
	ids  [][]byte

	// Results of opAppend.
	out store.Message
	dup bool

	res chan error // buffered 1
}

// errRetryBatch makes bbolt roll back a batch in which one request failed,
// so that the batch can be committed again without it.
var errRetryBatch = errors.New("retry batch")

// Append implements store.Store. It returns once the message is committed
// to the file and synced (see the package documentation).
func (s *Store) Append(ctx context.Context, req store.AppendRequest) (store.Message, bool, error) {
	m := req.Msg
	switch {
	case m.Conv == "":
		return store.Message{}, false, fmt.Errorf("%w: empty conversation", store.ErrInvalid)
	case m.From == "":
		return store.Message{}, false, fmt.Errorf("%w: empty sender", store.ErrInvalid)
	case m.ID == "":
		return store.Message{}, false, fmt.Errorf("%w: empty message id", store.ErrInvalid)
	case len(m.Conv) > bolt.MaxKeySize || len(m.ID) > bolt.MaxKeySize:
		return store.Message{}, false, fmt.Errorf("%w: conversation or id longer than %d bytes", store.ErrInvalid, bolt.MaxKeySize)
	}
	m.Seq = 0
	r := &request{kind: opAppend, msg: m}
	r.enc = encodeMessage(&r.msg)
	if len(r.enc)+8 > bolt.MaxValueSize {
		return store.Message{}, false, fmt.Errorf("%w: message of %d bytes is too large", store.ErrInvalid, len(r.enc))
	}
	if req.CID != "" {
		r.cid = cidKey(m.From, req.CID)
		if len(r.cid) > bolt.MaxKeySize {
			return store.Message{}, false, fmt.Errorf("%w: sender and cid longer than %d bytes", store.ErrInvalid, bolt.MaxKeySize)
		}
	}
	for i, u := range req.Pending {
		if u == "" || len(u) > bolt.MaxKeySize {
			return store.Message{}, false, fmt.Errorf("%w: pending user %q", store.ErrInvalid, u)
		}
		seen := false
		for _, v := range req.Pending[:i] {
			seen = seen || v == u
		}
		if !seen {
			r.pending = append(r.pending, []byte(u))
		}
	}
	if err := s.submit(ctx, r); err != nil {
		return store.Message{}, false, err
	}
	return r.out, r.dup, nil
}

// Ack implements store.Store. It returns once the removal is committed.
func (s *Store) Ack(ctx context.Context, user string, ids ...string) error {
	if err := checkName("user", user); err != nil {
		return err
	}
	r := &request{kind: opAck, user: []byte(user)}
	for _, id := range ids {
		if id != "" && len(id) <= bolt.MaxKeySize { // others cannot be queued
			r.ids = append(r.ids, []byte(id))
		}
	}
	if len(r.ids) == 0 {
		if s.closed.Load() {
			return store.ErrClosed
		}
		return ctx.Err()
	}
	return s.submit(ctx, r)
}

// Join implements store.Store. It returns once the membership is committed.
func (s *Store) Join(ctx context.Context, room, user string) error {
	return s.membership(ctx, opJoin, room, user)
}

// Leave implements store.Store. It returns once the removal is committed.
func (s *Store) Leave(ctx context.Context, room, user string) error {
	return s.membership(ctx, opLeave, room, user)
}

func (s *Store) membership(ctx context.Context, kind opKind, room, user string) error {
	if err := checkName("room", room); err != nil {
		return err
	}
	if err := checkName("user", user); err != nil {
		return err
	}
	return s.submit(ctx, &request{kind: kind, room: []byte(room), user: []byte(user)})
}

func checkName(what, v string) error {
	if v == "" {
		return fmt.Errorf("%w: empty %s", store.ErrInvalid, what)
	}
	if len(v) > bolt.MaxKeySize {
		return fmt.Errorf("%w: %s longer than %d bytes", store.ErrInvalid, what, bolt.MaxKeySize)
	}
	return nil
}

// submit queues r for the committer and waits for its answer.
func (s *Store) submit(ctx context.Context, r *request) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	r.ctx = ctx
	r.res = make(chan error, 1)
	select {
	case s.reqs <- r:
	case <-s.quit:
		return store.ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-r.res:
		return err
	case <-ctx.Done():
	case <-s.stopped:
	}
	// Prefer a result that is already there: it tells the truth.
	select {
	case err := <-r.res:
		return err
	default:
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// The committer stopped without seeing r (queued after its last drain).
	return store.ErrClosed
}

// commitLoop is the committer goroutine: it applies queued requests in
// batches, one transaction and one sync per batch, until Close.
func (s *Store) commitLoop() {
	defer close(s.stopped)
	batch := make([]*request, 0, s.opts.MaxBatch)
	for {
		select {
		case r := <-s.reqs:
			batch = s.drain(append(batch, r))
			s.commit(batch)
			clear(batch)
			batch = batch[:0]
		case <-s.quit:
			// Flush what callers queued before Close.
			for {
				batch = s.drain(batch)
				if len(batch) == 0 {
					return
				}
				s.commit(batch)
				clear(batch)
				batch = batch[:0]
			}
		}
	}
}

// drain adds to batch the requests already queued, up to MaxBatch.
func (s *Store) drain(batch []*request) []*request {
	for len(batch) < s.opts.MaxBatch {
		select {
		case r := <-s.reqs:
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

// commit applies batch in one transaction and answers every request. A
// request whose ctx is done is dropped unapplied; a request that fails is
// answered with its error and the others are committed without it.
func (s *Store) commit(batch []*request) {
	live := batch[:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.res <- err
			continue
		}
		live = append(live, r)
	}
	for len(live) > 0 {
		now := time.Now()
		failed, ferr := -1, error(nil)
		err := s.safely(func() error {
			return s.db.Update(func(tx *bolt.Tx) error {
				w := s.newWriter(tx, now)
				if err := w.trimCIDs(len(live)); err != nil {
					s.log.Error("trimming cid records", "err", err)
				}
				for i, r := range live {
					if err := w.apply(r); err != nil {
						failed, ferr = i, err
						return errRetryBatch
					}
				}
				return nil
			})
		})
		if failed >= 0 {
			live[failed].res <- ferr
			live = append(live[:failed], live[failed+1:]...)
			continue
		}
		if err != nil {
			s.log.Error("commit failed", "requests", len(live), "err", err)
			err = fmt.Errorf("wshub/boltstore: commit %s: %w", s.path, err)
		}
		for _, r := range live {
			r.res <- err
		}
		return
	}
}

// writer applies requests inside one write transaction.
type writer struct {
	s                        *Store
	now                      time.Time
	hist, pend, cids, cidlog *bolt.Bucket
	rooms, userRooms         *bolt.Bucket
	maxHistory, maxPending   uint64 // 0: unbounded
	maxCIDs                  uint64 // 0: unbounded
	cidCutoff                int64  // records created before (Unix ms) may go
}

func (s *Store) newWriter(tx *bolt.Tx, now time.Time) *writer {
	w := &writer{
		s:         s,
		now:       now,
		hist:      tx.Bucket(bucketHist),
		pend:      tx.Bucket(bucketPend),
		cids:      tx.Bucket(bucketCIDs),
		cidlog:    tx.Bucket(bucketCIDLog),
		rooms:     tx.Bucket(bucketRooms),
		userRooms: tx.Bucket(bucketUserRooms),
		cidCutoff: now.Add(-s.opts.CIDRetention).UnixMilli(),
	}
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

func (w *writer) apply(r *request) error {
	switch r.kind {
	case opAppend:
		return w.append(r)
	case opAck:
		return w.ack(r.user, r.ids)
	case opJoin:
		return w.join(r.room, r.user)
	case opLeave:
		return w.leave(r.room, r.user)
	}
	return fmt.Errorf("wshub/boltstore: unknown request kind %d", r.kind)
}

func (w *writer) append(r *request) error {
	if r.cid != nil {
		if v := w.cids.Get(r.cid); v != nil {
			if len(v) < 8 {
				return corruptf(w.s.path, "cid record of %q", r.msg.From)
			}
			m, err := decodeMessage(v[8:])
			if err != nil {
				return corruptf(w.s.path, "cid record of %q: %v", r.msg.From, err)
			}
			r.out, r.dup = m, true
			return nil
		}
	}
	hb, err := w.hist.CreateBucketIfNotExists([]byte(r.msg.Conv))
	if err != nil {
		return err
	}
	seq, err := hb.NextSequence()
	if err != nil {
		return err
	}
	setEncodedSeq(r.enc, seq)
	if err := hb.Put(seqKey(seq), r.enc); err != nil {
		return err
	}
	if w.maxHistory > 0 && seq > w.maxHistory {
		limit := seq - w.maxHistory
		c := hb.Cursor()
		for k, _ := c.First(); k != nil && seqOf(k) <= limit; k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return err
			}
		}
	}
	for _, u := range r.pending {
		if err := w.enqueue(u, []byte(r.msg.ID), r.enc); err != nil {
			return err
		}
	}
	if r.cid != nil {
		ms := w.now.UnixMilli()
		rec := make([]byte, 8, 8+len(r.enc))
		binary.BigEndian.PutUint64(rec, uint64(ms))
		if err := w.cids.Put(r.cid, append(rec, r.enc...)); err != nil {
			return err
		}
		n, err := w.cidlog.NextSequence()
		if err != nil {
			return err
		}
		entry := make([]byte, 8, 8+len(r.cid))
		binary.BigEndian.PutUint64(entry, uint64(ms))
		if err := w.cidlog.Put(seqKey(n), append(entry, r.cid...)); err != nil {
			return err
		}
	}
	r.out, r.dup = r.msg, false
	r.out.Seq = seq
	return nil
}

// enqueue appends the encoded message enc with the given id to user's
// pending queue, dropping the oldest entries beyond MaxPending.
func (w *writer) enqueue(user, id, enc []byte) error {
	ub, err := w.pend.CreateBucketIfNotExists(user)
	if err != nil {
		return err
	}
	q, err := ub.CreateBucketIfNotExists(keyPendQueue)
	if err != nil {
		return err
	}
	ix, err := ub.CreateBucketIfNotExists(keyPendIndex)
	if err != nil {
		return err
	}
	count := seqOf(ub.Get(keyPendCount))
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
	if err := q.Put(k, enc); err != nil {
		return err
	}
	if err := ix.Put(id, k); err != nil {
		return err
	}
	count++
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

func (w *writer) ack(user []byte, ids [][]byte) error {
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
	for _, id := range ids {
		k := ix.Get(id)
		if k == nil {
			continue
		}
		k = append([]byte(nil), k...)
		if err := q.Delete(k); err != nil {
			return err
		}
		if err := ix.Delete(id); err != nil {
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
// amount, so that one commit never does unbounded work.
func (w *writer) trimCIDs(budget int) error {
	budget += 64
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
		if rec := w.cids.Get(key); rec != nil && len(rec) >= 8 && int64(binary.BigEndian.Uint64(rec)) == created {
			if err := w.cids.Delete(key); err != nil {
				return err
			}
		}
		budget--
	}
	return nil
}
