package reassembly

import (
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	upstream "github.com/google/gopacket/reassembly"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Tests of the pressure policy at the connection cap (pressure.go): a
// flood of one-packet spoofed tuples that fills the cap must not keep
// legitimate connections out.

// flConfig sizes a flood: packets handed in, share of them spoofed
// one-packet tuples (100 bytes of data, no handshake, never answered),
// the rest from concurrent legitimate connections (handshake, 4-64 data
// segments of 100-1460 bytes in random directions, FINs) that are
// replaced as they finish; step is the capture time between packets.
// Legitimate payload is atkByte's pattern when fill is set, else left as
// the buffer holds it (the benchmark's setting: it checks no byte).
type flConfig struct {
	packets    int
	share      float64
	concurrent int
	step       time.Duration
	seed       uint64
	fill       bool
	base       int // first legitimate id and spoofed tuple index, so that runs can share a pool
	// clock, when set, counts the packets of every run sharing it, and
	// stamps each packet step times its count: runs on several
	// goroutines then share one capture clock, as NIC queues do.
	clock *atomic.Int64
}

// flLegit is a legitimate connection in progress: the next packet it
// sends (0 SYN, 1 SYN-ACK, 2 ACK, 3 data, 4 client FIN, 5 server FIN) and
// the data segments it has left.
type flLegit struct {
	id          uint32
	phase, left int
}

// flTraffic is what a flood run sent: per legitimate connection (id
// base+i at index i), the bytes of each direction.
type flTraffic struct {
	sent    [][2]int64
	begun   int // legitimate connections that sent their SYN
	refused int // legitimate packets refused with ErrConnectionLimit
}

func (tr *flTraffic) legitBytes() int64 {
	n := int64(0)
	for _, s := range tr.sent {
		n += s[0] + s[1]
	}
	return n
}

// flRun feeds the flood to f; sample is called every 4096 packets.
func flRun(cfg flConfig, f kitFeed, sample func(i int)) *flTraffic {
	rng := rand.New(rand.NewPCG(cfg.seed, 17))
	g := newAtkGen()
	tr := &flTraffic{sent: make([][2]int64, 0, cfg.packets/8)}
	ts := time.Unix(1_700_000_000, 0)
	slots := make([]flLegit, cfg.concurrent)
	open := func(s *flLegit) {
		*s = flLegit{id: uint32(cfg.base + len(tr.sent)), left: 4 + rng.IntN(61)}
		tr.sent = append(tr.sent, [2]int64{})
	}
	for i := range slots {
		open(&slots[i])
	}
	fill := func(b []byte) {
		for i := range b {
			b[i] = byte(i)
		}
	}
	spoofed := cfg.base
	t0 := ts
	for i := 0; i < cfg.packets; i++ {
		ts = ts.Add(cfg.step)
		if cfg.clock != nil {
			ts = t0.Add(time.Duration(cfg.clock.Add(1)) * cfg.step)
		}
		if sample != nil && i%4096 == 0 {
			sample(i)
		}
		if rng.Float64() < cfg.share {
			c := atkFloodClient(spoofed)
			spoofed++
			_ = f(g.packet(c, atkServer, rng.Uint32(), rng.Uint32(), atkACK|atkPSH, 100, fill, ts))
			continue
		}
		s := &slots[rng.IntN(len(slots))]
		c := atkClient(s.id)
		off := &tr.sent[int(s.id)-cfg.base]
		isn := [2]uint32{atkISN(s.id, 0), atkISN(s.id, 1)}
		seq := func(dir int) uint32 { return isn[dir] + 1 + uint32(off[dir]) }
		var err error
		switch s.phase {
		case 0:
			tr.begun++
			err = f(g.packet(c, atkServer, isn[0], 0, atkSYN, 0, nil, ts))
		case 1:
			err = f(g.packet(atkServer, c, isn[1], isn[0]+1, atkSYN|atkACK, 0, nil, ts))
		case 2:
			err = f(g.packet(c, atkServer, seq(0), seq(1), atkACK, 0, nil, ts))
		case 3:
			dir, n := rng.IntN(2), 100+rng.IntN(1361)
			src, dst := c, atkServer
			if dir == 1 {
				src, dst = dst, src
			}
			p0 := off[dir]
			s0 := seq(dir)
			off[dir] += int64(n)
			var fill func([]byte)
			if cfg.fill {
				fill = atkFill(s.id, dir, p0)
			}
			err = f(g.packet(src, dst, s0, seq(1-dir), atkACK|atkPSH, n, fill, ts))
			if s.left--; s.left > 0 {
				s.phase--
			}
		case 4:
			err = f(g.packet(c, atkServer, seq(0), seq(1), atkFIN|atkACK, 0, nil, ts))
		case 5:
			err = f(g.packet(atkServer, c, seq(1), seq(0)+1, atkFIN|atkACK, 0, nil, ts))
		}
		if errors.Is(err, ErrConnectionLimit) {
			tr.refused++
		}
		if s.phase++; s.phase > 5 {
			open(s)
		}
	}
	return tr
}

// flPool runs a flood through a Safe assembler on a pool capped at cap.
func flPool(t testing.TB, cfg flConfig, popts SafeStreamPoolOptions, opts SafeAssemblerOptions, check bool, sample func(i int, pool *SafeStreamPool)) (*atkFactory, *flTraffic, PoolStats, AssemblerStats) {
	f := newSharedAtkFactory(check)
	pool, err := NewSafeStreamPoolWithOptions(f, popts)
	require.NoError(t, err)
	a := newKitAssembler(t, pool, opts)
	tr := flRun(cfg, kitFeedSafe(a), func(i int) {
		if sample != nil {
			sample(i, pool)
		}
	})
	require.NoError(t, a.Close()) // the pool's last assembler: it completes every connection
	st := a.Stats()
	require.NoError(t, pool.Close())
	return f, tr, pool.Stats(), st
}

// Property: under a flood of one-packet spoofed tuples that fills a cap of
// 1000 many times over, every legitimate connection interleaved with it is
// reassembled byte-exact, without a hole, with one Stream completed once;
// live connections never pass the cap; the evicted tuples are counted,
// each completed once; bytes are conserved. With RefuseAtLimit the same
// traffic loses legitimate connections: the property can fail.
func TestPressureFloodKeepsLegitimate(t *testing.T) {
	t.Parallel()
	cfg := flConfig{packets: 200_000 / atkScale(), share: 0.5, concurrent: 50, step: 20 * time.Microsecond, seed: 1, fill: true}
	opts := SafeAssemblerOptions{DisableBackgroundFlush: true, ConnectionTimeout: 30 * time.Second}
	for _, refuse := range []bool{false, true} {
		t.Run("refuse="+strconv.FormatBool(refuse), func(t *testing.T) {
			const maxConns = 1000
			peak := int64(0)
			f, tr, ps, st := flPool(t, cfg, SafeStreamPoolOptions{MaxConnections: maxConns, RefuseAtLimit: refuse}, opts, true,
				func(_ int, pool *SafeStreamPool) { peak = max(peak, pool.Stats().ActiveConnections) })
			require.LessOrEqual(t, int(peak), maxConns, "live connections passed the cap")
			closing := ps.Closing
			kitRequireConserved(t, st)
			require.Zero(t, closing.BytesProcessed+closing.BytesDelivered+closing.BytesDiscarded, "the assembler's Close left work to the pool's")
			require.Equal(t, f.sink.news, f.sink.completes, "flood Streams completed once each")
			sent := tr.legitBytes()
			t.Logf("legit %d bytes sent, %d delivered; refused %d legit packets; evicted %d unanswered, %d idle",
				sent, f.bytes, tr.refused, ps.EvictedUnanswered, ps.EvictedIdle)
			if refuse {
				require.Positive(t, tr.refused, "the cap never refused a legitimate packet: the test proves nothing")
				require.Less(t, f.bytes, sent, "refusal lost nothing: the flood does not fill the cap")
				return
			}
			require.Zero(t, tr.refused)
			require.Zero(t, ps.ConnectionsRefused)
			require.Positive(t, ps.EvictedUnanswered, "nothing evicted: the flood did not fill the cap")
			require.Equal(t, ps.EvictedUnanswered, st.EvictedUnanswered+closing.EvictedUnanswered)
			require.Zero(t, ps.EvictedIdle, "an answered connection was evicted while unanswered ones were left")
			require.Equal(t, tr.begun, f.made, "one Stream per legitimate connection")
			f.verifySent(t, tr.sent, 0)
			require.Equal(t, sent, f.bytes)
		})
	}
}

// Property: two SafeAssemblers on one capped pool, each fed its own flood
// and legitimate connections from its own goroutine on one capture clock
// (victims are told by capture time), evict each other's connections at
// the cap: no race, live connections never pass the cap, no legitimate
// packet is refused, every byte delivered is right, every Stream is
// completed once, bytes are conserved over the two, and the pool's
// evictions are the sum of theirs. (That legitimate connections are not
// the ones evicted is TestPressureFloodKeepsLegitimate's property: here a
// goroutine the scheduler holds back sees its connections age on the
// other's clock, and a SYN that waits for its answer longer than the
// flood takes to fill the cap is evicted.)
func TestPressureSharedPoolRace(t *testing.T) {
	t.Parallel()
	const maxConns, workers = 300, 2
	f := newSharedAtkFactory(true)
	f.reopen = true
	pool := NewSafeStreamPool(f, maxConns)
	var asms [workers]*SafeAssembler
	var trs [workers]*flTraffic
	var peak [workers]int64
	for w := range asms {
		a := newKitAssembler(t, pool, SafeAssemblerOptions{DisableBackgroundFlush: true, ConnectionTimeout: 30 * time.Second})
		asms[w] = a
	}
	var wg sync.WaitGroup
	var clock atomic.Int64
	for w := range asms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg := flConfig{packets: 100_000 / atkScale(), share: 0.5, concurrent: 10, step: 20 * time.Microsecond,
				seed: uint64(w + 1), fill: true, base: w << 20, clock: &clock}
			trs[w] = flRun(cfg, kitFeedSafe(asms[w]), func(int) {
				// The reservation is what the cap holds exactly; Stats sums
				// the shards one by one, so while connections come and go
				// its ActiveConnections can pass the cap by a few.
				peak[w] = max(peak[w], pool.t.reserved.Load())
			})
		}()
	}
	wg.Wait()
	var all []AssemblerStats
	for w, a := range asms {
		require.NoError(t, a.Close()) // the last one completes the pool's connections
		all = append(all, a.Stats())
		require.LessOrEqual(t, int(peak[w]), maxConns)
		require.Zero(t, trs[w].refused, "worker %d: legitimate packets refused", w)
	}
	require.NoError(t, pool.Close())
	ps := pool.Stats()
	require.Zero(t, ps.PageCache.QueuedBytes)
	sum := kitSumStats(all)
	kitRequireConserved(t, sum) // over the pool's assemblers
	evicted := sum.EvictedUnanswered + sum.EvictedIdle
	require.Positive(t, ps.EvictedUnanswered, "nothing evicted: the test proves nothing")
	require.Equal(t, ps.EvictedUnanswered+ps.EvictedIdle, evicted)
	require.NoError(t, f.err)
	require.Equal(t, f.made, f.completes, "legitimate Streams completed once each")
	require.Equal(t, f.sink.news, f.sink.completes, "flood Streams completed once each")
	var sent int64
	for _, tr := range trs {
		sent += tr.legitBytes()
	}
	t.Logf("legit %d bytes sent, %d delivered; evicted %d", sent, f.bytes, evicted)
}

