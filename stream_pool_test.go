package reassembly

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Property: with maxConnections 2 and RefuseAtLimit, a third connection is
// refused with ErrConnectionLimit, never reaches StreamFactory.New (so never has a
// Stream to complete), is counted in ConnectionsRefused and its payload in
// BytesAfterClose; packets of either direction of the established
// connections are unaffected; once one of them closes, a new connection is
// admitted; the counters stay consistent (Active <= Created - Removed).
func TestSafeStreamPoolConnectionCap(t *testing.T) {
	kitNoLeaks(t)
	f := newKitFactory()
	pool, err := NewSafeStreamPoolWithOptions(f, SafeStreamPoolOptions{MaxConnections: 2, RefuseAtLimit: true})
	require.NoError(t, err)
	a := newKitAssembler(t, pool, kitReplayOpts())
	c1, c2, c3 := kitConnN(1), kitConnN(2), kitConnN(3)
	c1.open(t, a, kitT0)
	c2.open(t, a, kitT0)

	require.ErrorIs(t, c3.send(a, false, "S", 0, "", kitT0), ErrConnectionLimit)
	require.ErrorIs(t, c3.send(a, true, "A", 0, "data", kitT0), ErrConnectionLimit)
	require.EqualValues(t, 2, f.newCalls.Load(), "a refused connection never reaches the factory")
	require.Nil(t, f.stream(c3))
	ps := pool.Stats()
	require.EqualValues(t, 2, ps.ActiveConnections)
	require.EqualValues(t, 2, ps.ConnectionsRefused)
	require.EqualValues(t, 2, ps.MaxConnections)
	require.EqualValues(t, 2, ps.TotalCreated)
	st := a.Stats()
	require.EqualValues(t, 4, st.BytesAfterClose)
	require.EqualValues(t, 2, st.Errors)
	kitRequireConserved(t, st)

	// Established connections keep working at the cap, both directions.
	c1.play(t, a, kitT0, ">A 0 hi", "<A 0 ho")
	require.Equal(t, "hi", f.stream(c1).bytes(0))
	require.Equal(t, "ho", f.stream(c1).bytes(1))
	c1.play(t, a, kitT0, ">FA 2", "<FA 2")
	require.EqualValues(t, 1, f.stream(c1).completes.Load())

	// A slot is free again.
	c3.open(t, a, kitT0)
	require.NotNil(t, f.stream(c3))
	ps = pool.Stats()
	require.EqualValues(t, 2, ps.ActiveConnections)
	require.LessOrEqual(t, ps.ActiveConnections, ps.TotalCreated-ps.ConnectionsRemoved)

	require.NoError(t, a.Close())
	ps = pool.Stats()
	require.Zero(t, ps.ActiveConnections)
	require.EqualValues(t, 3, ps.TotalCreated)
	f.requireSound(t)
}

// Property: a StreamFactory that returns nil is reported as ErrNilStream
// (in the fork flavour, where nil declines a connection, as no error) and
// counted in ConnectionsDeclined per packet; the connection does not stay
// in the pool, and the assembler keeps working, for other connections and
// for that one once the factory behaves.
func TestSafeStreamPoolNilStream(t *testing.T) {
	kitNoLeaks(t)
	bad, good := kitConnN(1), kitConnN(2)
	f, pool, a := newKitSafe(t, kitReplayOpts(), func(f *kitFactory) { f.nilFor = bad.key() })

	var want error = ErrNilStream
	if forkFlavour {
		want = nil
	}
	var err error
	require.NotPanics(t, func() { err = bad.send(a, false, "S", 0, "", kitT0) })
	require.Equal(t, want, err)
	require.Equal(t, want, bad.send(a, false, "A", 0, "data", kitT0))
	require.Zero(t, pool.Stats().ActiveConnections)
	require.EqualValues(t, 2, pool.Stats().ConnectionsDeclined, "one per packet of the declined connection")
	require.EqualValues(t, 4, a.Stats().BytesAfterClose, "the declined packet's payload")
	kitRequireConserved(t, a.Stats())

	good.play(t, a, kitT0, ">S", "<SA", ">A 0 ok")
	require.Equal(t, "ok", f.stream(good).bytes(0))

	f.nilFor = ""
	bad.open(t, a, kitT0)
	require.NotNil(t, f.stream(bad))
	kitCloseSound(t, f, a)
}

