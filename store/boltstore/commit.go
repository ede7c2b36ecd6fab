package boltstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
	opRead
)

// request is one queued write. The caller fills the input fields before
// queueing it and reads the results only after receiving from res, which
// the committer sends on exactly once, after writing the results.
type request struct {
	ctx  context.Context
	kind opKind

	// opAppend inputs.
	msg     store.Message // as given, Seq 0
	pending []string      // distinct recipients
	cid     string        // cidKey(msg.From, CID), "" without a CID
	logRec  []byte        // encodeAppendRec; the committer writes time and seq
	encOff  int           // offset of the encoded message in logRec

	// opAck, opJoin, opLeave, opRead inputs.
	user string
	room string
	ids  []string
	conv string // opRead
	seq  uint64 // opRead

	// Set by the committer.
	rec     any           // the appendRec or ackRec logged, for the overlay; nil if none
	out     store.Message // opAppend result
	dup     bool          // opAppend result
	refused error         // opAppend: wraps store.ErrPendingFull; nothing was logged
	mark    uint64        // opRead result: the stored marker
	moved   bool          // opRead result

	res chan error // buffered 1
}

// errRetryBatch makes bbolt roll back a batch in which one request failed,
// so that the batch can be committed again without it.
var errRetryBatch = errors.New("retry batch")

// errNothingWritten makes bbolt roll back a batch that wrote nothing (only
// duplicates and refused appends), which saves the commit's syncs.
var errNothingWritten = errors.New("nothing written")

// Append implements store.Store. It returns once the message is committed
// to the file and synced (see the package documentation).
func (s *Store) Append(ctx context.Context, req store.AppendRequest) (store.Message, bool, error) {
	r, err := newAppendRequest(req)
	if err != nil {
		return store.Message{}, false, err
	}
	if err := s.submit(ctx, r); err != nil {
		return store.Message{}, false, err
	}
	return r.out, r.dup, nil
}

// newAppendRequest validates req and encodes its log record.
func newAppendRequest(req store.AppendRequest) (*request, error) {
	m := req.Msg
	switch {
	case m.Conv == "":
		return nil, fmt.Errorf("%w: empty conversation", store.ErrInvalid)
	case m.From == "":
		return nil, fmt.Errorf("%w: empty sender", store.ErrInvalid)
	case m.ID == "":
		return nil, fmt.Errorf("%w: empty message id", store.ErrInvalid)
	case len(m.Conv) > bolt.MaxKeySize:
		return nil, fmt.Errorf("%w: conversation longer than %d bytes", store.ErrInvalid, bolt.MaxKeySize)
	}
	m.Seq = 0
	r := &request{kind: opAppend, msg: m}
	if req.CID != "" {
		r.cid = string(cidKey(m.From, req.CID))
	}
	for i, u := range req.Pending {
		if u == "" || pairKeyLen(u, m.ID) > bolt.MaxKeySize || pairKeyLen(u, m.From) > bolt.MaxKeySize {
			return nil, fmt.Errorf("%w: pending user %q", store.ErrInvalid, u)
		}
		seen := false
		for _, v := range req.Pending[:i] {
			seen = seen || v == u
		}
		if !seen {
			r.pending = append(r.pending, u)
		}
	}
	r.logRec, r.encOff = encodeAppendRec(&r.msg, r.cid, r.pending)
	if len(r.logRec) > bolt.MaxValueSize {
		return nil, fmt.Errorf("%w: message of %d bytes is too large", store.ErrInvalid, len(r.logRec))
	}
	return r, nil
}

