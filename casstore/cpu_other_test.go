//go:build !unix

package casstore

import "time"

// processCPU is 0 where getrusage is not available: the benchmarks'
// cpu-s/GiB then reads 0.
func processCPU() time.Duration { return 0 }
