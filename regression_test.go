package reassembly

// Regression tests for the upstream faults listed in UPSTREAM-BUGS.md. Each
// TestUpstreamBugNN_* drives the drop-in Assembler (or, where the row is
// about the hardened face, the Safe one) with the row's trigger and asserts
// the correct behaviour. Where it is practical the same trigger also runs
// against upstream's reassembly package, used here only as an oracle, and
// the test asserts that upstream really shows the fault (recovering its
// panic where it panics), so that each test documents the difference.

import (
	"fmt"
	"go/parser"
	"go/token"
	"math"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/gopacket"
	upstream "github.com/google/gopacket/reassembly"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ---------------------------------------------------------------------------
// Row 1: CaptureInfo on a non-first page of a packet larger than a page.

func TestUpstreamBug01_CaptureInfoOnLaterPage(t *testing.T) {
	t1, t2, t3 := time.Second, 2*time.Second, 3*time.Second
	big := trBytes(3000, 1)
	small := trBytes(100, 2)
	segs := []trSeg{
		{seq: 100, flags: "S", at: t1},
		{seq: 201, flags: "A", data: big, at: t2},   // queued: 1900 + 1100 bytes
		{seq: 101, flags: "A", data: small, at: t3}, // fills the hole
	}
	probe := []int{0, 99, 100, 1999, 2000, 2099, 3099}

	t.Run("ours", func(t *testing.T) {
		r := &trRec{}
		var cis map[int]gopacket.CaptureInfo
		r.onSG = func(_ *trStream, sg trSG, d *trDelivery) {
			if len(d.data) != 3100 {
				return
			}
			cis = map[int]gopacket.CaptureInfo{}
			for _, off := range append(probe, 3100, -1) {
				cis[off] = sg.CaptureInfo(off)
			}
		}
		trOurs(t, r, AssemblerOptions{}, trBuild(t, segs))
		require.NotNil(t, cis, "expected one delivery of the 3100 reassembled bytes")
		for _, off := range probe {
			want := trBase.Add(t3)
			if off >= 100 {
				want = trBase.Add(t2) // the 3000-byte packet, on its first or second page
			}
			assert.Equal(t, want, cis[off].Timestamp, "CaptureInfo(%d) must be that of the packet carrying the byte", off)
		}
		assert.Equal(t, 3000+40, cis[2000].CaptureLength, "CaptureInfo(2000) must be the whole CaptureInfo of the big packet")
		assert.Equal(t, gopacket.CaptureInfo{}, cis[3100], "CaptureInfo past the end is the zero value")
		assert.Equal(t, gopacket.CaptureInfo{}, cis[-1], "CaptureInfo(-1) is the zero value")
	})

	t.Run("ours/forced-flush", func(t *testing.T) {
		// The other route: MaxBufferedPagesPerConnection=1 forces the big
		// out-of-order packet out at once, as two pages.
		r := &trRec{}
		var last gopacket.CaptureInfo
		var seen bool
		r.onSG = func(_ *trStream, sg trSG, d *trDelivery) {
			if len(d.data) == 3000 {
				last, seen = sg.CaptureInfo(2999), true
			}
		}
		trOurs(t, r, AssemblerOptions{MaxBufferedPagesPerConnection: 1}, trBuild(t, segs[:2]))
		require.True(t, seen, "expected the forced flush to deliver the 3000 bytes")
		assert.Equal(t, trBase.Add(t2), last.Timestamp, "CaptureInfo(2999) of a forced-out 2-page packet")
	})

	t.Run("upstream panics", func(t *testing.T) {
		r := &trRec{}
		r.onSG = func(_ *trStream, sg trSG, d *trDelivery) {
			if len(d.data) > 0 {
				sg.CaptureInfo(len(d.data) - 1)
			}
		}
		_, pv := trUp(r, upstream.AssemblerOptions{}, trBuild(t, segs))
		require.NotNil(t, pv, "upstream was expected to panic in CaptureInfo on the second page (row 1)")
		assert.Contains(t, fmt.Sprint(pv), "nil pointer")
	})
}

// ---------------------------------------------------------------------------
// Row 2: KeepFrom when the delivery holds the live packet and queued pages.

func TestUpstreamBug02_KeepFromWithQueuedPages(t *testing.T) {
	for _, l := range []int{30, 100} {
		t.Run(fmt.Sprintf("L=%d", l), func(t *testing.T) {
			live := trBytes(100, 1)
			queued := trBytes(l, 2)
			next := trBytes(10, 3)
			segs := []trSeg{
				{seq: 0, flags: "S"},
				{seq: uint32(101), flags: "A", data: queued}, // queued
				{seq: 1, flags: "A", data: live},             // SG = [live(100), page(L)]
				{seq: uint32(101 + l), flags: "A", data: next},
			}
			keepOnce := func(r *trRec) {
				kept := false
				r.onSG = func(_ *trStream, sg trSG, d *trDelivery) {
					if !kept && len(d.data) == 100+l {
						sg.KeepFrom(50)
						kept = true
					}
				}
			}

			r := &trRec{}
			keepOnce(r)
			a := trOurs(t, r, AssemblerOptions{}, trBuild(t, segs))
			st := r.stream(0)
			ds := st.dataDeliveries(0)
			require.Len(t, ds, 2, "two data deliveries expected")
			assert.Equal(t, live+queued, string(ds[0].data), "first delivery")
			wantKept := live[50:] + queued
			n, saved := len(ds[1].data), ds[1].saved
			assert.Equal(t, len(wantKept)+len(next), n, "second delivery: Lengths() first value")
			assert.Equal(t, len(wantKept), saved, "second delivery: Lengths() second value = kept bytes")
			assert.Equal(t, wantKept+next, string(ds[1].data), "second delivery: kept bytes then new bytes")
			assert.Equal(t, live+queued+next, st.data(false), "stream bytes, each once")
			a.FlushAll()
			assert.Equal(t, 0, trPages(t, a), "kept pages released after close")

			ur := &trRec{}
			keepOnce(ur)
			_, pv := trUp(ur, upstream.AssemblerOptions{}, trBuild(t, segs))
			if l < 50 {
				require.NotNil(t, pv, "upstream was expected to panic in convertToPages (row 2)")
				assert.Contains(t, fmt.Sprint(pv), "slice bounds out of range")
				return
			}
			require.Nil(t, pv)
			uds := ur.stream(0).dataDeliveries(0)
			require.Len(t, uds, 2)
			assert.Equal(t, 0, uds[1].saved, "upstream was expected to drop the kept bytes silently (row 2)")
		})
	}
}

// ---------------------------------------------------------------------------
// Rows 3 and 12: creation race, two Assemblers on one pool.

// trBarrier makes StreamFactory.New wait until a second New call arrives,
// or, when timeout is not zero, until timeout: upstream calls New from both
// assemblers, outside any lock, and then collides, so its barrier needs no
// timeout (one would fail the test on a slow machine); ours must call it
// once, so the second assembler waits and the barrier times out.
func trBarrier(timeout time.Duration) func() {
	var arrived atomic.Int32
	release := make(chan struct{})
	var once sync.Once
	return func() {
		if arrived.Add(1) >= 2 {
			once.Do(func() { close(release) })
		}
		var expired <-chan time.Time // nil: waits for the second call only
		if timeout != 0 {
			expired = time.After(timeout)
		}
		select {
		case <-release:
		case <-expired:
		}
	}
}

func TestUpstreamBug03_12_CreationRace(t *testing.T) {
	for _, tc := range []struct {
		name   string
		second trSeg
	}{
		{"03-both-directions", trSeg{rev: true, seq: 5000, ack: 1001, flags: "SA"}},
		{"12-same-direction", trSeg{seq: 1001, flags: "A", data: "hello"}},
	} {
		first := trSeg{seq: 1000, flags: "S"}
		t.Run(tc.name+"/ours", func(t *testing.T) {
			r := &trRec{beforeNew: trBarrier(300 * time.Millisecond)}
			pool := NewStreamPool(r.ours(t))
			a1, a2 := NewAssembler(pool), NewAssembler(pool)
			p1, p2 := trMake(t, first, trBase), trMake(t, tc.second, trBase.Add(time.Millisecond))
			var wg sync.WaitGroup
			panics := make([]any, 2)
			for i, job := range []struct {
				a *Assembler
				p trPacket
			}{{a1, p1}, {a2, p2}} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					panics[i] = trRecover(func() { job.a.AssembleWithContext(job.p.flow, job.p.tcp, job.p.ctx) })
				}()
			}
			wg.Wait()
			assert.Nil(t, panics[0], "assembler 1 panicked")
			assert.Nil(t, panics[1], "assembler 2 panicked")
			assert.Equal(t, 1, r.news, "StreamFactory.New calls for one connection")
			assert.Equal(t, 2, r.stream(0).accepts, "both packets must reach the one Stream")
			assert.Equal(t, 1, trConns(t, a1), "connections in the pool")
			a1.FlushAll()
			trCompleteOnce(t, r)
			assert.Equal(t, 0, trConns(t, a1), "connections after FlushAll")
			if tc.second.data != "" {
				assert.Equal(t, tc.second.data, r.stream(0).data(false), "client bytes")
			}
		})
		t.Run(tc.name+"/upstream", func(t *testing.T) {
			r := &trRec{beforeNew: trBarrier(0)}
			pool := upstream.NewStreamPool(trUpFactory{r})
			a1, a2 := upstream.NewAssembler(pool), upstream.NewAssembler(pool)
			p1, p2 := trMake(t, first, trBase), trMake(t, tc.second, trBase.Add(time.Millisecond))
			var wg sync.WaitGroup
			panics := make([]any, 2)
			wg.Add(1)
			go func() { defer wg.Done(); panics[0] = trFeedUp(a1, []trPacket{p1}) }()
			wg.Add(1)
			go func() { defer wg.Done(); panics[1] = trFeedUp(a2, []trPacket{p2}) }()
			wg.Wait()
			require.Equal(t, 2, r.news, "upstream calls New from both assemblers")
			if !tc.second.rev {
				assert.Nil(t, panics[0])
				assert.Nil(t, panics[1])
				a1.FlushAll()
				orphans := 0
				for i := range 2 {
					if r.stream(i).completes == 0 {
						orphans++
					}
				}
				assert.Equal(t, 1, orphans, "upstream was expected to orphan one Stream (row 12)")
				return
			}
			pv := panics[0]
			if pv == nil {
				pv = panics[1]
			}
			require.NotNil(t, pv, "upstream was expected to panic (row 3)")
			assert.Contains(t, fmt.Sprint(pv), "other dir added in the meantime")
		})
	}
}

