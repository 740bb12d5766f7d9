package tcpassembly_test

import (
	"testing"

	"github.com/safepacket/reassembly/internal/upstreamtest"
)

// Upstream's own test file passes against this package, unchanged.
func TestUpstreamTestFiles(t *testing.T) {
	upstreamtest.Run(t, upstreamtest.Suite{
		Module: "github.com/google/gopacket",
		Dir:    "tcpassembly",
		Files:  []string{"assembly_test.go"},
	})
}