// flRig is a small pool driven connection by connection, for the tests
// of victim order and emergency mode; its clock starts at flT0.
type flRig struct {
	f    *atkFactory
	pool *SafeStreamPool
	a    *SafeAssembler
	g    *atkGen
}

var flT0 = time.Unix(1_700_000_000, 0)

// flAt is s seconds after flT0.
func flAt(s int) time.Time { return flT0.Add(time.Duration(s) * time.Second) }

func newFlRig(t *testing.T, popts SafeStreamPoolOptions, opts SafeAssemblerOptions) *flRig {
	r := &flRig{f: newSharedAtkFactory(false), g: newAtkGen()}
	var err error
	r.pool, err = NewSafeStreamPoolWithOptions(r.f, popts)
	require.NoError(t, err)
	opts.DisableBackgroundFlush = true
	r.a, err = NewSafeAssembler(r.pool, opts)
	require.NoError(t, err)
	return r
}

// send hands in a packet of connection id (atkClient's), from its client
// or its server, of payload bytes after the SYN.
func (r *flRig) send(t *testing.T, id uint32, fromServer bool, flags byte, payload int, ts time.Time) {
	t.Helper()
	src, dst := atkClient(id), atkServer
	seq := atkISN(id, 0)
	if fromServer {
		src, dst, seq = dst, src, atkISN(id, 1)
	}
	if flags&atkSYN == 0 {
		seq++
	}
	require.NoError(t, r.a.AssembleWithContext(r.g.packet(src, dst, seq, 0, flags, payload, atkFill(id, 0, 0), ts)))
}

