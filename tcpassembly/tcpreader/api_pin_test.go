package tcpreader_test

import (
	"testing"

	"github.com/safepacket/reassembly/internal/apipin"
)

// Every exported name of upstream tcpreader is here, with its exact type
// (upstream's tcpassembly types counting as ours).
func TestAPIPin(t *testing.T) {
	t.Parallel()
	diffs, err := apipin.Check("github.com/google/gopacket/tcpassembly/tcpreader", "github.com/safepacket/reassembly/tcpassembly/tcpreader",
		map[string]string{"github.com/google/gopacket/tcpassembly": "github.com/safepacket/reassembly/tcpassembly"})
	if err != nil {
		t.Skipf("cannot type-check from source: %v", err)
	}
	for _, d := range diffs {
		t.Error(d)
	}
}
