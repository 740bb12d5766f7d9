package reassembly

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Property: whatever the sequence of burials, reopenings, reaps and trims,
// and however many keys share a hash, the graveyard finds exactly the
// graves a FIFO model holds, minus those the cap pushed out, which are
// always the oldest; at least half the cap survives a burst, the ring
// never outgrows the cap, and a reap forgets precisely the graves retired
// before its cutoff.
func TestGraveyardMatchesModel(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	var y graveyard
	keys := make([]connKey, 3000)
	hashes := make([]uint64, len(keys))
	for i := range keys {
		keys[i] = indexConn(i).key
		hashes[i] = rng.Uint64() | 1
		if i < 300 {
			// Few hashes, shared home slots and tags: collisions on purpose.
			hashes[i] = uint64(i%7+1) | uint64(i%3)<<48
		}
	}
	type entry struct {
		key     int
		retired int64
	}
	var model []entry // live graves, oldest first
	var now int64
	unmodel := func(i int) {
		model = slices.DeleteFunc(model, func(e entry) bool { return e.key == i })
	}
	bury := func(i int) {
		if pos := y.find(hashes[i], &keys[i]); pos >= 0 {
			y.forget(pos)
		}
		unmodel(i)
		now++
		y.bury(grave{key: keys[i], hash: hashes[i], retired: now, next: [2]Sequence{Sequence(i), invalidSequence}})
		model = append(model, entry{i, now})
	}
	inModel := make([]bool, len(keys))
	checks := 0
	check := func() {
		// A full check reads every grave: every 8th operation, and every
		// reap and trim.
		if checks++; checks%8 != 0 {
			return
		}
		clear(inModel)
		first := -1
		for j, e := range model {
			inModel[e.key] = true
			pos := y.find(hashes[e.key], &keys[e.key])
			if pos < 0 {
				if first >= 0 {
					t.Fatalf("grave %d of %d forgotten while an older one stays", j, len(model))
				}
				continue
			}
			if first < 0 {
				first = j
			}
			// Plain comparisons: this loop runs millions of times.
			if g := &y.ring[pos]; g.key != keys[e.key] || g.retired != e.retired || g.next[0] != Sequence(e.key) {
				t.Fatalf("key %d: found %+v, want retired %d", e.key, *g, e.retired)
			}
		}
		if first < 0 {
			first = len(model)
		}
		// What the cap pushed out is gone for good.
		model = model[first:]
		require.Equal(t, len(model), y.live)
		require.LessOrEqual(t, y.live, y.used)
		require.LessOrEqual(t, y.used, len(y.ring))
		require.LessOrEqual(t, len(y.ring), maxGravesPerShard)
		for range 20 {
			if i := rng.IntN(len(keys)); !inModel[i] && y.find(hashes[i], &keys[i]) >= 0 {
				t.Fatalf("key %d found without a grave", i)
			}
		}
	}
	evicted := 0
	for step := range 40_000 {
		// Phases: bursts beyond the cap, then churn on few keys.
		span := len(keys)
		if (step/10_000)%2 == 1 {
			span = 400
		}
		switch r := rng.IntN(100); {
		case step%10_000 == 9_999:
			y.reap(0, true)
			model = model[:0]
			checks = -1
			check()
		case r < 70:
			before := len(model)
			bury(rng.IntN(span))
			check()
			if len(model) < before {
				evicted++
				require.GreaterOrEqual(t, len(model), maxGravesPerShard/2, "the cap pushed graves out early")
			}
		case r < 90:
			i := rng.IntN(span)
			if pos := y.find(hashes[i], &keys[i]); pos >= 0 {
				y.forget(pos)
				unmodel(i)
			}
			check()
		case r < 97:
			y.trim()
			checks = -1
			check()
		default:
			checks = -1
			check() // prunes what burials pushed out
			cutoff := now - 1000 - int64(rng.IntN(2000))
			y.reap(cutoff, false)
			for len(model) > 0 && model[0].retired < cutoff {
				model = model[1:]
			}
			require.Equal(t, len(model), y.live, "only a burial may push graves out")
			checks = -1
			check()
			if len(model) > 0 {
				require.GreaterOrEqual(t, model[0].retired, cutoff)
			}
		}
	}
	require.Positive(t, evicted, "the cap was never reached")
}

