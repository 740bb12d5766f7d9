package reassembly

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	upstream "github.com/google/gopacket/reassembly"
)

// The attack scenarios of the attack tests at full size, each run through
// the Safe face (impl=safe), the drop-in Assembler (impl=ours, upstream's
// defaults: no limits) and gopacket's reassembly v1.1.19 (impl=upstream) in
// the same run. Besides sec/op (one whole scenario) each reports:
//
//	peak-heap-MB  highest HeapInuse above the figure after a GC at the
//	              start, sampled every few thousand packets (garbage not yet
//	              collected included, as the process sees it)
//	live-heap-MB  HeapAlloc right after a GC at the end of the attack,
//	              before anything is flushed: what the assembler holds
//	ns/pkt        time per packet handed in
//
// (BenchmarkAttackSequenceSpace reports end-heap-MB instead, the heap in use
// after the whole stream.)
//
// and each benchmark logs upstream's figures beside ours. Run them with
//
//	go test -run '^$' -bench '^BenchmarkAttack' -benchtime 1x -timeout 0 .
//
// (-benchtime 1x: each scenario is long enough to measure once; upstream's
// SYN flood and hold reach several GB of heap).

// atkBenchImpls runs a scenario as one sub-benchmark per impl, named
// prefix+impl (upstream's last: its leaf logs the others beside it). op
// runs it b.N times, measuring into heap, and returns the packets of one
// run; the figures are reported with atkReport.
func atkBenchImpls(b *testing.B, prefix string, impls []string, op func(b *testing.B, impl string, heap *atkHeap) int64) {
	got := map[string]atkFigures{}
	keys := atkKeys(prefix, impls...)
	for _, key := range keys {
		impl := key[strings.LastIndexByte(key, '=')+1:]
		b.Run(key, func(b *testing.B) {
			var heap atkHeap
			atkReport(b, got, key, &heap, op(b, impl, &heap))
			atkCompare(b, got, keys, key)
		})
	}
}

// BenchmarkAttackSYNFlood: 1M spoofed 4-tuples, each a SYN and one
// out-of-order segment of 100 (or 1460) bytes, 100 established connections
// sending both ways every 100 tuples; the Safe face caps the pool at 100k
// connections, ours and upstream keep every connection.
func BenchmarkAttackSYNFlood(b *testing.B) {
	for _, payload := range []int{100, 1460} {
		atkBenchImpls(b, "payload="+strconv.Itoa(payload)+"/impl=", []string{"safe", "ours", "upstream"}, func(b *testing.B, impl string, heap *atkHeap) int64 {
			cfg := atkSYNFloodConfig{tuples: 1_000_000, maxConns: 100_000, est: 100, estEvery: 100, payload: payload}
			var live int64
			for range b.N {
				b.StopTimer()
				im := newAtkImpl(impl, nil, SafeAssemblerOptions{DisableBackgroundFlush: true}, cfg.maxConns, false)
				heap.start()
				b.StartTimer()
				calls := 0
				if _, err := atkSYNFlood(cfg, im.feeder, func(int) {
					calls++
					heap.tick(b, calls%64 == 0)
				}); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				heap.live()
				live = im.live()
				im.flushAll()
				b.StartTimer()
			}
			b.ReportMetric(float64(heap.peakLive)/float64(cfg.tuples), "live-B/tuple")
			if live >= 0 {
				b.ReportMetric(float64(live), "conns")
			}
			return int64(2*cfg.tuples + 2*cfg.tuples/cfg.estEvery + 5*cfg.est)
		})
	}
}

// BenchmarkAttackOutOfOrderHold: 1k connections x 2k segments behind a
// one-byte hole, 1-byte and 1460-byte payloads. The Safe face and
// impl=ours-limited / upstream-limited have MaxBufferedPagesTotal 20000;
// impl=upstream has upstream's defaults (no limit), the figure.
// budget-MB is what 20000 pages are charged (224 B for a 1-byte page,
// 2208 B for a full one); live/budget compares the Safe face's live heap
// with it.
func BenchmarkAttackOutOfOrderHold(b *testing.B) {
	const budgetPages = 20000
	opts := SafeAssemblerOptions{MaxBufferedPagesTotal: budgetPages, DisableBackgroundFlush: true}
	for _, size := range []int{1, 1460} {
		atkBenchImpls(b, "size="+strconv.Itoa(size)+"/impl=", []string{"safe", "ours-limited", "upstream-limited", "upstream"}, func(b *testing.B, impl string, heap *atkHeap) int64 {
			cfg := atkHoldConfig{conns: 1000, segs: 2000, size: size, opts: opts}
			name, limited := impl, false
			if n, ok := strings.CutSuffix(impl, "-limited"); ok {
				name, limited = n, true
			}
			for range b.N {
				b.StopTimer()
				im := newAtkImpl(name, nil, opts, 0, limited)
				calls := 0
				b.StartTimer()
				atkHold(cfg, im.feeder, func() {
					if calls++; calls == 1 {
						b.StopTimer()
						heap.start() // the connections are open
						b.StartTimer()
					} else {
						heap.tick(b, calls%256 == 0)
					}
				})
				b.StopTimer()
				heap.live()
				im.flushAll()
				b.StartTimer()
			}
			charge := int64(atkChargedPage)
			if size <= 64 {
				charge = atkChargedSmall
			}
			budget := float64(budgetPages*charge) / 1e6
			b.ReportMetric(budget, "budget-MB")
			b.ReportMetric(float64(heap.peakLive)/1e6/budget, "live/budget")
			return int64(cfg.conns * cfg.segs)
		})
	}
}

