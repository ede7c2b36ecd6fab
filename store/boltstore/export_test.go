package boltstore

import (
	"os"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// CheckQueues opens the file at path read-only and checks that its pending
// queues agree with their counts (checkQueues). The file must not be open.
func CheckQueues(path string) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.View(checkQueues)
}

// OpenWithClock is Open with now as the clock of the commit times and of
// the expiry (Options.MaxAge).
func OpenWithClock(path string, opts Options, now func() time.Time) (*Store, error) {
	return OpenTuned(path, opts, now, 0)
}

// OpenTuned is Open with now (if not nil) as the clock, and with at most
// batch (if positive) log records per expiry pass.
func OpenTuned(path string, opts Options, now func() time.Time, batch int) (*Store, error) {
	s, err := openFile(path, opts)
	if err != nil {
		return nil, err
	}
	if now != nil {
		s.now = now
	}
	if batch > 0 {
		s.expireBatch = batch
	}
	go s.commitLoop()
	return s, nil
}

// ExpireNow makes the committer checkpoint and then run expiry passes
// until none is due, and returns the number of messages they handled.
func ExpireNow(s *Store) int {
	done := make(chan int, 1)
	s.expireReq <- done
	return <-done
}

// FreelistWritten reports whether the newest meta page of the file at path
// points to a written freelist (else Open rebuilds it by walking the
// pages).
func FreelistWritten(path string) (bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	m0, _, err0 := parseMeta(b)
	m1, _, err1 := parseMeta(b[m0.pageSize:])
	switch {
	case err0 != nil:
		return false, err0
	case err1 == nil && m1.txid > m0.txid:
		m0 = m1
	}
	return m0.freelist != noFreelist, nil
}

// CountAckWork makes s count, from now on, the acks of the overlay that its
// reads of pending queues (Pending, PendingPage) copy or look up, and
// returns the count.
func CountAckWork(s *Store) *atomic.Int64 {
	n := new(atomic.Int64)
	s.mu.Lock()
	s.ackWork = func(k int) { n.Add(int64(k)) }
	s.mu.Unlock()
	return n
}