// Property: a ring emptied by reaps is kept while burials go on between
// trims, and released once a whole trim period passes without one.
func TestGraveyardTrimReleasesQuietRing(t *testing.T) {
	t.Parallel()
	var y graveyard
	k := indexConn(1).key
	for i := range 5 {
		y.bury(grave{key: k, hash: 7, retired: int64(i)})
		y.reap(0, true)
		y.trim()
		require.NotNil(t, y.ring, "round %d: a ring in use was released", i)
	}
	y.trim()
	require.Nil(t, y.ring, "a quiet empty ring was kept")
	require.Nil(t, y.index)
}

// Property: once its ring has grown, the graveyard buries, finds and
// forgets without allocating, also when reopened graves leave most of the
// ring empty.
func TestGraveyardSteadyStateAllocs(t *testing.T) {
	t.Run("reopened", func(t *testing.T) {
		var y graveyard
		k := indexConn(1).key
		n := 0
		reopen := func() {
			n++
			if pos := y.find(7, &k); pos >= 0 {
				y.forget(pos)
			}
			y.bury(grave{key: k, hash: 7, retired: int64(n)})
		}
		reopen()
		// Each run fills the ring once: AllocsPerRun rounds down.
		require.Zero(t, testing.AllocsPerRun(100, func() {
			for range minGraveRing {
				reopen()
			}
		}))
		require.Equal(t, 1, y.live)
		require.Len(t, y.ring, minGraveRing)
	})
	var y graveyard
	keys := make([]connKey, 4*maxGravesPerShard)
	for i := range keys {
		keys[i] = indexConn(i).key
	}
	n := 0
	step := func() {
		i := n % len(keys)
		n++
		h := uint64(i)*0x9e3779b97f4a7c15 | 1
		if pos := y.find(h, &keys[i]); pos >= 0 {
			y.forget(pos)
		}
		y.bury(grave{key: keys[i], hash: h, retired: int64(n)})
	}
	for range 2 * len(keys) {
		step()
	}
	require.Zero(t, testing.AllocsPerRun(10_000, step))
}

// Property: a ring grown by a burst shrinks back to minGraveRing over the
// trims once most of its graves are reaped, and the graves left stay
// findable throughout.
func TestGraveyardTrimShrinksAfterBurst(t *testing.T) {
	t.Parallel()
	var y graveyard
	keys := make([]connKey, 600)
	hash := func(i int) uint64 { return uint64(i)*0x9e3779b97f4a7c15 | 1 }
	for i := range keys {
		keys[i] = indexConn(i).key
		y.bury(grave{key: keys[i], hash: hash(i), retired: int64(i)})
	}
	require.Len(t, y.ring, maxGravesPerShard)
	y.reap(int64(len(keys)-3), false) // the last three stay
	require.Equal(t, 3, y.live)
	for range 10 {
		y.trim()
		for i := len(keys) - 3; i < len(keys); i++ {
			require.GreaterOrEqual(t, y.find(hash(i), &keys[i]), 0, "grave %d lost by a trim", i)
		}
	}
	require.Len(t, y.ring, minGraveRing)
}

// Late copies: the graveyard seen from the assemblers.

// gvConn plays one short connection of ep: handshake, "hello" from the
// client, FIN both ways. It returns the client's data segment for replays.
func gvConn(t *testing.T, a *SafeAssembler, ep trEndpoint, isn uint32, ts time.Time) trPacket {
	t.Helper()
	var data trPacket
	for i, s := range []trSeg{
		{seq: isn, flags: "S"},
		{rev: true, seq: 9000, ack: isn + 1, flags: "SA"},
		{seq: isn + 1, ack: 9001, flags: "A", data: "hello"},
		{seq: isn + 6, ack: 9001, flags: "FA"},
		{rev: true, seq: 9001, ack: isn + 7, flags: "FA"},
	} {
		p := trMake(t, ep.at(s), ts)
		_ = a.AssembleWithContext(p.flow, p.tcp, p.ctx)
		if i == 2 {
			data = p
		}
	}
	return data
}

