package reassembly

// Attacks on the queue of a direction (issue 4): segments in the order that
// costs most to insert, and one range retransmitted again and again with
// other bytes. The flood kit is kit_traffic_test.go.

import (
	"hash/crc32"
	"math/bits"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// --- insertion order -------------------------------------------------------

// atkInsertion sends n 1-byte segments of one connection, at offsets 1..n,
// in the given order, then the byte at offset 0 that fills the hole and a
// FIN. sample, when set, is called every 1024 segments with the number
// sent so far.
func atkInsertion(f kitFeed, order []int, sample func(i int)) {
	g := newAtkGen()
	ts := time.Unix(1_700_000_000, 0)
	est := newAtkEstablished(g, 1, ts)
	if err := est.handshake(f, 0); err != nil {
		panic(err)
	}
	isn := atkISN(0, 0)
	for i, o := range order {
		off := int64(1 + o)
		_ = f(g.packet(atkClient(0), atkServer, isn+1+uint32(off), 0, atkACK, 1, atkFill(0, 0, off), ts))
		if sample != nil && (i+1)%1024 == 0 {
			sample(i + 1)
		}
	}
	_ = f(g.packet(atkClient(0), atkServer, isn+1, 0, atkACK, 1, atkFill(0, 0, 0), ts))
	_ = f(g.packet(atkClient(0), atkServer, isn+1+uint32(len(order)+1), 0, atkACK|atkFIN, 0, nil, ts))
}

func atkOrder(n int, descending bool, seed uint64) []int {
	order := make([]int, n)
	for i := range order {
		order[i] = i
		if descending {
			order[i] = n - 1 - i
		}
	}
	if !descending {
		r := rand.New(rand.NewPCG(seed, 1))
		r.Shuffle(n, func(i, j int) { order[i], order[j] = order[j], order[i] })
	}
	return order
}

// atkSafeInsertOptions hold 100k one-byte segments, in as many holes as
// random order makes, without forcing anything.
var atkSafeInsertOptions = SafeAssemblerOptions{
	MaxBufferedPagesTotal:         1 << 18,
	MaxBufferedPagesPerConnection: 1 << 18,
	MaxBufferedBytesPerConnection: 1 << 26,
	MaxGapsPerConnection:          1 << 18,
	DisableBackgroundFlush:        true,
}

// TestAttackInsertionOrder: 100k 1-byte segments (scaled) into one
// connection in descending and in random order, both faces. Asserts the
// structure that makes the cost per segment flat: the queue is a balanced
// tree (height within 4 log2 n throughout), no segment is forced out, and
// the stream comes out whole and byte-exact once the hole fills. Time per
// segment from 1k to 100k is BenchmarkAttackInsertionOrder's.
func TestAttackInsertionOrder(t *testing.T) {
	n := 100_000 / atkScale()
	for _, order := range []string{"descending", "random"} {
		for _, impl := range []string{"ours", "safe"} {
			t.Run(order+"/impl="+impl, func(t *testing.T) {
				f := newAtkFactory()
				im := newAtkImpl(impl, f, atkSafeInsertOptions, 0, false)
				defer im.flushAll()
				maxRatio := 0.0
				atkInsertion(im.feeder, atkOrder(n, order == "descending", 7), func(i int) {
					refs := im.table.snapshot(nil)
					require.True(t, len(refs) == 1 && refs[0].lock(false), "%d connections", len(refs))
					q := &refs[0].c.halves[0].queue
					h, cnt := stHeight(q.root), q.count
					refs[0].c.mu.Unlock()
					require.Equal(t, i, cnt, "segments queued")
					log2 := max(1, bits.Len(uint(cnt))-1)
					maxRatio = max(maxRatio, float64(h)/float64(log2))
					require.LessOrEqual(t, h, 4*log2, "tree height with %d chunks", cnt)
				})
				st := im.stats()
				require.NoError(t, f.err)
				s := f.checked[0]
				require.True(t, s != nil && s.bytes[0] == int64(n+1) && s.gaps == 0 && s.ended[0], "stream: %+v, want %d bytes without a hole, ended", s, n+1)
				require.True(t, st.ForcedSkips == 0 && st.BytesDelivered == int64(n+1) && st.PageCache.QueuedBytes == 0, "stats: %+v", st)
				t.Logf("n=%d: tree height at most %.2f log2(n)", n, maxRatio)
			})
		}
	}
}

// --- overlap flood ---------------------------------------------------------

// atkOverlapModes: the range retransmitted was delivered already
// ("delivered"), waits behind a 100-byte hole ("buffered"), or waits behind
// it at an offset that shifts by 37 mod 400 bytes each time ("shifting",
// which cuts the buffered chunks at every copy).
var atkOverlapModes = []string{"delivered", "buffered", "shifting"}

// atkOverlapOffset is where copy k of mode starts.
func atkOverlapOffset(mode string, k int) int64 {
	switch mode {
	case "buffered":
		return 100
	case "shifting":
		return 100 + int64(k*37%400)
	}
	return 0
}

// atkOverlapEnd is the end of the stream of n copies: where the FIN goes.
func atkOverlapEnd(mode string, n int) int64 {
	end := int64(0)
	for k := 0; k < n && k < 400; k++ {
		end = max(end, atkOverlapOffset(mode, k)+1460)
	}
	return end
}

// TestAttackOverlapFlood: the same 1460-byte range retransmitted 100k times
// (scaled) with different bytes, in the three atkOverlapModes. Pages stay
// within the budget (one page but for shifting copies), the heap does not
// grow, the copies are counted
// (BytesOverlap for delivered bytes, BytesOverwritten for buffered ones),
// and the stream delivers the first copy of delivered bytes and the newest
// copy of buffered ones, without a hole.
func TestAttackOverlapFlood(t *testing.T) {
	n := 100_000 / atkScale()
	for _, mode := range atkOverlapModes {
		t.Run(mode, func(t *testing.T) {
			want := atkOverlapBytes(mode, n)
			s := &atkCRCStream{pattern: func(off int64, b []byte) { copy(b, want[min(off, int64(len(want))):]) }}
			pool := NewSafeStreamPool(atkCRCFactory{s}, 0)
			a := newKitAssembler(t, pool, SafeAssemblerOptions{MaxBufferedPagesTotal: 64, DisableBackgroundFlush: true})
			var heap atkHeap
			heap.start()
			maxPages := atkOverlapFlood(kitFeedSafe(a), mode, n, heap.sample,
				func() int64 { return pool.PageCache().Stats().PagesInUse })
			heap.live()
			st := a.Stats()
			kitRequireConserved(t, st)
			// Shifting copies cut the buffered bytes into slivers (18 pages
			// for 1.9 KB); the budget bounds them, and no skip is forced.
			assert.False(t, maxPages > 64 || (mode != "shifting" && maxPages > 1), "%d pages in use during the flood", maxPages)
			if mode == "delivered" {
				assert.Equal(t, int64(n-1)*1460, st.BytesOverlap, "BytesOverlap")
			} else {
				assert.GreaterOrEqual(t, st.BytesOverwritten, int64(n-1)*(1460-400), "BytesOverwritten")
			}
			a.Close()
			pool.Close()
			s.verify(t, int64(len(want)), crc32.ChecksumIEEE(want))
			t.Logf("%s: %d copies, at most %d pages, live heap +%.2f MB, overlap %d B, overwritten %d B",
				mode, n, maxPages, float64(heap.peakLive)/1e6, st.BytesOverlap, st.BytesOverwritten)
			assert.LessOrEqual(t, heap.peakLive, uint64(1<<20), "live heap growth for one connection")
		})
	}
}

// atkOverlapFlood sends n copies of mode's range, copy k of the byte at
// offset o being byte(o) ^ byte(k), then fills the hole with copy 0 and
// sends the FIN. It returns the most pages seen in use.
func atkOverlapFlood(f kitFeed, mode string, n int, sample func(), pages func() int64) int64 {
	g := newAtkGen()
	ts := time.Unix(1_700_000_000, 0)
	c := atkClient(0)
	isn := uint32(0xFFFFFF00) // the range crosses the wrap
	_ = f(g.packet(c, atkServer, isn, 0, atkSYN, 0, nil, ts))
	var off int64
	var k int
	fill := func(b []byte) {
		for i := range b {
			b[i] = byte(off+int64(i)) ^ byte(k)
		}
	}
	var maxPages int64
	for k = 0; k < n; k++ {
		off = atkOverlapOffset(mode, k)
		_ = f(g.packet(c, atkServer, isn+1+uint32(off), 0, atkACK, 1460, fill, ts))
		if pages != nil && k%64 == 0 {
			maxPages = max(maxPages, pages())
		}
		if sample != nil && k%4096 == 0 {
			sample()
		}
	}
	if mode != "delivered" {
		off, k = 0, 0
		_ = f(g.packet(c, atkServer, isn+1, 0, atkACK, 100, fill, ts))
	}
	_ = f(g.packet(c, atkServer, isn+1+uint32(atkOverlapEnd(mode, n)), 0, atkACK|atkFIN, 0, nil, ts))
	if pages != nil {
		maxPages = max(maxPages, pages())
	}
	return maxPages
}

// atkOverlapBytes is the stream n copies of mode's range must come out
// as: delivered bytes keep copy 0; a buffered byte holds the newest copy
// that covered it.
func atkOverlapBytes(mode string, n int) []byte {
	want := make([]byte, atkOverlapEnd(mode, n))
	newest := make([]int, len(want))
	if mode != "delivered" {
		for k := 0; k < n; k++ {
			off := atkOverlapOffset(mode, k)
			for o := off; o < off+1460; o++ {
				newest[o] = k
			}
		}
	}
	for o := range want {
		want[o] = byte(o) ^ byte(newest[o])
	}
	return want
}
