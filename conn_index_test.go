package reassembly

import (
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func indexConn(i int) *connection {
	return &connection{key: connKey{loPort: uint16(i), hiPort: uint16(i >> 16), loLen: 4, hiLen: 4}}
}

// Property: under any sequence of insertions and deletions the index holds
// exactly the connections a plain map holds, found by get and by entries,
// even when many keys share a hash; its table never fills (lookups end)
// and a trim shrinks it back after a burst.
func TestConnIndexMatchesMap(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	var x connIndex
	model := map[*connection]uint64{}
	conns := make([]*connection, 3000)
	hashes := make([]uint64, len(conns))
	for i := range conns {
		conns[i] = indexConn(i)
		// Few distinct hashes for the first 200: collisions on purpose.
		hashes[i] = rng.Uint64() | 1
		if i < 200 {
			hashes[i] = uint64(i%7) + 1
		}
	}
	check := func() {
		for c, h := range model {
			require.Same(t, c, x.get(h, &c.key))
		}
		seen := 0
		x.each(func(c *connection, h uint64) bool {
			require.Equal(t, model[c], h)
			seen++
			return true
		})
		require.Equal(t, len(model), seen)
		require.Equal(t, len(model), x.live)
		tab := x.tab.Load()
		require.LessOrEqual(t, 4*x.used, 3*len(tab.slots), "the table filled up")
	}
	for step := range 100_000 {
		i := rng.IntN(len(conns))
		// Bursts: grow to most keys, then shrink to few.
		wantIn := (step/20_000)%2 == 0
		c, h := conns[i], hashes[i]
		if _, in := model[c]; in {
			if !wantIn || rng.IntN(4) == 0 {
				x.delete(h, c)
				delete(model, c)
			}
		} else if wantIn || rng.IntN(8) == 0 {
			require.Nil(t, x.get(h, &c.key))
			x.insert(h, c)
			model[c] = h
		}
		if step%5000 == 0 {
			check()
		}
	}
	check()
	for c, h := range model {
		x.delete(h, c)
	}
	x.trim()
	assert.Len(t, x.tab.Load().slots, minIndexSlots, "the table did not shrink after the burst")
}

// Property: a reader without a lock always finds a connection that stays
// in the index, and a candidate it gets, once locked, is either stale
// (marked removed, or of another key) or the key's indexed connection, while a writer inserts, deletes
// and rebuilds concurrently (run with -race).
func TestConnIndexLockFreeReaders(t *testing.T) {
	t.Parallel()
	var (
		mu   sync.Mutex // the shard's lock
		x    connIndex
		stop atomic.Bool
		wg   sync.WaitGroup
	)
	const stable, churn = 64, 512
	hashOf := func(i int) uint64 { return uint64(i+1) * 0x9E3779B97F4A7C15 } // distinct, never 0
	conns := make([]*connection, stable+churn)
	for i := range conns {
		conns[i] = indexConn(i)
	}
	mu.Lock()
	for i := range stable {
		x.insert(hashOf(i), conns[i])
	}
	mu.Unlock()

	var misses, stale, wrong, reads atomic.Int64
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(r), 9))
			for !stop.Load() {
				reads.Add(1)
				i := rng.IntN(stable)
				if c := x.find(hashOf(i)); c != conns[i] {
					misses.Add(1)
				}
				j := stable + rng.IntN(churn)
				if c := x.find(hashOf(j)); c != nil {
					c.mu.Lock()
					if c.removed || c.key != conns[j].key {
						// Deleted since, or its slot reused by another key
						// while the reader looked at it: getConnection
						// makes the same check.
						stale.Add(1)
					} else {
						mu.Lock()
						if x.get(hashOf(j), &c.key) != c {
							wrong.Add(1)
						}
						mu.Unlock()
					}
					c.mu.Unlock()
				}
			}
		}()
	}
	// The readers run before the writer starts, so that they overlap.
	for reads.Load() < 2 {
		runtime.Gosched()
	}
	// Bursts: all churn keys in, then all out and a trim, so that the
	// table is rebuilt several times per burst.
	in := make([]bool, len(conns))
	for n := range 200_000 {
		j := stable + n%churn
		c := conns[j]
		c.mu.Lock()
		mu.Lock()
		if in[j] {
			x.delete(hashOf(j), c)
			c.removed = true
		} else {
			c.removed = false
			x.insert(hashOf(j), c)
		}
		in[j] = !in[j]
		if n%churn == churn-1 {
			x.trim() // after the burst out: shrink, to grow again
		}
		mu.Unlock()
		c.mu.Unlock()
	}
	stop.Store(true)
	wg.Wait()
	assert.Zero(t, misses.Load(), "a connection that stayed in the index was not found")
	assert.Zero(t, wrong.Load(), "a live candidate was not the key's indexed connection")
	t.Logf("stale candidates recognised: %d", stale.Load())
}
