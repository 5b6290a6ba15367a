package engine

import (
	"errors"
	"fmt"
	"regexp"

	"github.com/polyswarm/psengine/winex"
)

// ErrVersion reports output of `cmd /c ver` with no Windows version in it.
var ErrVersion = errors.New("winescan: no Windows version in the output of ver")

// verLine matches what `ver` prints: "Microsoft Windows 6.1.7601" under
// Wine 8, "Microsoft Windows [Version 10.0.19045.3570]" on Windows.
var verLine = regexp.MustCompile(`Microsoft Windows (?:\[Version )?(?P<version>\d+(?:\.\d+){1,3})\b`)

// ParseVer returns the Windows version the output of `cmd /c ver` states
// (decoded to UTF-8), in the form "Microsoft Windows 6.1.7601": the engine's
// vendor_version. Output without one gives an error wrapping ErrVersion.
func ParseVer(out string) (string, error) {
	m := winex.Fields(verLine, out)
	if m == nil {
		return "", fmt.Errorf("%w: %q", ErrVersion, head(out))
	}
	return "Microsoft Windows " + m["version"], nil
}
