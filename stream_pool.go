package reassembly

import (
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/gopacket/layers"
)

// numShards splits the connection map so that assemblers sharing a pool
// rarely wait for one another. Both directions of a connection hash to the
// same shard because the key is direction-free.
const (
	shardBits = 6
	numShards = 1 << shardBits
)

// maxFreeConns bounds the recycled connection objects kept per shard;
// those not needed for a whole trim period are released (trimFree), so a
// burst of connections does not pin their memory afterwards.
const maxFreeConns = 2048

// tombstoneTTL is how long, in capture time, a completed connection is
// remembered: late copies of its packets are dropped instead of opening a
// phantom connection. TCP's TIME_WAIT lasts 2 MSL, 60 s on Linux.
const tombstoneTTL = 60 * time.Second

// maxTombstonesPerShard bounds that memory whatever the traffic: the
// oldest tombstone goes first.
const maxTombstonesPerShard = 1024

type shard struct {
	mu     sync.RWMutex
	m      map[connKey]*connection
	free   []*connection
	graves graveQueue // tombstones, oldest first
	// minFree is the fewest free objects since the last trimFree: that
	// many were not needed.
	minFree int
}

// graveQueue is a FIFO of tombstones.
type graveQueue struct {
	q    []connRef
	head int
}

func (g *graveQueue) len() int       { return len(g.q) - g.head }
func (g *graveQueue) peek() connRef  { return g.q[g.head] }
func (g *graveQueue) push(r connRef) { g.q = append(g.q, r) }

func (g *graveQueue) pop() connRef {
	r := g.q[g.head]
	g.q[g.head] = connRef{}
	g.head++
	if g.head == len(g.q) {
		g.q, g.head = g.q[:0], 0
	} else if g.head >= 64 && 2*g.head >= len(g.q) {
		n := copy(g.q, g.q[g.head:])
		clear(g.q[n:])
		g.q, g.head = g.q[:n], 0
	}
	return r
}

// connTable is the connection store behind StreamPool and SafeStreamPool.
type connTable struct {
	shards  [numShards]shard
	salt    uint32
	factory StreamFactory
	budget  SafePageCache

	maxConns int64 // <= 0: no cap
	live     atomic.Int64
	created  atomic.Int64
	refused  atomic.Int64
	removed  atomic.Int64
	graves   atomic.Int64 // tombstones in the pool
	closed   atomic.Bool
}

func (t *connTable) init(factory StreamFactory, maxConns int) {
	t.factory = factory
	t.maxConns = int64(maxConns)
	t.salt = uint32(maphash.Comparable(maphash.MakeSeed(), 0))
	for i := range t.shards {
		t.shards[i].m = make(map[connKey]*connection)
	}
}

// shardOf picks the shard from the ports and the last address bytes. It
// only spreads lock contention: the maps inside use Go's seeded hash, so a
// skewed spread costs no more than a busier lock.
func (t *connTable) shardOf(k *connKey) *shard {
	h := uint32(k.loPort)<<16 | uint32(k.hiPort)
	if n := k.loLen; n > 0 {
		h ^= uint32(k.lo[n-1]) << 8
	}
	if n := k.hiLen; n > 0 {
		h ^= uint32(k.hi[n-1])
	}
	h ^= t.salt
	h *= 0x9E3779B1
	return &t.shards[h>>(32-shardBits)]
}

// newStreamFunc calls the user's factory; the Safe face wraps it in recover.
type newStreamFunc func(c *connection, tcp *layers.TCP, ac AssemblerContext) (Stream, error)

