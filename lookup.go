package reassembly

import (
	"hash/maphash"
	"time"
	"unsafe"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// find is the first stage of a packet's path: it returns, locked, the
// connection the packet, of flow *netFlow (a pointer: the flow is 56
// bytes, and find runs for every packet), belongs to and whether the packet was sent by the
// connection's lower endpoint, making the connection when the packet may
// start one. A connection that the packet shows to be over (idle past the
// timeout, or a SYN reusing its 4-tuple) is completed first and a new one
// made. With no connection it returns the pool's error, if any: the packet
// is then counted as discarded and goes no further.
func (e *engine) find(netFlow *gopacket.Flow, t *layers.TCP, ts time.Time, ac AssemblerContext) (*connection, bool, error) {
	// A packet that carries neither a SYN nor data cannot start anything;
	// upstream made a connection (and a Stream) for every bare ACK, so the
	// final ACK of a closed connection resurrected it.
	create := t.SYN || len(t.Payload) > 0
	sp, dp := uint16(t.SrcPort), uint16(t.DstPort)
	conn, fromLo := e.recent.lookup(netFlow, sp, dp, e.solo)
	var k connKey
	keyed := false
	for pass := 0; ; pass++ {
		if conn == nil {
			if !keyed {
				k, fromLo = makeKey(*netFlow, t)
			}
			var err error
			conn, err = e.connect(k, fromLo, create, ts, t, ac)
			if conn == nil {
				switch {
				case err == ErrConnectionClosed, err == errAfterReset:
					// A late copy of a completed connection's packet, or
					// one sent after an RST the host accepted.
					why := discardClosed
					if err == errAfterReset {
						why = discardAfterReset
					}
					e.ctr.discard(why, len(t.Payload))
					e.droppedClosed = len(t.Payload) > 0
					return nil, false, nil
				case err != nil:
					e.ctr.discard(discardRefused, len(t.Payload))
					if err == ErrNilStream && forkFlavour {
						// The fork lets a factory decline a connection
						// with a nil Stream: a decision, not an error.
						return nil, false, nil
					}
				}
				return nil, false, err
			}
			e.recent.remember(netFlow, sp, dp, conn, fromLo)
		}
		if pass > 0 {
			return conn, fromLo, nil
		}
		// A connection idle past the timeout, or a SYN that reuses the
		// 4-tuple, ends the connection: the packet starts a new one.
		why := e.restarts(conn, fromLo, t, ts)
		if why == noRestart {
			return conn, fromLo, nil
		}
		k, keyed = e.restart(conn, why), true
		conn = nil
	}
}

// recentFlows remembers the connections of the directional flows seen
// recently, so that a hit skips building the canonical key, hashing it
// and probing the pool's index. Packets of a few connections come in
// bursts, but a link carrying a hundred bulk transfers interleaves them
// packet by packet, which a cache of the last two flows always misses:
// this one holds recentSets*recentWays flows, found by a seeded hash of
// the flow. A hit still compares the whole flow and both ports, so a
// collision, crafted or not, costs only a miss.
type recentFlows struct {
	seed maphash.Seed
	// sets is allocated on first use: an engine that never sees a packet
	// (a flush-only assembler, the tests' many short-lived ones) does not
	// pay for it.
	sets *[recentSets]recentSet
	// last are the two entries hit or filled last, tried before hashing:
	// packets of one or two connections come in bursts, in both
	// directions, and comparing the ports first makes a miss cheap.
	last     [2]*recentFlow
	lastNext int
	// A capture of many more flows at once than the cache holds (10k
	// HTTP-like connections round robin) misses on nearly every packet,
	// paying the hash, the set's line and the fill for nothing: lookups
	// counts the lookups since the last check and hits their hits, and a
	// miss after recentWindow lookups with fewer than a quarter of them
	// hits turns the cache off for the next recentOff packets (off counts
	// them down), after which it is tried again. Only the cost changes: a
	// lookup skipped is a miss.
	lookups, hits uint64
	off           int
}

// recentWindow is how many lookups the cache's hit rate is judged over;
// recentOff, how many packets a cache judged useless is left out.
const (
	recentWindow = 1024
	recentOff    = 16 * recentWindow
)

// recentSets * recentWays flows: twice the directional flows of the
// issue's 128 interleaved connections, in 40 KB of a core's L2.
const (
	recentSets = 256
	recentWays = 2
)

// recentSet is one set of the cache; victim is the way to replace next
// (the one not hit last).
type recentSet struct {
	ways   [recentWays]recentFlow
	victim uint8
}

// recentFlow is one remembered flow; gen tells whether conn still holds the
// connection it held then.
type recentFlow struct {
	netFlow gopacket.Flow
	conn    *connection
	gen     uint64
	sp, dp  uint16
	fromLo  bool
}

// set returns the set of the flow with ports sp and dp.
func (r *recentFlows) set(netFlow *gopacket.Flow, sp, dp uint16) *recentSet {
	// The flow is plain data (no pointer, no padding): hashed as bytes. Its
	// bytes past the endpoints' lengths are zero, as == compares them.
	h := maphash.Bytes(r.seed, (*[unsafe.Sizeof(gopacket.Flow{})]byte)(unsafe.Pointer(netFlow))[:])
	h ^= (uint64(sp)<<16 | uint64(dp)) * 0x9E3779B97F4A7C15
	h ^= h >> 32
	return &r.sets[h%recentSets]
}

// lookup returns, locked unless solo, the connection of a remembered flow
// that is still in the pool, and the direction of the flow.
func (r *recentFlows) lookup(netFlow *gopacket.Flow, sp, dp uint16, solo bool) (*connection, bool) {
	if r.off > 0 {
		r.off--
		return nil, false
	}
	if r.sets == nil {
		return nil, false
	}
	r.lookups++
	for _, f := range r.last {
		if f.matches(netFlow, sp, dp) {
			r.hits++
			return f.lock(solo)
		}
	}
	set := r.set(netFlow, sp, dp)
	for i := range set.ways {
		f := &set.ways[i]
		if !f.matches(netFlow, sp, dp) {
			continue
		}
		set.victim = uint8(recentWays - 1 - i)
		r.keepLast(f)
		r.hits++
		return f.lock(solo)
	}
	if r.lookups >= recentWindow {
		if 4*r.hits < r.lookups {
			r.off = recentOff
		}
		r.lookups, r.hits = 0, 0
	}
	return nil, false
}

func (f *recentFlow) matches(netFlow *gopacket.Flow, sp, dp uint16) bool {
	return f.conn != nil && f.sp == sp && f.dp == dp && f.netFlow == *netFlow
}

// lock returns the entry's connection locked (unless solo), and the
// direction of its flow, if the connection is still the one remembered;
// else it forgets it.
func (f *recentFlow) lock(solo bool) (*connection, bool) {
	c := f.conn
	if !solo {
		c.mu.Lock()
	}
	if c.gen != f.gen || c.removed {
		if !solo {
			c.mu.Unlock()
		}
		f.conn = nil
		return nil, false
	}
	return c, f.fromLo
}

func (r *recentFlows) keepLast(f *recentFlow) {
	r.last[r.lastNext] = f
	r.lastNext ^= 1
}

// remember keeps c as the connection of the flow, in place of the flow of
// its set hit least recently.
func (r *recentFlows) remember(netFlow *gopacket.Flow, sp, dp uint16, c *connection, fromLo bool) {
	if r.off > 0 {
		return
	}
	if r.sets == nil {
		r.seed = maphash.MakeSeed()
		r.sets = new([recentSets]recentSet)
		// Until then last points at an empty entry, which matches nothing.
		r.last = [2]*recentFlow{&r.sets[0].ways[0], &r.sets[0].ways[0]}
	}
	set := r.set(netFlow, sp, dp)
	i := set.victim
	f := &set.ways[i]
	*f = recentFlow{netFlow: *netFlow, sp: sp, dp: dp, fromLo: fromLo, conn: c, gen: c.gen}
	set.victim = uint8(recentWays - 1 - int(i))
	r.keepLast(f)
}
