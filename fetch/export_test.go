package fetch

// CloseIdleConnections closes the default client's idle connections, so that
// the leak check at the end of the tests sees no transport goroutines.
func CloseIdleConnections() { defaultClient().CloseIdleConnections() }