// getConnection returns the connection of k locked, creating it if create is
// set. Creation is double-checked under the shard's write lock, and the new
// connection is published locked before the factory runs, so concurrent
// packets of either direction wait for that one Stream instead of making a
// second one.
func (t *connTable) getConnection(k connKey, fromLo, create bool, ts time.Time, tcp *layers.TCP, ac AssemblerContext, newStream newStreamFunc) (*connection, error) {
	sh := t.shardOf(&k)
	for {
		sh.mu.RLock()
		c := sh.m[k]
		var gen uint64
		if c != nil {
			gen = c.gen
		}
		sh.mu.RUnlock()
		if c == nil {
			if !create {
				return nil, nil
			}
			sh.mu.Lock()
			if c = sh.m[k]; c != nil {
				gen = c.gen
				sh.mu.Unlock()
			} else {
				if t.closed.Load() {
					sh.mu.Unlock()
					return nil, ErrPoolClosed
				}
				if !t.reserve() {
					sh.mu.Unlock()
					t.refused.Add(1)
					return nil, ErrConnectionLimit
				}
				c = sh.fresh()
				c.reset(k, fromLo, ts, &t.budget.queued)
				sh.m[k] = c
				sh.mu.Unlock()
				s, err := newStream(c, tcp, ac)
				if err == nil && s == nil {
					err = ErrNilStream
				}
				if err != nil {
					t.remove(c)
					c.mu.Unlock()
					return nil, err
				}
				t.created.Add(1)
				c.stream = s
				return c, nil
			}
		}
		c.mu.Lock()
		if c.gen == gen && !c.removed {
			return c, nil
		}
		// The connection left the pool between lookup and lock.
		c.mu.Unlock()
	}
}

// fresh returns a locked, unused connection object. A recycled object may
// still be locked for a moment by a goroutine that holds a stale pointer;
// such an object is left alone.
func (sh *shard) fresh() *connection {
	for len(sh.free) > 0 {
		c := sh.free[len(sh.free)-1]
		sh.free[len(sh.free)-1] = nil
		sh.free = sh.free[:len(sh.free)-1]
		sh.minFree = min(sh.minFree, len(sh.free))
		if c.mu.TryLock() {
			return c
		}
	}
	c := &connection{}
	c.mu.Lock()
	return c
}

func (t *connTable) reserve() bool {
	if t.maxConns <= 0 {
		t.live.Add(1)
		return true
	}
	for {
		n := t.live.Load()
		if n >= t.maxConns {
			return false
		}
		if t.live.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// retire turns a locked, completed connection into a tombstone: it keeps
// its place in the map, without its Stream, and stops counting as live.
func (t *connTable) retire(c *connection) {
	sh := t.shardOf(&c.key)
	var victim connRef
	sh.mu.Lock()
	c.tombstone = true
	c.retired = c.lastSeen()
	c.stream = nil
	sh.graves.push(connRef{c, c.gen})
	if sh.graves.len() > maxTombstonesPerShard {
		victim = sh.graves.pop()
	}
	sh.mu.Unlock()
	t.live.Add(-1)
	t.removed.Add(1)
	t.graves.Add(1)
	// The oldest tombstone goes, unless its lock is busy: then next time.
	if v := victim.c; v != nil && v != c && v.mu.TryLock() {
		if v.gen == victim.gen && v.tombstone && !v.removed {
			t.remove(v)
		}
		v.mu.Unlock()
	}
}

// revive reopens a tombstone as a new connection on the same 4-tuple.
func (t *connTable) revive(c *connection, fromLo bool, ts time.Time, tcp *layers.TCP, ac AssemblerContext, newStream newStreamFunc) error {
	if t.closed.Load() {
		return ErrPoolClosed
	}
	if !t.reserve() {
		t.refused.Add(1)
		return ErrConnectionLimit
	}
	sh := t.shardOf(&c.key)
	sh.mu.Lock()
	c.tombstone = false // its queue entry goes stale and is skipped
	// Under the shard's lock: flushes read the connection's hints there.
	c.reset(c.key, fromLo, ts, &t.budget.queued)
	sh.mu.Unlock()
	t.graves.Add(-1)
	s, err := newStream(c, tcp, ac)
	if err == nil && s == nil {
		err = ErrNilStream
	}
	if err != nil {
		t.remove(c)
		return err
	}
	t.created.Add(1)
	c.stream = s
	return nil
}

// remove takes a locked connection out of the pool. It is safe to call twice.
func (t *connTable) remove(c *connection) {
	if c.removed {
		return
	}
	sh := t.shardOf(&c.key)
	sh.mu.Lock()
	if sh.m[c.key] == c {
		delete(sh.m, c.key)
	}
	c.removed = true
	c.gen++
	c.stream = nil
	wasGrave := c.tombstone
	c.tombstone = false
	if len(sh.free) < maxFreeConns {
		sh.free = append(sh.free, c)
	}
	sh.mu.Unlock()
	if wasGrave {
		t.graves.Add(-1)
	} else {
		t.live.Add(-1)
		t.removed.Add(1)
	}
}

// trimFree releases, in every shard, the recycled connection objects that
// went unused since the previous call.
func (t *connTable) trimFree() {
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		if n := sh.minFree; n > 0 {
			k := len(sh.free) - n
			clear(sh.free[k:])
			sh.free = sh.free[:k]
		}
		sh.minFree = len(sh.free)
		sh.mu.Unlock()
	}
}

// reapGraves removes the tombstones retired before cutoff (all of them when
// all is set), oldest first, so that the cost is per expired tombstone.
func (t *connTable) reapGraves(cutoff time.Time, all bool) {
	if t.graves.Load() == 0 {
		return
	}
	var due []connRef
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for sh.graves.len() > 0 {
			r := sh.graves.peek()
			if r.c.gen == r.gen && r.c.tombstone && !all && !r.c.retired.Before(cutoff) {
				break
			}
			sh.graves.pop()
			if r.c.gen == r.gen && r.c.tombstone {
				due = append(due, r)
			}
		}
		sh.mu.Unlock()
	}
	for _, r := range due {
		if r.lock() {
			if r.c.tombstone {
				t.remove(r.c)
			}
			r.c.mu.Unlock()
		}
	}
}

