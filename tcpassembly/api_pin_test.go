package tcpassembly_test

import (
	"reflect"
	"testing"

	upstream "github.com/google/gopacket/tcpassembly"
	"github.com/safepacket/reassembly/internal/apipin"
	"github.com/safepacket/reassembly/tcpassembly"
)

// Property: every exported name of upstream tcpassembly is here, with its
// exact type (names beyond it are allowed).
func TestAPIPin(t *testing.T) {
	t.Parallel()
	self := reflect.TypeOf(tcpassembly.Assembler{}).PkgPath()
	up := reflect.TypeOf(upstream.Assembler{}).PkgPath()
	diffs, err := apipin.Diff(self, up, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffs {
		if d.Want != "" {
			t.Errorf("against %s: %v", up, d)
		}
	}
}