// ---------------------------------------------------------------------------
// Row 6: no global flags.

func TestUpstreamBug06_NoGlobalFlags(t *testing.T) {
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	fset := token.NewFileSet()
	checked := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		require.NoError(t, err)
		checked++
		for _, imp := range f.Imports {
			assert.NotEqual(t, `"flag"`, imp.Path.Value, "%s imports package flag: the package must not register global flags (row 6)", name)
		}
	}
	require.NotZero(t, checked, "no package files found")
}

// ---------------------------------------------------------------------------
// Row 7: a flush from another goroutine while packets are assembled.

func TestUpstreamBug07_ConcurrentFlushSameAssembler(t *testing.T) {
	r := &trRec{}
	a := NewAssembler(NewStreamPool(r.ours(t)))
	const conns = 200
	var pkts []trPacket
	for i := range conns {
		port := uint16(20000 + i)
		ts := trBase.Add(time.Duration(i) * time.Millisecond)
		for j, s := range []trSeg{
			{seq: 1000, flags: "S"},
			{seq: 1001, flags: "A", data: "abc"},
			{seq: 1010, flags: "A", data: "queued"}, // a hole for the flushes
			{rev: true, seq: 5000, flags: "SA"},
			{rev: true, seq: 5001, flags: "A", data: "xyz"},
		} {
			s.port = port
			pkts = append(pkts, trMake(t, s, ts.Add(time.Duration(j)*time.Microsecond)))
		}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	var flushPanic any
	wg.Add(1)
	go func() {
		defer wg.Done()
		flushPanic = trRecover(func() {
			kitUntil(done, 0, func(i int) {
				cut := trBase.Add(time.Duration(i%conns) * time.Millisecond)
				a.FlushWithOptions(FlushOptions{T: cut})
				if i%50 == 0 {
					a.FlushCloseOlderThan(cut)
				}
			})
		})
	}()
	trFeed(t, a, pkts)
	close(done)
	wg.Wait()
	require.Nil(t, flushPanic, "the flushing goroutine panicked")
	a.FlushAll()
	trCompleteOnce(t, r)
	assert.Equal(t, 0, trPages(t, a), "pages in use after FlushAll")
}

// ---------------------------------------------------------------------------
// Rows whose trigger is one trace: each case is the trace, what the drop-in
// face must make of it and, where upstream is run, the fault upstream shows.

func TestUpstreamBugTraces(t *testing.T) {
	// Row 10a: a conversation closed by FINs, the last one at 7s.
	v := newTrConv(1000, 5000, time.Millisecond).emit(0, "S", "").emit(1, "S", "").emit(0, "", "hi").fin(0)
	v.at = 7 * time.Second
	closed := v.fin(1).segs
	// Row 23: a full conversation ending with the final ACK.
	finalACK := newTrConv(1000, 5000, time.Millisecond).handshake().send(0, "hello").send(1, "world").
		fin(0).ack(1).fin(1).ack(0).segs
	first, fill := "ABCDEFGHIJKLMNOP", trBytes(23, 4)          // row 25
	a1, b, c := trBytes(10, 1), trBytes(10, 2), trBytes(10, 3) // row 26
	queuedFIN := []trSeg{
		{seq: 100, flags: "S"},
		{seq: 111, flags: "A", data: a1},  // queued
		{seq: 131, flags: "FA", data: c},  // queued: the limit forces [111,121) out
		{seq: 121, flags: "A", data: b},   // in order
		{seq: 141, flags: "A", data: "z"}, // after the FIN
	}
	p27 := trBytes(20, 5)
	keepOpen := func(r *trRec) { r.keepOpen = true }

	cases := []trCase{
		{name: "row08/late RST during flush", segs: []trSeg{
			{seq: 1, flags: "S"},
			{seq: 10, flags: "A", data: "aaaaa"},
			{seq: 20, flags: "RA", data: "bbbbb"},
			{seq: 30, flags: "A", data: "ccccc"}, // after the RST
			{seq: 40, flags: "A", data: "ddddd"},
		}, ours: func(t *testing.T, r *trRec, a *Assembler) {
			assert.Equal(t, 4, trPages(t, a), "four queued pages")
			a.FlushCloseOlderThan(trBase.Add(time.Hour))
			st := r.stream(0)
			assert.Equal(t, "aaaaabbbbb", st.data(false), "bytes up to the RST, none after it")
			assert.Equal(t, 0, trPages(t, a), "pages in use after the flush (a double release would go negative)")
			ds := st.dataDeliveries(0)
			require.NotEmpty(t, ds)
			assert.True(t, ds[len(ds)-1].end, "the last delivery ends the direction")
			trCompleteOnce(t, r)
			// A second flush and new packets must not touch released pages.
			trFeed(t, a, trBuild(t, []trSeg{{seq: 50, flags: "A", data: "eeeee"}}))
			a.FlushAll()
			assert.Equal(t, 0, trPages(t, a), "pages in use at the end")
		}},

		{name: "row09/factory returns nil", segs: closed[:4], rec: func(r *trRec) { r.nilStream = true },
			ours: func(t *testing.T, r *trRec, a *Assembler) {
				assert.NotZero(t, r.news, "the factory was asked")
				assert.Equal(t, 0, trConns(t, a), "no connection may be kept for a vetoed Stream")
				assert.Equal(t, 0, a.FlushAll(), "FlushAll finds no connection")
				assert.Equal(t, 0, trPages(t, a), "pages in use")
			}, upPanic: "nil pointer"},

		{name: "row10a/FIN passes the closing packet's context", segs: closed,
			ours: func(t *testing.T, r *trRec, a *Assembler) {
				st := r.stream(0)
				require.Equal(t, 1, st.completes, "ReassemblyComplete on the second FIN")
				assert.Zero(t, st.nilCtx, "ReassemblyComplete got a nil AssemblerContext")
				assert.Equal(t, trBase.Add(7*time.Second), st.completeCI[0].Timestamp, "the context is the closing packet's")
			}, up: func(t *testing.T, r *trRec, _ *upstream.Assembler) {
				st := r.stream(0)
				require.Equal(t, 1, st.completes)
				assert.Equal(t, 1, st.nilCtx, "upstream was expected to pass a nil context (row 10a)")
			}},
		{name: "row10a/FlushAll passes a context", segs: closed[:3], ours: func(t *testing.T, r *trRec, a *Assembler) {
			a.FlushAll()
			trRequireContext(t, r.stream(0))
		}},
		{name: "row10a/FlushCloseOlderThan passes a context", segs: closed[:3], ours: func(t *testing.T, r *trRec, a *Assembler) {
			a.FlushCloseOlderThan(trBase.Add(time.Hour))
			trRequireContext(t, r.stream(0))
		}},

		{name: "row23/final ACK resurrects nothing", segs: finalACK, ours: func(t *testing.T, r *trRec, a *Assembler) {
			assert.Equal(t, 1, r.news, "Streams created: the final ACK must not make a new one")
			assert.Equal(t, 0, trConns(t, a), "connections left after the close")
			trCompleteOnce(t, r)
			assert.Equal(t, "hello", r.stream(0).data(false))
			assert.Equal(t, "world", r.stream(0).data(true))
		}, up: func(t *testing.T, r *trRec, _ *upstream.Assembler) {
			assert.Equal(t, 2, r.news, "upstream was expected to create a second Stream from the final ACK (row 23)")
		}},
		// ReassemblyComplete returning false keeps the connection; the final
		// ACK reaches it and makes nothing new.
		{name: "row23/final ACK reaches a kept connection", segs: finalACK, rec: keepOpen,
			ours: func(t *testing.T, r *trRec, a *Assembler) {
				assert.Equal(t, 1, r.news, "Streams created")
				assert.Equal(t, 1, r.stream(0).completes, "ReassemblyComplete calls")
				a.FlushCloseOlderThan(trBase.Add(time.Hour))
				assert.Equal(t, 0, trConns(t, a), "connections after the flush")
				trCompleteOnce(t, r)
			}},

		{name: "row25a/retransmit across the wrap", segs: []trSeg{
			{seq: 0xFFFFFFF0, flags: "S"},
			{seq: 0xFFFFFFF1, flags: "A", data: first},                   // seq 0xFFFFFFF1 .. 0x0
			{seq: 0xFFFFFFF9, flags: "A", data: "IJKLMNOP" + "QRSTUVWX"}, // 8 old + 8 new bytes
			{seq: 9, flags: "A", data: "YZ0123"},
		}, ours: trWantData(first + "QRSTUVWX" + "YZ0123"), up: func(t *testing.T, r *trRec, _ *upstream.Assembler) {
			got := r.stream(0).data(false)
			assert.NotEqual(t, first+"QRSTUVWX"+"YZ0123", got, "upstream was expected to duplicate then lose a byte (row 25a)")
			assert.Contains(t, got, "OPPQ", "upstream duplicates a byte (row 25a)")
		}},
		{name: "row25b/queued overwrite across the wrap", segs: []trSeg{
			{seq: 0xFFFFFFE0, flags: "S"},
			{seq: 0xFFFFFFF8, flags: "A", data: "abcdefghijklmnop"}, // queued, [0xFFFFFFF8, 0x8)
			{seq: 1, flags: "A", data: "XY"},                        // inside the queued page, offset 9
			{seq: 0xFFFFFFE1, flags: "A", data: fill},               // 0xFFFFFFE1 .. 0xFFFFFFF7
		}, ours: trWantData(fill + "abcdefghi" + "XY" + "lmnop"), // the newer copy of queued bytes wins
			up: func(t *testing.T, r *trRec, _ *upstream.Assembler) {
				assert.Equal(t, fill+"abcdefgh"+"XY"+"klmnop", r.stream(0).data(false), "upstream was expected to overwrite one byte early (row 25b)")
			}},

		{name: "row27/retransmitted SYN with payload", segs: []trSeg{
			{seq: 100, flags: "S", data: p27[:10]},
			{seq: 100, flags: "S", data: p27}, // retransmitted with more data
			{seq: 121, flags: "A", data: "tail"},
		}, ours: func(t *testing.T, r *trRec, a *Assembler) {
			assert.Equal(t, p27+"tail", r.stream(0).data(false), "no byte lost after a retransmitted SYN")
			ds := r.stream(0).dataDeliveries(0)
			require.NotEmpty(t, ds)
			assert.True(t, ds[0].start, "start on the first delivery")
			for i, d := range ds[1:] {
				assert.False(t, d.start, "start only on the first delivery (delivery %d)", i+1)
				assert.Equal(t, 0, d.skip, "no skip (delivery %d)", i+1)
			}
		}, up: func(t *testing.T, r *trRec, _ *upstream.Assembler) {
			assert.NotEqual(t, p27+"tail", r.stream(0).data(false), "upstream was expected to lose a byte (row 27)")
		}},

		// Row 38: an RST closes both directions.
		{name: "row38.1/RST answering a SYN", segs: []trSeg{
			{seq: 1000, flags: "S"},
			{rev: true, seq: 0, ack: 1001, flags: "RA"}, // port closed: no SYN from the server
		}, ours: trWantResetClosed, up: func(t *testing.T, r *trRec, _ *upstream.Assembler) {
			assert.Equal(t, 0, r.stream(0).completes, "upstream was expected to ignore the RST (row 38.1)")
		}},
		{name: "row38/client aborts its SYN", segs: []trSeg{{seq: 1000, flags: "S"}, {seq: 1001, flags: "R"}}, ours: trWantResetClosed},
		{name: "row38.2/RST after data", segs: []trSeg{
			{seq: 1000, flags: "S"},
			{rev: true, seq: 5000, ack: 1001, flags: "SA"},
			{seq: 1001, ack: 5001, flags: "PA", data: "request"},
			{rev: true, seq: 5001, ack: 1008, flags: "PA", data: "resp"},
			{rev: true, seq: 5010, ack: 1008, flags: "PA", data: "queued"}, // hole [5005,5010)
			{seq: 1008, ack: 5005, flags: "RA"},
		}, ours: func(t *testing.T, r *trRec, a *Assembler) {
			st := r.stream(0)
			assert.Equal(t, 1, st.completes, "the RST completes the connection once")
			assert.Equal(t, "request", st.data(false))
			assert.Equal(t, "respqueued", st.data(true), "the other direction's buffered bytes are delivered first")
			sds := st.dataDeliveries(1)
			require.NotEmpty(t, sds)
			assert.Equal(t, 5, sds[len(sds)-1].skip, "the hole before the buffered bytes is reported")
			assert.Equal(t, 0, trConns(t, a), "connections left")
			assert.Equal(t, 0, trPages(t, a), "pages left")
			// A late data packet may start a new connection (mid-stream
			// pickup), but never reaches the completed Stream.
			trFeed(t, a, trBuild(t, []trSeg{{rev: true, seq: 5016, ack: 1008, flags: "PA", data: "late"}}))
			a.FlushAll()
			assert.Equal(t, "respqueued", st.data(true), "nothing after the RST reaches the completed Stream")
			trCompleteOnce(t, r)
		}, up: func(t *testing.T, r *trRec, _ *upstream.Assembler) {
			assert.Equal(t, 0, r.stream(0).completes, "upstream was expected to close only one half on RST (row 38.2)")
		}},

		// Row 41: bytes of an old connection do not leak into a new one on
		// the same 4-tuple.
		{name: "row41/no leak across tuple reuse", segs: []trSeg{
			{seq: 3000, flags: "A", data: "old-data", at: time.Second}, // mid-stream pickup: waits for a start
		}, ours: func(t *testing.T, r *trRec, a *Assembler) {
			a.FlushCloseOlderThan(trBase.Add(5 * time.Second))
			trFeed(t, a, trBuild(t, []trSeg{
				{seq: 7000, flags: "S", at: 10 * time.Second},
				{seq: 7001, flags: "PA", data: "new-data", at: 10*time.Second + time.Millisecond},
			}))
			a.FlushAll()
			require.Equal(t, 2, r.news, "the new SYN after the close makes a new Stream")
			assert.Equal(t, "old-data", r.stream(0).data(false), "old connection")
			assert.Equal(t, "new-data", r.stream(1).data(false), "new connection: no old bytes")
			trCompleteOnce(t, r)
		}},
	}

	// Row 15: closing a direction releases every queued page.
	for _, end := range []string{"R", "F"} {
		tc := trCase{name: "row15/" + end + " releases all pages", segs: []trSeg{
			{seq: 99, flags: "S"},
			{seq: 1000, flags: "A", data: trBytes(10, 1)},
			{seq: 2000, flags: "A", data: trBytes(10, 2)},
			{seq: 3000, flags: "A", data: trBytes(10, 3)},
			{seq: 100, flags: end + "A"},
		}, ours: func(t *testing.T, r *trRec, a *Assembler) {
			assert.Equal(t, 0, trPages(t, a), "pages in use after the %s closed the direction", end)
			assert.Equal(t, "", r.stream(0).data(false), "queued bytes lie after the %s and are not delivered", end)
			if end == "R" {
				assert.Equal(t, 1, r.stream(0).completes, "the RST completes the connection")
			}
			a.FlushAll()
			assert.Equal(t, 0, trPages(t, a), "pages in use at the end")
			trCompleteOnce(t, r)
		}}
		if end == "R" {
			tc.up = func(t *testing.T, _ *trRec, a *upstream.Assembler) {
				assert.Equal(t, 2, trPages(t, a), "upstream was expected to leak 2 pages on close (row 15)")
			}
		}
		cases = append(cases, tc)
	}

	// Row 21: packets without SYN or payload create nothing.
	for _, flags := range []string{"A", "FA", "F", "R", "RA", "PA"} {
		for _, rev := range []bool{false, true} {
			cases = append(cases, trCase{name: fmt.Sprintf("row21/bare %s rev=%v", flags, rev),
				segs: []trSeg{{rev: rev, seq: 1234, ack: 999, flags: flags}},
				ours: func(t *testing.T, r *trRec, a *Assembler) {
					assert.Zero(t, r.news, "StreamFactory.New calls for a bare %s", flags)
					assert.Equal(t, 0, trConns(t, a), "connections for a bare %s", flags)
				}, up: func(t *testing.T, r *trRec, _ *upstream.Assembler) {
					assert.Equal(t, 1, r.news, "upstream was expected to create a Stream for a bare %s (row 21)", flags)
				}})
		}
	}

	// Row 26: a queued FIN does not advance nextSeq, whichever limit forces
	// the bytes before it out.
	for _, lim := range []struct {
		name string
		opts AssemblerOptions
	}{
		{"PerConnection", AssemblerOptions{MaxBufferedPagesPerConnection: 2}},
		{"Total", AssemblerOptions{MaxBufferedPagesTotal: 2}},
	} {
		cases = append(cases, trCase{name: "row26/queued FIN, limit " + lim.name, segs: queuedFIN, opts: lim.opts,
			ours: func(t *testing.T, r *trRec, a *Assembler) {
				st := r.stream(0)
				assert.Equal(t, a1+b+c, st.data(false), "no byte lost around the queued FIN")
				ds := st.dataDeliveries(0)
				require.Len(t, ds, 2, "deliveries")
				assert.Equal(t, 10, ds[0].skip, "Skip of the forced delivery: [101,111) never arrived")
				assert.Equal(t, a1, string(ds[0].data))
				assert.False(t, ds[0].end)
				assert.Equal(t, 0, ds[1].skip, "Skip of the in-order delivery")
				assert.True(t, ds[1].end, "the FIN ends the direction")
				a.FlushAll()
				assert.Equal(t, 0, trPages(t, a), "pages in use")
			}, up: func(t *testing.T, r *trRec, _ *upstream.Assembler) {
				assert.NotEqual(t, a1+b+c, r.stream(0).data(false), "upstream was expected to lose a byte (row 26)")
			}})
	}

	// Row 28: data after a FIN is not delivered and the half closes. A
	// segment that runs past a known FIN or RST position: the bytes after
	// the FIN are data after the FIN, whichever packet carries them.
	for _, tc := range []struct {
		name     string
		segs     []trSeg
		upstream string // what upstream was expected to deliver after the FIN
	}{
		{"in-order FIN touching queued data", []trSeg{
			{seq: 100, flags: "S"},
			{seq: 111, flags: "A", data: "AFTERFIN!!"}, // queued, lies after the FIN
			{seq: 101, flags: "FA", data: "0123456789"},
			{seq: 121, flags: "A", data: "more"},
		}, "AFTERFIN"},
		{"queued segment straddles a queued FIN", []trSeg{
			{seq: 100, flags: "S"},
			{seq: 111, flags: "FA"},
			{seq: 105, flags: "A", data: "456789AFTERFIN"},
			{seq: 101, flags: "A", data: "0123"},
		}, ""},
		{"in-order segment straddles a queued FIN", []trSeg{
			{seq: 100, flags: "S"},
			{seq: 111, flags: "FA"},
			{seq: 101, flags: "A", data: "0123456789AFTERFIN"},
		}, ""},
		{"longer retransmit of a queued FIN segment", []trSeg{
			{seq: 100, flags: "S"},
			{seq: 105, flags: "FA", data: "456789"},
			{seq: 105, flags: "A", data: "456789AFTERFIN"},
			{seq: 101, flags: "A", data: "0123"},
		}, ""},
		{"queued segment straddles a queued RST", []trSeg{
			{seq: 100, flags: "S"},
			{seq: 111, flags: "R"},
			{seq: 105, flags: "A", data: "456789AFTERRST"},
			{seq: 101, flags: "A", data: "0123"},
		}, ""},
		{"queued bare FIN", []trSeg{
			{seq: 100, flags: "S"},
			{seq: 111, flags: "FA"},                    // queued FIN without data
			{seq: 111, flags: "A", data: "AFTERFIN!!"}, // queued, after the FIN
			{seq: 101, flags: "A", data: "0123456789"}, // fills the hole up to the FIN
		}, ""},
	} {
		c := trCase{name: "row28/" + tc.name, segs: tc.segs, ours: func(t *testing.T, r *trRec, a *Assembler) {
			st := r.stream(0)
			assert.Equal(t, "0123456789", st.data(false), "bytes after the FIN/RST position (seq 111) must not be delivered")
			ds := st.dataDeliveries(0)
			if assert.NotEmpty(t, ds) {
				assert.True(t, ds[len(ds)-1].end, "reaching the FIN/RST position closes the direction")
			}
			assert.Equal(t, 0, trPages(t, a), "pages after the FIN/RST are released")
			a.FlushAll()
			assert.Equal(t, "0123456789", st.data(false), "FlushAll delivers nothing after the FIN/RST")
			assert.Equal(t, 0, trPages(t, a), "pages left")
			trCompleteOnce(t, r)
		}}
		if tc.upstream != "" {
			c.up = func(t *testing.T, r *trRec, _ *upstream.Assembler) {
				assert.Contains(t, r.stream(0).data(false), tc.upstream, "upstream was expected to deliver data after the FIN (row 28)")
			}
		}
		cases = append(cases, c)
	}

	// Row 40: no ReassembledSG after ReassemblyComplete, over two sessions
	// on one 4-tuple.
	sessions := trJoin(newTrConv(1000, 9000, time.Second).handshake().send(0, "GET /1").send(1, "one").close().segs,
		newTrConv(50000, 90000, 2*time.Second).handshake().send(0, "GET /2").send(1, "two").close().segs)
	for _, kept := range []bool{false, true} {
		cases = append(cases, trCase{name: fmt.Sprintf("row40/no data after complete, keepOpen=%v", kept), segs: sessions,
			rec: func(r *trRec) { r.keepOpen = kept },
			ours: func(t *testing.T, r *trRec, a *Assembler) {
				a.FlushCloseOlderThan(trBase.Add(time.Hour))
				a.FlushAll()
				trCompleteOnce(t, r)
				assert.Zero(t, r.sgAfterEnd, "ReassembledSG calls after ReassemblyComplete")
				assert.Equal(t, "GET /1", r.stream(0).data(false))
				assert.Equal(t, "one", r.stream(0).data(true))
				if !kept {
					require.Equal(t, 2, r.news, "the second session gets its own Stream")
					assert.Equal(t, "GET /2", r.stream(1).data(false))
					assert.Equal(t, "two", r.stream(1).data(true))
				}
				assert.Equal(t, 0, trConns(t, a), "connections left")
			}, up: func(t *testing.T, r *trRec, a *upstream.Assembler) {
				a.FlushCloseOlderThan(trBase.Add(time.Hour))
				t.Logf("upstream: %d Streams, %d deliveries after ReassemblyComplete (the report's pcap is not available; logged only)", r.news, r.sgAfterEnd)
			}})
	}
	trRunCases(t, cases)
}

// trRequireContext checks that a flush completed st once, with a context
// carrying a timestamp (row 10a).
func trRequireContext(t *testing.T, st *trStream) {
	t.Helper()
	require.Equal(t, 1, st.completes, "ReassemblyComplete on the flush")
	assert.Zero(t, st.nilCtx, "ReassemblyComplete got a nil AssemblerContext")
	assert.False(t, st.completeCI[0].Timestamp.IsZero(), "the context carries a timestamp")
}

// trWantData checks the client bytes of the first Stream.
func trWantData(want string) func(*testing.T, *trRec, *Assembler) {
	return func(t *testing.T, r *trRec, _ *Assembler) {
		assert.Equal(t, want, r.stream(0).data(false), "bytes across the wrap, each once and at the right offset")
	}
}

// trWantResetClosed checks that an RST completed the only connection and
// left none (row 38).
func trWantResetClosed(t *testing.T, r *trRec, a *Assembler) {
	assert.Equal(t, 1, r.stream(0).completes, "the RST must complete the connection")
	assert.Equal(t, 0, trConns(t, a), "connections left after the RST")
	a.FlushAll()
	trCompleteOnce(t, r)
}

// The drop-in run of row 9 is in the table above; the Safe face reports
// the nil Stream.
func TestUpstreamBug09_SafeReportsNilStream(t *testing.T) {
	_, pool, errs := trSafe(t, &trRec{nilStream: true}, kitReplayOpts(), trBuild(t, []trSeg{{seq: 1000, flags: "S"}}))
	if forkFlavour {
		assert.NoError(t, errs[0], "the fork's factory declines a connection with a nil Stream")
	} else {
		assert.ErrorIs(t, errs[0], ErrNilStream, "SafeAssembler reports the nil Stream")
	}
	assert.EqualValues(t, 1, pool.Stats().ConnectionsDeclined)
	assert.Zero(t, pool.Stats().ActiveConnections, "no connection kept")
}

// ---------------------------------------------------------------------------
// Rows 30, 31, 34, 39: fixed upstream long ago; ours must agree with it.

func trSameAsUpstream(t *testing.T, opts AssemblerOptions, segs []trSeg, flush func(ours *Assembler, up *upstream.Assembler)) (*trRec, *trRec) {
	t.Helper()
	r, ur := &trRec{}, &trRec{}
	a := trOurs(t, r, opts, trBuild(t, segs))
	ua, pv := trUp(ur, upstream.AssemblerOptions{MaxBufferedPagesTotal: opts.MaxBufferedPagesTotal, MaxBufferedPagesPerConnection: opts.MaxBufferedPagesPerConnection}, trBuild(t, segs))
	require.Nil(t, pv)
	if flush != nil {
		flush(a, ua)
	}
	st, ust := r.stream(0), ur.stream(0)
	for dir := range 2 {
		assert.Equal(t, string(ust.got[dir]), string(st.got[dir]), "bytes of direction %d, as upstream", dir)
		ds, uds := st.dataDeliveries(dir), ust.dataDeliveries(dir)
		if assert.Equal(t, len(uds), len(ds), "deliveries of direction %d", dir) {
			for i := range ds {
				assert.Equal(t, uds[i].skip, ds[i].skip, "Skip of delivery %d of direction %d", i, dir)
			}
		}
	}
	return r, ur
}

func TestUpstreamBugsFixedLongAgo(t *testing.T) {
	t.Run("row30/no stale skip", func(t *testing.T) {
		segs := []trSeg{{seq: 0, flags: "S"}, {seq: 10, flags: "A", data: "x", at: time.Second}}
		r, _ := trSameAsUpstream(t, AssemblerOptions{}, segs, func(a *Assembler, ua *upstream.Assembler) {
			more := []trSeg{{seq: 11, flags: "A", data: "y", at: 3 * time.Second}, {seq: 20, flags: "A", data: "z", at: 4 * time.Second}}
			a.FlushWithOptions(FlushOptions{T: trBase.Add(2 * time.Second)})
			ua.FlushWithOptions(upstream.FlushOptions{T: trBase.Add(2 * time.Second)})
			trFeed(t, a, trBuild(t, more))
			require.Nil(t, trFeedUp(ua, trBuild(t, more)))
			a.FlushWithOptions(FlushOptions{T: trBase.Add(5 * time.Second)})
			ua.FlushWithOptions(upstream.FlushOptions{T: trBase.Add(5 * time.Second)})
		})
		ds := r.stream(0).dataDeliveries(0)
		require.Len(t, ds, 3)
		assert.Equal(t, []int{9, 0, 8}, []int{ds[0].skip, ds[1].skip, ds[2].skip}, "Skip per delivery")
	})
	t.Run("row31/page limit counts big packets", func(t *testing.T) {
		big := trBytes(5000, 6) // three pages
		r, _ := trSameAsUpstream(t, AssemblerOptions{MaxBufferedPagesPerConnection: 3}, []trSeg{{seq: 0, flags: "S"}, {seq: 100, flags: "A", data: big}}, nil)
		ds := r.stream(0).dataDeliveries(0)
		require.Len(t, ds, 1, "the 3-page packet reaches the limit of 3 and is forced out at once")
		assert.Equal(t, big, string(ds[0].data))
		assert.Equal(t, 99, ds[0].skip)
	})
	t.Run("row34/overlap on a page boundary", func(t *testing.T) {
		r, _ := trSameAsUpstream(t, AssemblerOptions{}, []trSeg{
			{seq: 0, flags: "S"},
			{seq: 10, flags: "A", data: "abcdefghij"},
			{seq: 10, flags: "A", data: "ABCDE"}, // starts on the queued page's start
			{seq: 15, flags: "A", data: "VWXYZ"}, // ends on the queued page's end
			{seq: 1, flags: "A", data: "123456789"},
		}, nil)
		assert.Equal(t, "123456789ABCDEVWXYZ", r.stream(0).data(false), "queued bytes: the newer copy wins")
	})
	t.Run("row39/flush closes only idle connections", func(t *testing.T) {
		var closed, upClosed int
		r, _ := trSameAsUpstream(t, AssemblerOptions{}, []trSeg{
			{seq: 1000, flags: "S", at: time.Second},
			{rev: true, seq: 5000, ack: 1001, flags: "SA", at: time.Second},
			{seq: 1001, flags: "A", data: "early", at: time.Second},
			{rev: true, seq: 5001, flags: "A", data: "server", at: 10 * time.Second},
		}, func(a *Assembler, ua *upstream.Assembler) {
			_, closed = a.FlushWithOptions(FlushOptions{T: trBase.Add(5 * time.Second), TC: trBase.Add(5 * time.Second)})
			_, upClosed = ua.FlushWithOptions(upstream.FlushOptions{T: trBase.Add(5 * time.Second), TC: trBase.Add(5 * time.Second)})
			late := []trSeg{{seq: 1006, flags: "A", data: "late", at: 11 * time.Second}}
			trFeed(t, a, trBuild(t, late))
			require.Nil(t, trFeedUp(ua, trBuild(t, late)))
		})
		assert.Equal(t, 0, closed, "no direction closed while the connection is active")
		assert.Equal(t, upClosed, closed, "as upstream")
		assert.Equal(t, "earlylate", r.stream(0).data(false), "the idle direction still delivers")
	})
}

// ---------------------------------------------------------------------------
// Row 11: connection recycling with 2 assemblers and a concurrent flusher.
// Upstream is not run: under -race its data race fails the test binary.

func TestUpstreamBug11_ConnectionRecyclingRace(t *testing.T) {
	n := 3000
	if testing.Short() {
		n = 600
	}
	t.Run("spread", func(t *testing.T) {
		r := &trRec{}
		pool := NewStreamPool(r.ours(t))
		eps := make([]trEndpoint, n)
		for i := range eps {
			eps[i] = trEndpoint{port: uint16(10000 + i)}
		}
		trRecycle(t, r, pool, eps)
	})
	t.Run("stale handle after reuse", func(t *testing.T) {
		// Deterministic: connection A completes and is removed; B, in the
		// same shard, is created from A's freed object; then a late packet
		// of A arrives. It must not reach B's Stream, whatever handle to
		// A the assembler kept.
		for _, late := range []trSeg{
			{rev: true, seq: 5001 + 5, ack: 1001 + 5 + 1, flags: "A"},               // the server's final ACK
			{rev: true, seq: 5001, ack: 1001 + 5 + 1, flags: "PA", data: "RETRANS"}, // a retransmission
		} {
			r := &trRec{}
			pool := NewStreamPool(r.ours(t))
			a := NewAssembler(pool)
			mates := trShardMates(&pool.t, 2) // A and B share a shard
			epA, epB := mates[0], mates[1]
			trFeed(t, a, trBuild(t, []trSeg{
				epA.at(trSeg{seq: 1000, flags: "S"}),
				epA.at(trSeg{rev: true, seq: 5000, ack: 1001, flags: "SA"}),
				epA.at(trSeg{seq: 1001, ack: 5001, flags: "PA", data: "hello"}),
				epA.at(trSeg{rev: true, seq: 5001, ack: 1006, flags: "PA", data: "world"}),
				epA.at(trSeg{seq: 1006, ack: 5006, flags: "FA"}),
				epA.at(trSeg{rev: true, seq: 5006, ack: 1007, flags: "FA"}), // A completes
				epB.at(trSeg{seq: 3000, flags: "S"}),                        // B reuses A's object
				epA.at(late),
				epB.at(trSeg{seq: 3001, flags: "PA", data: "bee"}),
			}))
			a.FlushAll()
			require.GreaterOrEqual(t, r.news, 2)
			stA, stB := r.stream(0), r.stream(1)
			assert.Equal(t, "hello", stA.data(false), "A's client bytes (%s)", late.flags)
			assert.Equal(t, "world", stA.data(true), "A's server bytes (%s)", late.flags)
			assert.Zero(t, stB.wrongPackets, "a late packet of A reached B's Stream (%s)", late.flags)
			assert.Equal(t, "bee", stB.data(false), "B's client bytes (%s)", late.flags)
			assert.Equal(t, "", stB.data(true), "B's server bytes (%s)", late.flags)
			trCompleteOnce(t, r)
		}
	})
	t.Run("one shard", func(t *testing.T) {
		// Every connection in one shard of the pool: each connection object
		// freed is the next one reused, while the other assembler may still
		// hold a pointer to it from its lookup.
		r := &trRec{}
		pool := NewStreamPool(r.ours(t))
		eps := trShardMates(&pool.t, n/2)
		require.Len(t, eps, n/2, "endpoints found in one shard")
		trRecycle(t, r, pool, eps)
	})
}

// trMeet is a spinning barrier: the parties leave it within moments of one
// another, so that what they do next really overlaps (a blocking barrier
// would let the first one run ahead while the others are woken). Each party
// counts its own rounds; once one has left for good, nobody waits.
type trMeet struct {
	parties int64
	arrived atomic.Int64
	gone    atomic.Bool
}

func (m *trMeet) wait(round int) {
	target := (int64(round) + 1) * m.parties
	m.arrived.Add(1)
	for m.arrived.Load() < target && !m.gone.Load() {
		runtime.Gosched()
	}
}

func (m *trMeet) leave() { m.gone.Store(true) }

// trRecycle runs many short connections through two assemblers, one per
// direction, while a third assembler flushes the pool in a loop; then it
// checks that every connection had exactly one Stream, that got exactly its
// own packets and bytes, and exactly one ReassemblyComplete.
func trRecycle(t *testing.T, r *trRec, pool *StreamPool, eps []trEndpoint) {
	n := len(eps)
	const step = 10 * time.Millisecond
	open := func(i int) bool { return i%4 == 3 } // left without FIN, for the flusher
	c2sData := func(i int) string { return fmt.Sprintf("c%05d>", i) }
	s2cData := func(i int) string { return fmt.Sprintf("s%05d<", i) }
	const gap = "GAP"

	// c2s[i][:cut[i]] are connection i's client packets before its close,
	// the rest its closing packets; the same for s2c. The two feeders meet
	// before each close, so that one of them completes and frees the
	// connection, and creates the next one from the freed object, while
	// the other may still be looking the old one up.
	var c2s, s2c [][]trPacket
	var ccut, scut []int
	for i, ep := range eps {
		ts := trBase.Add(time.Duration(i) * step)
		mk := func(k int, s trSeg) trPacket {
			s.port, s.host = ep.port, ep.host
			return trMake(t, s, ts.Add(time.Duration(k)*time.Millisecond))
		}
		cd, sd := c2sData(i), s2cData(i)
		cs := []trPacket{mk(0, trSeg{seq: 1000, flags: "S"}), mk(2, trSeg{seq: 1001, ack: 5001, flags: "PA", data: cd})}
		ss := []trPacket{mk(1, trSeg{rev: true, seq: 5000, ack: 1001, flags: "SA"}), mk(3, trSeg{rev: true, seq: 5001, ack: 1001 + uint32(len(cd)), flags: "PA", data: sd})}
		ccut, scut = append(ccut, len(cs)), append(scut, len(ss))
		if open(i) {
			cs = append(cs, mk(4, trSeg{seq: 1001 + uint32(len(cd)) + 5, ack: 5001, flags: "A", data: gap}))
		} else {
			cfin := 1001 + uint32(len(cd))
			sfin := 5001 + uint32(len(sd))
			cs = append(cs, mk(4, trSeg{seq: cfin, ack: sfin, flags: "FA"}), mk(6, trSeg{seq: cfin + 1, ack: sfin + 1, flags: "A"}))
			ss = append(ss, mk(5, trSeg{rev: true, seq: sfin, ack: cfin + 1, flags: "FA"}), mk(7, trSeg{rev: true, seq: sfin + 1, ack: cfin + 1, flags: "A"}))
		}
		c2s, s2c = append(c2s, cs), append(s2c, ss)
	}

	a1, a2, af := NewAssembler(pool), NewAssembler(pool), NewAssembler(pool)
	var progress [2]atomic.Int64
	progress[0].Store(-1)
	progress[1].Store(-1)
	var wg sync.WaitGroup
	panics := make([]any, 3)
	meet := &trMeet{parties: 2}
	feed := func(k int, a *Assembler, per [][]trPacket, cut []int) {
		defer meet.leave()
		panics[k] = trRecover(func() {
			for i, ps := range per {
				for j := 0; j <= len(ps); j++ {
					if j == cut[i] {
						meet.wait(i)
					}
					if j < len(ps) {
						a.AssembleWithContext(ps[j].flow, ps[j].tcp, ps[j].ctx)
					}
				}
				progress[k].Store(int64(i))
			}
		})
	}
	wg.Add(1)
	go func() { defer wg.Done(); feed(0, a1, c2s, ccut) }()
	wg.Add(1)
	go func() { defer wg.Done(); feed(1, a2, s2c, scut) }()
	stop := make(chan struct{})
	var flushes atomic.Int64
	var flushWG sync.WaitGroup
	flushWG.Add(1)
	go func() {
		defer flushWG.Done()
		panics[2] = trRecover(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				// Only connections both feeders are done with are due.
				done := min(progress[0].Load(), progress[1].Load()) - 2
				if done < 0 {
					af.FlushCloseOlderThan(trBase.Add(-time.Hour)) // snapshot and lock only
				} else {
					af.FlushCloseOlderThan(trBase.Add(time.Duration(done) * step))
				}
				flushes.Add(1)
				runtime.Gosched()
			}
		})
	}()
	wg.Wait()
	close(stop)
	flushWG.Wait()
	for k, pv := range panics {
		require.Nil(t, pv, "goroutine %d panicked", k)
	}
	a1.FlushAll()
	t.Logf("%d connections, %d flush loops", n, flushes.Load())

	r.mu.Lock()
	defer r.mu.Unlock()
	assert.Equal(t, n, r.news, "one Stream per connection")
	assert.Zero(t, r.sgAfterEnd, "ReassembledSG calls after ReassemblyComplete")
	client := func(st *trStream) trEndpoint {
		src, dst := st.netFlow.Endpoints()
		ip, port := src.Raw(), st.ports[0]
		if st.flipped() {
			ip, port = dst.Raw(), st.ports[1]
		}
		if ip[2] == 0 {
			return trEndpoint{port: uint16(port)}
		}
		return trEndpoint{host: ip[3], port: uint16(port)}
	}
	byEP := map[trEndpoint]*trStream{}
	for _, st := range r.streams {
		ep := client(st)
		if byEP[ep] != nil {
			t.Errorf("two Streams for client %v", ep)
		}
		byEP[ep] = st
		assert.Equal(t, 1, st.completes, "client %v: ReassemblyComplete calls", ep)
		assert.Zero(t, st.wrongPackets, "client %v: packets of another connection reached this Stream", ep)
	}
	for i, ep := range eps {
		st := byEP[ep]
		if !assert.NotNil(t, st, "connection %d has no Stream", i) {
			continue
		}
		// SYN, SYN-ACK and one data packet each way always arrive; so
		// does the gap, or both FINs. A final ACK arrives only if the
		// connection was not completed and removed before it.
		least, most := 5, 5
		wantC := c2sData(i)
		if open(i) {
			wantC += gap
		} else {
			least, most = 6, 8
		}
		assert.True(t, st.accepts >= least && st.accepts <= most, "connection %d: %d packets reached its Stream, want %d to %d", i, st.accepts, least, most)
		assert.Equal(t, wantC, st.data(false), "connection %d: client bytes", i)
		assert.Equal(t, s2cData(i), st.data(true), "connection %d: server bytes", i)
	}
	assert.Equal(t, 0, trConns(t, a1), "connections left")
	assert.Equal(t, 0, trPages(t, a1), "pages left in use")
}

