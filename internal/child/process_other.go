//go:build !unix

package child

// Process is a running child; not supported on this platform.
type Process struct{}

// Start returns ErrUnsupported on this platform.
func Start(Config) (*Process, error) { return nil, ErrUnsupported }

func (p *Process) Pid() int                { return 0 }
func (p *Process) Send(any) error          { return ErrUnsupported }
func (p *Process) SendControl(any) error   { return ErrUnsupported }
func (p *Process) Recv(any) error          { return ErrUnsupported }
func (p *Process) CloseInput() error       { return nil }
func (p *Process) Kill()                   {}
func (p *Process) Exited() <-chan struct{} { c := make(chan struct{}); close(c); return c }
func (p *Process) Wait() error             { return ErrUnsupported }
func (p *Process) RSS() (int64, error)     { return 0, ErrUnsupported }
func Attach(string) (*Conn, bool, error)   { return nil, false, nil }
func Marked() (string, bool)               { return "", false }
func IsGone(err error) bool                { return isEOF(err) }

func killGroup() {}
