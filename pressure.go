package reassembly

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/google/gopacket/layers"
)

// This file holds the Safe face's policy under connection pressure: what
// a capped pool does when a new connection would pass its cap (evict, as
// Snort 3's prune_flows, rather than refuse), and its emergency mode near
// the cap (shorter timeouts for unanswered connections, as Suricata's).
//
// Victims come from intrusive lists kept per shard, one per class, oldest
// first. A packet never touches them: the order is a CLOCK over the
// connection's capture-time lastSeenNs, which packets update anyway. A
// connection seen since it was queued gets a second chance at the back
// instead of going, so that choosing a victim costs O(1) amortized and a
// bounded number of steps at worst, never a scan of the pool.

// Eviction classes, cheapest to lose first.
const (
	// classUnanswered holds connections whose other direction never sent
	// a packet the engine took (or that completed already): a spoofed
	// tuple, a SYN never answered.
	classUnanswered = iota
	// classAnswered holds connections that heard from both sides.
	classAnswered
	numClasses
)

// evictReason says why a connection left the pool under pressure.
type evictReason int

const (
	evictUnanswered evictReason = iota // at the cap, an unanswered connection
	evictIdle                          // at the cap, the least recently seen answered connection
	evictEmergency                     // unanswered past EmergencyTimeout above the high-water mark
	numEvictReasons
)

const (
	// The default water marks are these percentages of the cap; the
	// default EmergencyTimeout is ConnectionTimeout divided by
	// emergencyDivisor.
	highWaterPercent = 90
	lowWaterPercent  = 70
	emergencyDivisor = 10
	// victimLooks is how many list heads a shard's pass examines.
	victimLooks = 8
	// victimSamples is how many shards' oldest unanswered connections
	// an eviction compares.
	victimSamples = 4
	// maxEvictions is how many slots one packet may free, when other
	// assemblers take them first, before it is refused.
	maxEvictions = 4
)

// lruNode links a connection into its shard's list of its class.
type lruNode struct {
	prev, next *connection
	// stamp is lastSeenNs when the connection was queued: a later
	// lastSeenNs means it was seen since.
	stamp  int64
	class  uint8
	listed bool
}

// connList is an intrusive list of connections, in the order they were
// queued. The shard's lock guards it; n may be read without it, to skip
// empty lists.
type connList struct {
	head, tail *connection
	n          atomic.Int32
}

func (l *connList) pushBack(c *connection, class uint8, stamp int64) {
	c.lru = lruNode{prev: l.tail, stamp: stamp, class: class, listed: true}
	if l.tail != nil {
		l.tail.lru.next = c
	} else {
		l.head = c
	}
	l.tail = c
	l.n.Add(1)
}

func (l *connList) remove(c *connection) {
	if c.lru.prev != nil {
		c.lru.prev.lru.next = c.lru.next
	} else {
		l.head = c.lru.next
	}
	if c.lru.next != nil {
		c.lru.next.lru.prev = c.lru.prev
	} else {
		l.tail = c.lru.prev
	}
	c.lru = lruNode{}
	l.n.Add(-1)
}

// shardPressure is a shard's eviction lists.
type shardPressure struct {
	lists [numClasses]connList
}

// requeue moves c to the back of the list of class, stamped with its
// last packet's time.
func (p *shardPressure) requeue(c *connection, class uint8) {
	p.lists[c.lru.class].remove(c)
	p.lists[class].pushBack(c, class, c.lastSeenNs.Load())
}

// tablePressure is a capped pool's pressure policy and its state.
type tablePressure struct {
	refuse    bool  // refuse newcomers at the cap instead of evicting
	high, low int64 // water marks, in live connections
	emergency atomic.Bool
	// nextCheck is the capture time (ns) at which an assembler next
	// compares the pool with its water marks.
	nextCheck   atomic.Int64
	emergencies atomic.Int64
	evicted     [numEvictReasons]atomic.Int64
}

// configure sets the policy of a pool capped at maxConns; high and low
// of 0 take the defaults.
func (p *tablePressure) configure(maxConns int64, refuse bool, high, low int64) {
	p.refuse = refuse
	if maxConns > 0 {
		p.high, p.low = waterMarks(maxConns, high, low)
	}
}