// gvAssembler is a Safe face over r whose Streams start at their first
// segment, with connections that never time out during a test.
func gvAssembler(t *testing.T, r *trRec) (*SafeStreamPool, *SafeAssembler) {
	t.Helper()
	r.forceStart = true
	opts := kitReplayOpts()
	opts.ConnectionTimeout = time.Hour
	a, pool, _ := trSafe(t, r, opts, nil)
	return pool, a
}

// Property: after a connection completed, a late copy of its data opens no
// new Stream and is counted as dropped; a new SYN on the same 4-tuple, new
// data past the old end, or any packet after graveTTL opens a new one.
func TestGraveDropsLateCopiesAndReopens(t *testing.T) {
	ep := trEndpoint{}
	t0 := trBase
	replay := func(a *SafeAssembler, p trPacket, ts time.Time) error {
		return a.AssembleWithContext(p.flow, p.tcp, &trCtx{Timestamp: ts})
	}

	t.Run("late copy dropped", func(t *testing.T) {
		r := &trRec{}
		pool, a := gvAssembler(t, r)
		data := gvConn(t, a, ep, 1000, t0)
		require.Len(t, r.streams, 1)
		require.Equal(t, 1, r.stream(0).completes)
		assert.EqualValues(t, 1, pool.Stats().RecentlyClosed)
		assert.ErrorIs(t, replay(a, data, t0.Add(time.Second)), ErrConnectionClosed)
		assert.Len(t, r.streams, 1, "a late copy opened a phantom Stream")
		assert.EqualValues(t, 5, a.Stats().BytesAfterClose)
		assert.Equal(t, "hello", r.stream(0).data(false))
	})
	t.Run("late SYN-ACK with data dropped", func(t *testing.T) {
		r := &trRec{}
		_, a := gvAssembler(t, r)
		gvConn(t, a, ep, 1000, t0)
		p := trMake(t, trSeg{rev: true, seq: 9000, ack: 1001, flags: "SA", data: "x"}, t0)
		assert.ErrorIs(t, replay(a, p, t0.Add(time.Second)), ErrConnectionClosed)
		assert.Len(t, r.streams, 1, "a late SYN-ACK opened a phantom Stream")
	})
	t.Run("new data past the old end reopens", func(t *testing.T) {
		r := &trRec{}
		_, a := gvAssembler(t, r)
		gvConn(t, a, ep, 1000, t0)
		// The client's FIN took 1006: new bytes start at 1007.
		p := trMake(t, trSeg{seq: 1007, ack: 9002, flags: "A", data: "more"}, t0)
		require.NoError(t, replay(a, p, t0.Add(time.Second)))
		require.Len(t, r.streams, 2, "new data did not open a new connection")
		assert.Equal(t, "more", r.stream(1).data(false))
	})
	t.Run("new SYN reopens", func(t *testing.T) {
		r := &trRec{}
		_, a := gvAssembler(t, r)
		gvConn(t, a, ep, 1000, t0)
		gvConn(t, a, ep, 5000, t0.Add(time.Second))
		require.Len(t, r.streams, 2)
		assert.Equal(t, "hello", r.stream(1).data(false))
	})
	t.Run("after the TTL", func(t *testing.T) {
		r := &trRec{}
		_, a := gvAssembler(t, r)
		data := gvConn(t, a, ep, 1000, t0)
		require.NoError(t, replay(a, data, t0.Add(graveTTL+time.Second)))
		assert.Len(t, r.streams, 2, "a packet after the TTL must open a new connection")
	})
	t.Run("flush reaps", func(t *testing.T) {
		r := &trRec{}
		pool, a := gvAssembler(t, r)
		gvConn(t, a, ep, 1000, t0)
		a.FlushCloseOlderThan(t0.Add(time.Second))
		assert.Zero(t, pool.Stats().RecentlyClosed, "a flush past the close keeps the grave")
	})
}

