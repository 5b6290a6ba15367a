package localq

import (
	"time"

	bolt "go.etcd.io/bbolt"
)

// WithClock returns cfg with the clock expirations are judged by.
func WithClock(cfg Config, now func() time.Time) Config {
	cfg.now = now
	return cfg
}

// Remembered counts the IDs and keys the store remembers.
func Remembered(q *Broker) (ids, keys int, err error) {
	err = q.db.View(func(tx *bolt.Tx) error {
		ids, keys = tx.Bucket(bucketIDs).Stats().KeyN, tx.Bucket(bucketKeys).Stats().KeyN
		return nil
	})
	return ids, keys, err
}
