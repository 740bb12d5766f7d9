// Package tcpassembly reassembles each direction of TCP connections from
// captured packets. It is a drop-in replacement for
// github.com/google/gopacket/tcpassembly: every exported name of that
// package is here with the same signature and, where upstream is right,
// the same behaviour, on the engine of github.com/safepacket/reassembly
// (no panics on any input, buffered memory charged against the page
// limits, out-of-order insertion in O(log n), no global flags).
//
// The caller hands TCP packets to an Assembler, which finds their
// connection in a StreamPool, asks the StreamFactory for a Stream per
// direction, and passes each direction's bytes to its Stream in sequence
// order. MIGRATION.md lists where it behaves differently from upstream.
package tcpassembly

import (
	"sync"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/safepacket/reassembly"
	"github.com/safepacket/reassembly/internal/stamp"
)

// AssemblerOptions are the buffering limits of an Assembler.
type AssemblerOptions struct {
	// MaxBufferedPagesTotal caps the pages (buffers of up to 1900 bytes)
	// held out of order by all the assemblers of the pool; at the cap each
	// new out-of-order packet pushes its direction over its first hole.
	// <= 0 means no cap.
	MaxBufferedPagesTotal int
	// MaxBufferedPagesPerConnection caps the pages held for one direction;
	// at the cap the direction skips its first hole. <= 0 means no cap.
	MaxBufferedPagesPerConnection int
}

// DefaultAssemblerOptions are the options NewAssembler starts from: no
// limits, as upstream, so memory grows with what is held out of order
// unless the Assembler is flushed regularly or given limits.
var DefaultAssemblerOptions = AssemblerOptions{
	MaxBufferedPagesPerConnection: 0,
	MaxBufferedPagesTotal:         0,
}

// FlushOptions select what FlushWithOptions does.
type FlushOptions struct {
	T        time.Time // deliver, skipping holes, bytes held since before T (zero: none)
	CloseAll bool      // also close the directions idle since before T with nothing held
}

// Assembler reassembles the packets handed to it into the Streams of its
// StreamPool. Its methods may be called from several goroutines (they are
// serialized); for parallelism give each goroutine its own Assembler,
// sharing one pool or, better, each with its own pool fed by a flow hash.
type Assembler struct {
	AssemblerOptions

	mu   sync.Mutex
	pool *StreamPool
	root *reassembly.Assembler
	// ctx is the context of the packet being assembled, restamped for
	// each one instead of allocated: the engine copies it for the bytes
	// it buffers, and the face's Streams never see it.
	ctx stamp.Context
}

// NewAssembler returns an Assembler that uses pool, with
// DefaultAssemblerOptions.
func NewAssembler(pool *StreamPool) *Assembler {
	root := reassembly.NewAssembler(pool.root)
	// Upstream kept every out-of-order segment and trimmed each, when
	// delivered, to what the segments before it left: the one that starts
	// first wins, and of two with the same start the older one.
	root.SetOverlapPolicy(reassembly.OverlapBSD)
	// It held a FIN behind a hole as a page, which flushes pushed through.
	root.SetFlushHeldFINs(true)
	a := &Assembler{
		AssemblerOptions: DefaultAssemblerOptions,
		pool:             pool,
		root:             root,
		// The engine's Assembler is this one's alone, and every call to
		// it holds mu.
		ctx: stamp.Context{Serialized: true},
	}
	a.ctx.Lock = &a.mu
	// reassembly.NewAssembler joined the engine's pool above, holding no
	// lock: a second Assembler ends the first one's sole use of the pool
	// there, waiting for the call the first is in, and never later under
	// the pool's mu, which that call may be waiting for.
	pool.join(a)
	return a
}

// lock serializes the Assembler and hands its current limits to the
// engine.
func (a *Assembler) lock() {
	a.mu.Lock()
	a.root.AssemblerOptions = reassembly.AssemblerOptions{
		MaxBufferedPagesTotal:         a.MaxBufferedPagesTotal,
		MaxBufferedPagesPerConnection: a.MaxBufferedPagesPerConnection,
	}
}

// Assemble reassembles a packet stamped with the current time, for packets
// read off the wire.
func (a *Assembler) Assemble(netFlow gopacket.Flow, t *layers.TCP) {
	a.AssembleWithTimestamp(netFlow, t, time.Now())
}

// AssembleWithTimestamp reassembles a packet seen at timestamp (for a pcap,
// its CaptureInfo.Timestamp); the timestamp becomes the Seen of its bytes
// and decides what later flushes treat as old. A packet with neither SYN,
// FIN, RST nor data is ignored, as is a nil one.
//
// It causes at most one StreamFactory.New call, and Reassembled and
// ReassemblyComplete calls on the Streams of the packet's connection.
func (a *Assembler) AssembleWithTimestamp(netFlow gopacket.Flow, t *layers.TCP, timestamp time.Time) {
	if t == nil || !t.SYN && !t.FIN && !t.RST && len(t.Payload) == 0 {
		return
	}
	// Locks are taken in this order: the Assembler's, then the pool's.
	a.lock()
	defer a.mu.Unlock()
	if a.pool.shared.Load() {
		a.pool.mu.RLock()
		defer a.pool.mu.RUnlock()
	}
	a.ctx.Stamp(timestamp)
	a.root.AssembleWithContext(netFlow, t, &a.ctx)
}

// FlushWithOptions delivers, skipping the holes before them, the bytes
// held since before opt.T, each hole with the bytes that follow it without
// another hole. With opt.CloseAll it also closes the directions that then
// hold nothing and whose connection saw no packet since before opt.T; a
// direction whose end (FIN or RST) a flush reaches closes anyway. It
// returns the number of directions flushed or closed, and of those, the
// number closed.
func (a *Assembler) FlushWithOptions(opt FlushOptions) (flushed, closed int) {
	a.lock()
	defer a.mu.Unlock()
	tally := a.pool.beginFlush(a)
	defer a.pool.endFlush()
	ro := reassembly.FlushOptions{T: opt.T}
	if opt.CloseAll {
		ro.TC = opt.T
	}
	a.root.FlushWithOptions(ro)
	return tally.flushed, tally.closed
}

// FlushOlderThan is FlushWithOptions with CloseAll set.
func (a *Assembler) FlushOlderThan(t time.Time) (flushed, closed int) {
	return a.FlushWithOptions(FlushOptions{CloseAll: true, T: t})
}

// FlushAll delivers everything held, skipping holes, closes every
// direction of the pool, and returns how many it closed.
func (a *Assembler) FlushAll() (closed int) {
	a.lock()
	defer a.mu.Unlock()
	tally := a.pool.beginFlush(a)
	defer a.pool.endFlush()
	a.root.FlushAll()
	return tally.closed
}
