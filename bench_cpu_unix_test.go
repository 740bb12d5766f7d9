//go:build unix

package reassembly

import (
	"syscall"
	"time"
)

// processCPU is the CPU time, user and system, the process has used so
// far. The suite reports it per packet beside the wall time: on a machine
// shared with other work a benchmark waits for a core, which the wall time
// counts and the CPU time does not.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
