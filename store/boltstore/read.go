package boltstore

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"

	bolt "go.etcd.io/bbolt"

	"github.com/wshub/wshub/store"
)

// checkpointed returns the generation of the last checkpoint in tx.
func checkpointed(tx *bolt.Tx) uint64 { return seqOf(tx.Bucket(bucketMeta).Get(keyGen)) }

// History implements store.Store.
//
// The retained seqs of a conversation are contiguous, [First, Last]: the
// index holds a prefix of them and the overlay the rest. A conversation
// whose every message expired (MaxAge) has First 0 and Last its last seq.
func (s *Store) History(ctx context.Context, conv string, q store.Query) (store.Page, error) {
	page := store.Page{Epoch: s.epoch}
	if conv == "" {
		return page, fmt.Errorf("%w: empty conversation", store.ErrInvalid)
	}
	limit := uint64(store.DefaultLimit)
	if q.Limit > 0 {
		limit = uint64(q.Limit)
	}

	// The overlay's part, copied under the lock.
	s.mu.RLock()
	gen := s.ov.gen
	var ov convLog
	if cl := s.ov.convs[conv]; cl != nil {
		ov = convLog{base: cl.base, ents: cl.ents[:len(cl.ents):len(cl.ents)]}
	}
	s.mu.RUnlock()

	err := s.view(ctx, func(tx *bolt.Tx) error {
		var idxFirst, idxLast uint64
		hb := tx.Bucket(bucketHist).Bucket([]byte(conv))
		if hb != nil {
			idxLast = hb.Sequence()
			if k, _ := hb.Cursor().First(); k != nil {
				idxFirst = seqOf(k)
			} else {
				idxFirst = idxLast + 1 // every message expired (MaxAge)
			}
		}
		if checkpointed(tx) >= gen || len(ov.ents) == 0 {
			ov = convLog{} // checkpointed since the copy (or empty)
		} else if hb != nil && ov.base != idxLast+1 { // without hb it starts at the seq floor
			return corruptf(s.path, "history %q: index ends at %d, overlay starts at %d", conv, idxLast, ov.base)
		}
		first, last := idxFirst, idxLast
		if len(ov.ents) > 0 {
			last = ov.last()
			if first == 0 {
				first = ov.base
			}
		}
		if last == 0 {
			return nil
		}
		if first > last {
			page.Last = last // nothing retained: First stays 0
			return nil
		}
		if keep := uint64(s.opts.MaxHistory); s.opts.MaxHistory > 0 && last > keep && first < last-keep+1 {
			first = last - keep + 1
		}
		page.First, page.Last = first, last

		// The window, as a range of seqs [lo, hi].
		hi := last
		if q.Before > 0 {
			hi = min(hi, q.Before-1)
		}
		var lo uint64
		if q.Since > 0 {
			lo = max(first, q.Since+1)
			if lo > hi {
				return nil
			}
			if hi-lo+1 > limit {
				hi, page.More = lo+limit-1, true
			}
		} else {
			lo = first
			if hi < lo {
				return nil
			}
			if hi-lo+1 > limit {
				lo, page.More = hi-limit+1, true
			}
		}

		page.Items = make([]store.Message, 0, hi-lo+1)
		if lo <= idxLast {
			log := tx.Bucket(bucketLog)
			c := hb.Cursor()
			for k, v := c.Seek(seqKey(lo)); k != nil && seqOf(k) <= min(hi, idxLast); k, v = c.Next() {
				m, err := logMessage(log.Get(v))
				if err != nil {
					return corruptf(s.path, "history %q seq %d: %v", conv, seqOf(k), err)
				}
				page.Items = append(page.Items, m)
			}
		}
		for seq := max(lo, idxLast+1); seq <= hi; seq++ {
			m, err := decodeMessage(ov.ents[seq-ov.base].enc)
			if err != nil {
				return corruptf(s.path, "history %q seq %d: %v", conv, seq, err)
			}
			page.Items = append(page.Items, m)
		}
		if uint64(len(page.Items)) != hi-lo+1 {
			return corruptf(s.path, "history %q: %d messages in seqs %d..%d", conv, len(page.Items), lo, hi)
		}
		return nil
	})
	if err != nil {
		return store.Page{Epoch: s.epoch}, err
	}
	return page, nil
}

// Pending implements store.Store: the whole queue, read as one page
// without a limit.
func (s *Store) Pending(ctx context.Context, user string) ([]store.Message, error) {
	if user == "" {
		return nil, fmt.Errorf("%w: empty user", store.ErrInvalid)
	}
	out, _, _, err := s.pendingAfter(ctx, user, 0, 0)
	return out, err
}