// answered opens connection id with a SYN and its SYN-ACK.
func (r *flRig) answered(t *testing.T, id uint32, ts time.Time) {
	t.Helper()
	r.send(t, id, false, atkSYN, 0, ts)
	r.send(t, id, true, atkSYN|atkACK, 0, ts)
}

func (r *flRig) close(t *testing.T) {
	require.NoError(t, r.a.Close())
	require.NoError(t, r.pool.Close())
}

// Property: at the cap a newcomer evicts an unanswered connection before
// any answered one, even a younger one; with none left, the answered
// connection seen least recently goes, not one seen since; each victim
// is completed once, its buffered out-of-order bytes delivered first,
// after a hole.
func TestPressureVictimOrder(t *testing.T) {
	t.Parallel()
	r := newFlRig(t, SafeStreamPoolOptions{MaxConnections: 3}, SafeAssemblerOptions{})
	f, pool, a, g, at := r.f, r.pool, r.a, r.g, flAt
	answered := func(id uint32, ts time.Time) { r.answered(t, id, ts) }
	answered(0, at(0))
	answered(1, at(0))
	// Unanswered, with 10 bytes buffered behind a hole of 1000.
	r.send(t, 2, false, atkSYN, 0, at(1))
	src := atkClient(2)
	require.NoError(t, a.AssembleWithContext(g.packet(src, atkServer, atkISN(2, 0)+1001, 0, atkACK, 10, nil, at(1))))

	answered(3, at(2)) // the cap: 2 goes, though younger than 0 and 1
	ps := pool.Stats()
	assert.EqualValues(t, 1, ps.EvictedUnanswered)
	assert.Zero(t, ps.EvictedIdle)
	v := f.checked[2]
	require.NotNil(t, v)
	assert.Equal(t, 1, v.completes, "the victim is completed")
	assert.Equal(t, [2]int64{10, 0}, v.bytes, "its buffered bytes delivered")
	assert.Equal(t, 1, v.gaps, "after their hole")
	for _, id := range []uint32{0, 1, 3} {
		assert.Zero(t, f.checked[id].completes, "answered connection %d evicted", id)
	}

	// 0 is seen again: 1 is now the least recently seen.
	r.send(t, 0, false, atkACK|atkPSH, 5, at(3))
	answered(4, at(4))
	ps = pool.Stats()
	assert.EqualValues(t, 1, ps.EvictedIdle)
	assert.Equal(t, 1, f.checked[1].completes, "the least recently seen connection goes")
	for _, id := range []uint32{0, 3, 4} {
		assert.Zero(t, f.checked[id].completes, "connection %d evicted", id)
	}
	st := a.Stats()
	assert.EqualValues(t, 1, st.EvictedUnanswered)
	assert.EqualValues(t, 1, st.EvictedIdle)
	kitRequireConserved(t, st)
	require.NoError(t, a.Close())
	require.NoError(t, pool.Close())
	for id, s := range f.checked {
		assert.Equal(t, 1, s.completes, "connection %d completions", id)
	}
}

