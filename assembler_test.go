package reassembly

// Tests of the drop-in face (Assembler) that are not upstream fault rows
// (regression_test.go) nor races (race_test.go): where it keeps upstream's
// behaviour on purpose, and its settings (SetOverlapPolicy,
// SetFlushHeldFINs).

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Property: the drop-in face keeps upstream's behaviour and delivers the
// payload of an RST (see MIGRATION.md).
func TestDropInRSTPayloadDelivered(t *testing.T) {
	t.Parallel()
	r := &trRec{}
	trOurs(t, r, AssemblerOptions{}, trBuild(t, []trSeg{
		{seq: 99, flags: "S"},
		{seq: 100, data: "hello"},
		{seq: 105, flags: "R", data: "RST data"},
	}))
	require.Equal(t, "helloRST data", r.stream(0).data(false))
}

// SetOverlapPolicy chooses, on the drop-in face, which held copy of
// overlapping bytes wins: by default the newest (upstream reassembly),
// under OverlapBSD the one that starts first, of equal starts the older
// (upstream tcpassembly, whose face sets it).
func TestSetOverlapPolicy(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		policy OverlapPolicy
		set    bool
		want   string
	}{
		{want: "0123XYZW89"}, // default: the newer copy
		{policy: OverlapBSD, set: true, want: "0123456789"}, // the earlier start
		{policy: OverlapDefault, set: true, want: "0123XYZW89"},
	} {
		f := newKitFactory()
		a := NewAssembler(NewStreamPool(f))
		if tc.set {
			a.SetOverlapPolicy(tc.policy)
		}
		c := kitConnN(1)
		newKitDropInFeeder(t, a, kitT0, time.Millisecond).play(c, ">S", "<SA",
			">A 2 23456789", // held: bytes 0-1 missing
			">A 4 XYZW",     // held: overlaps the copy above
			">A 0 01")       // fills the hole
		require.Equal(t, tc.want, f.stream(c).bytes(0), "policy %v set %v", tc.policy, tc.set)
	}
}

// SetFlushHeldFINs makes a flush push through a FIN held behind a hole
// once it is older than T, ending the direction with the hole as its skip;
// without it (upstream reassembly) the flush leaves the FIN waiting.
func TestSetFlushHeldFINs(t *testing.T) {
	t.Parallel()
	for _, on := range []bool{false, true} {
		f := newKitFactory()
		a := NewAssembler(NewStreamPool(f))
		a.SetFlushHeldFINs(on)
		c := kitConnN(2)
		fd := newKitDropInFeeder(t, a, kitT0, time.Millisecond)
		fd.play(c, ">S", "<SA", ">A 0 abc", ">FA 10") // the FIN, behind a hole of 7 bytes
		a.FlushWithOptions(FlushOptions{T: fd.ts.Add(time.Second)})
		s := f.stream(c)
		require.Equal(t, "abc", s.bytes(0))
		if on {
			require.Equal(t, 7, s.gap(0), "the hole before the FIN is the delivery's skip")
		} else {
			require.Equal(t, 0, s.gap(0), "the FIN still waits")
		}
	}
}
