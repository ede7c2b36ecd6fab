package boltstore

import (
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/wshub/wshub/store"
)

// buckets5 are the buckets layout 5 added: the counts of the pending
// bounds, the queue entries by message id, and the log records kept for a
// queue after their history dropped them.
var buckets5 = [][]byte{bucketPendC, bucketPendID, bucketKept}

// migrate4 upgrades a file of layout 4, in one transaction: layout 4 kept
// no sender in pend / <user> and had neither pendc nor pendid nor kept. It
// fills them from the queues and the log records they point to. A queue
// entry whose record is gone (layout 4 let history trimming take queued
// messages) is dropped, as layout 4's reads skipped it. Records not yet
// checkpointed are replayed by Open as usual.
func migrate4(tx *bolt.Tx) error {
	for _, name := range buckets5 {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	log, pend, pendN := tx.Bucket(bucketLog), tx.Bucket(bucketPend), tx.Bucket(bucketPendN)
	pendC, pendID := tx.Bucket(bucketPendC), tx.Bucket(bucketPendID)
	var users [][]byte
	if err := pend.ForEachBucket(func(k []byte) error {
		users = append(users, append([]byte(nil), k...))
		return nil
	}); err != nil {
		return err
	}
	for _, user := range users {
		q := pend.Bucket(user)
		type queued struct {
			key      []byte
			id, from string
			gone     bool
		}
		var ents []queued
		err := q.ForEach(func(k, _ []byte) error {
			e := queued{key: append([]byte(nil), k...)}
			if rec := log.Get(k); rec == nil {
				e.gone = true
			} else {
				var err error
				if e.id, e.from, err = logMessageIDFrom(rec); err != nil {
					return fmt.Errorf("%w: log record %d: %v", ErrCorrupt, seqOf(k), err)
				}
			}
			ents = append(ents, e)
			return nil
		})
		if err != nil {
			return err
		}
		var count uint64
		senders := make(map[string]uint64)
		for _, e := range ents {
			if e.gone {
				if err := q.Delete(e.key); err != nil {
					return err
				}
				continue
			}
			if err := q.Put(e.key, []byte(e.from)); err != nil {
				return err
			}
			if err := pendID.Put(pairKey(string(user), e.id), e.key); err != nil {
				return err
			}
			senders[e.from]++
			count++
		}
		for _, from := range sortedKeys(senders) {
			if err := pendC.Put(pairKey(string(user), from), seqKey(senders[from])); err != nil {
				return err
			}
		}
		if count == 0 {
			if err := pend.DeleteBucket(user); err != nil {
				return err
			}
			if err := pendN.Delete(user); err != nil {
				return err
			}
			continue
		}
		if err := pendN.Put(user, seqKey(count)); err != nil {
			return err
		}
	}
	return nil
}

// buckets6 are the buckets layout 6 added: the conversation index and the
// read markers of store.Inbox.
var buckets6 = [][]byte{bucketInbox, bucketMarks}

// migrate upgrades a file of layout 4 or 5 to the current one, in one
// transaction.
func migrate(tx *bolt.Tx) error {
	if string(tx.Bucket(bucketMeta).Get(keyFormat)) == formatVersion4 {
		if err := migrate4(tx); err != nil {
			return err
		}
	}
	return migrate5(tx)
}

// migrate5 upgrades a file of layout 5: it indexes every direct
// conversation of the history in the inboxes of its two users, from the
// conversation's last indexed message. Read markers start at 0. Records
// not yet checkpointed are replayed by Open as usual.
func migrate5(tx *bolt.Tx) error {
	for _, name := range buckets6 {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	hist, log, inbox := tx.Bucket(bucketHist), tx.Bucket(bucketLog), tx.Bucket(bucketInbox)
	var heads []*store.Message
	err := hist.ForEachBucket(func(conv []byte) error {
		if len(conv) < 2 || conv[0] != 'd' || conv[1] != ':' {
			return nil
		}
		_, pos := hist.Bucket(conv).Cursor().Last()
		if pos == nil {
			return nil
		}
		m, err := logMessage(log.Get(pos))
		if err != nil {
			return fmt.Errorf("history %q: %v", conv, err)
		}
		if store.IsDirect(&m) {
			heads = append(heads, &m)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, m := range heads {
		if err := putHead(inbox, m.From, inboxHead{conv: m.Conv, peer: m.To, seq: m.Seq, ts: m.TS}); err != nil {
			return err
		}
		if err := putHead(inbox, m.To, inboxHead{conv: m.Conv, peer: m.From, seq: m.Seq, ts: m.TS}); err != nil {
			return err
		}
	}
	return tx.Bucket(bucketMeta).Put(keyFormat, []byte(formatVersion))
}
