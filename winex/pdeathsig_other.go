//go:build unix && !linux

package winex

import "syscall"

func parentDeathSignal(*syscall.SysProcAttr) {}
