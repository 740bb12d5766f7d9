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
	self := reflect.TypeOf(tcpreader.ReaderStream{}).PkgPath()
	up := reflect.TypeOf(uptcpreader.ReaderStream{}).PkgPath()
	same := map[string]string{
		reflect.TypeOf(tcpassembly.Assembler{}).PkgPath(): reflect.TypeOf(upstream.Assembler{}).PkgPath(),
	}
	diffs, err := apipin.Diff(self, up, same)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffs {
		if d.Want != "" {
			t.Errorf("against %s: %v", up, d)
		}
	}
}
