package reassembly

import (
	"time"

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
	conn, fromLo := e.recent.lookup(netFlow, sp, dp)
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
				case err == ErrConnectionClosed:
					// A late copy of a completed connection's packet.
					e.ctr.discard(discardClosed, len(t.Payload))
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

// recentFlows remembers the connections of the last two directional flows:
// packets come in bursts per connection, in both directions, and a hit
// skips building the canonical key and the map lookup.
type recentFlows struct {
	flows [2]recentFlow
	next  int // the entry to replace next
}

// recentFlow is one remembered flow; gen tells whether conn still holds the
// connection it held then.
type recentFlow struct {
	netFlow gopacket.Flow
	sp, dp  uint16
	fromLo  bool
	conn    *connection
	gen     uint64
}

// lookup returns, locked, the connection of a remembered flow that is still
// in the pool, and the direction of the flow.
func (r *recentFlows) lookup(netFlow *gopacket.Flow, sp, dp uint16) (*connection, bool) {
	for i := range r.flows {
		f := &r.flows[i]
		if f.conn == nil || f.sp != sp || f.dp != dp || f.netFlow != *netFlow {
			continue
		}
		c := f.conn
		c.mu.Lock()
		if c.gen != f.gen || c.removed {
			c.mu.Unlock()
			f.conn = nil
			return nil, false
		}
		r.next = 1 - i
		return c, f.fromLo
	}
	return nil, false
}

// remember keeps c as the connection of the flow, in place of the flow
// used least recently.
func (r *recentFlows) remember(netFlow *gopacket.Flow, sp, dp uint16, c *connection, fromLo bool) {
	r.flows[r.next] = recentFlow{netFlow: *netFlow, sp: sp, dp: dp, fromLo: fromLo, conn: c, gen: c.gen}
	r.next = 1 - r.next
}
