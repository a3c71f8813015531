package main

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// cpuBurnEnv makes the test binary a CPU burner (see TestCPUBurnHelper).
const cpuBurnEnv = "DTRCACHE_BENCH_CPU_BURN"

// burnedSeconds is the calling process's user + system CPU seconds, all
// its threads, exited ones included (getrusage RUSAGE_SELF: microseconds).
func burnedSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// TestCPUBurnHelper is not a test: run by TestCPUSecondsBelowATick as a
// child process, it burns 12 ms of CPU on a thread that then exits, burns
// on until its whole CPU time is 25 ms, prints that figure (getrusage's)
// and waits for its stdin to close.
func TestCPUBurnHelper(t *testing.T) {
	if os.Getenv(cpuBurnEnv) == "" {
		t.Skip("the CPU burner of TestCPUSecondsBelowATick")
	}
	spin := func(until float64) {
		for burnedSeconds() < until {
		}
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// Returning while locked ends the goroutine's OS thread.
		runtime.LockOSThread()
		spin(burnedSeconds() + 0.012)
	}()
	wg.Wait()
	spin(0.025)
	fmt.Printf("burned %.9f\n", burnedSeconds())
	bufio.NewReader(os.Stdin).ReadString('\n')
	os.Exit(0)
}

// TestCPUSecondsBelowATick: the CPU reading of a process is finer than
// /proc/<pid>/stat's 10 ms ticks, and keeps the time of its threads that
// exited: a child that burned 25.x ms (by its own getrusage) reads at
// least that much, and not a tick more.
func TestCPUSecondsBelowATick(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the harness reads its systems' CPU on Linux")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCPUBurnHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), cpuBurnEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })

	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("the burner said %q: %v", line, err)
	}
	burned, err := strconv.ParseFloat(strings.TrimPrefix(strings.TrimSpace(line), "burned "), 64)
	if err != nil {
		t.Fatalf("the burner said %q: %v", line, err)
	}
	got := cpuSeconds([]int{cmd.Process.Pid})
	// The child does next to nothing after its getrusage (a write, a
	// blocking read; the Go runtime's sysmon wakes now and then).
	const slack = 0.005
	if got < burned || got > burned+slack {
		t.Errorf("CPU read of a child that burned %.6f s: %.6f s, want within [%.6f, %.6f]", burned, got, burned, burned+slack)
	}
	// The fallback's ticks count the same time, user and system each cut
	// to 10 ms.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	ticks, ok := statTicks(b)
	if sec := float64(ticks) / clockTicks; !ok || sec > got || sec < got-2.0/clockTicks-slack {
		t.Errorf("/proc/<pid>/stat of the child: %d ticks (%v), want the %.6f s read, cut to ticks twice", ticks, ok, got)
	}
}

func TestStatTicks(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		want       int64
		ok         bool
	}{
		{"nginx worker", "4242 (nginx) S 4241 4241 4241 0 -1 4194624 1200 0 0 0 17 9 0 0 20 0 1 0 98765 12345678 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n", 26, true},
		{"spaces and parentheses in the name", "7 (a) b (c)) R 1 7 7 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 5", 7, true},
		{"cut short", "7 (x) R 1 7 7 0 -1 0 0 0 0 0 3", 0, false},
		{"no name", "7 x R 1 7 7 0 -1 0 0 0 0 0 3 4 0 0", 0, false},
		{"negative", "7 (x) R 1 7 7 0 -1 0 0 0 0 0 -3 4 0 0", 0, false},
		{"not a number", "7 (x) R 1 7 7 0 -1 0 0 0 0 0 3 4x 0 0", 0, false},
		{"too large", "7 (x) R 1 7 7 0 -1 0 0 0 0 0 9223372036854775807 1 0 0", 0, false},
		{"empty", "", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := statTicks([]byte(tc.line))
			if got != tc.want || ok != tc.ok {
				t.Errorf("statTicks(%q) = %d, %v; want %d, %v", tc.line, got, ok, tc.want, tc.ok)
			}
		})
	}
}

// FuzzStatTicks: any bytes parse without a panic, to a figure that is
// never negative and never overflows cpuSeconds's nanoseconds; a line
// laid out as the kernel writes it, whatever its command name, gives
// its utime + stime.
func FuzzStatTicks(f *testing.F) {
	f.Add("nginx", uint32(17), uint32(9), []byte("4242 (nginx) S 4241 4241 4241 0 -1 4194624 1200 0 0 0 17 9 0 0 20 0 1 0\n"))
	f.Add("a) (b", uint32(0), uint32(1), []byte("7 (x)"))
	f.Add("", uint32(1<<32-1), uint32(1<<32-1), []byte(")))"))
	f.Fuzz(func(t *testing.T, comm string, utime, stime uint32, raw []byte) {
		if n, ok := statTicks(raw); n < 0 || n > math.MaxInt64/int64(time.Second/clockTicks) || (!ok && n != 0) {
			t.Errorf("statTicks(%q) = %d, %v", raw, n, ok)
		}
		line := fmt.Sprintf("4242 (%s) S 1 4242 4242 0 -1 4194624 1200 0 0 0 %d %d 0 0 20 0 1 0 98765\n", comm, utime, stime)
		if n, ok := statTicks([]byte(line)); !ok || n != int64(utime)+int64(stime) {
			t.Errorf("statTicks(%q) = %d, %v; want %d", line, n, ok, int64(utime)+int64(stime))
		}
	})
}
