package reassembly

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

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
		send, _ := dropInSender(a, c)
		send(false, "S", 0, "")
		send(true, "SA", 0, "")
		send(false, "A", 2, "23456789") // held: bytes 0-1 missing
		send(false, "A", 4, "XYZW")     // held: overlaps the copy above
		send(false, "A", 0, "01")       // fills the hole
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
		send, now := dropInSender(a, c)
		send(false, "S", 0, "")
		send(true, "SA", 0, "")
		send(false, "A", 0, "abc")
		send(false, "FA", 10, "") // the FIN, behind a hole of 7 bytes
		a.FlushWithOptions(FlushOptions{T: now().Add(time.Second)})
		s := f.stream(c)
		require.Equal(t, "abc", s.bytes(0))
		if on {
			require.Equal(t, 7, s.gap(0), "the hole before the FIN is the delivery's skip")
		} else {
			require.Equal(t, 0, s.gap(0), "the FIN still waits")
		}
	}
}

// dropInSender returns a function that hands a's drop-in face the segment
// of c that kitConn.send would build, a millisecond after the last one,
// and one that tells the time of the last.
func dropInSender(a *Assembler, c kitConn) (func(fromServer bool, flags string, off int, payload string), func() time.Time) {
	ts := kitT0
	send := func(fromServer bool, flags string, off int, payload string) {
		ts = ts.Add(time.Millisecond)
		var p []byte
		if payload != "" {
			p = []byte(payload)
		}
		a.AssembleWithContext(c.flow(fromServer), c.segOff(fromServer, flags, off, p), kitAt(ts))
	}
	return send, func() time.Time { return ts }
}
