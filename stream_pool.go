package reassembly

import (
	"fmt"
	"hash/maphash"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/google/gopacket/layers"
)

// numShards splits the connection map so that assemblers sharing a pool
// rarely wait for one another. Both directions of a connection hash to the
// same shard because the key is direction-free.
const (
	shardBits = 6
	numShards = 1 << shardBits
)

type shard struct {
	mu  sync.Mutex
	idx connIndex
	// graves remembers the connections completed recently in the shard.
	graves graveyard
	// Counters of the shard's connections, summed by Stats: kept here,
	// under the lock already held, rather than in atomics that every
	// assembler of the pool would write.
	live, created, removed int64
	// press holds the shard's eviction lists (capped pools only).
	press shardPressure
}

// paddedShard keeps each shard on cache lines of its own, so that
// assemblers working in different shards do not slow each other down.
type paddedShard struct {
	shard
	_ [128 - unsafe.Sizeof(shard{})%128]byte
}

// bury records a grave for c, which is completing. The shard must be
// locked.
func (sh *shard) bury(c *connection) {
	g := grave{key: c.key, hash: c.hash, retired: retiredAt(nanos(c.lastSeen()), c.resetEnded)}
	lo, hi := &c.halves[0], &c.halves[1]
	if !c.c2sFromLo {
		lo, hi = hi, lo
	}
	for i, h := range [2]*halfConnection{lo, hi} {
		g.next[i], g.from[i] = h.nextSeq, h.nextSeq
		if h.started() && h.hasOrigin {
			g.from[i] = h.nextSeq.Add(-int(min(h.nextPos-h.origin, graveWindow)))
		}
	}
	if pos := sh.graves.find(c.hash, &c.key); pos >= 0 {
		sh.graves.forget(pos)
	}
	sh.graves.bury(g)
}

// connTable is the connection store behind StreamPool and SafeStreamPool.
type connTable struct {
	shards  [numShards]paddedShard
	seed    maphash.Seed
	factory StreamFactory
	budget  SafePageCache

	maxConns int64 // <= 0: no cap
	closed   atomic.Bool
	refused  atomic.Int64
	declined atomic.Int64 // packets whose Stream the factory declined (nil)
	// reserved counts the live connections against maxConns, only when
	// there is a cap: it is the one counter all assemblers write, once per
	// connection, so it gets cache lines of its own.
	_        [64]byte
	reserved atomic.Int64
	_        [64]byte
	press    tablePressure
	// sole lets the pool's one engine skip the connections' locks.
	sole soleUse
}

func (t *connTable) init(factory StreamFactory, maxConns int) {
	t.factory = factory
	t.maxConns = int64(maxConns)
	t.seed = maphash.MakeSeed()
	t.press.configure(t.maxConns, false, 0, 0)
}

// hash is the seeded hash of a key (never 0): its top bits pick the shard,
// its low bits the slot in the shard's index. The seed is random per pool,
// so traffic cannot be crafted to pile its connections into one shard or
// one probe sequence.
func (t *connTable) hash(k *connKey) uint64 {
	h := maphash.Bytes(t.seed, (*[unsafe.Sizeof(connKey{})]byte)(unsafe.Pointer(k))[:])
	if h == 0 {
		h = 1
	}
	return h
}

func (t *connTable) shard(h uint64) *shard {
	return &t.shards[h>>(64-shardBits)].shard
}

// newStreamFunc calls the user's factory; the Safe face wraps it in recover.
type newStreamFunc func(c *connection, tcp *layers.TCP, ac AssemblerContext) (Stream, error)