// ---------------------------------------------------------------------------
// Row 13: page accounting across assemblers that share a pool.

func TestUpstreamBug13_PageAccountingSharedPool(t *testing.T) {
	segs := trBuild(t, []trSeg{
		{seq: 100, flags: "S"},
		{seq: 201, flags: "A", data: trBytes(100, 2)},
		{seq: 301, flags: "A", data: trBytes(100, 3)},
		{seq: 101, flags: "A", data: trBytes(100, 1)}, // via a2
	})
	want := trBytes(100, 1) + trBytes(100, 2) + trBytes(100, 3)

	t.Run("ours", func(t *testing.T) {
		r := &trRec{}
		pool := NewStreamPool(r.ours(t))
		a1, a2 := NewAssembler(pool), NewAssembler(pool)
		trFeed(t, a1, segs[:3])
		assert.Equal(t, 2, trPages(t, a2), "pool-wide pages after a1 queued two")
		trFeed(t, a2, segs[3:])
		assert.Equal(t, want, r.stream(0).data(false), "bytes")
		assert.Equal(t, 0, trPages(t, a1), "pages in use seen by a1")
		assert.Equal(t, 0, trPages(t, a2), "pages in use seen by a2")
	})

	t.Run("ours/safe", func(t *testing.T) {
		r := &trRec{}
		pool := NewSafeStreamPool(r.ours(t), 0)
		opts := SafeAssemblerOptions{DisableBackgroundFlush: true}
		a1 := newKitAssembler(t, pool, opts)
		a2 := newKitAssembler(t, pool, opts)
		for _, p := range segs[:3] {
			require.NoError(t, a1.AssembleWithContext(p.flow, p.tcp, p.ctx))
		}
		assert.EqualValues(t, 2, pool.PageCache().Stats().PagesInUse, "pool-wide pages after a1 queued two")
		require.NoError(t, a2.AssembleWithContext(segs[3].flow, segs[3].tcp, segs[3].ctx))
		assert.EqualValues(t, 0, pool.PageCache().Stats().PagesInUse, "pool-wide pages after a2 filled the hole")
		assert.EqualValues(t, 0, pool.PageCache().Stats().BytesInUse, "pool-wide bytes after a2 filled the hole")
		assert.Equal(t, want, r.stream(0).data(false), "bytes")
		require.NoError(t, a1.Close())
		require.NoError(t, a2.Close())
		require.NoError(t, pool.Close())
		trCompleteOnce(t, r)
	})

	t.Run("ours/total-limit-is-pool-wide", func(t *testing.T) {
		// a1 buffers a page of connection A; a2 buffers one of connection B.
		// With MaxBufferedPagesTotal=2 the pool is then full, so a2 must
		// force B over its hole at once (upstream counts per assembler).
		r := &trRec{}
		pool := NewStreamPool(r.ours(t))
		a1, a2 := NewAssembler(pool), NewAssembler(pool)
		a1.MaxBufferedPagesTotal, a2.MaxBufferedPagesTotal = 2, 2
		trFeed(t, a1, trBuild(t, []trSeg{{seq: 100, flags: "S", port: 1}, {seq: 200, flags: "A", data: "A", port: 1}}))
		trFeed(t, a2, trBuild(t, []trSeg{{seq: 100, flags: "S", port: 2}, {seq: 200, flags: "A", data: "B", port: 2}}))
		assert.Equal(t, "B", r.stream(1).data(false), "connection B forced out by the pool-wide limit")
		assert.Equal(t, "", r.stream(0).data(false), "connection A still buffered")
		assert.Equal(t, 1, trPages(t, a1), "pages in use")
	})

	t.Run("upstream drifts", func(t *testing.T) {
		r := &trRec{}
		pool := upstream.NewStreamPool(trUpFactory{r})
		a1, a2 := upstream.NewAssembler(pool), upstream.NewAssembler(pool)
		require.Nil(t, trFeedUp(a1, segs[:3]))
		require.Nil(t, trFeedUp(a2, segs[3:]))
		assert.Equal(t, 2, trPages(t, a1), "upstream a1 was expected to keep counting 2 pages (row 13)")
		assert.Equal(t, -2, trPages(t, a2), "upstream a2 was expected to count -2 pages (row 13)")
	})
}

