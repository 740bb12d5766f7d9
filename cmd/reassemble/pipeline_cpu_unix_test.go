//go:build unix

package main

import (
	"syscall"
	"time"
)

// processUserCPU is the user CPU time the process has used so far, as
// /usr/bin/time reports it: what BenchmarkPipeline compares with tcpflow.
func processUserCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano())
}