// atkPacket is a packet generated before timing.
type atkPacket struct {
	flow gopacket.Flow
	tcp  *layers.TCP
	ctx  kitCtx
}

// atkInsertionPackets are atkInsertion's packets, built ahead.
func atkInsertionPackets(order []int) []atkPacket {
	var out []atkPacket
	keep := func(flow gopacket.Flow, tcp *layers.TCP, ac AssemblerContext) error {
		raw := append([]byte(nil), tcp.Contents...)
		raw = append(raw, tcp.Payload...)
		p := atkPacket{flow: flow, tcp: &layers.TCP{}, ctx: *ac.(*kitCtx)}
		if err := p.tcp.DecodeFromBytes(raw, gopacket.NilDecodeFeedback); err != nil {
			panic(err)
		}
		out = append(out, p)
		return nil
	}
	atkInsertion(keep, order, nil)
	return out
}

// BenchmarkAttackInsertionOrder: n one-byte segments into one connection
// behind a hole, in descending and in random order, then the byte that
// fills the hole. ns/segment is the whole run divided by n: flat from 1k to
// 100k for ours and the Safe face; upstream's grows with n (its list
// insertion is linear), so it runs at 1k, 10k and 20k only, and the n=20k
// run also reports the per-segment cost extrapolated to 100k by the line
// through its 10k and 20k figures (upstream-100k-ns/segment) and how many
// times the Safe face's 100k figure that is (x-safe-100k).
func BenchmarkAttackInsertionOrder(b *testing.B) {
	for _, order := range []string{"descending", "random"} {
		perSeg := map[string]float64{}
		for _, impl := range []string{"safe", "ours", "upstream"} {
			sizes := []int{1000, 10_000, 100_000}
			if impl == "upstream" {
				sizes = []int{1000, 10_000, 20_000}
			}
			for _, n := range sizes {
				key := "order=" + order + "/impl=" + impl + "/n=" + strconv.Itoa(n)
				pkts := atkInsertionPackets(atkOrder(n, order == "descending", 7))
				b.Run(key, func(b *testing.B) {
					for range b.N {
						b.StopTimer()
						var f kitFeed
						switch impl {
						case "safe":
							f = newAtkImpl("safe", nil, atkSafeInsertOptions, 0, false).feeder
						default:
							f = newAtkImpl(impl, nil, SafeAssemblerOptions{}, 0, false).feeder
						}
						b.StartTimer()
						for i := range pkts {
							_ = f(pkts[i].flow, pkts[i].tcp, &pkts[i].ctx)
						}
					}
					ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N*n)
					perSeg[impl+strconv.Itoa(n)] = ns
					b.ReportMetric(ns, "ns/segment")
					if impl == "upstream" && n == 20_000 {
						if p10, ok := perSeg["upstream10000"]; ok {
							slope := (ns - p10) / 10_000
							at100k := ns + slope*80_000
							b.ReportMetric(at100k, "upstream-100k-ns/segment")
							if s, ok := perSeg["safe100000"]; ok {
								b.ReportMetric(at100k/s, "x-safe-100k")
								b.Logf("%s: safe %.0f ns/segment at 1k, %.0f at 10k, %.0f at 100k; upstream %.0f at 1k, %.0f at 10k, %.0f at 20k, extrapolated %.0f at 100k: %.0fx the Safe face",
									order, perSeg["safe1000"], perSeg["safe10000"], s, perSeg["upstream1000"], p10, ns, at100k, at100k/s)
							}
						}
					}
				})
			}
		}
	}
}