// Property: PoolStats.TotalCreated counts connections created "each with
// one Stream" (stats.go): a factory that returns nil or panics creates no
// Stream, so it must not count, nor count as removed: ActiveConnections
// stays TotalCreated - ConnectionsRemoved.
func TestSafeStreamPoolTotalCreatedCountsStreams(t *testing.T) {
	kitNoLeaks(t)
	for _, mode := range []string{"nil", "panic"} {
		t.Run(mode, func(t *testing.T) {
			f := newKitFactory()
			c := kitConnN(1)
			if mode == "nil" {
				f.nilFor = c.key()
			} else {
				f.panicIn = "StreamFactory.New"
			}
			pool := NewSafeStreamPool(f, 0)
			a := newKitAssembler(t, pool, kitQuietOpts())
			err := c.send(a, false, "S", 0, "", kitT0)
			if mode == "nil" && forkFlavour {
				require.NoError(t, err, "the fork's factory declines with a nil Stream")
			} else {
				require.Error(t, err)
			}
			require.Empty(t, f.all())
			ps := pool.Stats()
			require.Zero(t, ps.ActiveConnections)
			assert.EqualValues(t, len(f.all()), ps.TotalCreated, "TotalCreated counts a connection that got no Stream")
			assert.Equal(t, ps.TotalCreated-ps.ConnectionsRemoved, ps.ActiveConnections, "the counters do not add up")
			require.NoError(t, a.Close())
		})
	}
}

// Property: SafeStreamPool.Close, with an assembler still open, delivers
// what every connection buffers and completes each remaining Stream exactly
// once; PoolStats reports PoolClosed and no connection; afterwards every
// packet handed in fails with ErrPoolClosed (new connection, data or bare
// ACK of a former one), NewSafeAssembler fails with ErrPoolClosed, Close is
// idempotent, and closing the assembler completes nothing twice.
func TestSafeStreamPoolClose(t *testing.T) {
	kitNoLeaks(t)
	f, pool, a := newKitSafe(t, SafeAssemblerOptions{})
	c1, c2, c3 := kitConnN(1), kitConnN(2), kitConnN(3)
	c1.play(t, a, kitT0, ">S", "<SA", ">A 3 held")
	c2.open(t, a, kitT0)

	require.NoError(t, pool.Close())
	require.Equal(t, kitGot{data: [2]string{"held", ""}, gaps: [2]int{3, 0}, completes: 1}, f.stream(c1).got())
	require.EqualValues(t, 1, f.stream(c2).completes.Load())
	ps := pool.Stats()
	require.True(t, ps.PoolClosed)
	require.Zero(t, ps.ActiveConnections)
	require.Zero(t, ps.PageCache.PagesInUse)

	require.ErrorIs(t, c3.send(a, false, "S", 0, "", kitT0), ErrPoolClosed)
	require.ErrorIs(t, c1.send(a, false, "A", 7, "more", kitT0), ErrPoolClosed)
	assert.ErrorIs(t, c1.send(a, false, "A", 7, "", kitT0), ErrPoolClosed, "a bare ACK after pool Close")
	a2, err := NewSafeAssembler(pool, SafeAssemblerOptions{})
	require.ErrorIs(t, err, ErrPoolClosed)
	require.Nil(t, a2)
	require.NoError(t, pool.Close())
	require.NoError(t, a.Close())
	require.EqualValues(t, 2, f.newCalls.Load())
	f.requireSound(t)
}