// Property: among answered connections the least recently seen goes, even
// when it was queued after one that was seen since (its second chance):
// A, B, D answered at 0, 1, 2 s; E evicts A; B is seen at 4 s; F then
// evicts D, not B.
func TestPressureSecondChance(t *testing.T) {
	t.Parallel()
	r := newFlRig(t, SafeStreamPoolOptions{MaxConnections: 3}, SafeAssemblerOptions{})
	f, at := r.f, flAt
	answered := func(id uint32, ts time.Time) { r.answered(t, id, ts) }
	const A, B, D, E, F = 1, 2, 4, 5, 6
	answered(A, at(0))
	answered(B, at(1))
	answered(D, at(2))
	answered(E, at(3))
	require.Equal(t, 1, f.checked[A].completes, "the least recently seen goes first")
	r.send(t, B, false, atkACK|atkPSH, 5, at(4))
	answered(F, at(5))
	assert.Equal(t, 1, f.checked[D].completes, "D, seen at 2 s, is now the least recently seen")
	assert.Zero(t, f.checked[B].completes, "B, seen at 4 s, was evicted")
	assert.EqualValues(t, 2, r.pool.Stats().EvictedIdle)
	r.close(t)
}

// Property: once the pool reaches its high-water mark, unanswered
// connections idle past EmergencyTimeout are closed (counted as
// EmergencyTimeouts), answered ones are kept, and the pool leaves
// emergency mode at its low-water mark; below the high-water mark nothing
// closes before ConnectionTimeout.
func TestPressureEmergencyMode(t *testing.T) {
	t.Parallel()
	r := newFlRig(t, SafeStreamPoolOptions{MaxConnections: 100, HighWaterMark: 20, LowWaterMark: 10},
		SafeAssemblerOptions{ConnectionTimeout: time.Minute, EmergencyTimeout: 4 * time.Second})
	f, pool, a, t0 := r.f, r.pool, r.a, flT0
	unanswered := func(id uint32, ts time.Time) { r.send(t, id, false, atkSYN, 0, ts) }
	for id := uint32(0); id < 5; id++ { // answered, kept throughout
		r.answered(t, id, t0)
	}
	// 13 unanswered, then one 10 s later: 19 live, below the high-water
	// mark, so none closes though idle past EmergencyTimeout.
	for id := uint32(5); id < 18; id++ {
		unanswered(id, t0)
	}
	unanswered(100, t0.Add(10*time.Second))
	ps := pool.Stats()
	require.EqualValues(t, 19, ps.ActiveConnections)
	require.Zero(t, ps.EmergencyTimeouts)
	require.False(t, ps.Emergency)
	// At 20 live the next check enters emergency mode and closes the 13
	// unanswered connections idle since t0; 100 (idle 1 s) and the
	// answered ones stay.
	unanswered(101, t0.Add(11*time.Second))
	ps = pool.Stats()
	assert.True(t, ps.Emergency)
	assert.EqualValues(t, 1, ps.Emergencies)
	assert.EqualValues(t, 13, ps.EmergencyTimeouts)
	assert.EqualValues(t, 13, a.Stats().EmergencyTimeouts)
	assert.EqualValues(t, 7, ps.ActiveConnections)
	for _, id := range []uint32{0, 1, 2, 3, 4, 100, 101} {
		assert.Zero(t, f.checked[id].completes, "connection %d closed", id)
	}
	for id := uint32(5); id < 18; id++ {
		assert.Equal(t, 1, f.checked[id].completes, "unanswered connection %d", id)
	}
	// 8 live, below the low-water mark: the next check leaves emergency
	// mode.
	unanswered(102, t0.Add(12*time.Second))
	ps = pool.Stats()
	assert.False(t, ps.Emergency)
	assert.EqualValues(t, 13, ps.EmergencyTimeouts)
	require.NoError(t, a.Close())
	require.NoError(t, pool.Close())
}

