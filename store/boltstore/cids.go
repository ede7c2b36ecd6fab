package boltstore

import (
	"encoding/binary"
	"time"

	bolt "go.etcd.io/bbolt"
)

// cidIndex maps the (sender, cid) pairs of recent appends to the log
// position of the message stored with them. It lives in memory only: the
// log records hold each message's cid and commit time, so Open rebuilds it
// by reading the log backwards, and a checkpoint has nothing to write for
// it (random cid keys would dirty a page each). Used by the committer only.
//
// A pair is forgotten when it is older than CIDRetention, when MaxCIDs
// newer pairs exist, or when its message leaves the history (the log
// record is gone): whichever comes first.
type cidIndex struct {
	m     map[string]uint64 // cidKey -> log position
	order []cidRef          // insertion order; order[head:] are live
	head  int

	retention time.Duration
	max       int // 0: unbounded
}

type cidRef struct {
	key     string
	pos     uint64
	created int64 // Unix ms
}

func newCIDIndex(opts Options) *cidIndex {
	c := &cidIndex{m: make(map[string]uint64), retention: opts.CIDRetention}
	if opts.MaxCIDs > 0 {
		c.max = opts.MaxCIDs
	}
	return c
}

func (c *cidIndex) get(key string) (uint64, bool) {
	pos, ok := c.m[key]
	return pos, ok
}

// add records a pair (newer than every pair added before) and forgets the
// pairs beyond the bounds.
func (c *cidIndex) add(key string, pos uint64, created int64, now time.Time) {
	c.m[key] = pos
	c.order = append(c.order, cidRef{key: key, pos: pos, created: created})
	c.expire(now)
}

func (c *cidIndex) expire(now time.Time) {
	cutoff := now.Add(-c.retention).UnixMilli()
	for c.head < len(c.order) {
		r := c.order[c.head]
		if r.created >= cutoff && (c.max == 0 || len(c.order)-c.head <= c.max) {
			break
		}
		if c.m[r.key] == r.pos {
			delete(c.m, r.key)
		}
		c.order[c.head] = cidRef{}
		c.head++
	}
	if c.head > 1024 && c.head > len(c.order)/2 {
		c.order = append(c.order[:0:0], c.order[c.head:]...)
		c.head = 0
	}
}

// loadCIDs rebuilds the index from the log: the newest records with a cid,
// within the retention and the count.
func loadCIDs(tx *bolt.Tx, opts Options, now time.Time) (*cidIndex, error) {
	c := newCIDIndex(opts)
	cutoff := now.Add(-c.retention).UnixMilli()
	var refs []cidRef // newest first
	cur := tx.Bucket(bucketLog).Cursor()
	for k, v := cur.Last(); k != nil && (c.max == 0 || len(refs) < c.max); k, v = cur.Prev() {
		if len(v) < 9 || v[0] != recAppend {
			return nil, errBadRecord
		}
		created := int64(binary.BigEndian.Uint64(v[1:]))
		if created < cutoff {
			break
		}
		cid, _, ok := readString(v[9:])
		if !ok {
			return nil, errBadRecord
		}
		if cid != "" {
			refs = append(refs, cidRef{key: cid, pos: seqOf(k), created: created})
		}
	}
	for i := len(refs) - 1; i >= 0; i-- {
		c.m[refs[i].key] = refs[i].pos
		c.order = append(c.order, refs[i])
	}
	return c, nil
}
