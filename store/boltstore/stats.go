package boltstore

import (
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Stats counts what the committer did since Open. Durations are wall
// time, syncs included.
type Stats struct {
	Commits        uint64        // batch transactions committed
	Requests       uint64        // write requests they held (Append, Ack, Join, Leave)
	CommitTime     time.Duration // time spent in batch transactions
	Checkpoints    uint64        // checkpoints committed
	Checkpointed   uint64        // log and ack records they indexed
	CheckpointTime time.Duration // time spent in checkpoints
	Expired        uint64        // messages that left their history by age (Options.MaxAge)
	ExpirePasses   uint64        // expiry transactions committed
	ExpireTime     time.Duration // time spent in them
	// Size is the part of the file bbolt uses, in bytes: its pages up to
	// the highest one in use (free pages below it included). The file on
	// disk may be longer: bbolt grows it in steps.
	Size int64
}

// stats holds the counters behind Stats. Written by the committer,
// read by Stats.
type stats struct {
	commits, requests, commitNanos       atomic.Uint64
	checkpoints, checkpointed, ckptNanos atomic.Uint64
	expired, expirePasses, expireNanos   atomic.Uint64
}

// Stats returns the committer's counters and the size of the file in
// use (0 once the store is closed).
func (s *Store) Stats() Stats {
	var size int64
	if !s.closed.Load() {
		_ = s.safely(func() error {
			return s.db.View(func(tx *bolt.Tx) error {
				size = tx.Size()
				return nil
			})
		})
	}
	return Stats{
		Size:           size,
		Expired:        s.stats.expired.Load(),
		ExpirePasses:   s.stats.expirePasses.Load(),
		ExpireTime:     time.Duration(s.stats.expireNanos.Load()),
		Commits:        s.stats.commits.Load(),
		Requests:       s.stats.requests.Load(),
		CommitTime:     time.Duration(s.stats.commitNanos.Load()),
		Checkpoints:    s.stats.checkpoints.Load(),
		Checkpointed:   s.stats.checkpointed.Load(),
		CheckpointTime: time.Duration(s.stats.ckptNanos.Load()),
	}
}
