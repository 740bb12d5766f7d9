package reassembly

// Tests of the Safe face (SafeAssembler): errors instead of panics,
// exactly-once completion on every path, recovered Stream panics, and byte
// conservation on random traffic. Helpers come from the kit
// (kit_test.go).

import (
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"math/rand"
	"strings"
	"testing"
	"time"
)

// ---------------------------------------------------------------------------
// Malformed input and use after Close

// Property: a nil TCP layer is reported as ErrNilPacket by all three
// Assemble methods (with or without a context), is counted in
// Stats().Errors, creates nothing and does not panic.
func TestSafeAssembleNilPacket(t *testing.T) {
	kitNoLeaks(t)
	f, pool, a := newKitSafe(t, SafeAssemblerOptions{})
	c := kitConnN(1)

	require.ErrorIs(t, a.AssembleWithContext(c.flow(false), nil, kitAt(kitT0)), ErrNilPacket)
	require.ErrorIs(t, a.AssembleWithContext(c.flow(false), nil, nil), ErrNilPacket)
	require.ErrorIs(t, a.Assemble(c.flow(false), nil), ErrNilPacket)
	require.ErrorIs(t, a.AssembleWithTimestamp(c.flow(false), nil, kitT0), ErrNilPacket)

	require.EqualValues(t, 4, a.Stats().Errors)
	require.Zero(t, f.newCalls.Load())
	require.Zero(t, pool.Stats().ActiveConnections)
	require.NoError(t, a.Close())
}

// Property: a nil AssemblerContext works like a zero CaptureInfo: the
// connection is created, its bytes delivered in order, and two FINs
// complete it once.
func TestSafeAssembleNilContext(t *testing.T) {
	kitNoLeaks(t)
	f, _, a := newKitSafe(t, SafeAssemblerOptions{})
	c := kitConnN(1)
	send := func(fromServer bool, flags string, off int, payload string) error {
		seq := c.seqAt(fromServer, off)
		if strings.Contains(flags, "S") {
			seq = c.seqAt(fromServer, -1)
		}
		return a.AssembleWithContext(c.flow(fromServer), c.seg(fromServer, seq, flags, []byte(payload)), nil)
	}
	require.NoError(t, send(false, "S", 0, ""))
	require.NoError(t, send(true, "SA", 0, ""))
	require.NoError(t, send(false, "A", 0, "hello"))
	require.NoError(t, send(true, "A", 0, "world"))
	require.NoError(t, send(false, "FA", 5, ""))
	require.NoError(t, send(true, "FA", 5, ""))

	s := f.stream(c)
	require.NotNil(t, s)
	require.Equal(t, kitGot{data: [2]string{"hello", "world"}, completes: 1}, s.got())
	kitCloseSound(t, f, a)
}

// Property: a TCP layer with no flags and no payload, with or without a
// Flow, and bare FIN/RST/ACK segments of unknown connections, are harmless:
// no error, no Stream, no panic. A zero-length SYN, even with a zero Flow,
// creates exactly one Stream.
func TestSafeAssembleZeroLength(t *testing.T) {
	kitNoLeaks(t)
	f, pool, a := newKitSafe(t, kitReplayOpts())
	c := kitConnN(1)

	for _, tcp := range []*layers.TCP{
		{},
		{BaseLayer: layers.BaseLayer{Payload: []byte{}}},
		{ACK: true},
		{FIN: true},
		{RST: true},
		c.seg(false, 5, "A", nil),
		c.seg(false, 5, "R", nil),
		c.seg(true, 5, "FA", nil),
	} {
		require.NoError(t, a.AssembleWithContext(c.flow(false), tcp, kitAt(kitT0)))
		require.NoError(t, a.AssembleWithContext(gopacket.Flow{}, tcp, kitAt(kitT0)))
	}
	require.Zero(t, f.newCalls.Load(), "segments without SYN or payload must not create connections")
	require.Zero(t, pool.Stats().ActiveConnections)

	require.NoError(t, a.AssembleWithContext(gopacket.Flow{}, &layers.TCP{SYN: true}, nil))
	require.EqualValues(t, 1, f.newCalls.Load())
	require.EqualValues(t, 1, pool.Stats().ActiveConnections)
	st := a.Stats()
	require.Zero(t, st.BytesProcessed)
	kitRequireConserved(t, st)
	kitCloseSound(t, f, a)
}