// BenchmarkAttackOverlapFlood: the same 1460-byte range sent 100k times
// with different bytes, in each of atkOverlapModes.
func BenchmarkAttackOverlapFlood(b *testing.B) {
	const n = 100_000
	for _, mode := range atkOverlapModes {
		atkBenchImpls(b, "mode="+mode+"/impl=", []string{"safe", "ours", "upstream"}, func(b *testing.B, impl string, heap *atkHeap) int64 {
			for range b.N {
				b.StopTimer()
				im := newAtkImpl(impl, nil, SafeAssemblerOptions{DisableBackgroundFlush: true}, 0, false)
				heap.start()
				b.StartTimer()
				atkOverlapFlood(im.feeder, mode, n, heap.sample, nil)
				b.StopTimer()
				heap.live()
				im.flushAll()
				b.StartTimer()
			}
			return n
		})
	}
}

// BenchmarkAttackSequenceSpace: one 4.5 GiB stream from an ISN just below
// 2^32 (the sequence numbers wrap twice), every other pair of segments
// swapped. B/s is payload throughput; exact is 1 when the bytes delivered
// have the CRC of the bytes sent, in order.
func BenchmarkAttackSequenceSpace(b *testing.B) {
	const total = 4<<30 + 512<<20
	for _, impl := range []string{"safe", "upstream"} {
		b.Run("impl="+impl, func(b *testing.B) {
			b.SetBytes(total)
			var heap atkHeap
			exact := 1.0
			for range b.N {
				b.StopTimer()
				heap.start()
				var f kitFeed
				var check func(want uint32) bool
				var finish func()
				switch impl {
				case "safe":
					s := &atkCRCStream{}
					im := newAtkImpl("safe", atkCRCFactory{s}, SafeAssemblerOptions{DisableBackgroundFlush: true}, 0, false)
					f, finish = im.feeder, im.flushAll
					check = func(want uint32) bool { return s.bad == 0 && s.off == total && s.crc == want && s.gaps == 0 }
				case "upstream":
					s := &atkUpSink{doCRC: true}
					a := upstream.NewAssembler(upstream.NewStreamPool(atkUpFactory{s}))
					f, finish = kitFeedUp(a), func() { a.FlushAll() }
					check = func(want uint32) bool { return s.crc == want && s.skips == 0 }
				}
				b.StartTimer()
				want := atkLongStream(f, 0xFFFFF000, total, 1460, true)
				finish()
				b.StopTimer()
				heap.sample()
				if !check(want) {
					exact = 0
				}
				b.StartTimer()
			}
			b.ReportMetric(exact, "exact")
			// Sampled once, after the stream: the heap the 4.5 GiB leave
			// behind, not a peak.
			b.ReportMetric(float64(heap.peakInuse)/1e6, "end-heap-MB")
		})
	}
}

// atkGarbagePacket makes packet i of the garbage flood: 100k tuples, flags
// from every combination of SYN, FIN, RST and ACK, zero to 100 bytes,
// sequence numbers that now and then jump by a billion.
func atkGarbagePacket(g *atkGen, i int) (gopacket.Flow, *layers.TCP, *kitCtx) {
	h := uint64(i) * 0x9E3779B97F4A7C15
	c := atkFloodClient(int(h>>40) % 100_000)
	flags := byte(h>>8) & (atkSYN | atkFIN | atkRST | atkACK | atkPSH)
	n := 0
	if h>>16&3 != 0 {
		n = int(h>>20) % 101
	}
	seq := uint32(i/100_000) * 1000
	if h>>30&15 == 0 {
		seq += 1_000_000_000
	}
	src, dst := c, atkServer
	if h>>35&1 == 1 {
		src, dst = dst, src
	}
	return g.packet(src, dst, seq, uint32(h>>36), flags, n, nil, time.Unix(1_700_000_000, int64(i)*1000))
}

// BenchmarkAttackGarbage: 1M garbage packets over 100k tuples (the Safe
// face caps the pool at 10k connections).
func BenchmarkAttackGarbage(b *testing.B) {
	const n = 1_000_000
	atkBenchImpls(b, "impl=", []string{"safe", "ours", "upstream"}, func(b *testing.B, impl string, heap *atkHeap) int64 {
		for range b.N {
			b.StopTimer()
			im := newAtkImpl(impl, nil, SafeAssemblerOptions{DisableBackgroundFlush: true}, 10_000, false)
			g := newAtkGen()
			heap.start()
			b.StartTimer()
			for i := range n {
				_ = im.feeder(atkGarbagePacket(g, i))
				if i%8192 == 0 {
					heap.sample()
				}
			}
			b.StopTimer()
			heap.live()
			im.flushAll()
			b.StartTimer()
		}
		return n
	})
}
