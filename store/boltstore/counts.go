package boltstore

import (
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/wshub/wshub/store"
)

// The pending bounds
//
// An Append is refused (store.ErrPendingFull) when a recipient's queue
// holds MaxPending messages, or MaxPendingPerSender from the message's
// sender. The index keeps these numbers next to the queues (pendn, pendc)
// and checkpoints change both in one transaction, so they agree on disk;
// the records since the last checkpoint change them in the overlay's
// view. The committer decides with queueCounts: the index's numbers plus
// the overlay's changes, loaded when first needed and kept up to date by
// every Append and Ack it logs. Open rebuilds it while replaying the log,
// so after a crash it counts exactly the queues the index and the
// replayed records hold.

// queueCounts holds the number of messages in pending queues, in total per
// user and per (user, sender), as the index and the overlay hold them
// together. A user or pair not in the maps has the index's numbers. It is
// dropped with the overlay at each checkpoint, which writes the same
// numbers into the index. Committer only (and Open, before the committer
// starts).
type queueCounts struct {
	totals  map[string]uint64 // user -> messages queued
	senders map[string]uint64 // string(pairKey(user, sender)) -> messages queued
}

func newQueueCounts() *queueCounts {
	return &queueCounts{totals: make(map[string]uint64), senders: make(map[string]uint64)}
}

// counter counts the queues in one transaction of the committer (or of
// replay): it reads queueCounts, the overlay and the index, and keeps this
// transaction's changes apart, so that a rolled-back transaction leaves
// queueCounts as it was. commit makes them queueCounts'.
type counter struct {
	base                       *queueCounts
	ov                         *overlay
	pend, pendN, pendC, pendID *bolt.Bucket

	totals  map[string]uint64
	senders map[string]uint64
	// enq lists the entries this transaction enqueued, pairKey(user, id)
	// -> sender, and acked the ones it removed: the overlay does not have
	// them yet.
	enq   map[string]string
	acked map[string]struct{}
	// byID indexes the overlay's entries of a user whose userLog has no
	// byID yet (no ack in this generation), built at the first ack.
	byID map[string]map[string]*pendEntry
}

func newCounter(tx *bolt.Tx, base *queueCounts, ov *overlay) *counter {
	return &counter{
		base:    base,
		ov:      ov,
		pend:    tx.Bucket(bucketPend),
		pendN:   tx.Bucket(bucketPendN),
		pendC:   tx.Bucket(bucketPendC),
		pendID:  tx.Bucket(bucketPendID),
		totals:  make(map[string]uint64),
		senders: make(map[string]uint64),
		enq:     make(map[string]string),
		acked:   make(map[string]struct{}),
	}
}

// total returns the number of messages in user's queue.
func (c *counter) total(user string) uint64 {
	if n, ok := c.totals[user]; ok {
		return n
	}
	if n, ok := c.base.totals[user]; ok {
		return n
	}
	return seqOf(c.pendN.Get([]byte(user)))
}

// fromSender returns the number of messages in a queue from one sender;
// pair is pairKey(user, sender).
func (c *counter) fromSender(pair []byte) uint64 {
	if n, ok := c.senders[string(pair)]; ok {
		return n
	}
	if n, ok := c.base.senders[string(pair)]; ok {
		return n
	}
	return seqOf(c.pendC.Get(pair))
}

// check returns an error wrapping store.ErrPendingFull if a queue of users
// is at a bound for a message from from; 0 means unbounded.
func (c *counter) check(users []string, from string, maxTotal, maxFrom uint64) error {
	for _, u := range users {
		if n := c.total(u); maxTotal > 0 && n >= maxTotal {
			return fmt.Errorf("%w: %q holds %d messages (MaxPending)", store.ErrPendingFull, u, n)
		}
		if maxFrom == 0 {
			continue
		}
		if n := c.fromSender(pairKey(u, from)); n >= maxFrom {
			return fmt.Errorf("%w: %q holds %d messages from %q (MaxPendingPerSender)", store.ErrPendingFull, u, n, from)
		}
	}
	return nil
}

// enqueue counts message id from from in the queues of users.
func (c *counter) enqueue(users []string, from, id string) {
	for _, u := range users {
		c.totals[u] = c.total(u) + 1
		pair := pairKey(u, from)
		c.senders[string(pair)] = c.fromSender(pair) + 1
		c.enq[string(pairKey(u, id))] = from
	}
}

// ack uncounts the messages ids that are in user's queue, each once.
func (c *counter) ack(user string, ids []string) {
	for _, id := range ids {
		key := string(pairKey(user, id))
		if _, ok := c.acked[key]; ok {
			continue
		}
		from, ok := c.queued(user, id, key)
		if !ok {
			continue
		}
		c.acked[key] = struct{}{}
		if n := c.total(user); n > 0 {
			c.totals[user] = n - 1
		}
		pair := pairKey(user, from)
		if n := c.fromSender(pair); n > 0 {
			c.senders[string(pair)] = n - 1
		}
	}
}

// queued reports whether id is in user's queue and not acked, and its
// sender: enqueued by this transaction, in the overlay, or in the index
// and not acked in this generation. key is pairKey(user, id).
func (c *counter) queued(user, id, key string) (string, bool) {
	if from, ok := c.enq[key]; ok {
		return from, true
	}
	if ul := c.ov.users[user]; ul != nil {
		if _, ok := ul.indexAcks[id]; ok {
			return "", false // acked in this generation already
		}
		byID := ul.byID
		if byID == nil {
			if byID = c.byID[user]; byID == nil {
				byID = make(map[string]*pendEntry, len(ul.ents))
				for _, pe := range ul.ents {
					byID[pe.e.id] = pe
				}
				if c.byID == nil {
					c.byID = make(map[string]map[string]*pendEntry)
				}
				c.byID[user] = byID
			}
		}
		if pe := byID[id]; pe != nil && !pe.acked {
			return pe.e.from, true
		}
	}
	pos := c.pendID.Get([]byte(key))
	if pos == nil {
		return "", false
	}
	q := c.pend.Bucket([]byte(user))
	if q == nil {
		return "", false
	}
	from := q.Get(pos)
	if from == nil {
		return "", false
	}
	return string(from), true
}

// commit makes this transaction's counts the committer's, once it
// committed.
func (c *counter) commit() {
	for u, n := range c.totals {
		c.base.totals[u] = n
	}
	for pair, n := range c.senders {
		c.base.senders[pair] = n
	}
}
