package reassembly

import (
	"net/netip"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket"
	upstream "github.com/google/gopacket/reassembly"
)

// inOrderTraffic is one connection: handshake, then n segments of size
// bytes each way, each answered by an ACK, then FINs.
func inOrderTraffic(n, size int) []testPacket {
	c := netip.MustParseAddrPort("10.0.0.1:40000")
	s := netip.MustParseAddrPort("10.0.0.2:80")
	ts := time.Unix(1_700_000_000, 0)
	var out []testPacket
	add := func(seg segment) {
		ts = ts.Add(time.Microsecond)
		seg.client, seg.server, seg.ts = c, s, ts
		out = append(out, seg.build())
	}
	cseq, sseq := uint32(1000), uint32(900_000)
	add(segment{seq: cseq, syn: true})
	add(segment{fromServer: true, seq: sseq, ack: cseq + 1, syn: true, hasAck: true})
	cseq++
	sseq++
	add(segment{seq: cseq, ack: sseq, hasAck: true})
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(i)
	}
	for i := 0; i < n; i++ {
		add(segment{seq: cseq, ack: sseq, hasAck: true, payload: payload})
		cseq += uint32(size)
		add(segment{fromServer: true, seq: sseq, ack: cseq, hasAck: true})
		add(segment{fromServer: true, seq: sseq, ack: cseq, hasAck: true, payload: payload})
		sseq += uint32(size)
		add(segment{seq: cseq, ack: sseq, hasAck: true})
	}
	add(segment{seq: cseq, ack: sseq, hasAck: true, fin: true})
	add(segment{fromServer: true, seq: sseq, ack: cseq + 1, hasAck: true, fin: true})
	return out
}

// benchCtx gives each packet its own context before timing, as a capture
// loop that keeps its CaptureInfo would.
type benchCtx struct {
	ci      gopacket.CaptureInfo
	scratch *[]byte // copy buffer of the goroutine that feeds the packet (suite only)
	lane    int     // that goroutine's lane, whose Streams the factory hands out
}

func (c *benchCtx) GetCaptureInfo() gopacket.CaptureInfo { return c.ci }

func contexts(pkts []testPacket) []benchCtx {
	out := make([]benchCtx, len(pkts))
	for i, p := range pkts {
		out[i].ci = p.ci
	}
	return out
}

// Property: once its connection is open, an in-order packet allocates
// nothing, in the drop-in face and in the Safe face on a capped pool
// (whose eviction lists a packet never touches).
func TestInOrderPathDoesNotAllocate(t *testing.T) {
	pkts := inOrderTraffic(200, 1460)
	for _, face := range []string{"drop-in", "safe-capped"} {
		t.Run(face, func(t *testing.T) {
			ctxs := contexts(pkts)
			f := &atkFactory{sinkAll: true} // counts, allocates nothing
			var feed func(j int, p []testPacket, c []benchCtx)
			if face == "drop-in" {
				a := NewAssembler(NewStreamPool(f))
				feed = func(j int, p []testPacket, c []benchCtx) { a.AssembleWithContext(p[j].netFlow, p[j].tcp, &c[j]) }
			} else {
				a := newKitAssembler(t, NewSafeStreamPool(f, 10), kitReplayOpts())
				feed = func(j int, p []testPacket, c []benchCtx) { _ = a.AssembleWithContext(p[j].netFlow, p[j].tcp, &c[j]) }
			}
			// Warm up: the first pass creates the connection and its buffers.
			for j := range pkts {
				feed(j, pkts, ctxs)
			}
			steady := pkts[3 : len(pkts)-2]
			sctx := ctxs[3 : len(ctxs)-2]
			// Re-open the connection so that steady-state packets find it.
			for j := 0; j < 3; j++ {
				feed(j, pkts, ctxs)
			}
			i := 0
			allocs := testing.AllocsPerRun(len(steady), func() {
				feed(i%len(steady), steady, sctx)
				i++
			})
			if allocs != 0 {
				t.Fatalf("in-order packet allocates %.2f times, want 0", allocs)
			}
			if f.sink.bytes == 0 {
				t.Fatal("no bytes delivered")
			}
		})
	}
}