// ---------------------------------------------------------------------------
// Rows 17/18: free pages go back to the garbage collector after a spike.

func TestUpstreamBug17_18_IdlePagesReleased(t *testing.T) {
	segs := []trSeg{{seq: 0, flags: "S"}}
	for i := range 1000 {
		segs = append(segs, trSeg{seq: uint32(10 + 2*i), flags: "A", data: "x"})
	}
	r := &trRec{}
	a := trOurs(t, r, AssemblerOptions{}, trBuild(t, segs))
	assert.Equal(t, 1000, trPages(t, a), "pages buffered in the spike")
	a.FlushAll()
	assert.Equal(t, 0, trPages(t, a), "pages in use after FlushAll")
	// Free pages are released by flushes at most once per trimPeriod of
	// the flushes' own time, so that pages freed just now are reused.
	for i := range 3 {
		a.FlushCloseOlderThan(trBase.Add(time.Duration(i) * trimPeriod))
	}
	assert.Equal(t, 0, trDumpInt(t, trFreeRE, a.Dump()), "free pages kept after two idle trim periods")
}

// ---------------------------------------------------------------------------
// Row 19: the connection cache is bounded; the Safe pool caps connections.

func TestUpstreamBug19_ConnectionCacheBounded(t *testing.T) {
	const n = maxFreeConns + 4000 // distinct source ports: past the free list's cap
	r := &trRec{}
	pool := NewStreamPool(r.ours(t))
	a := NewAssembler(pool)
	for i := range n {
		p := trMake(t, trSeg{seq: 1, flags: "S", port: uint16(1024 + i)}, trBase)
		a.AssembleWithContext(p.flow, p.tcp, p.ctx)
	}
	assert.Equal(t, n, trConns(t, a), "live connections")
	assert.Equal(t, n, a.FlushAll(), "FlushAll closes them all")
	assert.Equal(t, 0, trConns(t, a), "connections after FlushAll")
	free := len(a.eng.free.free)
	assert.Equal(t, maxFreeConns, free, "recycled connection objects kept after the spike: the cap")
	// Objects left unused for a whole trim period go back to the GC.
	for i := range 3 {
		a.FlushCloseOlderThan(trBase.Add(time.Duration(i+1) * trimPeriod))
	}
	free = len(a.eng.free.free)
	assert.Zero(t, free, "recycled connection objects kept after two idle trim periods")

	t.Run("safe cap", func(t *testing.T) {
		r := &trRec{}
		pool, err := NewSafeStreamPoolWithOptions(r.ours(t), SafeStreamPoolOptions{MaxConnections: 5, RefuseAtLimit: true})
		require.NoError(t, err)
		sa := newKitAssembler(t, pool, SafeAssemblerOptions{DisableBackgroundFlush: true})
		refused := 0
		for i := range 8 {
			p := trMake(t, trSeg{seq: 1, flags: "S", port: uint16(1024 + i)}, trBase)
			if err := sa.AssembleWithContext(p.flow, p.tcp, p.ctx); err != nil {
				assert.ErrorIs(t, err, ErrConnectionLimit)
				refused++
			}
		}
		assert.Equal(t, 3, refused, "connections refused over the cap")
		assert.EqualValues(t, 5, pool.Stats().ActiveConnections, "live connections at the cap")
		require.NoError(t, sa.Close())
		require.NoError(t, pool.Close())
		trCompleteOnce(t, r)
	})
}

