package tcpreader_test

import (
	"reflect"
	"testing"

	upstream "github.com/google/gopacket/tcpassembly"
	uptcpreader "github.com/google/gopacket/tcpassembly/tcpreader"
	"github.com/safepacket/reassembly/internal/upstreamtest"
	"github.com/safepacket/reassembly/tcpassembly"
)

// Upstream's own test file passes against this package, with its import
// of upstream tcpassembly pointed at ours.
func TestUpstreamTestFiles(t *testing.T) {
	quote := func(v any) string { return `"` + reflect.TypeOf(v).PkgPath() + `"` }
	upstreamtest.Run(t, upstreamtest.Suite{
		Package: reflect.TypeOf(uptcpreader.ReaderStream{}).PkgPath(),
		Files:   []string{"reader_test.go"},
		Rewrite: map[string]string{quote(upstream.Assembler{}): quote(tcpassembly.Assembler{})},
	})
}
