package reassembly

import (
	"math/rand/v2"
	"testing"

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
	bury := func(i int) {
		if pos := y.find(hashes[i], &keys[i]); pos >= 0 {
			y.forget(pos)
		}
		for j, e := range model {
			if e.key == i {
				model = append(model[:j], model[j+1:]...)
				break
			}
		}
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
				for j, e := range model {
					if e.key == i {
						model = append(model[:j], model[j+1:]...)
						break
					}
				}
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
