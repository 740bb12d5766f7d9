package reassembly

// Concurrency tests, meant for -race: the creation race, many assemblers
// sharing a pool under concurrent flushes, stats and Close, and the limits
// read from Stats while traffic runs.

import (
	"errors"
	"math/rand"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Property (creation race): when both directions of a new connection reach
// two different assemblers sharing a pool at the same instant — forced by
// holding StreamFactory.New on a barrier until the other direction has had
// time to reach the pool — New runs exactly once for the connection, both
// packets reach that one Stream (one Accept per direction, each with the
// right direction), nothing panics, and the Stream is completed exactly
// once at the end. Checked for SafeAssemblers sharing a SafeStreamPool and
// for drop-in Assemblers sharing a StreamPool, with SYNs and with
// mid-stream data.
func TestRaceCreationBothDirections(t *testing.T) {
	kitNoLeaks(t)
	for _, face := range []string{"SafeAssembler", "Assembler"} {
		t.Run(face, func(t *testing.T) {
			f := newKitFactory()
			var feed [2]kitFeed
			var finish func()
			if face == "SafeAssembler" {
				pool := NewSafeStreamPool(f, 0)
				a1 := newKitAssembler(t, pool, SafeAssemblerOptions{})
				a2 := newKitAssembler(t, pool, SafeAssemblerOptions{})
				feed[0], feed[1] = kitFeedSafe(a1), kitFeedSafe(a2)
				finish = func() {
					require.NoError(t, a1.Close())
					require.NoError(t, a2.Close())
				}
			} else {
				pool := NewStreamPool(f)
				d1, d2 := NewAssembler(pool), NewAssembler(pool)
				feed[0], feed[1] = kitFeedDropIn(d1), kitFeedDropIn(d2)
				finish = func() { d2.FlushAll() }
			}

			const rounds = 30
			for i := range rounds {
				c := kitConnN(i + 1)
				entered := make(chan struct{}, 2)
				barrier := make(chan struct{})
				f.setGate(entered, barrier)
				start := make(chan struct{})
				var errs [2]error
				var wg sync.WaitGroup
				for side := range 2 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						fromServer := side == 1
						var tcp *layers.TCP
						switch {
						case i%2 == 1:
							tcp = c.seg(fromServer, c.seqAt(fromServer, 0), "A", []byte("data"))
						case fromServer:
							tcp = c.seg(true, c.seqAt(true, -1), "SA", nil)
						default:
							tcp = c.seg(false, c.seqAt(false, -1), "S", nil)
						}
						<-start
						errs[side] = feed[side](c.flow(fromServer), tcp, kitAt(kitT0))
					}()
				}
				close(start)
				select {
				case <-entered:
				case <-time.After(10 * time.Second):
					t.Fatalf("round %d: StreamFactory.New never called", i)
				}
				// New is blocked: give the other direction time to reach the
				// pool. A second New call here is the bug.
				select {
				case <-entered:
					t.Errorf("round %d: StreamFactory.New called twice for one connection", i)
				case <-time.After(5 * time.Millisecond):
				}
				f.setGate(nil, nil)
				close(barrier)
				wg.Wait()
				require.NoError(t, errs[0], "round %d", i)
				require.NoError(t, errs[1], "round %d", i)
				require.EqualValues(t, i+1, f.newCalls.Load(), "round %d: New calls", i)
				s := f.stream(c)
				require.NotNil(t, s)
				require.Equal(t, [2]int{1, 1}, s.accepts(), "round %d: both packets reach the one Stream", i)
			}
			finish()
			require.Len(t, f.all(), rounds)
			f.requireSound(t)
		})
	}
}

// raceSplitByWorker generates nConns connections of random traffic and
// splits them so that the two directions of a connection go to different
// workers; each worker's list keeps each direction's order.
func raceSplitByWorker(r *rand.Rand, firstID, nConns, nWorkers int) [][]kitPkt {
	per := make([][][]kitPkt, nWorkers)
	for id := firstID; id < firstID+nConns; id++ {
		var dirs [2][]kitPkt
		for _, p := range kitTraffic(r, id, 1) {
			d := kitBtoi(p.fromServer)
			dirs[d] = append(dirs[d], p)
		}
		for d := range dirs {
			w := (id + d) % nWorkers
			per[w] = append(per[w], dirs[d])
		}
	}
	out := make([][]kitPkt, nWorkers)
	for w := range per {
		out[w] = kitInterleave(r, per[w])
	}
	return out
}

