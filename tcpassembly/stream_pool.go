package tcpassembly

import (
	"sync"
	"sync/atomic"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/safepacket/reassembly"
	"github.com/safepacket/reassembly/internal/stamp"
)

// StreamPool holds the connections of one or more Assemblers and makes
// their Streams through a StreamFactory. It is safe for concurrent use;
// each connection's Streams are called by one Assembler at a time.
//
// Underneath it is a reassembly.StreamPool: a connection there is both
// directions, whose bytes are routed to the Stream of each direction.
type StreamPool struct {
	factory StreamFactory
	root    *reassembly.StreamPool
	// mu is held for writing during a flush and, once Assemblers share
	// the pool, for reading while a packet is assembled, so that the
	// directions a flush touches are counted for that flush alone
	// (tally). While the pool has one Assembler, that Assembler's own
	// lock keeps its packets out of its flushes, and packets skip mu.
	mu    sync.RWMutex
	tally *flushTally
	gen   uint64
	// joined guards sole, the pool's only Assembler until a second one
	// comes and sets shared, and pending, the first Assembler once the
	// pool is shared until a flush has waited out its packets that began
	// unshared, without mu.
	joined  sync.Mutex
	sole    *Assembler
	pending *Assembler
	shared  atomic.Bool
}

// NewStreamPool returns an empty pool whose Streams factory makes.
func NewStreamPool(factory StreamFactory) *StreamPool {
	p := &StreamPool{factory: factory}
	p.root = reassembly.NewStreamPool(rootFactory{p})
	return p
}

// join registers a new Assembler of the pool; the second one makes it
// shared.
func (p *StreamPool) join(a *Assembler) {
	p.joined.Lock()
	defer p.joined.Unlock()
	switch {
	case p.shared.Load():
	case p.sole == nil:
		p.sole = a
	default:
		p.shared.Store(true)
		p.pending, p.sole = p.sole, nil
	}
}

// flushTally counts what one flush did, per direction as upstream counts.
type flushTally struct {
	gen             uint64
	flushed, closed int
}

// beginFlush locks the pool for a flush by a, which holds its own lock,
// and starts its tally. The first flush after the pool became shared
// first waits for the call the pool's first Assembler may be in, if that
// is another one: a packet it began before, without mu, ends by then, and
// its packets after that see shared set (they read it under their
// Assembler's lock). The wait comes before mu, which a packet of a shared
// pool takes after its Assembler's lock.
func (p *StreamPool) beginFlush(a *Assembler) *flushTally {
	p.joined.Lock()
	first := p.pending
	p.pending = nil
	p.joined.Unlock()
	if first != nil && first != a {
		first.mu.Lock()
		//lint:ignore SA2001 the critical section is the wait itself
		first.mu.Unlock()
	}
	p.mu.Lock()
	p.gen++
	p.tally = &flushTally{gen: p.gen}
	return p.tally
}

// endFlush ends the flush that beginFlush started.
func (p *StreamPool) endFlush() {
	p.tally = nil
	p.mu.Unlock()
}

// rootFactory makes the engine's Stream of each connection.
type rootFactory struct{ p *StreamPool }

func (f rootFactory) New(netFlow, tcpFlow gopacket.Flow, _ *layers.TCP, _ reassembly.AssemblerContext) reassembly.Stream {
	c := &connStreams{pool: f.p}
	c.dirs[0].netFlow, c.dirs[0].tcpFlow = netFlow, tcpFlow
	c.dirs[1].netFlow, c.dirs[1].tcpFlow = netFlow.Reverse(), tcpFlow.Reverse()
	return c
}

// connStreams is the engine's Stream of one connection: it makes the
// Stream of a direction when that direction's first SYN or data arrives,
// as upstream created a connection then, and hands each delivery to it.
// The engine calls it with the connection locked.
type connStreams struct {
	pool *StreamPool
	dirs [2]direction
	ret  []Reassembly
}

// direction is the state of one direction's Stream.
type direction struct {
	netFlow, tcpFlow gopacket.Flow
	stream           Stream
	made, done       bool
	// flushGen is the flush that last counted this direction.
	flushGen uint64
}

func dirIndex(d reassembly.TCPFlowDirection) int {
	if d == reassembly.TCPDirServerToClient {
		return 1
	}
	return 0
}

// Accept makes the direction's Stream on its first SYN or data. It
// refuses a bare FIN of a direction that has none yet, which upstream
// ignored (it had no connection for the direction); an RST goes through,
// so that a refused connection ends both directions.
func (c *connStreams) Accept(tcp *layers.TCP, _ gopacket.CaptureInfo, dir reassembly.TCPFlowDirection, _ reassembly.Sequence, _ *bool, _ reassembly.AssemblerContext) bool {
	d := &c.dirs[dirIndex(dir)]
	if !d.made {
		if !tcp.SYN && len(tcp.Payload) == 0 {
			return tcp.RST
		}
		d.made = true
		d.stream = c.pool.factory.New(d.netFlow, d.tcpFlow)
	}
	return true
}

// AcceptsAll tells the engine that Accept has nothing left to do for the
// direction once its Stream is made: packets in order then skip the call.
func (c *connStreams) AcceptsAll(serverToClient bool) bool {
	if serverToClient {
		return c.dirs[1].made
	}
	return c.dirs[0].made
}

var _ stamp.SteadyAccepter = (*connStreams)(nil)

// ReassembledSG gives the delivery to the direction's Stream, one
// Reassembly per part, and completes the Stream when the direction ended.
func (c *connStreams) ReassembledSG(sg reassembly.ScatterGather, _ reassembly.AssemblerContext) {
	dir, start, end, _ := sg.Info()
	d := &c.dirs[dirIndex(dir)]
	if !d.made || d.done {
		// A bare FIN or RST of a direction that never sent a SYN or data:
		// upstream had no connection for it and ignored it.
		return
	}
	pw, ok := sg.(stamp.PartReader)
	if !ok || pw.NumParts() == 0 {
		return
	}
	if d.stream != nil {
		// Filled in place: building each Reassembly aside and appending
		// it costs the packets in order a copy of each.
		n := pw.NumParts()
		if cap(c.ret) < n {
			c.ret = make([]Reassembly, n)
		}
		c.ret = c.ret[:n]
		for i := range c.ret {
			r := &c.ret[i]
			r.Bytes, r.Skip, r.Seen = pw.PartSeen(i)
			r.Start, r.End = false, false
		}
		c.ret[0].Start = start
		c.ret[n-1].End = end
		// Like upstream's, the slice stays as it is until the next call.
		d.stream.Reassembled(c.ret)
	}
	c.count(d, false)
	if end {
		c.complete(d)
	}
}

// ReassemblyComplete completes the Streams of the directions still open,
// and lets the engine forget the connection.
func (c *connStreams) ReassemblyComplete(_ reassembly.AssemblerContext) bool {
	for i := range c.dirs {
		if d := &c.dirs[i]; d.made && !d.done {
			c.complete(d)
		}
	}
	return true
}

// complete calls the direction's ReassemblyComplete, once.
func (c *connStreams) complete(d *direction) {
	d.done = true
	if d.stream != nil {
		d.stream.ReassemblyComplete()
		d.stream = nil
	}
	c.count(d, true)
}

// count tallies, during a flush, that d was flushed (and closed).
func (c *connStreams) count(d *direction, closed bool) {
	t := c.pool.tally
	if t == nil {
		return
	}
	if d.flushGen != t.gen {
		d.flushGen = t.gen
		t.flushed++
	}
	if closed {
		t.closed++
	}
}
