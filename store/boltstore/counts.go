package boltstore

import (
	"encoding/binary"
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
// view. The committer decides with a counter: the index's numbers plus
// the overlay's changes, loaded when first needed and kept up to date by
// every Append and Ack it logs. Open rebuilds it while replaying the log,
// so after a crash it counts exactly the queues that the index and the
// replayed records hold.

// counter holds the number of messages in pending queues, in total per
// user and per (user, sender), as the index and the overlay hold them
// together; a user or pair it does not hold has the index's numbers. A
// checkpoint writes the same numbers into the index and resets it. It is
// used by the committer only (and by Open before the committer starts).
//
// Within a transaction (begin ... commit or rollback) it also knows the
// entries the transaction enqueued and acked, which the overlay learns
// only once the transaction committed; rollback restores the counts.
type counter struct {
	totals  map[string]*uint64 // user -> messages queued
	senders map[string]*uint64 // string(pairKey(user, sender)) -> messages queued

	// The transaction's state, reset by begin. The buckets are opened
	// when first needed: opening one costs allocations, and mostly the
	// counts are in the maps already.
	tx                         *bolt.Tx
	pend, pendN, pendC, pendID *bolt.Bucket
	ov                         *overlay
	undo                       []undoCount // the counts before the transaction changed them
	added                      []enqueued  // entries the transaction enqueued, in order
	enq                        map[string]string
	acked                      map[string]struct{}
	byID                       map[string]map[string]*pendEntry
	key                        []byte // scratch for index keys
}

type undoCount struct {
	p   *uint64
	old uint64
}

type enqueued struct{ user, from, id string }

func newCounter() *counter {
	return &counter{totals: make(map[string]*uint64), senders: make(map[string]*uint64)}
}

// reset forgets every count: the index holds them now.
func (c *counter) reset() {
	c.totals = make(map[string]*uint64)
	c.senders = make(map[string]*uint64)
}

// begin starts counting in tx, on top of the overlay ov.
func (c *counter) begin(tx *bolt.Tx, ov *overlay) {
	c.tx = tx
	c.pend, c.pendN, c.pendC, c.pendID = nil, nil, nil, nil
	c.ov = ov
	c.undo, c.added = c.undo[:0], c.added[:0]
	c.enq, c.acked, c.byID = nil, nil, nil
}

// commit keeps the transaction's counts: it committed.
func (c *counter) commit() { c.undo = c.undo[:0] }

// rollback restores the counts the transaction changed: it was rolled back.
func (c *counter) rollback() {
	for i := len(c.undo) - 1; i >= 0; i-- {
		*c.undo[i].p = c.undo[i].old
	}
	c.undo = c.undo[:0]
}

func (c *counter) set(p *uint64, v uint64) {
	c.undo = append(c.undo, undoCount{p, *p})
	*p = v
}

// total returns the count of user's queue.
func (c *counter) total(user string) *uint64 {
	if p := c.totals[user]; p != nil {
		return p
	}
	if c.pendN == nil {
		c.pendN = c.tx.Bucket(bucketPendN)
	}
	c.key = append(c.key[:0], user...)
	n := seqOf(c.pendN.Get(c.key))
	c.totals[user] = &n
	return &n
}

// fromSender returns the count of from's messages in user's queue.
func (c *counter) fromSender(user, from string) *uint64 {
	c.key = appendPair(c.key[:0], user, from)
	if p := c.senders[string(c.key)]; p != nil {
		return p
	}
	if c.pendC == nil {
		c.pendC = c.tx.Bucket(bucketPendC)
	}
	n := seqOf(c.pendC.Get(c.key))
	c.senders[string(c.key)] = &n
	return &n
}

// check returns an error wrapping store.ErrPendingFull if a queue of users
// is at a bound for a message from from; 0 means unbounded.
func (c *counter) check(users []string, from string, maxTotal, maxFrom uint64) error {
	for _, u := range users {
		if n := *c.total(u); maxTotal > 0 && n >= maxTotal {
			return fmt.Errorf("%w: %q holds %d messages (MaxPending)", store.ErrPendingFull, u, n)
		}
		if maxFrom == 0 {
			continue
		}
		if n := *c.fromSender(u, from); n >= maxFrom {
			return fmt.Errorf("%w: %q holds %d messages from %q (MaxPendingPerSender)", store.ErrPendingFull, u, n, from)
		}
	}
	return nil
}

// enqueue counts message id from from in the queues of users.
func (c *counter) enqueue(users []string, from, id string) {
	for _, u := range users {
		p := c.total(u)
		c.set(p, *p+1)
		p = c.fromSender(u, from)
		c.set(p, *p+1)
		c.added = append(c.added, enqueued{u, from, id})
		if c.enq != nil {
			c.enq[string(pairKey(u, id))] = from
		}
	}
}

// ack uncounts the messages ids that are in user's queue, each once.
func (c *counter) ack(user string, ids []string) {
	if c.acked == nil {
		c.acked = make(map[string]struct{})
	}
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
		if p := c.total(user); *p > 0 {
			c.set(p, *p-1)
		}
		if p := c.fromSender(user, from); *p > 0 {
			c.set(p, *p-1)
		}
	}
}

// queued reports whether id is in user's queue and not acked, and its
// sender: enqueued by this transaction, in the overlay, or in the index
// and not acked in this generation. key is pairKey(user, id).
func (c *counter) queued(user, id, key string) (string, bool) {
	if c.enq == nil && len(c.added) > 0 {
		c.enq = make(map[string]string, len(c.added))
		for _, e := range c.added {
			c.enq[string(pairKey(e.user, e.id))] = e.from
		}
	}
	if from, ok := c.enq[key]; ok {
		return from, true
	}
	if ul := c.ov.users[user]; ul != nil {
		if _, ok := ul.indexAcks[id]; ok {
			return "", false // acked in this generation already
		}
		byID := ul.byID
		if byID == nil { // no ack in this generation yet: every entry is live
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
	if c.pendID == nil {
		c.pend, c.pendID = c.tx.Bucket(bucketPend), c.tx.Bucket(bucketPendID)
	}
	pos := c.pendID.Get([]byte(key))
	if pos == nil {
		return "", false
	}
	c.key = append(c.key[:0], user...)
	q := c.pend.Bucket(c.key)
	if q == nil {
		return "", false
	}
	from := q.Get(pos)
	if from == nil {
		return "", false
	}
	return string(from), true
}

// appendPair appends pairKey(a, b) to k.
func appendPair(k []byte, a, b string) []byte {
	k = binary.AppendUvarint(k, uint64(len(a)))
	k = append(k, a...)
	return append(k, b...)
}