// PendingPage implements store.PendingPager.
//
// A cursor is the log position of the last message of its page, in
// decimal. Every queue entry, in the index or the overlay, is keyed by the
// position of its message's log record; the committer assigns positions in
// commit order and never reuses one, and a batch becomes visible to
// readers (in the overlay) only once committed, all of it at once and
// after the batches before it. So a queue in enqueue order is a queue in
// position order, a checkpoint moves an entry from the overlay to the
// index under the same position, and whatever is enqueued after a page
// was read (into a queue acknowledged empty meanwhile or not) has a higher
// position than any message that page returned: the next page, the
// entries after the cursor's position, holds each later message once and
// no earlier one, whenever checkpoints happened. A text other than a
// position in canonical decimal, or a position beyond the end of the log,
// is not a cursor of this store: store.ErrInvalid.
//
// The cost of a page grows with limit (and the acknowledged entries it
// skips), not with the length of the queue nor with the number of acks
// waiting for the next checkpoint (see pendingAfter).
func (s *Store) PendingPage(ctx context.Context, user, cursor string, limit int) ([]store.Message, string, error) {
	if user == "" {
		return nil, "", fmt.Errorf("%w: empty user", store.ErrInvalid)
	}
	var after uint64
	if cursor != "" {
		var err error
		after, err = strconv.ParseUint(cursor, 10, 64)
		// Only the text FormatUint wrote: no sign, no leading zero.
		if err != nil || after == 0 || strconv.FormatUint(after, 10) != cursor {
			return nil, "", fmt.Errorf("%w: pending cursor %q", store.ErrInvalid, cursor)
		}
	}
	page, last, more, err := s.pendingAfter(ctx, user, after, max(limit, 1))
	if err != nil || !more {
		return page, "", err
	}
	return page, strconv.FormatUint(last, 10), nil
}

// maxPendingHint bounds the room pendingAfter makes for a page at once,
// which follows the count of the queue (pendn): a longer queue grows
// the page as it is read.
const maxPendingHint = 1 << 14

// pendPage is a page of a pending queue being read by pendingAfter.
type pendPage struct {
	limit int             // 0: no limit
	out   []store.Message // the index's messages read
	pos   []uint64        // their log positions
	ov    []*entry        // the overlay's part, after the index's
}

// full reports whether n messages are the page and one more, which tells
// that more follow.
func (pg *pendPage) full(n int) bool { return pg.limit > 0 && n > pg.limit }

// overlayAfter copies into pg.ov, under the lock, up to a full page of the
// overlay's entries of user's queue above position after, not
// acknowledged, and returns the overlay's generation.
func (s *Store) overlayAfter(user string, after uint64, pg *pendPage) (gen uint64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	pg.ov = pg.ov[:0]
	if ul := s.ov.users[user]; ul != nil {
		i, _ := slices.BinarySearchFunc(ul.ents, after+1, func(pe *pendEntry, p uint64) int { return cmp.Compare(pe.e.pos, p) })
		for _, pe := range ul.ents[i:] {
			if pg.full(len(pg.ov)) {
				break
			}
			if !pe.acked {
				pg.ov = append(pg.ov, pe.e)
			}
		}
	}
	return s.ov.gen
}

// indexAfter appends to pg the index's entries of user's queue above
// position from, until the page is full, and returns the position of the
// last entry read and whether the queue ended.
func (s *Store) indexAfter(tx *bolt.Tx, user string, from uint64, pg *pendPage) (last uint64, done bool, err error) {
	ub := []byte(user)
	if cap(pg.out) == 0 {
		// Room for the page, as far as the queue's count (acknowledged
		// entries included) tells.
		n := min(seqOf(tx.Bucket(bucketPendN).Get(ub))+uint64(len(pg.ov)), maxPendingHint)
		if pg.limit > 0 {
			n = min(n, uint64(pg.limit)+1)
		}
		pg.out, pg.pos = make([]store.Message, 0, n), make([]uint64, 0, n)
	}
	q := tx.Bucket(bucketPend).Bucket(ub)
	if q == nil {
		return from, true, nil
	}
	log := tx.Bucket(bucketLog)
	c := q.Cursor()
	for k, _ := c.Seek(seqKey(from + 1)); k != nil; k, _ = c.Next() {
		if pg.full(len(pg.out)) {
			return from, false, nil
		}
		from = seqOf(k)
		rec := log.Get(k)
		if rec == nil {
			// Not in this layout: release keeps the record of a queued
			// message, and migrate4 dropped the entries layout 4 left
			// without one. Skipped, not fatal.
			continue
		}
		m, err := logMessage(rec)
		if err != nil {
			return from, false, corruptf(s.path, "pending %q: %v", user, err)
		}
		pg.out, pg.pos = append(pg.out, m), append(pg.pos, from)
	}
	return from, true, nil
}

