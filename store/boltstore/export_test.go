package boltstore

import (
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