// getConnection returns the connection of k locked, creating it if create is
// set. Creation is double-checked under the shard's write lock, and the new
// connection is published locked before the factory runs, so concurrent
// packets of either direction wait for that one Stream instead of making a
// second one.
//
// A valid answered makes the new connection a SYN-ACK's whose SYN was seen
// on the 4-tuple's previous connection: the client's direction starts at
// answered. A set *slot is a slot of the cap already held for the new
// connection; getConnection clears it when the connection takes it.
func (t *connTable) getConnection(k connKey, fromLo, create bool, ts time.Time, tcp *layers.TCP, ac AssemblerContext, newStream newStreamFunc, free *connFreeList, answered Sequence, slot *bool, solo bool) (*connection, error) {
	h := t.hash(&k)
	sh := t.shard(h)
	c := sh.idx.find(h)
	if c != nil && solo {
		if !c.removed && c.key == k {
			return c, nil
		}
	} else if c != nil {
		c.mu.Lock()
		if !c.removed && c.key == k {
			return c, nil
		}
		// Stale: the connection left the pool, or its slot was reused.
		c.mu.Unlock()
	} else if !create {
		return nil, nil
	}
	for {
		sh.mu.Lock()
		if c = sh.idx.get(h, &k); c != nil {
			gen := c.gen
			sh.mu.Unlock()
			if solo {
				return c, nil
			}
			c.mu.Lock()
			if c.gen == gen && !c.removed {
				return c, nil
			}
			// The connection left the pool between lookup and lock.
			c.mu.Unlock()
			continue
		}
		if !create {
			sh.mu.Unlock()
			return nil, nil
		}
		if t.closed.Load() {
			sh.mu.Unlock()
			return nil, ErrPoolClosed
		}
		grave := sh.graves.find(h, &k)
		if grave >= 0 && sh.graves.ring[grave].lateCopy(fromLo, tcp, ts) {
			sh.mu.Unlock()
			return nil, ErrConnectionClosed
		}
		if grave >= 0 && sh.graves.ring[grave].afterReset(fromLo, tcp, ts) {
			sh.mu.Unlock()
			return nil, errAfterReset
		}
		if *slot {
			*slot = false // the slot an eviction kept for this newcomer
		} else if !t.reserve() {
			// The grave stays: the packet comes back after an eviction.
			sh.mu.Unlock()
			return nil, ErrConnectionLimit
		}
		resume, resumed := answered, answered != invalidSequence
		if grave >= 0 {
			// A new connection on the 4-tuple, or the old one's SYN
			// answered at last.
			if !resumed {
				resume, resumed = sh.graves.ring[grave].answeredSYN(fromLo, tcp, ts)
			}
			sh.graves.forget(grave)
		}
		c = free.get(solo)
		// A resumed conversation's client is the SYN's sender, whose
		// direction goes on where its SYN left it.
		c.reset(k, h, fromLo != resumed, ts, &t.budget.queued)
		if resumed {
			_, peer := c.half(fromLo)
			peer.begin(resume)
			peer.resumed = true
		}
		sh.idx.insert(h, c)
		t.track(sh, c)
		sh.live++
		sh.created++
		sh.mu.Unlock()
		s, err := newStream(c, tcp, ac)
		if err == nil && s == nil {
			t.declined.Add(1)
			err = ErrNilStream
		}
		if err != nil {
			// TotalCreated counts Streams: this connection never had one,
			// so it counts as neither created nor removed.
			sh.mu.Lock()
			t.unlink(sh, c, free)
			sh.created--
			sh.removed--
			sh.mu.Unlock()
			if !solo {
				c.mu.Unlock()
			}
			return nil, err
		}
		c.stream = s
		return c, nil
	}
}

// reserve books a connection against the cap, if there is one.
func (t *connTable) reserve() bool {
	if t.maxConns <= 0 {
		return true
	}
	for {
		n := t.reserved.Load()
		if n >= t.maxConns {
			return false
		}
		if t.reserved.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// retire takes a locked, completed connection out of the pool and leaves
// a grave in its place, so that late copies of its packets open nothing.
func (t *connTable) retire(c *connection, free *connFreeList) {
	sh := t.shard(c.hash)
	sh.mu.Lock()
	sh.bury(c)
	t.unlink(sh, c, free)
	sh.mu.Unlock()
}

// remove takes a locked connection out of the pool. It is safe to call twice.
func (t *connTable) remove(c *connection, free *connFreeList) {
	if c.removed {
		return
	}
	sh := t.shard(c.hash)
	sh.mu.Lock()
	t.unlink(sh, c, free)
	sh.mu.Unlock()
}

// unlink takes c out of the shard's index and hands the object to free
// for reuse: gen changes, so that stale pointers to it notice. The shard
// must be locked.
func (t *connTable) unlink(sh *shard, c *connection, free *connFreeList) {
	sh.idx.delete(c.hash, c)
	t.untrack(sh, c)
	c.removed = true
	c.gen++
	c.stream = nil
	sh.live--
	sh.removed++
	if t.maxConns > 0 && !c.handOff {
		t.reserved.Add(-1)
	}
	c.handOff = false
	free.put(c)
}

// trimIndexes shrinks the shards' indexes and graveyards left mostly
// empty by a burst.
func (t *connTable) trimIndexes() {
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		sh.idx.trim()
		sh.graves.trim()
		sh.mu.Unlock()
	}
}

// forgetGrave forgets the grave of k, if it has one.
func (t *connTable) forgetGrave(h uint64, k *connKey) {
	sh := t.shard(h)
	sh.mu.Lock()
	if pos := sh.graves.find(h, k); pos >= 0 {
		sh.graves.forget(pos)
	}
	sh.mu.Unlock()
}

// reapGraves forgets every grave.
func (t *connTable) reapGraves() {
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		sh.graves.reap(0, true)
		sh.mu.Unlock()
	}
}

