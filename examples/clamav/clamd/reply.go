package clamd

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Errors. Every error of this package wraps one of them; the cause (a
// network error, a *ReplyError) stays reachable with errors.As.
var (
	// ErrAddress reports an address that is neither unix:PATH nor
	// tcp:HOST:PORT.
	ErrAddress = errors.New("clamd: bad address")
	// ErrUnreachable reports a daemon that could not be reached: the dial
	// (or the start of the session) failed.
	ErrUnreachable = errors.New("clamd: daemon unreachable")
	// ErrConnection reports an established connection that failed (clamd
	// closed it, died, or one of its timeouts passed). The Conn is unusable
	// afterwards: dial again.
	ErrConnection = errors.New("clamd: connection lost")
	// ErrProtocol reports a reply that does not follow the protocol. The
	// Conn is unusable afterwards.
	ErrProtocol = errors.New("clamd: protocol error")
	// ErrReply is wrapped by every *ReplyError: clamd answered ERROR.
	ErrReply = errors.New("clamd: error reply")
	// ErrSizeLimit reports a stream longer than clamd's StreamMaxLength
	// ("INSTREAM size limit exceeded"). clamd closes the connection after
	// it. It is matched by the *ReplyError that carries it.
	ErrSizeLimit = errors.New("clamd: INSTREAM size limit exceeded")
)

// ReplyError is a reply of clamd ending in ERROR.
type ReplyError struct {
	Command string // the command that got it, such as "INSTREAM"
	Message string // the reply without its " ERROR" suffix
}

func (e *ReplyError) Error() string {
	return fmt.Sprintf("clamd %s: %s", e.Command, e.Message)
}

// Unwrap returns ErrReply.
func (e *ReplyError) Unwrap() error { return ErrReply }

// Is reports the size-limit reply as ErrSizeLimit.
func (e *ReplyError) Is(target error) bool {
	return target == ErrSizeLimit && e.SizeLimit()
}

// SizeLimit reports whether this is clamd's answer to a stream longer than
// its StreamMaxLength.
func (e *ReplyError) SizeLimit() bool {
	return strings.HasPrefix(e.Message, "INSTREAM size limit exceeded")
}

// Status is the outcome of a scan.
type Status string

const (
	StatusOK    Status = "OK"    // nothing found
	StatusFound Status = "FOUND" // a signature matched
	StatusError Status = "ERROR" // clamd could not scan
)

// Reply is one parsed scan reply, such as "stream: Eicar-Test FOUND".
type Reply struct {
	Name      string // what was scanned: "stream" for INSTREAM
	Status    Status
	Signature string // the detection name, when Status is StatusFound
	Message   string // the error message, when Status is StatusError
}

// Err returns the reply as a *ReplyError for command when it is an ERROR
// reply, else nil.
func (r Reply) Err(command string) error {
	if r.Status != StatusError {
		return nil
	}
	return &ReplyError{Command: command, Message: r.Message}
}

// maxReply bounds a reply read from the daemon: real replies are a few
// hundred bytes at most.
const maxReply = 64 << 10

// ParseReply parses a scan reply without its session prefix (see SplitID):
//
//	NAME: OK
//	NAME: SIGNATURE FOUND
//	NAME: MESSAGE ERROR      (and errors without a name, such as
//	MESSAGE ERROR             "INSTREAM size limit exceeded. ERROR")
//
// A reply in any other shape (empty, "UNKNOWN COMMAND", not UTF-8, or
// longer than 64 KiB) gives an error wrapping ErrProtocol.
func ParseReply(s string) (Reply, error) {
	bad := func(why string) (Reply, error) {
		return Reply{}, fmt.Errorf("%w: %s in reply %s", ErrProtocol, why, quote(s))
	}
	switch {
	case len(s) > maxReply:
		return bad("too long")
	case !utf8.ValidString(s):
		return bad("invalid UTF-8")
	case strings.ContainsAny(s, "\x00\n"):
		return bad("NUL or newline")
	}
	if msg, ok := strings.CutSuffix(s, " ERROR"); ok {
		r := Reply{Status: StatusError, Message: strings.TrimSpace(msg)}
		if name, rest, ok := strings.Cut(r.Message, ": "); ok && name != "" && !strings.HasPrefix(r.Message, "INSTREAM ") {
			r.Name, r.Message = name, rest
		}
		if r.Message == "" {
			return bad("empty error message")
		}
		return r, nil
	}
	if sig, ok := strings.CutSuffix(s, " FOUND"); ok {
		i := strings.LastIndex(sig, ": ")
		if i <= 0 {
			return bad("no name before the signature")
		}
		r := Reply{Name: sig[:i], Status: StatusFound, Signature: strings.TrimSpace(sig[i+2:])}
		if r.Signature == "" {
			return bad("empty signature name")
		}
		return r, nil
	}
	if name, ok := strings.CutSuffix(s, ": OK"); ok && name != "" {
		return Reply{Name: name, Status: StatusOK}, nil
	}
	return bad("no OK, FOUND or ERROR")
}

// SplitID splits a reply given inside a session ("12: stream: OK") into
// the request number and the reply proper.
func SplitID(s string) (id int, reply string, err error) {
	digits, rest, ok := strings.Cut(s, ": ")
	if !ok || digits == "" || len(digits) > 9 || strings.TrimLeft(digits, "0123456789") != "" {
		return 0, "", fmt.Errorf("%w: no request number in session reply %s", ErrProtocol, quote(s))
	}
	id, _ = strconv.Atoi(digits)
	return id, rest, nil
}

// Version is what VERSION answers: "ClamAV 1.4.6", or, when the database
// has a version, "ClamAV 1.4.6/27513/Tue Jan 14 08:32:45 2025".
type Version struct {
	Raw        string // the reply as given
	Engine     string // "1.4.6"
	Signatures string // the database version, "27513" ("" when clamd has none)
	Date       string // the database's build date, as clamd prints it ("" when none)
}

// ParseVersion parses a VERSION reply (without its session prefix). A
// reply that does not start with "ClamAV " and a version gives an error
// wrapping ErrProtocol.
func ParseVersion(s string) (Version, error) {
	v := Version{Raw: s}
	rest, ok := strings.CutPrefix(s, "ClamAV ")
	if !ok || !utf8.ValidString(s) || len(s) > maxReply || strings.ContainsAny(s, "\x00\n") {
		return Version{}, fmt.Errorf("%w: not a VERSION reply: %s", ErrProtocol, quote(s))
	}
	parts := strings.SplitN(rest, "/", 3)
	v.Engine = parts[0]
	if v.Engine == "" || strings.ContainsAny(v.Engine, " \t") {
		return Version{}, fmt.Errorf("%w: no engine version in VERSION reply %s", ErrProtocol, quote(s))
	}
	if len(parts) > 1 {
		v.Signatures = parts[1]
		if v.Signatures == "" || strings.ContainsAny(v.Signatures, " \t") {
			return Version{}, fmt.Errorf("%w: bad database version in VERSION reply %s", ErrProtocol, quote(s))
		}
	}
	if len(parts) > 2 {
		v.Date = parts[2]
	}
	return v, nil
}

// quote shortens and quotes a reply for an error message.
func quote(s string) string {
	const max = 200
	if len(s) > max {
		s = strings.ToValidUTF8(s[:max], "") + "..."
	}
	return strconv.Quote(s)
}
