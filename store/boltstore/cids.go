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
// Pairs are kept in two generations, cur and prev; when cur holds half of
// MaxCIDs, or its oldest pair is older than CIDRetention, prev is dropped
// whole and cur becomes prev. So a pair is kept while fewer than MaxCIDs/2
// pairs are newer and it is younger than CIDRetention, and never more than
// MaxCIDs pairs are kept; dropping a map whole is cheaper than deleting
// pairs one by one. A pair also ends when its message leaves the history
// (its log record is gone).
type cidIndex struct {
	cur, prev map[string]uint64 // cidKey -> log position
	curOldest int64             // Unix ms of the oldest pair in cur
	retention time.Duration
	half      int // rotate when cur holds this many; 0: never by count
}

func newCIDIndex(opts Options) *cidIndex {
	c := &cidIndex{cur: make(map[string]uint64), retention: opts.CIDRetention}
	if opts.MaxCIDs > 0 {
		c.half = max(opts.MaxCIDs/2, 1)
	}
	return c
}

func (c *cidIndex) get(key string) (uint64, bool) {
	if pos, ok := c.cur[key]; ok {
		return pos, true
	}
	pos, ok := c.prev[key]
	return pos, ok
}

// add records a pair, created at Unix ms created (not older than the pairs
// added before).
func (c *cidIndex) add(key string, pos uint64, created int64) {
	if len(c.cur) > 0 && ((c.half > 0 && len(c.cur) >= c.half) ||
		created-c.curOldest > c.retention.Milliseconds()) {
		c.prev, c.cur = c.cur, make(map[string]uint64, len(c.cur))
	}
	if len(c.cur) == 0 {
		c.curOldest = created
	}
	c.cur[key] = pos
}

// loadCIDs rebuilds the index from the log: the records with a cid of the
// last CIDRetention, at most MaxCIDs of them, added oldest first.
func loadCIDs(tx *bolt.Tx, opts Options, now time.Time) (*cidIndex, error) {
	c := newCIDIndex(opts)
	cutoff := now.Add(-c.retention).UnixMilli()
	type ref struct {
		key     string
		pos     uint64
		created int64
	}
	var refs []ref // newest first
	cur := tx.Bucket(bucketLog).Cursor()
	for k, v := cur.Last(); k != nil && (opts.MaxCIDs <= 0 || len(refs) < opts.MaxCIDs); k, v = cur.Prev() {
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
			refs = append(refs, ref{key: cid, pos: seqOf(k), created: created})
		}
	}
	for i := len(refs) - 1; i >= 0; i-- {
		c.add(refs[i].key, refs[i].pos, refs[i].created)
	}
	return c, nil
}
