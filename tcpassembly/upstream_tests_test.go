package tcpassembly_test

import (
	"reflect"
	"testing"

	upstream "github.com/google/gopacket/tcpassembly"
	"github.com/safepacket/reassembly/internal/upstreamtest"
)

// Upstream's own test file passes against this package, unchanged.
func TestUpstreamTestFiles(t *testing.T) {
	upstreamtest.Run(t, upstreamtest.Suite{
		Package: reflect.TypeOf(upstream.Assembler{}).PkgPath(),
		Files:   []string{"assembly_test.go"},
	})
}
