//go:build !linux

package main

import (
	"errors"
	"time"
)

// threadCPU needs a thread's own CPU time (getrusage RUSAGE_THREAD),
// which only Linux reports: elsewhere the harness measures no sha256 cost
// (it reads its systems' CPU from /proc, Linux's, anyway).
func threadCPU() (float64, error) {
	return 0, errors.New("a thread's CPU time is read on Linux only")
}

// processCPUClock reads another process's CPU clock on Linux only:
// elsewhere cpuSeconds falls back to /proc/<pid>/stat's ticks (where
// there is such a file).
func processCPUClock(int) (time.Duration, bool) { return 0, false }
