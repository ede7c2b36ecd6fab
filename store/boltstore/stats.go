package boltstore

import (
	"sync/atomic"
	"time"
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
}

// stats holds the counters behind Stats. Written by the committer,
// read by Stats.
type stats struct {
	commits, requests, commitNanos       atomic.Uint64
	checkpoints, checkpointed, ckptNanos atomic.Uint64
}

// Stats returns the committer's counters.
func (s *Store) Stats() Stats {
	return Stats{
		Commits:        s.stats.commits.Load(),
		Requests:       s.stats.requests.Load(),
		CommitTime:     time.Duration(s.stats.commitNanos.Load()),
		Checkpoints:    s.stats.checkpoints.Load(),
		Checkpointed:   s.stats.checkpointed.Load(),
		CheckpointTime: time.Duration(s.stats.ckptNanos.Load()),
	}
}
