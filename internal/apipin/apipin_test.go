package apipin

import (
	"strings"
	"testing"
)

// The check fails where the APIs differ: upstream's tcpassembly and
// reassembly share names (Assembler, StreamFactory, ...) with other types.
func TestCheckFindsDifferences(t *testing.T) {
	t.Parallel()
	diffs, err := Check("github.com/google/gopacket/tcpassembly", "github.com/google/gopacket/reassembly", nil)
	if err != nil {
		t.Skipf("cannot type-check from source: %v", err)
	}
	joined := strings.Join(diffs, "\n")
	for _, want := range []string{
		"StreamFactory.New: func",          // New's signature differs
		"FlushOptions: exported fields",    // CloseAll vs TC
		"Assembler: method FlushOlderThan", // missing method
		"Reassembly: missing",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("no difference %q reported; got:\n%s", want, joined)
		}
	}
}

// A package matches itself.
func TestCheckSelf(t *testing.T) {
	t.Parallel()
	diffs, err := Check("github.com/google/gopacket/tcpassembly", "github.com/google/gopacket/tcpassembly", nil)
	if err != nil {
		t.Skipf("cannot type-check from source: %v", err)
	}
	if len(diffs) != 0 {
		t.Errorf("differences with itself: %v", diffs)
	}
}