// connRef is a connection seen in a snapshot, valid while gen matches.
type connRef struct {
	c   *connection
	gen uint64
}

// snapshot appends every connection of the pool to buf.
func (t *connTable) snapshot(buf []connRef) []connRef {
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		sh.idx.each(func(c *connection, _ uint64) bool {
			buf = append(buf, connRef{c, c.gen})
			return true
		})
		sh.mu.Unlock()
	}
	return buf
}

// snapshotDue appends the live connections a flush with thresholds tNs
// and tcNs (nanos) may have work for: buffered bytes seen at or before tNs,
// or no packet since tcNs. The hints it reads only err on the side of a
// visit, so a flush costs per due connection, not per connection. Under
// the same lock it forgets the graves retired before tcNs.
func (t *connTable) snapshotDue(buf []connRef, tNs, tcNs int64) []connRef {
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		if tcNs != math.MinInt64 {
			sh.graves.reap(tcNs, false)
		}
		sh.idx.each(func(c *connection, _ uint64) bool {
			if c.lastSeenNs.Load() <= tcNs ||
				c.halves[0].oldestQueued.Load() <= tNs || c.halves[1].oldestQueued.Load() <= tNs {
				buf = append(buf, connRef{c, c.gen})
			}
			return true
		})
		sh.mu.Unlock()
	}
	return buf
}

// lock locks the connection, unless solo, and reports whether it is still
// the one the reference saw (if not, it is left unlocked).
func (r connRef) lock(solo bool) bool {
	if !solo {
		r.c.mu.Lock()
	}
	if r.c.gen != r.gen || r.c.removed {
		if !solo {
			r.c.mu.Unlock()
		}
		return false
	}
	return true
}

// counts sums the shards' counters: live and graves now, connections
// created and removed so far.
func (t *connTable) counts() (live, graves, created, removed int64) {
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		live += sh.live
		graves += int64(sh.graves.live)
		created += sh.created
		removed += sh.removed
		sh.mu.Unlock()
	}
	return live, graves, created, removed
}

func (t *connTable) size() int {
	live, _, _, _ := t.counts()
	return int(live)
}

// StreamPool stores the connections of one or more Assemblers and creates
// their Streams through a StreamFactory. It is safe for concurrent use.
//
// Unlike upstream's, two assemblers that see the first packets of a new
// connection at the same moment, in either direction, always share one
// Stream: the factory runs once per connection.
type StreamPool struct {
	t connTable
}

// NewStreamPool returns a pool that creates Streams with factory.
func NewStreamPool(factory StreamFactory) *StreamPool {
	p := &StreamPool{}
	p.t.init(factory, 0)
	return p
}

// Dump logs every connection of the pool, one line each, through the
// default slog logger.
func (p *StreamPool) Dump() {
	p.t.dump(slog.Default())
}

func (t *connTable) dump(l *slog.Logger) {
	t.visit(func() {
		refs := t.snapshot(nil)
		l.Info("reassembly: remaining connections", "count", len(refs))
		for _, r := range refs {
			if !r.lock(false) {
				continue
			}
			c := r.c
			netFlow, tcpFlow := c.key.flows(c.c2sFromLo)
			l.Info("reassembly: connection",
				"net", netFlow.String(), "tcp", tcpFlow.String(),
				"c2s", c.halves[0].String(), "s2c", c.halves[1].String())
			c.mu.Unlock()
		}
	})
}

func (h *halfConnection) String() string {
	state := "open"
	if h.closed {
		state = "closed"
	}
	return fmt.Sprintf("%s nextSeq:%d queued:%d/%dB created:%v last:%v",
		state, h.nextSeq, h.queue.count, h.queue.bytes, h.created, h.lastSeen)
}