// Property: sequence numbers wrap at 2^32: a direction whose ISN is just
// below the wrap gets its bytes in order, across the wrap, whatever the
// arrival order.
func TestSafeAssembleSequenceWrap(t *testing.T) {
	kitNoLeaks(t)
	f, _, a := newKitSafe(t, kitReplayOpts())
	c := kitConnN(1).withISNs(0xFFFFFFFA, kitSISN) // byte 5 is the first after the wrap
	c.play(t, a, kitT0,
		">S",
		">A 8 89ab",   // crosses nothing, after the wrap
		">A 4 4567",   // crosses the wrap
		">A 0 0123",   // before the wrap, in order: releases all
		">FA 12 cdef", // FIN after the wrap
		"<SA", "<FA")

	s := f.stream(c)
	require.NotNil(t, s)
	require.Equal(t, kitGot{data: [2]string{"0123456789abcdef", ""}, completes: 1}, s.got())
	f.requireSound(t)
}

// Property: after Close every Assemble method fails with
// ErrAssemblerClosed, flushes do nothing, Stats still answers, Close is
// idempotent and returns nil, and the background flusher goroutine that was
// running before Close is gone after it.
func TestSafeAssemblerUseAfterClose(t *testing.T) {
	ign := kitNoLeaks(t)
	f, _, a := newKitSafe(t, SafeAssemblerOptions{FlushInterval: 5 * time.Millisecond})
	c := kitConnN(1)
	c.open(t, a, kitT0)
	require.Error(t, goleak.Find(ign), "the background flusher should be running before Close")

	require.NoError(t, a.Close())
	require.NoError(t, goleak.Find(ign), "goroutines left after Close")
	require.EqualValues(t, 1, f.stream(c).completes.Load(), "the last assembler's Close completes the Stream")

	require.ErrorIs(t, c.send(a, false, "A", 0, "late", kitT0), ErrAssemblerClosed)
	require.ErrorIs(t, a.Assemble(c.flow(false), c.seg(false, 1, "A", []byte("x"))), ErrAssemblerClosed)
	require.ErrorIs(t, a.AssembleWithTimestamp(c.flow(false), c.seg(false, 1, "S", nil), kitT0), ErrAssemblerClosed)
	require.ErrorIs(t, a.AssembleWithContext(c.flow(false), c.seg(false, 1, "S", nil), nil), ErrAssemblerClosed)
	fl, cl := a.FlushWithOptions(FlushOptions{T: kitT0.Add(time.Hour), TC: kitT0.Add(time.Hour)})
	require.Zero(t, fl+cl)
	fl, cl = a.FlushCloseOlderThan(kitT0.Add(time.Hour))
	require.Zero(t, fl+cl)
	require.Zero(t, a.FlushAll())
	require.NoError(t, a.Close())
	require.NoError(t, a.Close())
	st := a.Stats()
	require.GreaterOrEqual(t, st.Errors, int64(4))
	require.EqualValues(t, 1, f.newCalls.Load(), "nothing is created after Close")
	f.requireSound(t)
}

// ---------------------------------------------------------------------------
// Exactly one ReassemblyComplete, on every path

