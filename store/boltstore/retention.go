package boltstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// The age bound (Options.MaxAge)
//
// The log holds the messages in commit order, each with its commit time,
// so the messages older than MaxAge are a prefix of it. The committer
// expires them in passes, between its batches: a pass is one write
// transaction that walks the log from meta/expired (the last position an
// earlier pass handled) over at most Store.expireBatch records that are older
// than MaxAge and already checkpointed (at most meta/applied), deletes each
// from its conversation's history, and releases its log record as the
// count bound does (release: deleted, or kept while a queue holds it).
// Within a conversation seq order is log order, so a pass removes a prefix
// of each history and the retained seqs stay contiguous. A pass that had
// more to do than Store.expireBatch is followed by another at once (with the
// callers' batches in between); otherwise the next comes retentionEvery
// later. A pass that found nothing to do is rolled back (no sync).
//
// Seq continuity. A room whose every message expired keeps its empty
// history bucket, whose Sequence is its last seq: the next Append goes on
// from there (rooms are few and have their memberships anyway). A direct
// conversation is forgotten whole with its last message (forget): history
// bucket, inbox heads, read markers; conversations between ever new pairs
// of users would otherwise leave a bucket each behind for good. What
// survives is one number, meta/seqfloor: the highest last seq of a
// forgotten conversation. A conversation without a history bucket (new,
// or forgotten) starts at seqfloor+1, so a forgotten one never repeats a
// seq, and its recipient's read marker is set to seqfloor (freshMark), so
// Seq - Read still counts its one message. Without MaxAge nothing is
// forgotten, seqfloor stays 0 and every conversation starts at 1.

// defaultExpireBatch is the most log records one expiry pass handles
// (Store.expireBatch; tests lower it).
const defaultExpireBatch = 1000

// Meta keys of the retention: the last log position an expiry pass
// handled, and the seq floor of the conversations without a history
// bucket (absent: 0).
var (
	keyExpired  = []byte("expired")
	keySeqFloor = []byte("seqfloor")
)

// retentionEvery is the interval of the expiry passes: an eighth of
// MaxAge, at least 10 ms and at most CheckpointInterval.
func (s *Store) retentionEvery() time.Duration {
	return min(max(s.opts.MaxAge/8, 10*time.Millisecond), s.opts.CheckpointInterval)
}

// expire runs one expiry pass and reports whether more records are
// expired than it handled. Committer only.
func (s *Store) expire() (n int, more bool) {
	if s.opts.MaxAge <= 0 {
		return 0, false
	}
	start := time.Now()
	cutoff := s.now().Add(-s.opts.MaxAge).UnixMilli()
	err := s.safely(func() error {
		return s.db.Update(func(tx *bolt.Tx) error {
			var err error
			n, more, err = s.newWriter(tx, start, nil).expire(cutoff, s.expireBatch)
			if err == nil && n == 0 {
				return errNothingWritten
			}
			return err
		})
	})
	if errors.Is(err, errNothingWritten) {
		return 0, false
	}
	if err != nil {
		s.log.Error("expiring old messages failed; trying again later", "err", err)
		return 0, false
	}
	s.stats.expired.Add(uint64(n))
	s.stats.expirePasses.Add(1)
	s.stats.expireNanos.Add(uint64(time.Since(start)))
	return n, more
}

// expire removes from their histories the checkpointed messages committed
// at or before cutoff (Unix ms), at most limit of them, oldest first, and
// releases their log records. It returns how many it handled and whether
// more are due.
func (w *writer) expire(cutoff int64, limit int) (n int, more bool, err error) {
	w.kept = w.tx.Bucket(bucketKept)
	applied := seqOf(w.meta.Get(keyApplied))
	from := seqOf(w.meta.Get(keyExpired))
	var done []uint64
	var lasts []*entry // messages that were the last of their conversation
	c := w.log.Cursor()
	for k, v := c.Seek(seqKey(from + 1)); k != nil; k, v = c.Next() {
		pos := seqOf(k)
		if pos > applied {
			break // not checkpointed: in no history yet
		}
		if len(v) < 9 || v[0] != recAppend {
			return 0, false, corruptf(w.s.path, "log record %d: %v", pos, errBadRecord)
		}
		if int64(binary.BigEndian.Uint64(v[1:])) > cutoff {
			break
		}
		if n == limit {
			more = true
			break
		}
		rec, err := decodeRecord(v)
		if err != nil {
			return 0, false, corruptf(w.s.path, "log record %d: %v", pos, err)
		}
		e := rec.(appendRec).e // v[0] is recAppend
		if hb := w.hist.Bucket([]byte(e.conv)); hb != nil {
			key := w.key(e.seq)
			if p := hb.Get(key); p != nil && seqOf(p) == pos {
				if err := hb.Delete(key); err != nil {
					return 0, false, err
				}
			}
			if e.seq == hb.Sequence() {
				lasts = append(lasts, e)
			}
		}
		done = append(done, pos)
		n++
	}
	for _, pos := range done {
		if err := w.release(pos, false); err != nil {
			return 0, false, err
		}
	}
	for _, e := range lasts {
		if err := w.forget(e); err != nil {
			return 0, false, err
		}
	}
	if len(done) > 0 {
		err = w.meta.Put(keyExpired, w.key(done[len(done)-1]))
	}
	return n, more, err
}

