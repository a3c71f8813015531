package main

import (
	"fmt"
	"time"

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

// processCPUClock returns the time on CPU of process pid so far, all its
// threads, exited ones included, to the nanosecond: clock_gettime of the
// process's CPU clock, the clock ID clock_getcpuclockid(3) makes of a PID
// (the kernel's CPUCLOCK_SCHED of a whole process: the scheduler's run
// time of its threads, the first field of /proc/<pid>/task/<tid>/schedstat,
// summed, plus what its exited threads used). False if the process is
// gone or the kernel has no such clock.
func processCPUClock(pid int) (time.Duration, bool) {
	const cpuClockSched = 2 // CPUCLOCK_SCHED; CPUCLOCK_PERTHREAD_MASK (4) unset: the whole process
	var ts unix.Timespec
	if err := unix.ClockGettime(int32((^pid)<<3|cpuClockSched), &ts); err != nil {
		return 0, false
	}
	return time.Duration(ts.Nano()), true
}