// Property: every Stream gets exactly one ReassemblyComplete, at the moment
// its path says it is over — FIN both ways, one RST, capture-time timeout,
// wall-clock timeout, FlushWithOptions, FlushCloseOlderThan, FlushAll, the
// last SafeAssembler's Close — and never again afterwards (later Close,
// FlushAll, pool Close).
func TestSafeCompleteExactlyOnce(t *testing.T) {
	kitNoLeaks(t)

	// finish closes everything and checks no second completion happened.
	finish := func(t *testing.T, f *kitFactory, pool *SafeStreamPool, as ...*SafeAssembler) {
		t.Helper()
		for _, a := range as {
			_ = a.FlushAll()
			require.NoError(t, a.Close())
			require.NoError(t, a.Close())
		}
		require.NoError(t, pool.Close())
		require.NoError(t, pool.Close())
		require.Zero(t, pool.Stats().ActiveConnections)
		f.requireSound(t)
	}

	t.Run("FIN both ways", func(t *testing.T) {
		f, pool, a := newKitSafe(t, kitReplayOpts())
		c := kitConnN(1)
		c.play(t, a, kitT0, ">S", "<SA", ">A 0 GET /", "<A 0 200 OK", ">FA 5")
		s := f.stream(c)
		require.Zero(t, s.completes.Load(), "one FIN does not complete")
		require.NoError(t, c.send(a, true, "FA", 6, "", kitT0))
		require.Equal(t, kitGot{data: [2]string{"GET /", "200 OK"}, completes: 1}, s.got())
		require.Zero(t, pool.Stats().ActiveConnections)
		// The final ACK must not resurrect the connection.
		require.NoError(t, c.send(a, false, "A", 6, "", kitT0))
		require.EqualValues(t, 1, f.newCalls.Load())
		finish(t, f, pool, a)
	})

	t.Run("RST closes both directions", func(t *testing.T) {
		f, pool, a := newKitSafe(t, kitReplayOpts())
		c := kitConnN(1)
		c.play(t, a, kitT0, ">S", "<SA", ">A 0 abc", "<A 0 xyz")
		require.NoError(t, c.send(a, true, "A", 10, "later", kitT0)) // buffered after a 7-byte hole
		require.NoError(t, c.send(a, false, "R", 3, "", kitT0))
		s := f.stream(c)
		require.Equal(t, kitGot{data: [2]string{"abc", "xyzlater"}, gaps: [2]int{0, 7}, completes: 1}, s.got(),
			"one RST must complete the connection; the other direction's buffered bytes are flushed")
		require.Zero(t, pool.Stats().ActiveConnections)
		finish(t, f, pool, a)
	})

	t.Run("capture-time timeout", func(t *testing.T) {
		opts := kitReplayOpts()
		opts.ConnectionTimeout = time.Minute
		f, pool, a := newKitSafe(t, opts)
		idle, busy := kitConnN(1), kitConnN(2)
		idle.play(t, a, kitT0, ">S", "<SA", ">A 0 ab")
		require.NoError(t, idle.send(a, false, "A", 5, "zz", kitT0)) // buffered after a hole
		busy.open(t, a, kitT0.Add(30*time.Second))
		require.NoError(t, busy.send(a, false, "A", 0, "1", kitT0.Add(40*time.Second)))
		require.Zero(t, f.stream(idle).completes.Load(), "idle for 40s of capture time < 1m")
		// 61s of capture time later: the sweep (every 15s) closes idle.
		require.NoError(t, busy.send(a, false, "A", 1, "2", kitT0.Add(61*time.Second)))
		require.Equal(t, kitGot{data: [2]string{"abzz", ""}, gaps: [2]int{3, 0}, completes: 1}, f.stream(idle).got(),
			"idle past ConnectionTimeout in capture time: completed, buffered bytes delivered")
		require.Zero(t, f.stream(busy).completes.Load(), "busy saw a packet 0s ago")
		require.EqualValues(t, 2, a.Stats().ConnectionTimeouts, "both directions of idle timed out")
		finish(t, f, pool, a)
	})

	t.Run("wall-clock timeout", func(t *testing.T) {
		f, pool, a := newKitSafe(t, SafeAssemblerOptions{FlushInterval: 20 * time.Millisecond, ConnectionTimeout: 50 * time.Millisecond})
		c := kitConnN(1)
		now := time.Now()
		c.play(t, a, now, ">S", "<SA", ">A 0 ab", ">A 4 cd")
		s := f.stream(c)
		require.Eventually(t, func() bool { return s.completes.Load() > 0 }, 5*time.Second, 5*time.Millisecond,
			"the background flusher closes a connection idle past ConnectionTimeout")
		require.Equal(t, kitGot{data: [2]string{"abcd", ""}, gaps: [2]int{2, 0}, completes: 1}, s.got())
		require.Positive(t, a.Stats().ConnectionTimeouts)
		require.Zero(t, pool.Stats().ActiveConnections)
		finish(t, f, pool, a)
	})

	t.Run("FlushWithOptions", func(t *testing.T) {
		f, pool, a := newKitSafe(t, kitReplayOpts())
		c := kitConnN(1)
		c.open(t, a, kitT0)
		require.NoError(t, c.send(a, false, "A", 0, "ab", kitT0.Add(time.Second)))
		require.NoError(t, c.send(a, false, "A", 10, "zz", kitT0.Add(2*time.Second)))
		require.NoError(t, c.send(a, true, "A", 0, "x", kitT0.Add(3*time.Second)))
		fl, cl := a.FlushWithOptions(FlushOptions{T: kitT0.Add(2500 * time.Millisecond)})
		require.Equal(t, 1, fl)
		require.Zero(t, cl)
		s := f.stream(c)
		require.Equal(t, kitGot{data: [2]string{"abzz", "x"}, gaps: [2]int{8, 0}}, s.got(), "a flush without TC closes nothing")
		fl, cl = a.FlushWithOptions(FlushOptions{T: kitT0.Add(time.Hour), TC: kitT0.Add(time.Hour)})
		require.Zero(t, fl)
		require.Equal(t, 2, cl)
		require.EqualValues(t, 1, s.completes.Load())
		finish(t, f, pool, a)
	})

	t.Run("FlushCloseOlderThan", func(t *testing.T) {
		f, pool, a := newKitSafe(t, kitReplayOpts())
		old, young := kitConnN(1), kitConnN(2)
		old.open(t, a, kitT0)
		young.open(t, a, kitT0.Add(10*time.Second))
		_, cl := a.FlushCloseOlderThan(kitT0.Add(5 * time.Second))
		require.Equal(t, 2, cl)
		require.EqualValues(t, 1, f.stream(old).completes.Load())
		require.Zero(t, f.stream(young).completes.Load())
		require.EqualValues(t, 1, pool.Stats().ActiveConnections)
		finish(t, f, pool, a)
	})

	t.Run("FlushAll", func(t *testing.T) {
		f, pool, a := newKitSafe(t, kitReplayOpts())
		c1, c2 := kitConnN(1), kitConnN(2)
		c1.open(t, a, kitT0)
		c2.open(t, a, kitT0)
		require.NoError(t, c1.send(a, true, "A", 3, "tail", kitT0))
		require.Equal(t, 2, a.FlushAll())
		require.EqualValues(t, 1, f.stream(c1).completes.Load())
		require.EqualValues(t, 1, f.stream(c2).completes.Load())
		require.Equal(t, "tail", f.stream(c1).bytes(1))
		require.Zero(t, pool.Stats().ActiveConnections)
		require.Zero(t, a.Stats().PageCache.QueuedBytes)
		finish(t, f, pool, a)
	})

	t.Run("last SafeAssembler Close", func(t *testing.T) {
		f, pool, a1 := newKitSafe(t, SafeAssemblerOptions{})
		a2 := newKitAssembler(t, pool, SafeAssemblerOptions{})
		x, y := kitConnN(1), kitConnN(2)
		x.play(t, a1, kitT0, ">S", "<SA", ">A 4 held")
		y.open(t, a2, kitT0)
		require.NoError(t, a1.Close())
		require.Zero(t, f.stream(x).completes.Load(), "a2 is still open: a1's Close must not end the pool's connections")
		require.Zero(t, f.stream(y).completes.Load())
		require.NoError(t, x.send(a2, false, "A", 0, "0123", kitT0), "connections live on through the other assembler")
		require.NoError(t, a2.Close())
		require.EqualValues(t, 1, f.stream(x).completes.Load())
		require.EqualValues(t, 1, f.stream(y).completes.Load())
		require.Equal(t, "0123held", f.stream(x).bytes(0))
		require.NoError(t, a1.Close())
		finish(t, f, pool)
	})
}