// connRef is a connection seen in a snapshot, valid while gen matches.
type connRef struct {
	c   *connection
	gen uint64
}

// snapshot appends every live connection of the pool (not tombstones) to
// buf.
func (t *connTable) snapshot(buf []connRef) []connRef {
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.RLock()
		for _, c := range sh.m {
			if !c.tombstone {
				buf = append(buf, connRef{c, c.gen})
			}
		}
		sh.mu.RUnlock()
	}
	return buf
}

// snapshotDue appends the live connections a flush with thresholds tNs
// and tcNs (nanos) may have work for: buffered bytes seen at or before tNs,
// or no packet since tcNs. The hints it reads only err on the side of a
// visit, so a flush costs per due connection, not per connection.
func (t *connTable) snapshotDue(buf []connRef, tNs, tcNs int64) []connRef {
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.RLock()
		for _, c := range sh.m {
			if !c.tombstone && (c.lastSeenNs.Load() <= tcNs ||
				c.halves[0].oldestQueued.Load() <= tNs || c.halves[1].oldestQueued.Load() <= tNs) {
				buf = append(buf, connRef{c, c.gen})
			}
		}
		sh.mu.RUnlock()
	}
	return buf
}

// lock locks the connection if it is still the one the reference saw.
func (r connRef) lock() bool {
	r.c.mu.Lock()
	if r.c.gen != r.gen || r.c.removed {
		r.c.mu.Unlock()
		return false
	}
	return true
}

func (t *connTable) size() int {
	return int(t.live.Load())
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
	refs := t.snapshot(nil)
	l.Info("reassembly: remaining connections", "count", len(refs))
	for _, r := range refs {
		if !r.lock() {
			continue
		}
		c := r.c
		netFlow, tcpFlow := c.key.flows(c.c2sFromLo)
		l.Info("reassembly: connection",
			"net", netFlow.String(), "tcp", tcpFlow.String(),
			"c2s", c.halves[0].String(), "s2c", c.halves[1].String())
		c.mu.Unlock()
	}
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
// holds at most maxConnections connections (no cap when <= 0). Connections
// beyond the cap are refused with ErrConnectionLimit; those already in the
// pool are unaffected.
func NewSafeStreamPool(factory StreamFactory, maxConnections int) *SafeStreamPool {
	p := &SafeStreamPool{}
	p.t.init(factory, maxConnections)
	return p
}

// Stats returns the pool's counters.
func (p *SafeStreamPool) Stats() PoolStats {
	p.closeMu.Lock()
	closing := p.closing
	p.closeMu.Unlock()
	return PoolStats{
		Closing:            closing,
		ActiveConnections:  p.t.live.Load(),
		TotalCreated:       p.t.created.Load(),
		ConnectionsRefused: p.t.refused.Load(),
		ConnectionsRemoved: p.t.removed.Load(),
		RecentlyClosed:     p.t.graves.Load(),
		MaxConnections:     max(p.t.maxConns, 0),
		PoolClosed:         p.t.closed.Load(),
		PanicsRecovered:    p.panics.Load(),
		PageCache:          p.t.budget.Stats(),
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
		e.flushAll()
		p.panics.Add(e.ctr.panics)
		p.closeMu.Lock()
		p.closing = e.ctr.snapshot(&p.t.budget)
		p.closeMu.Unlock()
	})
	return nil
}