// Property: at the cap, a spoofed tuple that evicts another allocates
// nothing in steady state: the victim's object is reused, and its lists
// are intrusive.
func TestPressureEvictionDoesNotAllocate(t *testing.T) {
	f := newSharedAtkFactory(false)
	pool := NewSafeStreamPool(f, 1000)
	a := newKitAssembler(t, pool, SafeAssemblerOptions{DisableBackgroundFlush: true})
	g := newAtkGen()
	ts := time.Unix(1_700_000_000, 0)
	i := 0
	spoof := func() {
		ts = ts.Add(20 * time.Microsecond)
		_ = a.AssembleWithContext(g.packet(atkFloodClient(i), atkServer, uint32(i), 0, atkACK|atkPSH, 100, nil, ts))
		i++
	}
	// Warm up: fill the cap, then evict long enough that graves, free
	// lists and page caches have grown to their steady size.
	for range 200_000 {
		spoof()
	}
	before := pool.Stats().EvictedUnanswered
	allocs := testing.AllocsPerRun(10_000, spoof)
	require.Greater(t, pool.Stats().EvictedUnanswered-before, int64(10_000), "no eviction measured")
	require.Zero(t, allocs, "allocations per evicting packet")
	require.NoError(t, a.Close())
	require.NoError(t, pool.Close())
}