// Property: capture time and wall-clock time are never compared: with the
// background flusher on and capture timestamps years in the past, a
// connection is not closed while its ConnectionTimeout of wall-clock time
// has not passed, however old its capture timestamps are.
func TestSafeOldCaptureTimesNotComparedWithWallClock(t *testing.T) {
	kitNoLeaks(t)
	f, _, a := newKitSafe(t, SafeAssemblerOptions{FlushInterval: 5 * time.Millisecond, ConnectionTimeout: time.Hour})
	c := kitConnN(1)
	old := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	c.play(t, a, old, ">S", "<SA", ">A 0 data")
	time.Sleep(50 * time.Millisecond) // ten flusher rounds
	require.Zero(t, f.stream(c).completes.Load())
	require.NoError(t, a.Close())
	require.EqualValues(t, 1, f.stream(c).completes.Load())
	f.requireSound(t)
}

// Property: FlushWithOptions and FlushCloseOlderThan are visible in Stats:
// ConnectionsFlush counts the directions a flush pushed over a hole and
// ConnectionsClosed the directions it closed, matching what the calls
// returned.
func TestSafeFlushCountedInStats(t *testing.T) {
	kitNoLeaks(t)
	f, _, a := newKitSafe(t, kitReplayOpts())
	c := kitConnN(1)
	c.play(t, a, kitT0, ">S", "<SA", ">A 10 zz")
	fl, cl := a.FlushWithOptions(FlushOptions{T: kitT0.Add(time.Second)})
	require.Equal(t, 1, fl)
	fl2, cl2 := a.FlushCloseOlderThan(kitT0.Add(time.Second))
	require.Equal(t, 2, cl+cl2)
	st := a.Stats()
	assert.EqualValues(t, fl+fl2, st.ConnectionsFlush, "Stats().ConnectionsFlush")
	assert.EqualValues(t, cl+cl2, st.ConnectionsClosed, "Stats().ConnectionsClosed")
	kitCloseSound(t, f, a)
}

