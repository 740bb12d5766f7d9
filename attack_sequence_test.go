package reassembly

// The sequence space as an attack surface (issue 4): ISNs at and around the
// wrap, and one stream long enough to wrap twice. The flood kit is
// kit_traffic_test.go.

import (
	"strconv"
	"testing"
	"time"
)

// --- sequence space --------------------------------------------------------

// TestAttackSequenceSpaceISNs: connections whose ISNs are 0, 1, 2^32-1 and
// 2^32-11 carry 1 MiB each way (scaled), in order and with every other
// pair of segments swapped, through both faces: byte-exact, no hole.
func TestAttackSequenceSpaceISNs(t *testing.T) {
	total := (1 << 20) / atkScale()
	for _, isn := range []uint32{0, 1, 0xFFFFFFFF, 0xFFFFFFF5} {
		for _, swap := range []bool{false, true} {
			for _, impl := range []string{"ours", "safe"} {
				name := "isn=" + strconv.Itoa(int(isn)) + "/swap=" + strconv.FormatBool(swap) + "/impl=" + impl
				t.Run(name, func(t *testing.T) {
					var s atkCRCStream
					im := newAtkImpl(impl, atkCRCFactory{&s}, kitReplayOpts(), 0, false)
					want := atkLongStream(im.feeder, isn, int64(total), 1460, swap)
					im.flushAll()
					s.verify(t, int64(total), want)
				})
			}
		}
	}
}

// TestAttackSequenceSpace4GiB: one stream of 4.5 GiB, generated on the fly
// (the sequence numbers wrap once, from an ISN just below 2^32, and then
// once more), through the Safe face, checked byte by byte against the
// generator and by CRC. It takes about a minute, so it is skipped under
// -short and -race; BenchmarkAttackSequenceSpace runs it too.
func TestAttackSequenceSpace4GiB(t *testing.T) {
	if testing.Short() || atkRace {
		t.Skip("4.5 GiB stream: skipped under -short and -race")
	}
	const total = 4<<30 + 512<<20
	var s atkCRCStream
	pool := NewSafeStreamPool(atkCRCFactory{&s}, 0)
	a := newKitAssembler(t, pool, SafeAssemblerOptions{DisableBackgroundFlush: true})
	start := time.Now()
	want := atkLongStream(atkSafeFeeder{a}, 0xFFFFF000, total, 1460, true)
	a.Close()
	pool.Close()
	s.verify(t, total, want)
	st := a.Stats()
	kitRequireConserved(t, st)
	t.Logf("%.2f GiB in %v (%.0f MB/s)", float64(total)/(1<<30), time.Since(start).Round(time.Millisecond),
		float64(total)/1e6/time.Since(start).Seconds())
}