// flUpStream is upstream's Stream for a legitimate connection of the
// flood benchmark: it counts the bytes delivered from a known start.
type flUpStream struct{ f *flUpFactory }

func (s *flUpStream) Accept(*layers.TCP, gopacket.CaptureInfo, upstream.TCPFlowDirection, upstream.Sequence, *bool, upstream.AssemblerContext) bool {
	return true
}

func (s *flUpStream) ReassembledSG(sg upstream.ScatterGather, _ upstream.AssemblerContext) {
	if _, _, _, skip := sg.Info(); skip >= 0 {
		n, _ := sg.Lengths()
		s.f.legitBytes += int64(n)
	}
}

func (s *flUpStream) ReassemblyComplete(upstream.AssemblerContext) bool { return true }

// flUpFactory makes upstream's Streams: one per legitimate connection,
// the shared counting sink for the flood.
type flUpFactory struct {
	sink       atkUpSink
	legitBytes int64
}

func (f *flUpFactory) New(netFlow, _ gopacket.Flow, _ *layers.TCP, _ upstream.AssemblerContext) upstream.Stream {
	for _, ep := range [2]gopacket.Endpoint{netFlow.Src(), netFlow.Dst()} {
		if a := ep.Raw(); len(a) == 4 && a[0] == 10 {
			return &flUpStream{f}
		}
	}
	return &f.sink
}

