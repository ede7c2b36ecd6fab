package boltstore

import (
	"context"
	"fmt"
	"maps"

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

// Pending implements store.Store.
func (s *Store) Pending(ctx context.Context, user string) ([]store.Message, error) {
	if user == "" {
		return nil, fmt.Errorf("%w: empty user", store.ErrInvalid)
	}

	// The overlay's part, copied under the lock.
	s.mu.RLock()
	gen := s.ov.gen
	var ovEnts []*entry
	var acks map[string]struct{}
	if ul := s.ov.users[user]; ul != nil {
		for _, pe := range ul.ents {
			if !pe.acked {
				ovEnts = append(ovEnts, pe.e)
			}
		}
		acks = maps.Clone(ul.indexAcks)
	}
	s.mu.RUnlock()

	var out []store.Message
	err := s.view(ctx, func(tx *bolt.Tx) error {
		if checkpointed(tx) >= gen {
			ovEnts, acks = nil, nil // checkpointed since the copy
		}
		if q := tx.Bucket(bucketPend).Bucket([]byte(user)); q != nil {
			log := tx.Bucket(bucketLog)
			err := q.ForEach(func(k, _ []byte) error {
				rec := log.Get(k)
				if rec == nil {
					return nil // trimmed from the history
				}
				m, err := logMessage(rec)
				if err != nil {
					return corruptf(s.path, "pending %q: %v", user, err)
				}
				if _, ok := acks[m.ID]; !ok {
					out = append(out, m)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		for _, e := range ovEnts {
			m, err := decodeMessage(e.enc)
			if err != nil {
				return corruptf(s.path, "pending %q: %v", user, err)
			}
			out = append(out, m)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
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