func raceAllowed(err error, allowed ...error) bool {
	if err == nil {
		return true
	}
	for _, a := range allowed {
		if errors.Is(err, a) {
			return true
		}
	}
	return false
}

// Property: many SafeAssemblers × many connections, the two directions of
// each connection fed from different goroutines into different
// assemblers, while other goroutines call FlushWithOptions,
// FlushCloseOlderThan, FlushAll, Stats and PoolStats, the background
// flushers and capture-time sweeps close idle connections, one assembler
// is closed midway, and in the end every assembler and the pool are closed
// at the same time: no race, no panic, no unexpected error, never two live
// Streams for one connection, every Stream completed exactly once, the
// pool empty, no page in use, no goroutine left.
func TestRaceManyAssemblersManyConnections(t *testing.T) {
	kitNoLeaks(t)
	const (
		nWorkers = 4
		nConns   = 48
		maxConns = 40
	)
	f := newKitFactory()
	f.checkContent = true
	pool := NewSafeStreamPool(f, maxConns)
	opts := SafeAssemblerOptions{
		MaxBufferedPagesTotal: 64, MaxBufferedPagesPerConnection: 8,
		ConnectionTimeout: 40 * time.Millisecond, FlushInterval: 10 * time.Millisecond,
		Logger: kitQuietLogger(),
	}
	asms := make([]*SafeAssembler, nWorkers+1) // the last one is closed midway
	for i := range asms {
		asms[i] = newKitAssembler(t, pool, opts)
	}
	lists := raceSplitByWorker(rand.New(rand.NewSource(7)), 1, nConns, nWorkers)
	total := 0
	for _, l := range lists {
		total += len(l)
	}

	var progress atomic.Int64
	var unexpected sync.Map
	stop := make(chan struct{})
	var workers, helpers sync.WaitGroup
	for w := range nWorkers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for k, p := range lists[w] {
				a := asms[w]
				if k%7 == 3 {
					a = asms[nWorkers]
				}
				ts := kitT0.Add(time.Duration(k) * time.Millisecond)
				err := a.AssembleWithContext(p.c.flow(p.fromServer), p.tcp, kitAt(ts))
				if !raceAllowed(err, ErrConnectionClosed, ErrConnectionLimit, ErrAssemblerClosed) {
					unexpected.Store(err.Error(), true)
				}
				progress.Add(1)
			}
		}()
	}
	for h := range 2 {
		helpers.Add(1)
		go func() {
			defer helpers.Done()
			r := rand.New(rand.NewSource(int64(h)))
			kitUntil(stop, 0, func(i int) {
				a := asms[r.Intn(len(asms))]
				at := func() time.Time { return kitT0.Add(time.Duration(r.Intn(600)) * time.Millisecond) }
				switch i % 6 {
				case 0:
					a.FlushWithOptions(FlushOptions{T: at(), TC: at()})
				case 1:
					a.FlushWithOptions(FlushOptions{T: at()})
				case 2:
					a.FlushCloseOlderThan(at())
				case 3:
					_ = a.Stats()
				case 4:
					_ = pool.Stats()
				case 5:
					if r.Intn(20) == 0 {
						a.FlushAll()
					}
				}
				runtime.Gosched()
			})
		}()
	}
	helpers.Add(1)
	go func() {
		defer helpers.Done()
		for progress.Load() < int64(total/2) {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
		_ = asms[nWorkers].Close()
	}()

	workers.Wait()
	close(stop)
	helpers.Wait()

	var closers sync.WaitGroup
	for _, a := range asms {
		closers.Add(1)
		go func() { defer closers.Done(); _ = a.Close() }()
	}
	closers.Add(1)
	go func() { defer closers.Done(); _ = pool.Close() }()
	closers.Wait()

	var errs []string
	unexpected.Range(func(k, _ any) bool { errs = append(errs, k.(string)); return true })
	require.Empty(t, errs, "unexpected errors")
	f.requireSound(t)
	ps := pool.Stats()
	require.Zero(t, ps.ActiveConnections)
	require.EqualValues(t, len(f.all()), ps.TotalCreated)
	require.Zero(t, ps.PageCache.PagesInUse)
	require.Zero(t, ps.PageCache.QueuedBytes)
	require.Positive(t, len(f.all()))
}

