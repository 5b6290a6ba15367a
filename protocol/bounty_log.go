package protocol

import (
	"log/slog"

	"github.com/polyswarm/psengine/internal/logsafe"
)

// LogValue is the id as a log record shows it: its text, cut after
// logsafe.MaxLen (256) bytes with the full length noted ("123...[524288
// bytes]"). An id comes from the network and may be of any size; log it as
// the value itself ("bounty", b.ID), not as b.ID.String().
func (id BountyID) LogValue() slog.Value { return slog.StringValue(logsafe.String(id.raw)) }
