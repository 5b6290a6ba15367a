package protocol_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/polyswarm/psengine/protocol"
)

// A bounty id of any size logs as at most a few hundred bytes, and a usual
// one as itself.
func TestBountyIDLogValue(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	huge := protocol.StringID(strings.Repeat("a", 500<<10))
	log.Info("x", "bounty", huge, "usual", protocol.StringID("0f6c2f3e-7d4e-4b1a-9a55-0d5f2d9b8c11"))
	if buf.Len() > 1024 {
		t.Errorf("a record naming a 500 KiB id is %d bytes, want under 1 KiB", buf.Len())
	}
	for _, want := range []string{`...[512000 bytes]"`, `"usual":"0f6c2f3e-7d4e-4b1a-9a55-0d5f2d9b8c11"`} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("record %s lacks %s", buf.String(), want)
		}
	}
}