// Property: the drop-in face is just as safe: several Assemblers sharing a
// StreamPool, fed concurrently (the directions of a connection through
// different Assemblers) while other goroutines flush, never make two live
// Streams for one connection, and after FlushAll every Stream is completed
// exactly once.
func TestRaceDropInAssemblersSharedPool(t *testing.T) {
	kitNoLeaks(t)
	const nWorkers = 3
	f := newKitFactory()
	f.checkContent = true
	pool := NewStreamPool(f)
	asms := make([]*Assembler, nWorkers)
	for i := range asms {
		asms[i] = NewAssembler(pool)
		asms[i].MaxBufferedPagesPerConnection = 6
		asms[i].MaxBufferedPagesTotal = 30
	}
	lists := raceSplitByWorker(rand.New(rand.NewSource(11)), 1, 24, nWorkers)
	stop := make(chan struct{})
	var workers, helpers sync.WaitGroup
	for w := range nWorkers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for k, p := range lists[w] {
				asms[w].AssembleWithContext(p.c.flow(p.fromServer), p.tcp, kitAt(kitT0.Add(time.Duration(k)*time.Millisecond)))
			}
		}()
	}
	helpers.Add(1)
	go func() {
		defer helpers.Done()
		r := rand.New(rand.NewSource(3))
		kitUntil(stop, 0, func(i int) {
			a := asms[i%nWorkers]
			at := kitT0.Add(time.Duration(r.Intn(300)) * time.Millisecond)
			if i%2 == 0 {
				a.FlushWithOptions(FlushOptions{T: at, TC: at})
			} else {
				a.FlushCloseOlderThan(at)
			}
			runtime.Gosched()
		})
	}()
	workers.Wait()
	close(stop)
	helpers.Wait()
	asms[0].FlushAll()
	require.Zero(t, asms[1].FlushAll(), "FlushAll closed every connection of the pool")
	f.requireSound(t)
}

// raceMax raises m to v.
func raceMax(m *atomic.Int64, v int64) {
	for {
		cur := m.Load()
		if v <= cur || m.CompareAndSwap(cur, v) {
			return
		}
	}
}