// BenchmarkAttackConnectionFlood is issue 17's run: 4M packets 20 µs of
// capture time apart, 20k legitimate connections open at once, replaced
// as they finish, mixed with one-packet spoofed tuples (5% and 20% of the
// packets); ConnectionTimeout 30 s. impl=safe is a SafeStreamPool capped
// at 100k connections with the defaults (evict at the cap, emergency mode
// from 90k to 70k live with a 3 s EmergencyTimeout); impl=evict-only has
// no emergency mode (EmergencyTimeout = ConnectionTimeout);
// impl=refuse-only neither (RefuseAtLimit: the behaviour before issue 17);
// impl=upstream is gopacket's reassembly v1.1.19 without a cap, flushed
// every second of capture time with FlushCloseOlderThan(now - 30 s).
// Besides the attack benchmarks' figures (peak-heap-MB, live-heap-MB: the
// peak of HeapAlloc after a GC, sampled every 256k packets; ns/pkt, which
// includes making the packets) it reports legit-delivered-% (legitimate
// bytes delivered from a known start, of those sent), legit-lost-B (the
// rest), refused-pkts (legitimate packets refused) and evicted (all
// reasons). Run it with
//
//	go test -run '^$' -bench '^BenchmarkAttackConnectionFlood' -benchtime 1x -timeout 0 .
func BenchmarkAttackConnectionFlood(b *testing.B) {
	const maxConns = 100_000
	timeout := 30 * time.Second
	for _, share := range []float64{0.05, 0.20} {
		got := map[string]atkFigures{}
		keys := atkKeys("flood="+strconv.Itoa(int(share*100))+"%/impl=", "safe", "evict-only", "refuse-only", "upstream")
		for _, key := range keys {
			impl := key[strings.LastIndexByte(key, '=')+1:]
			b.Run(key, func(b *testing.B) {
				cfg := flConfig{packets: 4_000_000, share: share, concurrent: 20_000, step: 20 * time.Microsecond, seed: 1}
				var heap atkHeap
				var delivered, sent, refused, evicted int64
				for range b.N {
					b.StopTimer()
					var feeder kitFeed
					var finish func() (int64, int64)
					var flush func(now time.Time)
					switch impl {
					case "safe", "evict-only", "refuse-only":
						f := newSharedAtkFactory(false)
						pool, err := NewSafeStreamPoolWithOptions(f, SafeStreamPoolOptions{MaxConnections: maxConns, RefuseAtLimit: impl == "refuse-only"})
						require.NoError(b, err)
						opts := SafeAssemblerOptions{DisableBackgroundFlush: true, ConnectionTimeout: timeout}
						if impl != "safe" {
							opts.EmergencyTimeout = timeout
						}
						a, err := NewSafeAssembler(pool, opts)
						require.NoError(b, err)
						feeder = kitFeedSafe(a)
						finish = func() (int64, int64) {
							a.Close()
							pool.Close()
							ps := pool.Stats()
							return f.bytes, ps.EvictedUnanswered + ps.EvictedIdle + ps.EmergencyTimeouts
						}
					case "upstream":
						f := &flUpFactory{}
						a := upstream.NewAssembler(upstream.NewStreamPool(f))
						feeder = kitFeedUp(a)
						flush = func(now time.Time) { a.FlushCloseOlderThan(now.Add(-timeout)) }
						finish = func() (int64, int64) {
							a.FlushAll()
							return f.legitBytes, 0
						}
					}
					heap.start()
					t0 := time.Unix(1_700_000_000, 0)
					lastFlush := t0
					b.StartTimer()
					tr := flRun(cfg, feeder, func(i int) {
						now := t0.Add(time.Duration(i) * cfg.step)
						if flush != nil && now.Sub(lastFlush) >= time.Second {
							flush(now)
							lastFlush = now
						}
						heap.tick(b, i%(64*4096) == 0)
					})
					b.StopTimer()
					heap.live()
					delivered, evicted = finish()
					sent, refused = tr.legitBytes(), int64(tr.refused)
					b.StartTimer()
				}
				atkReport(b, got, key, &heap, int64(cfg.packets))
				b.ReportMetric(100*float64(delivered)/float64(sent), "legit-delivered-%")
				b.ReportMetric(float64(sent-delivered), "legit-lost-B")
				b.ReportMetric(float64(refused), "refused-pkts")
				b.ReportMetric(float64(evicted), "evicted")
				atkCompare(b, got, keys, key)
			})
		}
	}
}

// Property: the slot an eviction frees is kept for the newcomer evicted
// for, so another assembler sharing the pool cannot take it in between
// and leave the newcomer refused after a few evictions: right after the
// eviction the cap is still full, and the newcomer then gets its
// connection with that one eviction and no refusal.
func TestPressureEvictionKeepsTheSlot(t *testing.T) {
	t.Parallel()
	r := newFlRig(t, SafeStreamPoolOptions{MaxConnections: 2}, SafeAssemblerOptions{})
	r.send(t, 0, false, atkSYN, 0, flAt(0))
	r.send(t, 1, false, atkSYN, 0, flAt(0))
	tab := &r.pool.t
	require.EqualValues(t, 2, tab.reserved.Load())

	r.a.mu.Lock()
	require.True(t, r.a.eng.evictOne(0))
	require.True(t, r.a.eng.slot, "the evicting engine holds the freed slot")
	require.EqualValues(t, 2, tab.reserved.Load(), "the freed slot stays reserved")
	require.False(t, tab.reserve(), "no other newcomer can take the slot")
	r.a.mu.Unlock()

	r.send(t, 2, false, atkSYN, 0, flAt(1)) // takes the slot kept
	require.False(t, r.a.eng.slot)
	require.EqualValues(t, 1, r.a.Stats().EvictedUnanswered)
	r.send(t, 3, false, atkSYN, 0, flAt(2)) // evicts one, gets its slot
	require.EqualValues(t, 2, r.a.Stats().EvictedUnanswered)
	require.Zero(t, r.pool.Stats().ConnectionsRefused)
	require.EqualValues(t, 2, tab.reserved.Load())
	r.close(t)
	require.Zero(t, tab.reserved.Load(), "every slot given back at Close")
}
