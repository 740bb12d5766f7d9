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
	apipin.Pin(t, reflect.TypeOf(tcpassembly.Assembler{}).PkgPath(), reflect.TypeOf(upstream.Assembler{}).PkgPath(), nil)
}