// ---------------------------------------------------------------------------
// Panicking Streams

// Property: a panic in StreamFactory.New, Stream.Accept,
// Stream.ReassembledSG or Stream.ReassemblyComplete never escapes: the call
// returns an error wrapping ErrStreamPanic, Stats().PanicsRecovered counts
// it, the logger reports it, the connection is closed at once (its Stream,
// if any, completed exactly once, and it leaves the pool), and the
// assembler keeps working for other connections.
func TestSafeStreamPanicRecovered(t *testing.T) {
	kitNoLeaks(t)
	for _, where := range []string{"StreamFactory.New", "Stream.Accept", "Stream.ReassembledSG", "Stream.ReassemblyComplete"} {
		t.Run(where, func(t *testing.T) {
			var logs kitLogBuffer
			bad, good := kitConnN(1), kitConnN(2)
			opts := kitReplayOpts()
			opts.Logger = kitLogger(&logs)
			f, pool, a := newKitSafe(t, opts, func(f *kitFactory) { f.panicIn, f.panicKey = where, bad.key() })

			// Drive bad until its callback panics.
			var err error
			for _, line := range []string{">S", "<SA", ">A 0 req", "<A 0 resp", ">FA 3", "<FA 4"} {
				fromServer, flags, off, payload := kitParseLine(t, line)
				var perr error
				require.NotPanics(t, func() { perr = bad.send(a, fromServer, flags, off, string(payload), kitT0) })
				if perr != nil {
					err = perr
					break
				}
			}
			require.True(t, f.panicked.Load(), "the callback was never reached")
			require.ErrorIs(t, err, ErrStreamPanic)
			require.EqualValues(t, 1, a.Stats().PanicsRecovered)
			require.Contains(t, logs.String(), where, "the recovered panic is logged")
			assert.Zero(t, pool.Stats().ActiveConnections, "the panicking connection is closed at once")
			if s := f.stream(bad); s != nil {
				assert.EqualValues(t, 1, s.completes.Load(), "the panicking Stream is completed once, at once")
			} else {
				require.Equal(t, "StreamFactory.New", where)
			}

			// The assembler keeps working for other connections.
			good.play(t, a, kitT0, ">S", "<SA", ">A 0 ping", "<A 0 pong", ">FA 4", "<FA 4")
			gs := f.stream(good)
			require.Equal(t, kitGot{data: [2]string{"ping", "pong"}, completes: 1}, gs.got())

			require.NoError(t, a.Close())
			require.NoError(t, pool.Close())
			f.requireSound(t)
			kitRequireConserved(t, a.Stats())
		})
	}
}

