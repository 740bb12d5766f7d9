package reassembly

import (
	"sync/atomic"
)

// connIndex finds the connections of one shard by the hash of their key.
// Writers hold the shard's lock; readers hold no lock at all, so that
// assemblers sharing a pool do not write to a shared cache line for every
// packet, as a read lock would.
//
// It is an open-addressing table with linear probing. A slot's hash is
// written before its connection and never cleared, so a probe sequence
// stays unbroken; a deleted slot keeps its hash with a nil connection
// until an insertion reuses it. A table is never modified once replaced,
// so a reader may finish its probe in an old one. Readers can therefore
// get a stale or a wrong candidate, or miss a connection inserted
// meanwhile: they must lock the candidate and check its key, and treat a
// miss as a reason to look again under the shard's lock when it matters.
type connIndex struct {
	tab  atomic.Pointer[indexTable]
	used int // slots of tab with a hash: live plus deleted
	live int
}

type indexTable struct {
	mask  uint64
	slots []indexSlot
}

type indexSlot struct {
	hash atomic.Uint64 // 0: never used
	conn atomic.Pointer[connection]
}

const minIndexSlots = 16

// find returns the first connection whose hash is h, without a lock: a
// candidate to lock and check.
func (x *connIndex) find(h uint64) *connection {
	t := x.tab.Load()
	if t == nil {
		return nil
	}
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		sh := s.hash.Load()
		if sh == 0 {
			return nil
		}
		if sh == h {
			if c := s.conn.Load(); c != nil {
				return c
			}
		}
	}
}

// get returns the connection of key k, whose hash is h. The shard must be
// locked: a connection's key is written before it is indexed, under the
// same lock, and does not change while it is indexed.
func (x *connIndex) get(h uint64, k *connKey) *connection {
	t := x.tab.Load()
	if t == nil {
		return nil
	}
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		sh := s.hash.Load()
		if sh == 0 {
			return nil
		}
		if sh == h {
			if c := s.conn.Load(); c != nil && c.key == *k {
				return c
			}
		}
	}
}

// insert adds c, whose hash is h and whose key is not in the index. The
// shard must be locked.
func (x *connIndex) insert(h uint64, c *connection) {
	t := x.tab.Load()
	if t == nil || 4*(x.used+1) > 3*len(t.slots) {
		t = x.rebuild(x.live + 1)
	}
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		if s.conn.Load() != nil {
			continue
		}
		if s.hash.Load() == 0 {
			x.used++
		}
		// The hash first: a reader that sees the new connection with the
		// old hash checks the key and finds the mismatch.
		s.hash.Store(h)
		s.conn.Store(c)
		x.live++
		return
	}
}

// delete removes c, whose hash is h. The shard must be locked.
func (x *connIndex) delete(h uint64, c *connection) {
	t := x.tab.Load()
	if t == nil {
		return
	}
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		sh := s.hash.Load()
		if sh == 0 {
			return
		}
		if sh == h && s.conn.Load() == c {
			s.conn.Store(nil)
			x.live--
			return
		}
	}
}

// trim shrinks a table left mostly empty by a burst of connections.
// Shrinking is left to the periodic trims rather than done on deletion, so
// that a pool that empties and fills again, as after a FlushAll, keeps its
// tables.
func (x *connIndex) trim() {
	if t := x.tab.Load(); t != nil && len(t.slots) > minIndexSlots && 8*x.live < len(t.slots) {
		x.rebuild(x.live)
	}
}

// rebuild publishes a fresh table with room for four times n connections
// and moves the live ones into it; deleted slots are left behind.
// Rebuilding when three quarters of the slots are used keeps the cost per
// insertion constant: at least 2n insertions come between two rebuilds.
func (x *connIndex) rebuild(n int) *indexTable {
	size := minIndexSlots
	for size < 4*n {
		size *= 2
	}
	nt := &indexTable{mask: uint64(size - 1), slots: make([]indexSlot, size)}
	used := 0
	x.each(func(c *connection, h uint64) bool {
		for i := h & nt.mask; ; i = (i + 1) & nt.mask {
			s := &nt.slots[i]
			if s.hash.Load() == 0 {
				s.hash.Store(h)
				s.conn.Store(c)
				used++
				return true
			}
		}
	})
	x.used = used
	x.tab.Store(nt)
	return nt
}

// each calls f with every indexed connection and its hash, until f
// returns false. The shard must be locked.
func (x *connIndex) each(f func(c *connection, h uint64) bool) {
	t := x.tab.Load()
	if t == nil {
		return
	}
	for i := range t.slots {
		s := &t.slots[i]
		if c := s.conn.Load(); c != nil && !f(c, s.hash.Load()) {
			return
		}
	}
}
