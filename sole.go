package reassembly

import (
	"sync"
	"sync/atomic"
)

// soleUse lets the one engine of a pool skip the connections' locks. Most
// programs feed a pool from one Assembler, whose own lock already
// serializes every call to its engine; locking each packet's connection as
// well cost two atomic operations per packet, a sixth of a packet in order.
// The connection locks are there for a second engine on the pool (another
// Assembler, a pool's Close): the first call of a second engine, which its
// Assembler makes when it is created, ends the sole use for good, after
// waiting, on the owner's lock, for the call the owner may be in. (Joining
// at creation rather than at first use lets a Stream callback of the owner
// use an Assembler made before: at that use, waiting for the owner's call
// would wait for itself.) From then on every engine locks the connections,
// and the owner's later calls, which read owner under its lock, see the
// change.
//
// A capped pool may have an owner too. Its eviction (pressure.go) tries
// other connections' locks to tell which another engine is using; the
// owner evicts only between packets (in find, before it has the packet's
// connection; after a packet, in the Safe face's sweep), when it uses none,
// and every lock it tries is free.
type soleUse struct {
	mu sync.Mutex // guards first and ownerLock, and ends the sole use
	// first is the first engine that used the pool; shared is set once
	// another one did.
	first  *engine
	shared atomic.Bool
	// owner is the engine that may skip the connections' locks, held
	// there by its face's lock ownerLock around every call to it.
	owner     atomic.Pointer[engine]
	ownerLock *sync.Mutex
}

// enter begins a call to the engine, made holding lock: the lock that
// every packet of the engine is handed in under (the face's, or that of
// the caller a Serialized context names), for a packet; nil for any other
// call, and for a packet whose caller's lock is not known. It sets solo
// when the engine owns its pool for this call, in which case no
// connection's lock is taken.
func (e *engine) enter(lock *sync.Mutex) {
	j := &e.table.sole
	o := j.owner.Load()
	if o == e {
		e.solo = true
		return
	}
	e.solo = false
	if e.joined && o == nil && (lock == nil || j.shared.Load()) {
		return
	}
	e.table.join(e, lock)
}

// join registers e's first call, ends the sole use of another engine once
// a second one calls, and makes e the owner when it is alone on the
// pool and names its lock.
func (t *connTable) join(e *engine, lock *sync.Mutex) {
	j := &t.sole
	j.mu.Lock()
	defer j.mu.Unlock()
	if !e.joined {
		e.joined = true
		if j.first == nil {
			j.first = e
		} else {
			j.shared.Store(true)
		}
	}
	o := j.owner.Load()
	switch {
	case j.shared.Load():
		if o != nil {
			// The owner's lock: the call it may be in ends first, and its
			// next call reads owner under that lock.
			j.ownerLock.Lock()
			j.owner.Store(nil)
			j.ownerLock.Unlock()
		}
	case o == nil && lock != nil:
		j.ownerLock = lock
		j.owner.Store(e)
		e.solo = true
	}
}

// visit runs f, which reads the pool's connections under their locks,
// while no sole owner is in a call: f holds the owner's lock if there is
// one, which keeps the owner out without ending its sole use.
func (t *connTable) visit(f func()) {
	j := &t.sole
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.owner.Load() != nil {
		j.ownerLock.Lock()
		defer j.ownerLock.Unlock()
	}
	f()
}

// unlockConn releases the lock of c, taken unless the engine owns the pool.
func (e *engine) unlockConn(c *connection) {
	if !e.solo {
		c.mu.Unlock()
	}
}