// ---------------------------------------------------------------------------
// Conservation on random traffic

// Property (conservation): on random traffic through one SafeAssembler —
// reordering, duplicates, overlaps, losses, rejected segments, FIN, RST,
// KeepFrom, forced skips at small page limits, capture-time timeouts —
// after every packet
//
//	BytesProcessed == BytesDelivered + BytesOverlap + BytesOverwritten +
//	                  BytesDiscarded + PageCache.QueuedBytes
//
// and the bytes the Streams saw for the first time add up to
// BytesDelivered; the Streams' skips add up to Gaps and GapBytes, forced
// skips are among them; every delivered byte is the right byte for its
// offset; every Stream completes exactly once; after Close nothing is
// queued and no page is in use.
func TestSafeConservationRandomTraffic(t *testing.T) {
	kitNoLeaks(t)
	var total AssemblerStats
	for seed := int64(1); seed <= 24; seed++ {
		r := rand.New(rand.NewSource(seed))
		f := newKitFactory()
		f.rejectWindow1 = true
		f.checkContent = true
		f.keepFrom = func(r *rand.Rand, n int) int {
			if n > 0 && r.Intn(5) == 0 {
				return r.Intn(n)
			}
			return -1
		}
		pool := NewSafeStreamPool(f, 0)
		opts := kitReplayOpts()
		opts.MaxBufferedPagesTotal, opts.MaxBufferedPagesPerConnection = 10, 4
		opts.ConnectionTimeout = time.Hour
		if seed%2 == 0 {
			opts.ConnectionTimeout = 40 * time.Millisecond // packets are 1ms apart in capture time
		}
		a := newKitAssembler(t, pool, opts)

		pkts := kitTraffic(r, 1, 6)
		for i, p := range pkts {
			ts := kitT0.Add(time.Duration(i) * time.Millisecond)
			err := a.AssembleWithContext(p.c.flow(p.fromServer), p.tcp, kitAt(ts))
			if err != nil {
				require.ErrorIs(t, err, ErrConnectionClosed, "seed %d packet %d", seed, i)
			}
			st := a.Stats()
			kitRequireConserved(t, st, "seed %d packet %d", seed, i)
			require.Equal(t, f.firstBytes.Load(), st.BytesDelivered, "seed %d packet %d: bytes seen by Streams", seed, i)
		}
		require.NoError(t, a.Close())
		st := a.Stats()
		kitRequireConserved(t, st, "seed %d, after Close", seed)
		assert.Zero(t, st.PageCache.QueuedBytes, "seed %d: bytes queued after Close", seed)
		assert.Zero(t, st.PageCache.PagesInUse, "seed %d: pages in use after Close", seed)
		require.Equal(t, f.firstBytes.Load(), st.BytesDelivered, "seed %d", seed)
		require.Equal(t, f.deliveries.Load(), st.Deliveries, "seed %d", seed)
		require.Equal(t, f.gaps.Load(), st.Gaps, "seed %d: Gaps vs skips seen", seed)
		require.Equal(t, f.gapBytes.Load(), st.GapBytes, "seed %d: GapBytes vs skips seen", seed)
		require.LessOrEqual(t, st.ForcedGapBytes, st.GapBytes, "seed %d", seed)
		assert.LessOrEqual(t, st.ForcedSkips, st.Gaps+f.unknownSkips.Load(), "seed %d: forced skips not reported to a Stream", seed)
		require.EqualValues(t, len(f.all()), st.StreamsCompleted, "seed %d", seed)
		require.EqualValues(t, len(f.all()), pool.Stats().TotalCreated, "seed %d", seed)
		require.Zero(t, pool.Stats().ActiveConnections, "seed %d", seed)
		f.requireSound(t)

		total = kitSumStats([]AssemblerStats{total, st})
	}
	// The generator really exercises every term of the equation.
	for name, v := range map[string]int64{
		"ForcedSkips": total.ForcedSkips, "BytesOverlap": total.BytesOverlap,
		"BytesOverwritten": total.BytesOverwritten, "BytesRejected": total.BytesRejected,
		"BytesAfterClose": total.BytesAfterClose, "ConnectionTimeouts": total.ConnectionTimeouts,
		"Gaps": total.Gaps,
	} {
		require.Positive(t, v, "random traffic never exercised %s", name)
	}
}

