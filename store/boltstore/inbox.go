package boltstore

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/wshub/wshub/store"
)

var _ store.Inbox = (*Store)(nil)

// The conversation index and the read markers (store.Inbox) follow the
// write path of the rest of the store: an Append's log record already
// holds what they need (its conversation, sender, recipient, seq and ts),
// and a MarkRead that moves a marker adds a read record to the acks
// bucket. The overlay keeps, per user, the newest head of each direct
// conversation written since the last checkpoint, and the markers moved;
// a checkpoint writes them into inbox / <user> and marks; Open replays
// them with the rest. Readers merge the index with the overlay.

// MarkRead implements store.Inbox. A marker that moves is committed and
// synced like an Append before MarkRead returns; one that does not move
// writes nothing.
func (s *Store) MarkRead(ctx context.Context, user, conv string, seq uint64) (uint64, bool, error) {
	if user == "" || conv == "" {
		return 0, false, fmt.Errorf("%w: empty user or conversation", store.ErrInvalid)
	}
	if pairKeyLen(user, conv) > bolt.MaxKeySize {
		return 0, false, fmt.Errorf("%w: user and conversation longer than %d bytes", store.ErrInvalid, bolt.MaxKeySize)
	}
	r := &request{kind: opRead, user: user, conv: conv, seq: seq}
	if err := s.submit(ctx, r); err != nil {
		return 0, false, err
	}
	return r.mark, r.moved, nil
}

// logRead applies a MarkRead in the committer's batch transaction: it logs
// a read record if the marker moves.
func (w *writer) logRead(r *request) error {
	last := w.convLast(r.conv)
	pair := string(pairKey(r.user, r.conv))
	cur, ok := w.marks[pair]
	if !ok {
		if cur, ok = w.s.ov.marks[pair]; !ok { // the committer owns the overlay
			cur = seqOf(w.tx.Bucket(bucketMarks).Get([]byte(pair)))
		}
	}
	r.mark, r.moved = cur, false
	target := min(r.seq, last)
	if target <= cur {
		return nil
	}
	rec := readRec{user: r.user, conv: r.conv, seq: target}
	pos, err := w.log.NextSequence()
	if err != nil {
		return err
	}
	if err := w.acks.Put(w.key(pos), encodeReadRec(rec)); err != nil {
		return err
	}
	w.marks[pair] = target
	r.rec, r.mark, r.moved = rec, target, true
	return nil
}

// convLast returns the last seq of conv: in this batch, the overlay or the
// index.
func (w *writer) convLast(conv string) uint64 {
	if last, ok := w.lastSeq[conv]; ok {
		return last
	}
	if last := w.s.ov.lastSeq(conv); last > 0 {
		return last
	}
	if hb := w.hist.Bucket([]byte(conv)); hb != nil {
		return hb.Sequence()
	}
	return 0
}

// writeInbox writes the overlay's conversation heads and markers into the
// index (a checkpoint).
func (w *writer) writeInbox(ov *overlay) error {
	inbox, marks := w.tx.Bucket(bucketInbox), w.tx.Bucket(bucketMarks)
	for _, user := range sortedKeys(ov.heads) {
		heads := ov.heads[user]
		for _, conv := range sortedKeys(heads) {
			if err := putHead(inbox, user, heads[conv]); err != nil {
				return err
			}
		}
	}
	for _, pair := range sortedKeys(ov.marks) {
		k := []byte(pair)
		if _, conv := splitPair(k); w.hist.Bucket([]byte(conv)) == nil {
			continue // dropped after its messages expired (retention.go)
		}
		if v := ov.marks[pair]; v > seqOf(marks.Get(k)) {
			if err := marks.Put(k, seqKey(v)); err != nil {
				return err
			}
		}
	}
	return nil
}

// putHead makes h the head of h.conv in inbox / user, unless the index
// holds a newer one.
func putHead(inbox *bolt.Bucket, user string, h inboxHead) error {
	ub, err := inbox.CreateBucketIfNotExists([]byte(user))
	if err != nil {
		return err
	}
	ck := inboxConvKey(h.conv)
	if old := ub.Get(ck); old != nil {
		ts, seq, ok := parseRecency(old)
		if !ok {
			return fmt.Errorf("inbox %q: conversation %q: bad key", user, h.conv)
		}
		if seq >= h.seq {
			return nil
		}
		if err := ub.Delete(inboxOrderKey(ts, seq, h.conv)); err != nil {
			return err
		}
	}
	if err := ub.Put(inboxOrderKey(h.ts, h.seq, h.conv), []byte(h.peer)); err != nil {
		return err
	}
	return ub.Put(ck, recencyKey(nil, h.ts, h.seq))
}

// compareRecency orders a before b when a is more recent (see
// store.Inbox.Conversations).
func compareRecency(a, b *store.ConvInfo) int {
	if c := cmp.Compare(b.TS, a.TS); c != 0 {
		return c
	}
	if c := cmp.Compare(b.Seq, a.Seq); c != 0 {
		return c
	}
	return cmp.Compare(a.Conv, b.Conv)
}