// dropIndexAcks drops from pg.out[read:] the entries acknowledged since the
// checkpoint of generation gen, under mu's read lock. It reports false,
// dropping nothing, when the overlay is no longer the one after that
// checkpoint: the acks do not match what was read, and the page is to be
// read again.
func (s *Store) dropIndexAcks(user string, gen uint64, read int, pg *pendPage) bool {
	if len(pg.out) == read {
		return true
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.ov.gen != gen {
		return false
	}
	ul := s.ov.users[user]
	if ul == nil || len(ul.indexAcks) == 0 {
		return true
	}
	if s.ackWork != nil {
		s.ackWork(len(pg.out) - read)
	}
	kept := read
	for i := read; i < len(pg.out); i++ {
		if _, acked := ul.indexAcks[pg.out[i].ID]; !acked {
			pg.out[kept], pg.pos[kept] = pg.out[i], pg.pos[i]
			kept++
		}
	}
	clear(pg.out[kept:])
	pg.out, pg.pos = pg.out[:kept], pg.pos[:kept]
	return true
}

// pendingAfter returns the first limit (0: all) of user's pending messages
// whose log position is above after, the position of the last one
// returned, and whether more follow them. It merges the index's queue
// with the overlay's entries as every reader does (see overlay.go): all
// of the index's entries of a queue come before the overlay's, whose
// positions are newer than the last checkpoint's.
//
// The acks of index entries wait in the overlay (userLog.indexAcks) until
// the next checkpoint, and a walk that acknowledges each page as it goes
// (the hub's) adds a page of them for every page it reads. So a page does
// not copy them: it reads the index's entries after the cursor in a read
// transaction, then, under mu's read lock (never inside a transaction:
// the committer holds mu right after committing, and bbolt's remap waits
// for read transactions), drops those whose id is among the acks. The
// acks match the index the transaction saw only while the overlay is
// still the one that follows that index's checkpoint: if a checkpoint
// came between (the overlay's gen moved, or a later transaction of the
// page sees the checkpoint), the page is read again, as Conversations
// does. When the acks leave the page short, the index is read on from its
// last entry read, in another transaction. A page thus costs O(limit +
// the acknowledged entries it skips) index reads and map look-ups,
// whatever the number of acks waiting.
func (s *Store) pendingAfter(ctx context.Context, user string, after uint64, limit int) (out []store.Message, last uint64, more bool, err error) {
	var pg pendPage
	pg.limit = limit
	for {
		// The overlay's part, copied under the lock: up to a full page.
		gen := s.overlayAfter(user, after, &pg)

		// The index's part, into pg.out: read, then filtered.
		pg.out, pg.pos = pg.out[:0], pg.pos[:0]
		retry := false
		// from is the position of the last index entry read.
		for from, first := after, true; ; first = false {
			read := len(pg.out)
			var stale, done bool
			err = s.view(ctx, func(tx *bolt.Tx) error {
				if after > tx.Bucket(bucketLog).Sequence() {
					// Beyond the last position ever assigned: not a
					// cursor of this file.
					return fmt.Errorf("%w: pending cursor %d beyond the log", store.ErrInvalid, after)
				}
				if stale = checkpointed(tx) >= gen; stale && !first {
					return nil // between the reads: the page again
				}
				var err error
				from, done, err = s.indexAfter(tx, user, from, &pg)
				return err
			})
			if err != nil {
				return nil, 0, false, err
			}
			if stale {
				if retry = !first; !retry {
					// Checkpointed since the copy, before the first read:
					// the index holds the overlay copied, its acks
					// applied, and this read the page whole.
					pg.ov = nil
				}
				break
			}
			if retry = !s.dropIndexAcks(user, gen, read, &pg); retry || done || pg.full(len(pg.out)) {
				break
			}
		}
		if !retry {
			break
		}
	}

	// The overlay's entries come after all of the index's.
	for _, e := range pg.ov {
		if limit > 0 && len(pg.out) >= limit {
			more = true // e, or the index's one more, is on the next page
			break
		}
		m, err := decodeMessage(e.enc)
		if err != nil {
			return nil, 0, false, corruptf(s.path, "pending %q: %v", user, err)
		}
		pg.out, pg.pos = append(pg.out, m), append(pg.pos, e.pos)
	}
	out = pg.out
	if pg.full(len(out)) {
		more = true
		clear(out[limit:])
		out = out[:limit]
	}
	if len(out) == 0 {
		return nil, 0, false, nil
	}
	return out, pg.pos[len(out)-1], more, nil
}

// Rooms implements store.Store.
func (s *Store) Rooms(ctx context.Context, user string) ([]string, error) {
	if user == "" {
		return nil, fmt.Errorf("%w: empty user", store.ErrInvalid)
	}
	return s.keys(ctx, bucketUserRooms, user)
}

// Members implements store.Store.
func (s *Store) Members(ctx context.Context, room string) ([]string, error) {
	if room == "" {
		return nil, fmt.Errorf("%w: empty room", store.ErrInvalid)
	}
	return s.keys(ctx, bucketRooms, room)
}

// keys lists the keys of the bucket top/name.
func (s *Store) keys(ctx context.Context, top []byte, name string) ([]string, error) {
	var out []string
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(top).Bucket([]byte(name))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, _ []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