// Property: a Stream that panics in ReassemblyComplete while
// SafeStreamPool.Close completes it does not stop Close: the panic is
// recovered and counted in PoolStats.PanicsRecovered, every other Stream
// is still completed once.
func TestSafeStreamPoolClosePanic(t *testing.T) {
	kitNoLeaks(t)
	bad, good := kitConnN(1), kitConnN(2)
	f, pool, a := newKitSafe(t, kitQuietOpts(), func(f *kitFactory) { f.panicIn, f.panicKey = "Stream.ReassemblyComplete", bad.key() })
	bad.open(t, a, kitT0)
	good.open(t, a, kitT0)
	require.NotPanics(t, func() { require.NoError(t, pool.Close()) })
	require.True(t, f.panicked.Load())
	require.EqualValues(t, 1, pool.Stats().PanicsRecovered)
	require.Zero(t, pool.Stats().ActiveConnections)
	kitCloseSound(t, f, a)
}

// Property: conservation survives SafeStreamPool.Close: bytes buffered
// when the pool is closed are delivered or discarded by Close, and the
// assemblers' Stats, taken together, still satisfy BytesProcessed ==
// BytesDelivered + BytesOverlap + BytesOverwritten + BytesDiscarded +
// QueuedBytes, and still match what the Streams received.
func TestSafeStreamPoolCloseKeepsStatsConserved(t *testing.T) {
	kitNoLeaks(t)
	f, pool, a := newKitSafe(t, kitReplayOpts())
	c := kitConnN(1)
	c.play(t, a, kitT0, ">S", "<SA", ">A 5 buffered")
	kitRequireConserved(t, a.Stats())
	require.NoError(t, pool.Close())
	require.Equal(t, "buffered", f.stream(c).bytes(0))
	// What Close delivered is counted in the pool's Closing stats.
	st, cl := a.Stats(), pool.Stats().Closing
	assert.Equal(t, st.BytesProcessed,
		st.BytesDelivered+cl.BytesDelivered+st.BytesOverlap+st.BytesOverwritten+
			st.BytesDiscarded+cl.BytesDiscarded+st.PageCache.QueuedBytes,
		"conservation after pool Close: %+v closing %+v", st, cl)
	assert.Equal(t, f.firstBytes.Load(), st.BytesDelivered+cl.BytesDelivered, "bytes the Streams saw vs BytesDelivered")
	require.NoError(t, a.Close())
}

// Property: the page budget is one per pool: pages buffered through one
// assembler count against another's limit (which then forces a skip in the
// assembler that needs room, and only there, keeping the pool within the
// budget), and pages queued by one assembler but released by another
// return to the shared budget.
func TestSafeStreamPoolSharedPageBudget(t *testing.T) {
	kitNoLeaks(t)
	f, pool, a1 := newKitSafe(t, kitPagesOpts(4, 4))
	a2 := newKitAssembler(t, pool, kitPagesOpts(4, 4))
	x, y := kitConnN(1), kitConnN(2)
	x.open(t, a1, kitT0)
	for _, off := range []int{10, 20, 30} { // three pages, three holes
		require.NoError(t, x.send(a1, false, "A", off, "01234", kitT0))
	}
	require.EqualValues(t, 3, pool.Stats().PageCache.PagesInUse)

	// y needs two pages through a2: the pool has one left.
	y.play(t, a2, kitT0, ">S", "<SA", ">A 10 y", ">A 20 Y")
	require.GreaterOrEqual(t, a2.Stats().ForcedSkips, int64(1), "a2 hits the pool budget filled by a1")
	require.Zero(t, a1.Stats().ForcedSkips)
	require.GreaterOrEqual(t, f.stream(y).gap(0), 10, "y's first hole is skipped")
	require.LessOrEqual(t, pool.Stats().PageCache.PagesInUse, int64(4))

	// a2 fills x's holes: a1's pages go back to the budget.
	require.NoError(t, x.send(a2, false, "A", 0, strings.Repeat("z", 40), kitT0))
	require.NoError(t, y.send(a2, false, "A", 11, "123456789", kitT0))
	ps := pool.Stats()
	require.Zero(t, ps.PageCache.PagesInUse)
	require.Zero(t, ps.PageCache.QueuedBytes)
	require.LessOrEqual(t, ps.PageCache.PagesPeak, int64(4))
	require.Len(t, f.stream(x).bytes(0), 40)

	require.NoError(t, a1.Close())
	require.NoError(t, a2.Close())
	f.requireSound(t)
}
