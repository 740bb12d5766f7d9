//go:build !unix

package main

import "time"

// processUserCPU is not measured here: user-ns/pkt reads 0.
func processUserCPU() time.Duration { return 0 }
