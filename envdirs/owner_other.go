//go:build !unix

package envdirs

import "io/fs"

// permsMeaningful says whether Unix owners and modes are enforced: not here.
const permsMeaningful = false

func owner(fs.FileInfo) (int, bool) { return 0, false }
