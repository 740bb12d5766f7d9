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
// with the identical type; the two upstreams having the same API, their
// gopacket types aside, so do the two flavours. The Safe face's names are
// extras of both, generated from the one source.
func TestFlavourAPI(t *testing.T) {
	t.Parallel()
	self := reflect.TypeOf(Assembler{}).PkgPath()
	up := reflect.TypeOf(upstream.Assembler{}).PkgPath()
	extras := apipin.Pin(t, self, up, nil)
	t.Logf("%s: %d exported names beyond %s", self, extras, up)
}