// SafeStreamPool is the hardened StreamPool: it caps the number of live
// connections, reports statistics, and Close completes every remaining
// Stream exactly once. Use it with NewSafeAssembler.
type SafeStreamPool struct {
	t          connTable
	closeOnce  sync.Once
	closeMu    sync.Mutex   // guards closing
	assemblers atomic.Int64 // open SafeAssemblers
	nextSweep  atomic.Int64 // capture time (ns) of the next timeout sweep
	panics     atomic.Int64
	closing    AssemblerStats // what Close delivered and dropped
	logger     atomic.Pointer[slog.Logger]
}

// NewSafeStreamPool returns a pool that creates Streams with factory and
// holds at most maxConnections connections (no cap when <= 0). At the cap
// a new connection evicts one, unanswered connections first, then the
// least recently seen; the other defaults of SafeStreamPoolOptions apply.
func NewSafeStreamPool(factory StreamFactory, maxConnections int) *SafeStreamPool {
	p := &SafeStreamPool{}
	p.t.init(factory, maxConnections)
	return p
}

// NewSafeStreamPoolWithOptions is NewSafeStreamPool with the pressure
// policy of opts. The error wraps ErrInvalidOptions.
func NewSafeStreamPoolWithOptions(factory StreamFactory, opts SafeStreamPoolOptions) (*SafeStreamPool, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	p := NewSafeStreamPool(factory, opts.MaxConnections)
	p.t.press.configure(p.t.maxConns, opts.RefuseAtLimit, int64(opts.HighWaterMark), int64(opts.LowWaterMark))
	return p, nil
}

// Stats returns the pool's counters.
func (p *SafeStreamPool) Stats() PoolStats {
	p.closeMu.Lock()
	closing := p.closing
	p.closeMu.Unlock()
	live, graves, created, removed := p.t.counts()
	if p.t.maxConns > 0 {
		// The shards are read one after the other: a connection that ends
		// in one after it was read, while another starts in one not read
		// yet, is counted twice. The reservations are one atomic count of
		// the same connections, never above the cap.
		live = p.t.reserved.Load()
	}
	return PoolStats{
		Closing:             closing,
		ActiveConnections:   live,
		TotalCreated:        created,
		ConnectionsRefused:  p.t.refused.Load(),
		ConnectionsDeclined: p.t.declined.Load(),
		ConnectionsRemoved:  removed,
		RecentlyClosed:      graves,
		MaxConnections:      max(p.t.maxConns, 0),
		PoolClosed:          p.t.closed.Load(),
		PanicsRecovered:     p.panics.Load(),
		PageCache:           p.t.budget.Stats(),
		EvictedUnanswered:   p.t.press.evicted[evictUnanswered].Load(),
		EvictedIdle:         p.t.press.evicted[evictIdle].Load(),
		EmergencyTimeouts:   p.t.press.evicted[evictEmergency].Load(),
		Emergency:           p.t.press.emergency.Load(),
		Emergencies:         p.t.press.emergencies.Load(),
		HighWaterMark:       p.t.press.high,
		LowWaterMark:        p.t.press.low,
	}
}

// PageCache returns the pool's page budget.
func (p *SafeStreamPool) PageCache() *SafePageCache {
	return &p.t.budget
}

// Dump logs every connection of the pool through logger (slog.Default()
// when nil).
func (p *SafeStreamPool) Dump(logger *slog.Logger) {
	if logger == nil {
		logger = slog.Default()
	}
	p.t.dump(logger)
}

// Close delivers what every connection still buffers, completes each
// remaining Stream exactly once, and makes later use of the pool fail with
// ErrPoolClosed. It is idempotent and always returns nil.
func (p *SafeStreamPool) Close() error {
	p.closeOnce.Do(func() {
		p.t.closed.Store(true)
		logger := p.logger.Load()
		if logger == nil {
			logger = slog.Default()
		}
		var e engine
		cb := &safeCallbacks{logger: logger, ctr: &e.ctr}
		e.init(&p.t, cb)
		e.enter(nil)
		e.flushAll()
		p.panics.Add(e.ctr.panics)
		p.closeMu.Lock()
		p.closing = e.ctr.snapshot(&p.t.budget)
		p.closeMu.Unlock()
	})
	return nil
}