// waterMarks fills in the default marks of a pool capped at maxConns
// where high or low is 0.
func waterMarks(maxConns, high, low int64) (int64, int64) {
	if high == 0 {
		high = max(1, maxConns*highWaterPercent/100)
	}
	if low == 0 {
		low = min(high, maxConns*lowWaterPercent/100)
	}
	return high, low
}

// track queues a new connection of shard sh, which must be locked, as
// unanswered; only capped pools keep the lists.
func (t *connTable) track(sh *shard, c *connection) {
	if t.maxConns > 0 {
		sh.press.lists[classUnanswered].pushBack(c, classUnanswered, c.lastSeenNs.Load())
	}
}

// untrack takes c off its list; the shard must be locked.
func (t *connTable) untrack(sh *shard, c *connection) {
	if c.lru.listed {
		sh.press.lists[c.lru.class].remove(c)
	}
}

// unanswered reports whether a locked connection is cheap to lose: its
// other direction never sent a packet the engine took, or it completed.
func (c *connection) unanswered() bool {
	h := &c.halves[1] // the direction that did not open the connection
	return c.completed || !h.anchored && !h.started()
}

// pickVictim returns, locked, the connection of class in sh to evict, or
// nil. It looks at no more than victimLooks list heads: one seen since it
// was queued, or locked by another goroutine, goes to the back (unless
// force is set, when only a locked one does), and an unanswered one found
// answered moves to its class.
func (t *connTable) pickVictim(sh *shard, class uint8, force bool) *connection {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	p := &sh.press
	l := &p.lists[class]
	for look := 0; look < victimLooks && l.head != nil; look++ {
		c := l.head
		if !force && c.lastSeenNs.Load() > c.lru.stamp {
			p.requeue(c, class)
			continue
		}
		// The shard's lock is held: waiting for the connection's would
		// invert the lock order.
		if !c.mu.TryLock() {
			p.requeue(c, class)
			continue
		}
		if class == classUnanswered && !c.unanswered() {
			p.requeue(c, classAnswered)
			c.mu.Unlock()
			continue
		}
		return c
	}
	return nil
}

// connect is getConnection under the pool's pressure policy: when the cap
// refuses a new connection, it evicts one and tries again, a few times,
// before the packet is refused.
func (e *engine) connect(k connKey, fromLo, create bool, ts time.Time, tcp *layers.TCP, ac AssemblerContext) (*connection, error) {
	t := e.table
	for tries := 0; ; tries++ {
		c, err := t.getConnection(k, fromLo, create, ts, tcp, ac, e.newStream, &e.free, e.answered, &e.slot, e.solo)
		if e.slot {
			// Another assembler made the connection meanwhile, or the
			// packet was refused for another reason: the slot goes back.
			e.slot = false
			t.reserved.Add(-1)
		}
		if err != ErrConnectionLimit {
			e.answered = invalidSequence
			return c, err
		}
		if t.press.refuse || tries == maxEvictions || !e.evictOne(t.hash(&k)) {
			t.refused.Add(1)
			e.answered = invalidSequence
			return nil, err
		}
	}
}

// evictOne frees a slot of a full pool for a newcomer whose key hashes to
// h: an unanswered connection if there is one, else an answered one; the
// victim is the least recently seen of the heads of a few shards, picked
// by h, for the unanswered class (under a flood, the hot path), of every
// shard for the answered class. It reports whether it evicted one.
func (e *engine) evictOne(h uint64) bool {
	t := e.table
	if !t.press.emergency.Swap(true) {
		t.press.emergencies.Add(1)
	}
	// Two rounds over the classes: the second takes the heads whatever
	// their second chance, so that a pool of busy connections still
	// yields a victim.
	for pass := 0; pass < 2*numClasses; pass++ {
		class := uint8(pass % numClasses)
		force := pass >= numClasses
		samples := numShards
		if class == classUnanswered {
			samples = victimSamples
		}
		first := t.stalestHead(class, h, samples)
		if first < 0 {
			first = int(h >> (64 - shardBits))
		}
		for i := 0; i < numShards; i++ {
			sh := &t.shards[(first+i)%numShards].shard
			if sh.press.lists[class].n.Load() == 0 {
				continue
			}
			if c := t.pickVictim(sh, class, force); c != nil {
				r := evictIdle
				if class == classUnanswered {
					r = evictUnanswered
				}
				// The slot freed stays the newcomer's: released and taken
				// again, it could go to another assembler's newcomer each
				// time, and this one be refused after maxEvictions.
				c.handOff = true
				e.evict(c, r)
				e.slot = !c.handOff // unlink kept it
				c.handOff = false
				c.mu.Unlock()
				return true
			}
		}
	}
	return false
}