// Property: on the Safe face, the payload of an RST never enters the
// stream — in order, out of order, or filling a hole, whatever the overlap
// policy — and is counted in BytesOnReset; the RST still ends the
// connection, with an end delivery, once its position is reached.
func TestSafeRSTPayloadNeverDelivered(t *testing.T) {
	t.Parallel()
	for _, p := range opAllPolicies() {
		for _, isn := range kitISNs {
			h := newKitRig(t, SafeAssemblerOptions{OverlapPolicy: p})

			// In order.
			c := h.conn(isn)
			c.send("S", 0, nil)
			c.send("", 0, []byte("hello"))
			c.send("R", 5, []byte("INJECTED"))
			s := c.stream()
			require.Equal(t, "hello", string(s.shown[0]))
			require.EqualValues(t, 1, s.completes.Load())
			require.Contains(t, s.sgs[len(s.sgs)-1], `end=true depth=false skip=0 ""`)

			// Out of order: the RST waits for the bytes before it, and its
			// payload is not buffered.
			c = h.conn(isn)
			c.send("S", 0, nil)
			c.send("R", 5, []byte("INJECTED"))
			require.Zero(t, h.a.Stats().PageCache.QueuedBytes)
			c.send("", 0, []byte("hello"))
			s = c.stream()
			require.Equal(t, "hello", string(s.shown[0]))
			require.EqualValues(t, 1, s.completes.Load())

			// An RST whose payload would fill a hole, or overwrite buffered
			// bytes, changes nothing: the bytes after the RST are not
			// delivered either.
			c = h.conn(isn)
			c.send("S", 0, nil)
			c.send("", 10, []byte("world"))
			c.send("R", 0, []byte("0123456789WORLD"))
			s = c.stream()
			require.Equal(t, "", string(s.shown[0]))
			require.EqualValues(t, 1, s.completes.Load())

			st := h.a.Stats()
			require.Equal(t, int64(8+8+15), st.BytesOnReset)
			require.Equal(t, int64(10), st.BytesDelivered)
			kitRequireConserved(t, st)
		}
	}
}
