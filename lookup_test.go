package reassembly

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Property: packets interleaved one by one over more flows than the flow
// cache holds (so that its sets overflow and entries are replaced) each
// reach their own connection's Stream; and once connections end and their
// objects are reused by new ones, a late packet of an ended flow, whose
// cache entry points at a reused object, opens nothing in a live Stream.
func TestFlowCacheRoutesEveryPacket(t *testing.T) {
	t.Parallel()
	const conns, rounds, size = 3 * recentSets * recentWays / 2, 4, 10
	f, _, a := newKitSafe(t, kitReplayOpts(), func(f *kitFactory) { f.checkContent = true })
	ts := time.Unix(1_700_000_000, 0)
	send := func(c kitConn, fromServer bool, flags string, off int) {
		t.Helper()
		d := kitBtoi(fromServer)
		payload := ""
		if flags == "A" {
			payload = kitPayload(c, d, off, size)
		}
		require.NoError(t, c.send(a, fromServer, flags, off, payload, ts))
	}
	for i := 0; i < conns; i++ {
		kitConnN(i).open(t, a, ts)
	}
	for r := 0; r < rounds; r++ {
		for i := 0; i < conns; i++ {
			send(kitConnN(i), false, "A", r*size)
			send(kitConnN(i), true, "A", r*size)
		}
	}
	for i := 0; i < conns; i++ {
		s := f.stream(kitConnN(i))
		require.NotNil(t, s, "connection %d", i)
		for d := 0; d < 2; d++ {
			require.Equal(t, kitPayload(kitConnN(i), d, 0, rounds*size), s.bytes(d), "connection %d direction %d", i, d)
		}
	}
	// The first half ends; new connections take their objects; then late
	// data of the ended ones arrives.
	for i := 0; i < conns/2; i++ {
		send(kitConnN(i), false, "R", rounds*size)
	}
	for i := conns; i < conns+conns/2; i++ {
		kitConnN(i).open(t, a, ts)
		send(kitConnN(i), false, "A", 0)
	}
	for i := 0; i < conns/2; i++ {
		send(kitConnN(i), true, "A", rounds*size)
	}
	for i := conns; i < conns+conns/2; i++ {
		require.Equal(t, kitPayload(kitConnN(i), 0, 0, size), f.stream(kitConnN(i)).bytes(0), "new connection %d", i)
		require.Empty(t, f.stream(kitConnN(i)).bytes(1), "new connection %d got server bytes", i)
	}
	kitCloseSound(t, f, a)
}

// Property: the flow cache turns itself off once it misses on most
// lookups of a window (packets round robin over more flows than it
// holds), and on again recentOff packets later, when it hits on the
// packets of one connection; every packet reaches its own Stream either
// way.
func TestFlowCacheOffWhileMostlyMissing(t *testing.T) {
	t.Parallel()
	const conns, size = 3 * recentSets * recentWays / 2, 10
	f, _, a := newKitSafe(t, kitReplayOpts(), func(f *kitFactory) { f.checkContent = true })
	ts := time.Unix(1_700_000_000, 0)
	send := func(c kitConn, off int) {
		t.Helper()
		require.NoError(t, c.send(a, false, "A", off, kitPayload(c, 0, off, size), ts))
	}
	for i := 0; i < conns; i++ {
		kitConnN(i).open(t, a, ts)
	}
	for i := 0; i < conns; i++ {
		send(kitConnN(i), 0)
	}
	r := &a.eng.recent
	require.Positive(t, r.off, "a cache missing on most lookups is off")
	one := kitConnN(0)
	n := 1
	for ; r.off > 0 && n <= recentOff+1; n++ {
		send(one, n*size)
	}
	require.Zero(t, r.off, "the cache is off for recentOff packets only")
	for k := 0; k < recentWindow/2; k, n = k+1, n+1 {
		send(one, n*size)
	}
	require.Greater(t, r.hits, r.lookups/2, "the cache is on again, and hits")
	require.Equal(t, kitPayload(one, 0, 0, n*size), f.stream(one).bytes(0))
	for i := 1; i < conns; i++ {
		require.Equal(t, kitPayload(kitConnN(i), 0, 0, size), f.stream(kitConnN(i)).bytes(0), "connection %d", i)
	}
	kitCloseSound(t, f, a)
}