// Property (bounded memory): while several assemblers sharing a pool run
// out-of-order traffic on more connections than the cap allows, Stats read
// concurrently from other goroutines never show more than maxConnections
// live connections nor more than MaxBufferedPagesTotal pages in use, and
// PagesPeak stays within MaxBufferedPagesTotal; the limits are really hit
// (connections refused, skips forced), every forced skip reaches a Stream
// as a Skip, the Streams' skips add up to the assemblers' Gaps, and the
// assemblers' Stats taken together conserve bytes.
func TestRaceLimitsNeverExceeded(t *testing.T) {
	kitNoLeaks(t)
	const (
		nWorkers = 4
		maxConns = 5
		batch    = 3 // connections a worker opens at once; two workers exceed the cap
		maxPages = 12
		perConn  = 8
		rounds   = 25
		segs     = 8
		segLen   = 1000 // one page each
	)
	f := newKitFactory()
	f.checkContent = true
	// Refusal keeps each worker's connections its own; eviction across
	// assemblers is raced by TestRaceManyAssemblersManyConnections.
	pool, err := NewSafeStreamPoolWithOptions(f, SafeStreamPoolOptions{MaxConnections: maxConns, RefuseAtLimit: true})
	require.NoError(t, err)
	opts := SafeAssemblerOptions{
		MaxBufferedPagesTotal: maxPages, MaxBufferedPagesPerConnection: perConn, Logger: kitQuietLogger(),
	}
	asms := make([]*SafeAssembler, nWorkers)
	for i := range asms {
		asms[i] = newKitAssembler(t, pool, opts)
	}

	var maxActive, maxInUse atomic.Int64
	stop := make(chan struct{})
	var monitors, workers sync.WaitGroup
	for m := range 2 {
		monitors.Add(1)
		go func() {
			defer monitors.Done()
			kitUntil(stop, m, func(i int) {
				ps := pool.Stats()
				raceMax(&maxActive, ps.ActiveConnections)
				raceMax(&maxInUse, ps.PageCache.PagesInUse)
				st := asms[i%nWorkers].Stats()
				raceMax(&maxInUse, st.PageCache.PagesInUse)
				runtime.Gosched()
			})
		}()
	}

	var unexpected sync.Map
	payload := func(c kitConn, off int) []byte { return []byte(kitPayload(c, 0, off, segLen)) }
	for w := range nWorkers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			a := asms[w]
			send := func(c kitConn, fromServer bool, seq uint32, flags string, p []byte) error {
				return a.AssembleWithContext(c.flow(fromServer), c.seg(fromServer, seq, flags, p), kitAt(kitT0))
			}
			note := func(err error) {
				if err != nil {
					unexpected.Store(err.Error(), true)
				}
			}
			for round := range rounds {
				var open []kitConn
				n := batch
				if w == 0 && round == 0 {
					n = maxConns + 1 // at least one refusal, however the workers are scheduled
				}
				for j := range n {
					c := kitConnN(10000*(w+1) + 10*round + j)
					err := send(c, false, c.seqAt(false, -1), "S", nil)
					if errors.Is(err, ErrConnectionLimit) {
						continue
					}
					note(err)
					note(send(c, true, c.seqAt(true, -1), "SA", nil))
					open = append(open, c)
				}
				for k := segs; k >= 1; k-- { // descending: all out of order
					for _, c := range open {
						note(send(c, false, c.seqAt(false, k*segLen), "A", payload(c, k*segLen)))
					}
				}
				for _, c := range open {
					note(send(c, false, c.seqAt(false, 0), "A", payload(c, 0)))
					note(send(c, false, c.seqAt(false, (segs+1)*segLen), "R", nil))
				}
			}
		}()
	}
	workers.Wait()
	close(stop)
	monitors.Wait()

	var errs []string
	unexpected.Range(func(k, _ any) bool { errs = append(errs, k.(string)); return true })
	require.Empty(t, errs, "unexpected errors")

	ps := pool.Stats()
	var all []AssemblerStats
	for _, a := range asms {
		all = append(all, a.Stats())
	}
	sum := kitSumStats(all) // its PageCache is the pool's, shared by all
	kitRequireConserved(t, sum)
	require.Equal(t, f.firstBytes.Load(), sum.BytesDelivered)
	require.Positive(t, ps.ConnectionsRefused, "the connection cap was never reached: the test proves nothing")
	require.Positive(t, sum.ForcedSkips, "no skip was forced: the test proves nothing")
	require.Equal(t, f.gaps.Load(), sum.Gaps, "skips seen by Streams vs Gaps")
	require.LessOrEqual(t, sum.ForcedSkips, sum.Gaps, "forced skips reported to Streams")

	assert.LessOrEqual(t, maxActive.Load(), int64(maxConns), "ActiveConnections exceeded maxConnections")
	assert.LessOrEqual(t, maxInUse.Load(), int64(maxPages), "PagesInUse exceeded MaxBufferedPagesTotal")
	assert.LessOrEqual(t, ps.PageCache.PagesPeak, int64(maxPages), "PagesPeak exceeded MaxBufferedPagesTotal")

	for _, a := range asms {
		require.NoError(t, a.Close())
	}
	require.Zero(t, pool.Stats().ActiveConnections)
	require.Zero(t, pool.Stats().PageCache.PagesInUse)
	f.requireSound(t)
}
