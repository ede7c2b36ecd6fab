//go:build linux

package main

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// histogram records durations in log-linear buckets (32 per power of two,
// so a quantile is off by at most 1/32, about 3 %), safely from many
// goroutines: samples go to one of several shards by a caller-chosen hint
// to spread the atomic adds over cache lines. The maximum is exact.
type histogram struct {
	shards [histShards]histShard
	max    atomic.Int64
}

const (
	histShards  = 16
	histSubBits = 5
	histSub     = 1 << histSubBits
	histBuckets = (64 - histSubBits + 1) * histSub
)

type histShard struct {
	counts [histBuckets]atomic.Uint64
	_      [64]byte // keep neighbouring shards off each other's cache line
}

func histIndex(v uint64) int {
	if v < histSub {
		return int(v)
	}
	e := bits.Len64(v) - 1 // >= histSubBits
	sub := (v >> (e - histSubBits)) & (histSub - 1)
	return (e-histSubBits+1)*histSub + int(sub)
}

// histUpper returns the largest value of bucket i.
func histUpper(i int) uint64 {
	if i < histSub {
		return uint64(i)
	}
	e := i/histSub + histSubBits - 1
	sub := uint64(i % histSub)
	low := (histSub + sub) << (e - histSubBits)
	return low + (1 << (e - histSubBits)) - 1
}

// record adds one sample; hint picks the shard.
func (h *histogram) record(d time.Duration, hint int) {
	if d < 0 {
		d = 0
	}
	h.shards[hint&(histShards-1)].counts[histIndex(uint64(d))].Add(1)
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

// snapshot merges the shards.
func (h *histogram) snapshot() *histSnapshot {
	s := &histSnapshot{max: time.Duration(h.max.Load())}
	for i := range h.shards {
		for b := range h.shards[i].counts {
			c := h.shards[i].counts[b].Load()
			s.counts[b] += c
			s.n += c
		}
	}
	return s
}

// histSnapshot is a histogram's content at one moment.
type histSnapshot struct {
	counts [histBuckets]uint64
	n      uint64
	max    time.Duration
}

// quantile returns the q-quantile (0 < q <= 1): the upper end of the
// bucket holding it, capped at the exact maximum. Zero without samples.
func (s *histSnapshot) quantile(q float64) time.Duration {
	if s.n == 0 {
		return 0
	}
	rank := uint64(q*float64(s.n) + 0.5)
	rank = max(1, min(rank, s.n))
	var seen uint64
	for i, c := range s.counts {
		seen += c
		if seen >= rank {
			return min(time.Duration(histUpper(i)), s.max)
		}
	}
	return s.max
}
