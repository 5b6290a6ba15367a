package cli

import (
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"
)

// progressEvery is how often the progress line is redrawn: counting an
// artifact is an atomic add, and the drawing (a few hundred bytes to the
// terminal) happens on a ticker, so a run of many small files pays for
// the bar about ten times a second, not once per file.
const progressEvery = 100 * time.Millisecond

// progress draws "done/total, rate, ETA" on one terminal line (stderr).
// Other output to the same terminal goes through guard (logs, failures)
// or above (results printed on a stdout that is the same terminal), which
// clear the line first and redraw it after. A nil *progress draws nothing:
// its methods do nothing.
type progress struct {
	mu    sync.Mutex // the bar, ended, and writes to the terminal
	w     io.Writer  // the terminal
	bar   *progressbar.ProgressBar
	ended bool         // the line is ended (a newline after it): output just follows
	shown int64        // counted into the bar
	done  atomic.Int64 // counted by add
	total int64
	stop  chan struct{}
	exit  chan struct{}
	once  sync.Once // finish
}

// newProgress starts a progress line on w for total artifacts.
func newProgress(w io.Writer, total int) *progress {
	pr := &progress{w: w, total: int64(total), stop: make(chan struct{}), exit: make(chan struct{})}
	pr.bar = progressbar.NewOptions64(int64(total),
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription("analyze"),
		progressbar.OptionSetWidth(24),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("artifacts"),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionUseANSICodes(true),
		progressbar.OptionSetRenderBlankState(true),
	)
	go pr.tick()
	return pr
}

// tick redraws the line every progressEvery until finish.
func (pr *progress) tick() {
	defer close(pr.exit)
	t := time.NewTicker(progressEvery)
	defer t.Stop()
	for {
		select {
		case <-pr.stop:
			return
		case <-t.C:
			pr.mu.Lock()
			if !pr.ended {
				pr.flush()
			}
			pr.mu.Unlock()
		}
	}
}

// flush moves the new count into the bar and draws it. Called with mu held.
func (pr *progress) flush() {
	n := pr.done.Load()
	if n == pr.shown {
		_ = pr.bar.RenderBlank() // elapsed time and ETA move on
		return
	}
	_ = pr.bar.Add64(n - pr.shown)
	pr.shown = n
}

// add counts one artifact done.
func (pr *progress) add() {
	if pr != nil {
		pr.done.Add(1)
	}
}

// above runs fn, which writes to the terminal, with the line cleared, and
// redraws it after.
func (pr *progress) above(fn func()) {
	if pr == nil {
		fn()
		return
	}
	pr.mu.Lock()
	defer pr.mu.Unlock()
	switch {
	case pr.ended:
	case pr.bar.IsFinished(): // the full count is drawn: keep it
		pr.endLine()
	default:
		_ = pr.bar.Clear()
		defer func() { _ = pr.bar.RenderBlank() }()
	}
	fn()
}

// endLine ends the progress line. Called with mu held.
func (pr *progress) endLine() {
	_, _ = io.WriteString(pr.w, "\n")
	pr.ended = true
}

// guard wraps w (the terminal the line is on) so that each write lands
// above the line.
func (pr *progress) guard(w io.Writer) io.Writer {
	if pr == nil {
		return &lockedWriter{w: w} // the logger and the results loop both write
	}
	return guarded{pr: pr, w: w}
}

// lockedWriter serialises writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

type guarded struct {
	pr *progress
	w  io.Writer
}

func (g guarded) Write(p []byte) (n int, err error) {
	g.pr.above(func() { n, err = g.w.Write(p) })
	return n, err
}

// finish stops the ticker, draws the final count and ends the line.
func (pr *progress) finish() {
	if pr != nil {
		pr.once.Do(pr.end)
	}
}

func (pr *progress) end() {
	close(pr.stop)
	<-pr.exit
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if pr.ended {
		return
	}
	pr.flush()
	if pr.shown < pr.total {
		_ = pr.bar.Exit() // stopped early: keep the count reached
	}
	pr.endLine()
}