// stalestHead returns the shard whose list of class has the head seen
// least recently, of samples shards: all of them, or the newcomer's and
// others chosen by bits of its hash h. Each list is roughly in that order,
// so its head stands for the shard's least recently seen connection, and
// comparing a few shards' heads keeps the pool's victims close to the
// oldest overall: evicting in the newcomer's shard alone would freeze
// each shard's share of the pool, and a shard left with few unanswered
// connections would evict a fresh SYN before its answer came. It
// returns -1 when the lists sampled are empty.
func (t *connTable) stalestHead(class uint8, h uint64, samples int) int {
	best, bestSeen := -1, int64(math.MaxInt64)
	for k := 0; k < samples; k++ {
		i := k
		if samples < numShards {
			i = int(h>>(64-shardBits-shardBits*k)) & (numShards - 1)
		}
		sh := &t.shards[i].shard
		if sh.press.lists[class].n.Load() == 0 {
			continue
		}
		sh.mu.Lock()
		l := &sh.press.lists[class]
		// Heads seen since they were queued get their second chance
		// here, so that the head compared was not.
		for look := 0; look < victimLooks && l.head != nil && l.head.lastSeenNs.Load() > l.head.lru.stamp; look++ {
			sh.press.requeue(l.head, class)
		}
		if c := l.head; c != nil && c.lru.stamp < bestSeen {
			best, bestSeen = i, c.lru.stamp
		}
		sh.mu.Unlock()
	}
	return best
}

// evict completes a locked connection as a timeout does, its buffered
// bytes delivered first with the holes before them skipped, and takes it
// out of the pool.
func (e *engine) evict(c *connection, r evictReason) {
	e.ctr.evicted[r]++
	e.table.press.evicted[r].Add(1)
	defer e.forcedBy(unackedLimit)()
	e.finish(c)
}

// relieve runs the emergency mode of a capped pool, at most once per
// quarter of timeout in capture time (now, ns) across its assemblers: the
// pool enters it at the high-water mark and leaves it at the low-water
// mark; while in it, unanswered connections idle past timeout are
// evicted.
func (e *engine) relieve(now int64, timeout time.Duration) {
	t := e.table
	p := &t.press
	next := p.nextCheck.Load()
	if now < next || !p.nextCheck.CompareAndSwap(next, now+int64(timeout/4)) {
		return
	}
	switch live := t.reserved.Load(); {
	case live >= p.high:
		if !p.emergency.Swap(true) {
			p.emergencies.Add(1)
		}
	case live <= p.low:
		p.emergency.Store(false)
	}
	if p.emergency.Load() {
		cutoff := now - int64(timeout)
		for i := range t.shards {
			e.expireUnanswered(&t.shards[i].shard, cutoff)
		}
	}
}

// expireUnanswered evicts the unanswered connections of sh last seen
// before cutoff (ns). The list is in the order connections were queued,
// so the walk stops at the first one seen since; it visits each
// connection queued at most once per call.
func (e *engine) expireUnanswered(sh *shard, cutoff int64) {
	p := &sh.press
	l := &p.lists[classUnanswered]
	sh.mu.Lock()
	for left := l.n.Load(); left > 0 && l.head != nil; left-- {
		c := l.head
		if seen := c.lastSeenNs.Load(); seen > c.lru.stamp {
			p.requeue(c, classUnanswered)
			continue
		}
		if c.lru.stamp >= cutoff {
			break
		}
		if !c.mu.TryLock() {
			p.requeue(c, classUnanswered)
			continue
		}
		if !c.unanswered() {
			p.requeue(c, classAnswered)
			c.mu.Unlock()
			continue
		}
		sh.mu.Unlock()
		e.evict(c, evictEmergency)
		c.mu.Unlock()
		sh.mu.Lock()
	}
	sh.mu.Unlock()
}
