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

// Remembered counts the jobs whose ID and key the store remembers.
func Remembered(q *Broker) (n int, err error) {
	err = q.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketSeen).Stats().KeyN
		return nil
	})
	return n, err
}