// forget deletes a direct conversation whose last message e expired:
// its history bucket, its heads in the two users' inboxes and their read
// markers. Its last seq raises meta/seqfloor, above which the next
// conversation without a history bucket starts, so that its seqs never
// repeat. A conversation with messages left in the history or the
// overlay is left alone, and so is a room's (its bucket keeps its last
// seq).
func (w *writer) forget(e *entry) error {
	if !e.direct {
		return nil
	}
	hb := w.hist.Bucket([]byte(e.conv))
	if hb == nil {
		return nil
	}
	if k, _ := hb.Cursor().First(); k != nil {
		return nil
	}
	if cl := w.s.ov.convs[e.conv]; cl != nil && len(cl.ents) > 0 {
		return nil
	}
	if last := hb.Sequence(); last > seqOf(w.meta.Get(keySeqFloor)) {
		if err := w.meta.Put(keySeqFloor, w.key(last)); err != nil {
			return err
		}
	}
	if err := w.hist.DeleteBucket([]byte(e.conv)); err != nil {
		return err
	}
	inbox, marks := w.tx.Bucket(bucketInbox), w.tx.Bucket(bucketMarks)
	for _, u := range []string{e.from, e.to} {
		if err := dropHead(inbox, u, e.conv); err != nil {
			return err
		}
		if err := marks.Delete(pairKey(u, e.conv)); err != nil {
			return err
		}
	}
	return nil
}

// dropHead deletes conv from inbox / user, and the user's bucket once it is
// empty.
func dropHead(inbox *bolt.Bucket, user, conv string) error {
	ub := inbox.Bucket([]byte(user))
	if ub == nil {
		return nil
	}
	ck := inboxConvKey(conv)
	old := ub.Get(ck)
	if old == nil {
		return nil
	}
	ts, seq, ok := parseRecency(old)
	if !ok {
		return fmt.Errorf("inbox %q: conversation %q: bad key", user, conv)
	}
	if err := ub.Delete(inboxOrderKey(ts, seq, conv)); err != nil {
		return err
	}
	if err := ub.Delete(ck); err != nil {
		return err
	}
	if k, _ := ub.Cursor().First(); k == nil {
		return inbox.DeleteBucket([]byte(user))
	}
	return nil
}

// Compact writes a compacted copy of the store file src to dst, a new
// file: bbolt reuses the pages that retention frees but never gives them
// back to the file system, so a file that once grew keeps its size until
// it is copied. The copy holds the same store (epoch, seqs, queues,
// memberships) in as few pages as it needs; replace src with it while no
// store has src open, then Open it.
//
// src must not be open: Compact fails with ErrLocked after
// DefaultOpenTimeout if a Store (or another process) holds it, with
// ErrNotBolt, ErrNotStore or ErrCorrupt as Open does, and if dst exists.
// ctx is checked before the copy and after it (a cancelled copy is
// removed); the copy itself is not interrupted. It is the same as the
// command "bbolt compact -o dst src" (go.etcd.io/bbolt/cmd/bbolt).
func Compact(ctx context.Context, src, dst string) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := os.Lstat(dst); err == nil {
		return fmt.Errorf("wshub/boltstore: compact %s: %s exists", src, dst)
	}
	if err := checkFile(src); err != nil {
		return err
	}
	fi, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("wshub/boltstore: compact %s: %w", src, err)
	}
	sdb, err := bolt.Open(src, 0, &bolt.Options{ReadOnly: true, Timeout: DefaultOpenTimeout})
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return fmt.Errorf("%w: %s (waited %v)", ErrLocked, src, DefaultOpenTimeout)
	case err != nil:
		return fmt.Errorf("wshub/boltstore: compact %s: %w", src, err)
	}
	defer sdb.Close()
	err = sdb.View(func(tx *bolt.Tx) error {
		if meta := tx.Bucket(bucketMeta); meta == nil || meta.Get(keyEpoch) == nil {
			return fmt.Errorf("%w: %s", ErrNotStore, src)
		}
		return nil
	})
	if err != nil {
		return err
	}
	ddb, err := bolt.Open(dst, fi.Mode().Perm(), &bolt.Options{Timeout: DefaultOpenTimeout, NoSync: true})
	if err != nil {
		return fmt.Errorf("wshub/boltstore: compact %s: %w", src, err)
	}
	defer func() {
		if cerr := ddb.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("wshub/boltstore: compact %s: %w", src, cerr)
		}
		if err != nil {
			_ = os.Remove(dst)
		}
	}()
	if err := bolt.Compact(ddb, sdb, 64<<20); err != nil {
		return fmt.Errorf("wshub/boltstore: compact %s to %s: %w", src, dst, err)
	}
	if err := ddb.Sync(); err != nil {
		return fmt.Errorf("wshub/boltstore: compact %s: sync %s: %w", src, dst, err)
	}
	return ctx.Err()
}
