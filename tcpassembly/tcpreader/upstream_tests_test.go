package tcpreader_test

import (
	"testing"

	"github.com/safepacket/reassembly/internal/upstreamtest"
)

// Upstream's own test file passes against this package, with its import
// of upstream tcpassembly pointed at ours.
func TestUpstreamTestFiles(t *testing.T) {
	upstreamtest.Run(t, upstreamtest.Suite{
		Module:  "github.com/google/gopacket",
		Dir:     "tcpassembly/tcpreader",
		Files:   []string{"reader_test.go"},
		Rewrite: map[string]string{`"github.com/google/gopacket/tcpassembly"`: `"github.com/safepacket/reassembly/tcpassembly"`},
	})
}