// ---------------------------------------------------------------------------
// Row 22: one-byte segments are charged small buffers.

func TestUpstreamBug22_SmallSegmentsChargedSmall(t *testing.T) {
	segments := func(n int) []trPacket {
		segs := []trSeg{{seq: 0, flags: "S"}}
		for i := range n {
			segs = append(segs, trSeg{seq: uint32(2 + 2*i), flags: "A", data: "x"})
		}
		return trBuild(t, segs)
	}
	checkCharge := func(t *testing.T, st PageCacheStats, n int) {
		t.Helper()
		assert.EqualValues(t, n, st.PagesInUse, "each buffered segment counts as a page for MaxBufferedPages*")
		assert.EqualValues(t, n, st.QueuedBytes, "queued payload bytes")
		perChunk := float64(st.BytesInUse) / float64(n)
		t.Logf("%.0f B charged per buffered one-byte segment", perChunk)
		assert.LessOrEqual(t, perChunk, 256.0, "bytes charged per buffered one-byte segment (a 1900-byte page would be ~2000)")
		assert.Greater(t, perChunk, 1.0, "a buffered segment must cost something")
	}

	t.Run("drop-in", func(t *testing.T) {
		// The drop-in face has no limit by default, as upstream.
		const n = 20000
		pkts := segments(n)
		r := &trRec{}
		pool := NewStreamPool(r.ours(t))
		a := NewAssembler(pool)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		trFeed(t, a, pkts)
		runtime.ReadMemStats(&after)
		checkCharge(t, pool.t.budget.Stats(), n)
		assert.Equal(t, n, trPages(t, a), "pages in Dump()")
		allocated := float64(after.TotalAlloc-before.TotalAlloc) / n
		t.Logf("ours: %.0f B allocated per one-byte segment", allocated)
		assert.Less(t, allocated, 1024.0, "bytes allocated per buffered one-byte segment")
		a.FlushAll()
		assert.EqualValues(t, 0, pool.t.budget.Stats().BytesInUse, "bytes charged after FlushAll")

		// Upstream: a whole page per segment.
		ua := upstream.NewAssembler(upstream.NewStreamPool(trUpFactory{&trRec{}}))
		runtime.ReadMemStats(&before)
		require.Nil(t, trFeedUp(ua, pkts))
		runtime.ReadMemStats(&after)
		upAllocated := float64(after.TotalAlloc-before.TotalAlloc) / n
		t.Logf("upstream: %.0f B allocated per one-byte segment", upAllocated)
		assert.Greater(t, upAllocated, 1900.0, "upstream was expected to spend a whole page per segment (row 22)")
	})

	t.Run("safe", func(t *testing.T) {
		const n = 500 // under every default limit of the Safe face
		r := &trRec{}
		pool := NewSafeStreamPool(r.ours(t), 0)
		a := newKitAssembler(t, pool, SafeAssemblerOptions{DisableBackgroundFlush: true})
		for _, p := range segments(n) {
			require.NoError(t, a.AssembleWithContext(p.flow, p.tcp, p.ctx))
		}
		checkCharge(t, pool.PageCache().Stats(), n)
		require.NoError(t, a.Close())
		require.NoError(t, pool.Close())
		assert.EqualValues(t, 0, pool.PageCache().Stats().BytesInUse, "bytes charged after close")
	})
}

