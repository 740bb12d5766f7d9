package reassembly

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// Property: the delivered-bytes window holds exactly the last limit bytes
// of the contiguous run of deliveries it was given (bytes that do not follow
// the last ones start it anew; an empty delivery changes nothing), whatever
// the sizes of the deliveries, as it grows and wraps; it never allocates
// more than limit bytes.
func TestDeliveredWindowModel(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 300 {
		limit := 1 + r.IntN(5000)
		var w deliveredWindow
		var ref []byte // the contiguous run, ending at end
		end := int64(1<<40 + r.IntN(1000))
		pos := end
		for range 50 {
			if r.IntN(10) == 0 {
				pos += int64(1 + r.IntN(100)) // a hole
			}
			b := make([]byte, r.IntN(3*limit/2+2))
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			w.add(b, pos, limit)
			if len(b) > 0 {
				if pos != end {
					ref = nil
				}
				ref = append(ref, b...)
				pos += int64(len(b))
				end = pos
			}
			require := func(cond bool, what string) {
				if !cond {
					t.Fatalf("round %d: %s (limit %d, held %d, ref %d)", round, what, limit, w.n, len(ref))
				}
			}
			want := ref[max(0, len(ref)-limit):]
			require(w.n == len(want), "holds the last limit bytes")
			require(len(w.buf) <= limit, "never more than limit")
			if w.n == 0 {
				continue
			}
			require(w.end == end, "ends where the run ends")
			got := make([]byte, w.n)
			w.read(got, w.from())
			require(bytes.Equal(got, want), "the bytes")
			from := w.from() + int64(r.IntN(w.n))
			n := 1 + r.IntN(int(w.end-from))
			seg := want[from-w.from() : int(from-w.from())+n]
			require(w.equal(seg, from), "equal on its own bytes")
			bad := bytes.Clone(seg)
			bad[r.IntN(len(bad))]++
			require(!w.equal(bad, from), "unequal on different bytes")
		}
	}
}
