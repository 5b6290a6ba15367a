//go:build !unix

package webhook_test

import "time"

// processCPU is not measured here: CPU ratios are not reported.
func processCPU() time.Duration { return 0 }
