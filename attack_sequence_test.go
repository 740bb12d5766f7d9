package reassembly

// The sequence space as an attack surface (issue 4): ISNs at and around the
// wrap, and one stream long enough to wrap twice. The flood kit is
// kit_traffic_test.go.

import (
	"fmt"
	"testing"
	"time"
)

// --- sequence space --------------------------------------------------------

// TestAttackSequenceSpace: connections whose ISNs are 0, 1, 2^32-1 and
// 2^32-11 carry 1 MiB each way (scaled), in order and with every other
// pair of segments swapped, through both faces; and one stream of 4.5 GiB
// through the Safe face, generated on the fly (the sequence numbers wrap
// once, from an ISN just below 2^32, and then once more). Each comes out
// byte-exact (checked byte by byte against the generator and by CRC),
// without a hole, every byte accounted. The 4.5 GiB stream takes about a
// minute, so it is skipped under -short and -race;
// BenchmarkAttackSequenceSpace runs it too.
func TestAttackSequenceSpace(t *testing.T) {
	type stream struct {
		isn   uint32
		total int64
		swap  bool
		impl  string
	}
	var streams []stream
	for _, isn := range []uint32{0, 1, 0xFFFFFFFF, 0xFFFFFFF5} {
		for _, swap := range []bool{false, true} {
			for _, impl := range []string{"ours", "safe"} {
				streams = append(streams, stream{isn, int64((1 << 20) / atkScale()), swap, impl})
			}
		}
	}
	streams = append(streams, stream{0xFFFFF000, 4<<30 + 512<<20, true, "safe"})
	for _, c := range streams {
		name := fmt.Sprintf("isn=%d/swap=%v/impl=%s", c.isn, c.swap, c.impl)
		if c.total > 1<<32 {
			name = "4.5GiB/impl=" + c.impl
		}
		t.Run(name, func(t *testing.T) {
			if c.total > 1<<32 && (testing.Short() || atkRace) {
				t.Skip("4.5 GiB stream: skipped under -short and -race")
			}
			var s atkCRCStream
			im := newAtkImpl(c.impl, atkCRCFactory{&s}, kitReplayOpts(), 0, false)
			start := time.Now()
			want := atkLongStream(im.feeder, c.isn, c.total, 1460, c.swap)
			im.flushAll()
			s.verify(t, c.total, want)
			kitRequireConserved(t, im.stats())
			t.Logf("%.2f MiB in %v (%.0f MB/s)", float64(c.total)/(1<<20), time.Since(start).Round(time.Millisecond),
				float64(c.total)/1e6/time.Since(start).Seconds())
		})
	}
}