// ---------------------------------------------------------------------------
// Row 25: sequence wrap arithmetic.

func TestUpstreamBug25_SequenceWrap(t *testing.T) {
	t.Run("Difference", func(t *testing.T) {
		for _, tc := range []struct {
			s, t Sequence
			want int
		}{
			{0xFFFFFFFF, 0, 1},
			{0, 0xFFFFFFFF, -1},
			{1, 0xFFFFFFF8, -9},
			{0xFFFFFFF8, 1, 9},
			{4, 8, 4},
			{8, 4, -4},
			{7, 7, 0},
			{0xFFFFFFF0, 0x10, 0x20},
			{0x10, 0xFFFFFFF0, -0x20},
			{0, 0x7FFFFFFF, 0x7FFFFFFF},
			{0x7FFFFFFF, 0, -0x7FFFFFFF},
			{0xC0000000, 0x3FFFFFFF, 0x7FFFFFFF},
			{0x80000000, 0x80000005, 5},
		} {
			assert.Equal(t, tc.want, tc.s.Difference(tc.t), "Sequence(%#x).Difference(%#x)", uint32(tc.s), uint32(tc.t))
			assert.Equal(t, tc.t, tc.s.Add(tc.want), "Sequence(%#x).Add(%d)", uint32(tc.s), tc.want)
		}
		assert.Equal(t, 0, upstream.Sequence(0xFFFFFFFF).Difference(0), "upstream was expected to be off by one (row 25)")
		assert.Equal(t, -8, upstream.Sequence(1).Difference(0xFFFFFFF8), "upstream was expected to be off by one (row 25)")
	})
}