// Ack implements store.Store. It returns once the removal is committed.
func (s *Store) Ack(ctx context.Context, user string, ids ...string) error {
	if err := checkName("user", user); err != nil {
		return err
	}
	r := &request{kind: opAck, user: user}
	for _, id := range ids {
		if id != "" { // an empty id cannot be queued
			r.ids = append(r.ids, id)
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
	return s.submit(ctx, &request{kind: kind, room: room, user: user})
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
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
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

// commitLoop is the committer goroutine, the only writer of the file: it
// commits queued requests in batches, one transaction and one sync per
// batch, and checkpoints the overlay, until Close.
func (s *Store) commitLoop() {
	notified := make(chan struct{})
	go s.notifyLoop(notified)
	defer func() {
		close(s.notify)
		<-notified
		close(s.stopped)
	}()
	batch := make([]*request, 0, s.opts.MaxBatch)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	armed := false
	// expireC ticks the expiry passes (Options.MaxAge; see retention.go).
	var expireTimer *time.Timer
	var expireC <-chan time.Time
	if s.opts.MaxAge > 0 {
		expireTimer = time.NewTimer(s.retentionEvery())
		defer expireTimer.Stop()
		expireC = expireTimer.C
	}
	for {
		var tick <-chan time.Time
		if s.ov.records > 0 {
			if !armed {
				timer.Reset(time.Until(s.checkpointDue()))
				armed = true
			}
			tick = timer.C
		}
		select {
		case r := <-s.reqs:
			batch = s.linger(s.drain(append(batch, r)))
			s.commit(batch)
			clear(batch)
			batch = batch[:0]
			if s.ov.records >= s.opts.CheckpointEvery || (s.ov.records > 0 && !time.Now().Before(s.checkpointDue())) {
				s.checkpoint()
				timer.Stop()
				armed = false
			}
		case <-tick:
			armed = false
			s.checkpoint()
		case <-expireC:
			if _, more := s.expire(); more {
				expireTimer.Reset(0) // again soon: select takes queued batches in turn
			} else {
				expireTimer.Reset(s.retentionEvery())
			}
		case done := <-s.expireReq:
			// A test's request: checkpoint, then expire until done.
			s.checkpoint()
			timer.Stop()
			armed = false
			total := 0
			for {
				n, more := s.expire()
				total += n
				if !more {
					break
				}
			}
			done <- total
		case <-s.quit:
			timer.Stop()
			// Flush what callers queued before Close.
			for {
				batch = s.drain(batch)
				if len(batch) == 0 {
					break
				}
				s.commit(batch)
				clear(batch)
				batch = batch[:0]
			}
			s.checkpoint()
			return
		}
	}
}

// notifyLoop answers the requests of each committed batch the committer
// sends it, and closes done when the committer closed s.notify.
func (s *Store) notifyLoop(done chan<- struct{}) {
	defer close(done)
	for batch := range s.notify {
		for _, r := range batch {
			r.res <- r.refused
		}
	}
}

// checkpointDue returns when the overlay should be checkpointed at the
// latest. Committer only.
func (s *Store) checkpointDue() time.Time {
	due := s.ov.first.Add(s.opts.CheckpointInterval)
	if due.Before(s.retryCheckpoint) {
		return s.retryCheckpoint
	}
	return due
}

// linger waits a little for the requests in flight that are not in batch:
// mostly those of callers that were just answered and are about to send
// their next write. Under steady load the callers otherwise split into two
// groups that take turns, each committing half as many writes per sync.
// It waits at most half as long as the last commit took, and not at all
// for a lone caller.
func (s *Store) linger(batch []*request) []*request {
	short := func() bool {
		return len(batch) < min(int(s.inflight.Load()), s.opts.MaxBatch)
	}
	if s.lastCommit <= 0 || !short() {
		return batch
	}
	s.lingerTimer.Reset(min(s.lastCommit/2, maxLinger))
	defer s.lingerTimer.Stop()
	for short() {
		select {
		case r := <-s.reqs:
			batch = s.drain(append(batch, r))
		case <-s.lingerTimer.C:
			return batch
		case <-s.quit:
			return batch
		}
	}
	return batch
}

// maxLinger bounds the wait of linger.
const maxLinger = 2 * time.Millisecond

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

// commit logs batch in one transaction, applies it to the overlay and
// answers every request. A request whose ctx is done is dropped unapplied;
// a request that fails is answered with its error and the others are
// committed without it.
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
		var w *writer
		err := s.safely(func() error {
			return s.db.Update(func(tx *bolt.Tx) error {
				w = s.newWriter(tx, s.now(), s.counts)
				wrote := false
				for i, r := range live {
					if err := w.logRequest(r); err != nil {
						failed, ferr = i, err
						return errRetryBatch
					}
					wrote = wrote || r.rec != nil || r.kind == opJoin || r.kind == opLeave
				}
				if !wrote {
					return errNothingWritten
				}
				return nil
			})
		})
		committed := !errors.Is(err, errNothingWritten)
		if !committed {
			err = nil
		}
		if w != nil && w.counts != nil {
			if failed >= 0 || err != nil {
				w.counts.rollback()
			} else {
				w.counts.commit()
			}
		}
		if failed >= 0 {
			live[failed].res <- ferr
			live = append(live[:failed], live[failed+1:]...)
			continue
		}
		if err != nil {
			s.log.Error("commit failed", "requests", len(live), "err", err)
			err = fmt.Errorf("wshub/boltstore: commit %s: %w", s.path, err)
			for _, r := range live {
				r.res <- err
			}
			return
		}
		if committed {
			s.lastCommit = time.Since(now)
			s.stats.commits.Add(1)
			s.stats.requests.Add(uint64(len(live)))
			s.stats.commitNanos.Add(uint64(time.Since(now)))
		}
		s.mu.Lock()
		for _, r := range live {
			switch rec := r.rec.(type) {
			case appendRec:
				s.ov.applyAppend(rec, now)
			case ackRec:
				s.ov.applyAck(rec, now)
			case readRec:
				s.ov.applyRead(rec, now)
			}
		}
		s.mu.Unlock()
		for _, r := range live {
			if rec, ok := r.rec.(appendRec); ok && rec.cid != "" {
				s.cids.add(rec.cid, rec.e.pos, rec.e.created)
			}
		}
		// Waking the callers is left to the notifier, so that the next
		// batch can start at once.
		s.notify <- slices.Clone(live)
		return
	}
}

// checkpoint applies the overlay to the index and empties the acks, in
// one transaction, then starts a new overlay. On failure it keeps the
// overlay and tries again a CheckpointInterval later. Committer only.
func (s *Store) checkpoint() {
	ov := s.ov
	if ov.records == 0 {
		return
	}
	now := time.Now()
	err := s.safely(func() error {
		return s.db.Update(func(tx *bolt.Tx) error {
			return s.newWriter(tx, now, nil).checkpoint(ov)
		})
	})
	if err != nil {
		s.log.Error("checkpoint failed; the log keeps the writes", "records", ov.records, "err", err)
		s.retryCheckpoint = now.Add(s.opts.CheckpointInterval)
		return
	}
	s.stats.checkpoints.Add(1)
	s.stats.checkpointed.Add(uint64(ov.records))
	s.stats.ckptNanos.Add(uint64(time.Since(now)))
	s.mu.Lock()
	s.ov = newOverlay(ov.gen + 1)
	s.mu.Unlock()
	s.counts.reset() // the index holds the same numbers now
}
