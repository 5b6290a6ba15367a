//go:build !unix

package winex

import "os"

func (c *capture) drain([]byte) {}

// Windows cannot remove an open file: finishRemove does it after Close.
func removeOpenFile(*os.File) {}

func finishRemove(f *os.File) { os.Remove(f.Name()) }