// descendingTraffic is a SYN, then n one-byte segments at non-adjacent
// sequence numbers from the highest down, none of them fillable.
func descendingTraffic(n int) []testPacket {
	c := netip.MustParseAddrPort("10.0.0.1:40000")
	s := netip.MustParseAddrPort("10.0.0.2:80")
	ts := time.Unix(1_700_000_000, 0)
	out := []testPacket{segment{client: c, server: s, seq: 0, syn: true, ts: ts}.build()}
	for i := n; i >= 1; i-- {
		out = append(out, segment{client: c, server: s, seq: uint32(10 + 2*i), hasAck: true, payload: []byte{'x'}, ts: ts}.build())
	}
	return out
}

// BenchmarkDescendingInsert reports the cost per out-of-order segment when
// n segments arrive in descending order (upstream's quadratic case).
func BenchmarkDescendingInsert(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		pkts := descendingTraffic(n)
		ctxs := contexts(pkts)
		b.Run("impl=ours/n="+itoa(n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				a := NewAssembler(NewStreamPool(&atkFactory{sinkAll: true}))
				for j := range pkts {
					a.AssembleWithContext(pkts[j].netFlow, pkts[j].tcp, &ctxs[j])
				}
				a.FlushAll()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/segment")
		})
		if n > 10000 && testing.Short() {
			continue
		}
		b.Run("impl=upstream/n="+itoa(n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				a := upstream.NewAssembler(upstream.NewStreamPool(atkUpFactory{&atkUpSink{}}))
				for j := range pkts {
					a.AssembleWithContext(pkts[j].netFlow, pkts[j].tcp, &ctxs[j])
				}
				a.FlushAll()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/segment")
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// The suite of issue 5. Every benchmark replays a trace generated before
// timing; b.N counts packets, so sec/op is the time per packet, B/s the
// payload throughput, and allocs/pkt and B/pkt (measured around the timed
// region only, as fractions: the built-in allocs/op is an integer) the
// allocation per packet. Names have the form
//
//	BenchmarkTraffic/scenario=S/consumer=C/impl=I
//	BenchmarkSharedPool/goroutines=G/consumer=C/impl=I
//
// so that `benchstat -col /impl` compares the implementations:
//
//	impl=ours      the drop-in Assembler
//	impl=safe      SafeAssembler (no background flusher; limits far above
//	               what the traffic needs, so nothing is skipped)
//	impl=upstream  gopacket's reassembly.Assembler
//	consumer=count the Stream only reads Lengths
//	consumer=copy  the Stream also Fetches the bytes and copies them into
//	               a buffer reused across calls, as a parser would
//
// The capture is an endless repetition of the trace: each call of a leaf
// goes on where the previous one stopped, and between two replays
// (untimed) FlushAll closes every connection and capture time moves
// forward, so pools keep their recycled objects but never grow replay
// after replay. Each leaf keeps one pool for all its calls and replays
// the trace once before its first timing, so the figures are those of a
// sensor in its steady state. scripts/bench.sh runs the suite and prints
// the benchstat tables.

// benchImpls are the implementations every scenario runs.
var benchImpls = []string{"ours", "safe", "upstream"}

type benchScenario struct {
	name  string
	gen   func() *trace
	flush benchFlush
}

// benchFlush is a periodic flush: every `every` packets (0: none),
// FlushWithOptions{T: ts - t, TC: ts - tc} at the packet's timestamp ts.
type benchFlush struct {
	every int
	t, tc time.Duration
}

// benchScenarios lists the single-goroutine scenarios, (a) to (d) of
// issue 5, with conns HTTP-like connections open at once where a scenario
// has several (see httpTrace: 3*conns connections per replay).
//
//	inorder  (a) one long connection, 1460-byte segments both ways, ACKed
//	http     (b) interleaved HTTP-like connections: handshake, ~300-byte
//	         request, 2-6 KB response in 1460-byte segments, FINs
//	reorder  (c) http with 5% reordering, 1% retransmissions and 0.5%
//	         overlapping retransmissions (same bytes)
//	loss     (d) http with 1% of the packets after the handshake lost, and
//	         FlushCloseOlderThan(ts - 1s) every 1000 packets
//
// and the shapes of issue 15, bulk transfers interleaved over conns/78
// connections (128 for the suite's 10k), where a small flow cache misses:
//
//	bulk     256 segments of 1460 bytes each way per connection, 5%
//	         reordered within 8 segments, 1% retransmitted, 0.5% overlapping
//	bulkloss bulk with 1% loss instead, and FlushWithOptions{T: ts - 5ms,
//	         TC: ts - 1s} every 1024 packets
func benchScenarios(conns int) []benchScenario {
	bulk := max(conns/78, 8)
	return []benchScenario{
		{name: "inorder", gen: inOrderTrace},
		{name: "http", gen: func() *trace { return httpTrace(httpConfig{conns: conns, seed: 1}) }},
		{name: "reorder", gen: func() *trace {
			return httpTrace(httpConfig{conns: conns, seed: 2, reorder: 0.05, retrans: 0.01, overlap: 0.005})
		}},
		{name: "loss", gen: func() *trace { return httpTrace(httpConfig{conns: conns, seed: 3, loss: 0.01}) },
			flush: benchFlush{every: 1000, t: time.Second, tc: time.Second}},
		{name: "bulk", gen: func() *trace {
			return httpTrace(httpConfig{conns: bulk, total: bulk, seed: 4, bulkSegs: 256,
				reorder: 0.05, reorderWithin: 8, retrans: 0.01, overlap: 0.005})
		}},
		{name: "bulkloss", gen: func() *trace {
			return httpTrace(httpConfig{conns: bulk, total: bulk, seed: 5, bulkSegs: 256, loss: 0.01})
		}, flush: benchFlush{every: 1024, t: 5 * time.Millisecond, tc: time.Second}},
	}
}

const benchConns = 10000

// BenchmarkTraffic runs scenarios (a) to (d) of issue 5 on one goroutine.
func BenchmarkTraffic(b *testing.B) {
	for _, sc := range benchScenarios(benchConns) {
		b.Run("scenario="+sc.name, func(b *testing.B) {
			benchImplementations(b, sc.gen(), 1, sc.flush, false)
		})
	}
}

// BenchmarkAckedDelivery compares the Safe face with AckedDelivery
// (impl=safe-acked) and without (impl=safe) on the in-order and HTTP-like
// scenarios of BenchmarkTraffic, whose packets are all acknowledged
// (README.md, "Insertion attacks"):
//
//	go test -run '^$' -bench BenchmarkAckedDelivery -count 10 . > acked.out
//	benchstat -filter '.unit:cpu-ns/pkt' -col /impl acked.out
func BenchmarkAckedDelivery(b *testing.B) {
	for _, sc := range benchScenarios(benchConns)[:2] {
		b.Run("scenario="+sc.name, func(b *testing.B) {
			benchImplementationsOf(b, []string{"safe", "safe-acked"}, sc.gen(), 1, sc.flush, false)
		})
	}
}

// BenchmarkFreshCapture runs the scenarios of BenchmarkTraffic in the
// shape of a capture tool reading one file: each op builds a new pool and
// assembler, hands in the whole trace and calls FlushAll, all timed, so
// that pool construction, the creation and first touch of every
// connection and the final flush are paid each time, where the steady
// state's replays reuse a warm pool. b.N counts captures; ns/pkt is the
// time per packet, to set beside BenchmarkTraffic's:
//
//	benchstat -filter '.unit:ns/pkt' -col /impl bench.out
func BenchmarkFreshCapture(b *testing.B) {
	for _, sc := range benchScenarios(benchConns) {
		b.Run("scenario="+sc.name, func(b *testing.B) {
			benchImplementations(b, sc.gen(), 1, sc.flush, true)
		})
	}
}

// BenchmarkSharedPool is scenario (e): the http trace split by a symmetric
// flow hash over G goroutines, each with its own assembler, all sharing
// one pool (ours: Assemblers on one StreamPool, safe: SafeAssemblers on one
// SafeStreamPool, upstream: Assemblers on one StreamPool, its recommended
// pattern). sec/op is wall time per packet of the whole trace, so the
// goroutines=1 / goroutines=2 ratio is the speed-up:
//
//	benchstat -filter .name:SharedPool -col /goroutines bench.out
func BenchmarkSharedPool(b *testing.B) {
	tr := httpTrace(httpConfig{conns: benchConns, seed: 1})
	counts := []int{1, 2}
	if p := runtime.GOMAXPROCS(0); p > 2 {
		counts = append(counts, p)
	}
	for _, g := range counts {
		b.Run("goroutines="+itoa(g), func(b *testing.B) {
			benchImplementations(b, tr, g, benchFlush{}, false)
		})
	}
}

// benchImplementations runs tr through every implementation with both
// consumers. Each leaf keeps its pool and assemblers across the testing
// package's calls (calibration and -count repetitions), so the warm-up
// replay happens once per leaf; with fresh set, it keeps only its Streams'
// factory, and every op is a capture of its own (benchCaptures).
func benchImplementations(b *testing.B, tr *trace, goroutines int, flush benchFlush, fresh bool) {
	benchImplementationsOf(b, benchImpls, tr, goroutines, flush, fresh)
}

// benchImplementationsOf is benchImplementations for the implementations
// impls.
func benchImplementationsOf(b *testing.B, impls []string, tr *trace, goroutines int, flush benchFlush, fresh bool) {
	for _, consumer := range []string{"count", "copy"} {
		b.Run("consumer="+consumer, func(b *testing.B) {
			for _, impl := range impls {
				var r *benchRun
				b.Run("impl="+impl, func(b *testing.B) {
					if r == nil {
						r = newBenchRun(tr, impl, consumer == "copy", goroutines, flush)
						if fresh {
							r.close() // each capture builds its own
						}
					}
					if fresh {
						benchCaptures(b, r)
					} else {
						benchReplays(b, r)
					}
				})
				if r != nil && !fresh {
					r.close()
				}
			}
		})
	}
}

// benchReplays hands in the next b.N packets of r's endless capture: the
// trace replayed again and again, each call going on where the previous
// one stopped, so that short runs do not all measure the trace's opening.
func benchReplays(b *testing.B, r *benchRun) {
	size := len(r.tr.pkts)
	b.SetBytes(r.tr.avgPayload())
	if !r.warm {
		// Warm-up: pools, page caches and maps reach their steady size.
		r.replay(0, size)
		r.next()
		r.warm = true
		// The garbage of the leaves before this one is collected and its
		// memory returned now, so that the runtime's background sweeping
		// and scavenging do not take the second core from this leaf.
		debug.FreeOSMemory()
	}
	var am allocMeter
	am.start() // ReadMemStats stops the world: not on the clock
	b.ResetTimer()
	for left := b.N; left > 0; {
		if r.pos == size {
			b.StopTimer()
			am.stop()
			r.next()
			am.start()
			b.StartTimer()
		}
		n := min(left, size-r.pos)
		r.replay(r.pos, r.pos+n)
		r.pos += n
		left -= n
	}
	b.StopTimer()
	am.stop()
	am.report(b, float64(b.N))
}

// benchCaptures times b.N captures of r's trace, each on a new pool and
// assemblers, from construction to FlushAll. Between two captures
// (untimed) the previous pool is closed and the Streams recycled.
func benchCaptures(b *testing.B, r *benchRun) {
	size := len(r.tr.pkts)
	b.SetBytes(r.tr.avgPayload() * int64(size))
	debug.FreeOSMemory() // as in benchReplays: the previous leaf's garbage
	var am allocMeter
	am.start()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r.build()
		r.replay(0, size)
		r.flushAll()
		b.StopTimer()
		am.stop()
		r.close()
		r.resetStreams()
		for _, l := range r.lanes {
			l.shift(0)
			l.countdown = r.flush.every
		}
		am.start()
		b.StartTimer()
	}
	b.StopTimer()
	am.stop()
	am.report(b, float64(b.N)*float64(size))
}

// allocMeter counts heap allocations, and the process's CPU time (the
// garbage collector's included), in the timed regions only.
type allocMeter struct {
	mallocs, bytes uint64
	cpu            time.Duration
	ms             runtime.MemStats
}

func (m *allocMeter) start() {
	runtime.ReadMemStats(&m.ms)
	m.mallocs -= m.ms.Mallocs
	m.bytes -= m.ms.TotalAlloc
	m.cpu -= processCPU()
}

func (m *allocMeter) stop() {
	m.cpu += processCPU()
	runtime.ReadMemStats(&m.ms)
	m.mallocs += m.ms.Mallocs
	m.bytes += m.ms.TotalAlloc
}

// report adds the meter's figures per packet to b's results.
func (m *allocMeter) report(b *testing.B, pkts float64) {
	b.ReportMetric(float64(m.mallocs)/pkts, "allocs/pkt")
	b.ReportMetric(float64(m.bytes)/pkts, "B/pkt")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/pkts, "ns/pkt")
	b.ReportMetric(float64(m.cpu.Nanoseconds())/pkts, "cpu-ns/pkt")
}

// laneAssembler is one goroutine's assembler, whatever the implementation.
type laneAssembler interface {
	assemble(p *testPacket, c *benchCtx)
	flush(t, tc time.Time)
}

type oursLane struct{ a *Assembler }

func (l oursLane) assemble(p *testPacket, c *benchCtx) { l.a.AssembleWithContext(p.netFlow, p.tcp, c) }
func (l oursLane) flush(t, tc time.Time)               { l.a.FlushWithOptions(FlushOptions{T: t, TC: tc}) }

type safeLane struct{ a *SafeAssembler }

func (l safeLane) assemble(p *testPacket, c *benchCtx) {
	_ = l.a.AssembleWithContext(p.netFlow, p.tcp, c) // errors are counted in Stats
}
func (l safeLane) flush(t, tc time.Time) { l.a.FlushWithOptions(FlushOptions{T: t, TC: tc}) }

type upLane struct{ a *upstream.Assembler }

func (l upLane) assemble(p *testPacket, c *benchCtx) { l.a.AssembleWithContext(p.netFlow, p.tcp, c) }
func (l upLane) flush(t, tc time.Time) {
	l.a.FlushWithOptions(upstream.FlushOptions{T: t, TC: tc})
}

// benchRun is one implementation set up to replay a trace: a pool shared
// by one assembler per lane.
type benchRun struct {
	tr      *trace
	lanes   []*benchLane
	asm     []laneAssembler
	flush   benchFlush
	replays int  // replays begun, for moving capture time forward
	pos     int  // next packet of the current replay
	warm    bool // the warm-up replay is done

	build        func() // makes the pool and the assemblers (again)
	flushAll     func() // closes every connection of the pool
	closeAll     func()
	resetStreams func()
	delivered    func() int64
}

// benchSafeOptions keep the limits far above what the traces need.
var benchSafeOptions = SafeAssemblerOptions{
	MaxBufferedPagesTotal:         1 << 22,
	MaxBufferedPagesPerConnection: 1 << 16,
	DisableBackgroundFlush:        true,
}

func newBenchRun(tr *trace, impl string, copyBytes bool, goroutines int, flush benchFlush) *benchRun {
	r := &benchRun{tr: tr, lanes: tr.split(goroutines), flush: flush}
	for _, l := range r.lanes {
		l.shift(0)
		l.countdown = flush.every
	}
	slab := 3*tr.conns + 16 // upstream re-creates a connection for the last ACK
	switch impl {
	case "ours", "safe", "safe-acked":
		f := &benchFactory{copyBytes: copyBytes}
		f.init(len(r.lanes), slab)
		r.resetStreams = f.reset
		r.delivered = func() int64 { return f.delivered(func(s *benchStream) *streamCore { return &s.streamCore }) }
		if impl == "ours" {
			r.build = func() {
				pool := NewStreamPool(f)
				r.asm = r.asm[:0]
				for range r.lanes {
					r.asm = append(r.asm, oursLane{NewAssembler(pool)})
				}
				a := r.asm[0].(oursLane).a
				r.flushAll = func() { a.FlushAll() }
				r.closeAll = r.flushAll
			}
			break
		}
		opts := benchSafeOptions
		opts.AckedDelivery = impl == "safe-acked"
		r.build = func() {
			pool := NewSafeStreamPool(f, 1<<20)
			var all []*SafeAssembler
			r.asm = r.asm[:0]
			for range r.lanes {
				a, err := NewSafeAssembler(pool, opts)
				if err != nil {
					panic(err)
				}
				all = append(all, a)
				r.asm = append(r.asm, safeLane{a})
			}
			r.flushAll = func() { all[0].FlushAll() }
			r.closeAll = func() {
				for _, a := range all {
					a.Close()
				}
				pool.Close()
			}
		}
	case "upstream":
		f := &upBenchFactory{copyBytes: copyBytes}
		f.init(len(r.lanes), slab)
		r.resetStreams = f.reset
		r.delivered = func() int64 { return f.delivered(func(s *upBenchStream) *streamCore { return &s.streamCore }) }
		r.build = func() {
			pool := upstream.NewStreamPool(f)
			r.asm = r.asm[:0]
			for range r.lanes {
				r.asm = append(r.asm, upLane{upstream.NewAssembler(pool)})
			}
			a := r.asm[0].(upLane).a
			r.flushAll = func() { a.FlushAll() }
			r.closeAll = r.flushAll
		}
	default:
		panic("unknown impl " + impl)
	}
	r.build()
	return r
}

// replay hands in the packets of the trace from index from to index to,
// each lane on its own goroutine.
func (r *benchRun) replay(from, to int) {
	if len(r.lanes) == 1 {
		r.run(0, from, to)
		return
	}
	var wg sync.WaitGroup
	for i := 1; i < len(r.lanes); i++ {
		wg.Add(1)
		go func() { defer wg.Done(); r.run(i, from, to) }()
	}
	r.run(0, from, to)
	wg.Wait()
}

func (r *benchRun) run(lane, from, to int) {
	l, a := r.lanes[lane], r.asm[lane]
	lo, hi := l.upTo(from), l.upTo(to)
	pkts, ctxs := l.pkts[lo:hi], l.ctxs[lo:hi]
	fl := r.flush
	for j := range pkts {
		a.assemble(&pkts[j], &ctxs[j])
		if fl.every > 0 {
			if l.countdown--; l.countdown <= 0 {
				l.countdown = fl.every
				ts := ctxs[j].ci.Timestamp
				a.flush(ts.Add(-fl.t), ts.Add(-fl.tc))
			}
		}
	}
}

// next ends a replay, whole or partial, and prepares the next one: every
// connection is closed, the Streams are recycled, and capture time moves
// on past the previous replay.
func (r *benchRun) next() {
	r.flushAll()
	r.resetStreams()
	r.replays++
	r.pos = 0
	d := time.Duration(r.replays) * (r.tr.span + time.Second)
	for _, l := range r.lanes {
		l.shift(d)
		l.countdown = r.flush.every
	}
}

func (r *benchRun) close() { r.closeAll() }
