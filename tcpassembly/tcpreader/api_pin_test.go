package tcpreader_test

import (
	"reflect"
	"testing"

	upstream "github.com/google/gopacket/tcpassembly"
	uptcpreader "github.com/google/gopacket/tcpassembly/tcpreader"
	"github.com/safepacket/reassembly/internal/apipin"
	"github.com/safepacket/reassembly/tcpassembly"
	"github.com/safepacket/reassembly/tcpassembly/tcpreader"
)

// Property: every exported name of upstream tcpreader is here, with its
// exact type, upstream's tcpassembly types counting as ours (names beyond
// it are allowed).
func TestAPIPin(t *testing.T) {
	t.Parallel()
	path := func(v any) string { return reflect.TypeOf(v).PkgPath() }
	apipin.Pin(t, path(tcpreader.ReaderStream{}), path(uptcpreader.ReaderStream{}),
		map[string]string{path(tcpassembly.Assembler{}): path(upstream.Assembler{})})
}
