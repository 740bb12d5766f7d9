package reassembly

import (
	"reflect"
	"testing"

	upstream "github.com/google/gopacket/reassembly"
	"github.com/safepacket/reassembly/internal/apipin"
)

// Property: this package declares every exported name of the upstream
// package of its flavour (github.com/google/gopacket/reassembly here,
// github.com/gopacket/gopacket/reassembly in the generated gopacket/reassembly)
// with the identical type, and the two flavours declare the same API, their
// gopacket types aside. The Safe face's names are extras of both.
func TestFlavourAPI(t *testing.T) {
	t.Parallel()
	self := reflect.TypeOf(Assembler{}).PkgPath()
	up := reflect.TypeOf(upstream.Assembler{}).PkgPath()
	diffs, err := apipin.Diff(self, up, nil)
	if err != nil {
		t.Fatal(err)
	}
	extras := 0
	for _, d := range diffs {
		if d.Want == "" {
			extras++
			continue
		}
		t.Errorf("against %s: %v", up, d)
	}
	t.Logf("%s: %d exported names beyond %s", self, extras, up)

	const root, fork = "github.com/safepacket/reassembly", "github.com/safepacket/reassembly/gopacket/reassembly"
	diffs, err = apipin.Diff(root, fork, map[string]string{"github.com/google/gopacket": "github.com/gopacket/gopacket"})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffs {
		t.Errorf("the flavours differ: %v", d)
	}
}