// Conversations implements store.Inbox. In one read transaction it walks
// the user's inbox from its most recent end for limit+1 entries (plus
// those tied with the last), reads the head of each of the user's R rooms
// and 2 markers per item: O((limit + R) log N) for N keys in the file,
// whatever the number of the user's direct conversations, plus O(H) for
// the H direct conversations of the user written since the last
// checkpoint (the overlay; at most Options.CheckpointEvery).
func (s *Store) Conversations(ctx context.Context, user string, limit int) ([]store.ConvInfo, bool, error) {
	if user == "" {
		return nil, false, fmt.Errorf("%w: empty user", store.ErrInvalid)
	}
	if limit <= 0 {
		limit = store.DefaultConversations
	}
	limit = min(limit, store.MaxConversations)
	for {
		s.mu.RLock()
		gen := s.ov.gen
		var heads []inboxHead
		for _, h := range s.ov.heads[user] {
			heads = append(heads, h)
		}
		s.mu.RUnlock()

		var items []store.ConvInfo
		err := s.view(ctx, func(tx *bolt.Tx) error {
			var err error
			if checkpointed(tx) >= gen {
				heads = nil // in the index already
			}
			items, err = s.readInbox(tx, user, limit, heads)
			return err
		})
		if err != nil {
			return nil, false, err
		}

		// The overlay's markers and room heads, if it is still the one
		// the heads came from; otherwise a checkpoint came between: again.
		s.mu.RLock()
		if s.ov.gen != gen {
			s.mu.RUnlock()
			continue
		}
		for i := range items {
			it := &items[i]
			it.Read = max(it.Read, s.ov.marks[string(pairKey(user, it.Conv))])
			switch it.Kind {
			case store.ConvDirect:
				it.Seen = max(it.Seen, s.ov.marks[string(pairKey(it.Peer, it.Conv))])
			case store.ConvRoom:
				if cl := s.ov.convs[it.Conv]; cl != nil && len(cl.ents) > 0 && cl.last() > it.Seq {
					it.Seq, it.TS = cl.last(), cl.ents[len(cl.ents)-1].ts
				}
			}
		}
		s.mu.RUnlock()
		slices.SortFunc(items, func(a, b store.ConvInfo) int { return compareRecency(&a, &b) })
		more := len(items) > limit
		return items[:min(len(items), limit)], more, nil
	}
}

// readInbox lists, from the index in tx merged with heads (the overlay's
// newer heads of user's direct conversations), the limit+1 most recent
// direct conversations (and those tied with the last) and every room of
// user, with the markers the index holds. Unsorted.
func (s *Store) readInbox(tx *bolt.Tx, user string, limit int, heads []inboxHead) ([]store.ConvInfo, error) {
	marks := tx.Bucket(bucketMarks)
	items := make([]store.ConvInfo, 0, limit+1+len(heads))
	newer := make(map[string]bool, len(heads))
	for _, h := range heads {
		newer[h.conv] = true
		items = append(items, store.ConvInfo{Conv: h.conv, Kind: store.ConvDirect, Peer: h.peer, Seq: h.seq, TS: h.ts})
	}
	if ub := tx.Bucket(bucketInbox).Bucket([]byte(user)); ub != nil {
		c := ub.Cursor()
		n := 0
		var lastKey []byte
		k, v := c.Seek([]byte{'p'})
		if k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
		for ; k != nil && k[0] == 'o'; k, v = c.Prev() {
			rk := k[1:17]
			if n > limit && !bytes.Equal(rk, lastKey) {
				break
			}
			ts, seq, ok := parseRecency(k[1:])
			if !ok {
				return nil, corruptf(s.path, "inbox %q: bad key %q", user, k)
			}
			conv := string(k[17:])
			if newer[conv] {
				continue
			}
			items = append(items, store.ConvInfo{Conv: conv, Kind: store.ConvDirect, Peer: string(v), Seq: seq, TS: ts})
			n++
			lastKey = rk
		}
	}
	if rb := tx.Bucket(bucketUserRooms).Bucket([]byte(user)); rb != nil {
		hist, log := tx.Bucket(bucketHist), tx.Bucket(bucketLog)
		err := rb.ForEach(func(room, _ []byte) error {
			it := store.ConvInfo{Conv: store.RoomConv(string(room)), Kind: store.ConvRoom, Peer: string(room)}
			if hb := hist.Bucket([]byte(it.Conv)); hb != nil {
				if k, pos := hb.Cursor().Last(); k != nil {
					m, err := logMessage(log.Get(pos))
					if err != nil {
						return corruptf(s.path, "history %q seq %d: %v", it.Conv, seqOf(k), err)
					}
					it.Seq, it.TS = m.Seq, m.TS
				} else {
					// Every message expired (MaxAge): the last seq stays,
					// so that Seq - Read is still the unread count.
					it.Seq = hb.Sequence()
				}
			}
			items = append(items, it)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	for i := range items {
		it := &items[i]
		it.Read = seqOf(marks.Get(pairKey(user, it.Conv)))
		if it.Kind == store.ConvDirect {
			it.Seen = seqOf(marks.Get(pairKey(it.Peer, it.Conv)))
		}
	}
	return items, nil
}
