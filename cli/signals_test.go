package cli

import (
	"os"
	"syscall"
	"testing"
)

// The first signal cancels the run; the second exits at once, 128+signal.
func TestWatchSignals(t *testing.T) {
	sigs := make(chan os.Signal, 2)
	cancelled := make(chan struct{})
	exited := make(chan int, 1)
	go watchSignals(sigs, func() { close(cancelled) }, func(code int) { exited <- code })

	sigs <- syscall.SIGTERM
	<-cancelled
	select {
	case code := <-exited:
		t.Fatalf("exit(%d) after the first signal", code)
	default:
	}
	sigs <- os.Interrupt
	if code := <-exited; code != 128+int(syscall.SIGINT) {
		t.Errorf("exit(%d) after the second signal, want %d", code, 128+int(syscall.SIGINT))
	}
}

// A run that ends before any signal stops the watcher quietly.
func TestWatchSignalsClosed(t *testing.T) {
	sigs := make(chan os.Signal, 2)
	done := make(chan struct{})
	go func() {
		watchSignals(sigs, func() { t.Error("cancelled without a signal") }, func(int) { t.Error("exit without a signal") })
		close(done)
	}()
	close(sigs)
	<-done
}
