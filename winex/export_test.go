package winex

import "time"

// SetTransientServerWait shortens StartServer's wait for an on-demand server
// in tests; the returned func restores it.
func SetTransientServerWait(d time.Duration) (restore func()) {
	old := transientServerWait
	transientServerWait = d
	return func() { transientServerWait = old }
}

// PersistentForever exposes persistentForever.
var PersistentForever = persistentForever