// Property: no shard holds more than maxGravesPerShard graves, however many
// connections complete in it (that the oldest go first is
// TestGraveyardMatchesModel's).
func TestGravesCappedPerShard(t *testing.T) {
	r := &trRec{}
	pool, a := gvAssembler(t, r)
	eps := trShardMates(&pool.t, maxGravesPerShard+100)
	first := eps[0].key()
	target := pool.t.shardOf(&first)
	for _, ep := range eps {
		gvConn(t, a, ep, 1000, trBase)
	}
	n := len(eps)
	require.Equal(t, maxGravesPerShard+100, n)
	target.mu.Lock()
	graves, ring := target.graves.live, len(target.graves.ring)
	target.mu.Unlock()
	assert.Equal(t, maxGravesPerShard, graves, "the shard does not hold exactly the cap")
	assert.LessOrEqual(t, ring, maxGravesPerShard)
	assert.EqualValues(t, maxGravesPerShard, pool.Stats().RecentlyClosed)
	assert.Len(t, r.streams, n)
}

// Property: a completed connection leaves only its small grave behind (its
// connection object goes back to the assembler's free list), and reopening the
// same 4-tuple again and again without a flush keeps the shard's grave
// ring at its smallest: the slots the reopened graves leave are reused.
func TestGravesAreSmallAndBounded(t *testing.T) {
	r := &trRec{}
	pool, a := gvAssembler(t, r)
	ep, t0 := trEndpoint{}, trBase
	k := ep.key()
	sh := pool.t.shardOf(&k)

	gvConn(t, a, ep, 1000, t0)
	sh.mu.Lock()
	live := sh.idx.get(pool.t.hash(&k), &k) != nil
	buried := sh.graves.find(pool.t.hash(&k), &k) >= 0
	sh.mu.Unlock()
	free := len(a.eng.free.free)
	assert.False(t, live, "a completed connection stays in the live map")
	assert.True(t, buried, "a completed connection leaves no grave")
	assert.Equal(t, 1, free, "the connection object was not recycled")

	rounds := 3*maxGravesPerShard + 7
	for i := range rounds {
		gvConn(t, a, ep, uint32(5000+10*i), t0.Add(time.Duration(i+1)*time.Millisecond))
	}
	require.Len(t, r.streams, rounds+1, "every new SYN opens a connection")
	sh.mu.Lock()
	ring, graves := len(sh.graves.ring), sh.graves.live
	sh.mu.Unlock()
	assert.Equal(t, 1, graves)
	assert.LessOrEqual(t, ring, minGraveRing)
	assert.EqualValues(t, 1, pool.Stats().RecentlyClosed)
}

// Property: a packet more than graveTTL after the grave is never taken for
// a late copy, however far apart the two timestamps are (no overflow), and
// one within graveTTL that repeats old bytes is.
func TestGraveLateCopyTimes(t *testing.T) {
	old := &layers.TCP{Seq: 100, ACK: true, BaseLayer: layers.BaseLayer{Payload: []byte("x")}}
	early := time.Unix(-1<<40, 0) // clamped to the smallest nanos
	late := time.Unix(1<<40, 0)   // clamped to the largest
	g := grave{retired: nanos(early), next: [2]Sequence{200, 200}}
	assert.False(t, g.lateCopy(true, old, late), "a packet long after the TTL was dropped")
	assert.True(t, g.lateCopy(true, old, early.Add(time.Second)), "a late copy within the TTL opened a connection")
	g.retired = nanos(time.Unix(1_700_000_000, 0))
	assert.False(t, g.lateCopy(true, old, time.Unix(1_700_000_000, 0).Add(graveTTL+time.Second)))
	assert.True(t, g.lateCopy(false, old, time.Unix(1_700_000_000, 0).Add(graveTTL-time.Second)))
}
