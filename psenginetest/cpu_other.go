//go:build !unix

package psenginetest

import "time"

func processCPU() (time.Duration, bool) { return 0, false }
