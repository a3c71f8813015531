package main

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// threadCPU returns the user + system CPU seconds of the calling OS
// thread.
func threadCPU() (float64, error) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9, nil
}
