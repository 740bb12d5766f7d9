package tcpassembly_test

import (
	"testing"

	"github.com/safepacket/reassembly/internal/apipin"
)

// Every exported name of upstream tcpassembly is here, with its exact type.
func TestAPIPin(t *testing.T) {
	t.Parallel()
	diffs, err := apipin.Check("github.com/google/gopacket/tcpassembly", "github.com/safepacket/reassembly/tcpassembly", nil)
	if err != nil {
		t.Skipf("cannot type-check from source: %v", err)
	}
	for _, d := range diffs {
		t.Error(d)
	}
}