// ---------------------------------------------------------------------------
// Row 43: descending insertion stays logarithmic (structure, not timing).

// trOnlyConn returns the single connection of a pool.
func trOnlyConn(t testing.TB, tb *connTable) *connection {
	t.Helper()
	var found *connection
	for i := range tb.shards {
		sh := &tb.shards[i]
		sh.mu.Lock()
		sh.idx.each(func(c *connection, _ uint64) bool {
			require.Nil(t, found, "more than one connection")
			found = c
			return true
		})
		sh.mu.Unlock()
	}
	require.NotNil(t, found, "no connection")
	return found
}

func TestUpstreamBug43_DescendingInsertIsLogarithmic(t *testing.T) {
	const n = 20000
	segs := []trSeg{{seq: 0, flags: "S"}}
	for i := n; i >= 1; i-- {
		segs = append(segs, trSeg{seq: uint32(10 + 2*i), flags: "A", data: string(rune('a' + (10+2*i)%26))})
	}
	r := &trRec{}
	pool := NewStreamPool(r.ours(t))
	a := NewAssembler(pool)
	trFeed(t, a, trBuild(t, segs))

	c := trOnlyConn(t, &pool.t)
	c.mu.Lock()
	q := &c.halves[0].queue
	count, height := q.count, stHeight(q.root)
	c.mu.Unlock()
	require.Equal(t, n, count, "queued segments")
	bound := int(4 * math.Log2(n))
	t.Logf("treap height %d for %d descending inserts (bound %d)", height, n, bound)
	assert.LessOrEqual(t, height, bound, "queue height after %d descending inserts must be O(log n)", n)

	// Fill every hole, ascending: each fill delivers the byte after it.
	var fills []trSeg
	fills = append(fills, trSeg{seq: 1, flags: "A", data: trSeqText(1, 11)})
	for s := uint32(13); s < 10+2*n; s += 2 {
		fills = append(fills, trSeg{seq: s, flags: "A", data: trSeqText(s, 1)})
	}
	trFeed(t, a, trBuild(t, fills))
	assert.Equal(t, trSeqText(1, 10+2*n), r.stream(0).data(false), "all bytes in order")
	assert.Equal(t, 0, trPages(t, a), "pages left")
}

// trSeqText returns n bytes whose byte at seq s is 'a'+s%26.
func trSeqText(from uint32, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + (int(from)+i)%26)
	}
	return string(b)
}
