package reassembly

import (
	"reflect"
	"testing"

	"github.com/google/gopacket"
	upstream "github.com/google/gopacket/reassembly"
	"github.com/safepacket/reassembly/internal/upstreamtest"
)

// assemblerSimpleContext is the name upstream's tests give the context of
// a capture time (upstream's own type, unexported): defined here, for them.
//
//lint:ignore U1000 used by upstream's test files, which the overlay adds
type assemblerSimpleContext gopacket.CaptureInfo

//lint:ignore U1000 as above
func (c *assemblerSimpleContext) GetCaptureInfo() gopacket.CaptureInfo {
	return gopacket.CaptureInfo(*c)
}

// Property: upstream's own test files pass against this package, but for
// the tests of upstream's unexported internals.
func TestUpstreamTestFiles(t *testing.T) {
	upstreamtest.Run(t, upstreamtest.Suite{
		Package: reflect.TypeOf(upstream.Assembler{}).PkgPath(),
		Files:   []string{"tcpassembly_test.go", "tcpcheck_test.go"},
		Omit: map[string]string{
			"TestReassemblyObjectCaptureInfo": "builds upstream's unexported reassemblyObject from its page and livePacket types; the property (CaptureInfo(offset) of the part holding that byte) is TestUpstreamBug01_CaptureInfoOnLaterPage's",
		},
	})
}
