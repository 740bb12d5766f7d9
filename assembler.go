// Package reassembly reassembles TCP streams from captured packets. It is a
// drop-in replacement for github.com/google/gopacket/reassembly: every
// exported name of that package is here with the same signature and, where
// upstream is right, the same behaviour, and a hardened face (SafeStreamPool,
// SafeAssembler) adds limits, errors instead of panics, a clean lifecycle and
// statistics.
//
// Packets go to an Assembler (or a SafeAssembler), which finds their
// connection in a StreamPool, creates a Stream for new connections through a
// StreamFactory, and hands each direction's bytes to that Stream in sequence
// order. Assemblers may share a pool and run in different goroutines.
package reassembly

import (
	"fmt"
	"sync"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/safepacket/reassembly/internal/stamp"
)

// AssemblerOptions are the buffering limits of an Assembler.
type AssemblerOptions struct {
	// MaxBufferedPagesTotal caps the pages (buffers of up to 1900 bytes)
	// buffered out of order by all the assemblers of the pool; at the cap
	// each new out-of-order packet forces its connection forward over its
	// first hole. <= 0 means no cap.
	MaxBufferedPagesTotal int
	// MaxBufferedPagesPerConnection caps the pages buffered for one
	// direction of a connection; at the cap the direction skips its first
	// hole. <= 0 means no cap.
	MaxBufferedPagesPerConnection int
}

// DefaultAssemblerOptions are the options NewAssembler starts from: no
// limits, as upstream. It is a variable only for compatibility; prefer
// setting the options of each Assembler, or use NewSafeAssembler.
var DefaultAssemblerOptions = AssemblerOptions{
	MaxBufferedPagesTotal:         0,
	MaxBufferedPagesPerConnection: 0,
}

// FlushOptions select what a flush does.
type FlushOptions struct {
	T  time.Time // deliver, skipping holes, bytes buffered before T (zero: none)
	TC time.Time // close connections idle since before TC (zero: none)
}

// Assembler reassembles the packets handed to it into the Streams of its
// StreamPool. Unlike upstream's, its methods may be called from several
// goroutines (they are serialized); for parallelism give each goroutine its
// own Assembler, sharing one pool or, better, a pool each fed by a flow hash.
type Assembler struct {
	AssemblerOptions

	mu   sync.Mutex
	pool *StreamPool
	eng  engine
}

// NewAssembler returns an Assembler that uses pool, with
// DefaultAssemblerOptions.
func NewAssembler(pool *StreamPool) *Assembler {
	a := &Assembler{AssemblerOptions: DefaultAssemblerOptions, pool: pool}
	a.eng.init(&pool.t, directCallbacks{})
	// Joining the pool now ends another assembler's sole use of it
	// (sole.go), which waits for the call that one is in: here, rather
	// than at this one's first call, which a Stream callback of the other
	// could make and then wait for itself.
	a.eng.enter(nil)
	return a
}

// directCallbacks calls the Stream as upstream does: a panic in the user's
// code reaches the caller.
type directCallbacks struct{}

func (directCallbacks) newStream(c *connection, f StreamFactory, tcp *layers.TCP, ac AssemblerContext) (Stream, error) {
	netFlow, tcpFlow := c.key.flows(c.c2sFromLo)
	return f.New(netFlow, tcpFlow, tcp, ac), nil
}

func (directCallbacks) reassembled(c *connection, sg *scatterGather, ac AssemblerContext) {
	c.stream.ReassembledSG(sg, ac)
}

func (directCallbacks) complete(c *connection, ac AssemblerContext) bool {
	return c.stream.ReassemblyComplete(ac)
}

// lock serializes a call other than a packet's.
func (a *Assembler) lock() {
	a.mu.Lock()
	a.applyLimits()
	a.eng.enter(nil)
}

// applyLimits hands the current options to the engine.
func (a *Assembler) applyLimits() {
	a.eng.room.limits = limits{
		maxPagesPerConn: a.MaxBufferedPagesPerConnection,
		maxPagesTotal:   a.MaxBufferedPagesTotal,
	}
}

// SetSkipAckedHoles makes the assembler skip a hole as soon as the peer
// acknowledges bytes past it, instead of waiting for a flush as upstream
// does: the host received those bytes, so the hole is a capture gap that
// will never fill. The bytes after it are delivered with the skip, and a
// FIN so reached completes its direction. Off by default.
func (a *Assembler) SetSkipAckedHoles(on bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.eng.life.ackGaps = on
}

// SetOverlapPolicy chooses which copy wins when buffered, not yet delivered
// segments overlap (see OverlapPolicy). The default, OverlapDefault, is
// upstream reassembly's: the newest copy. The tcpassembly face sets
// OverlapBSD, the rule of upstream tcpassembly, where the segment that
// starts first wins and an equal start keeps the older copy. A policy
// other than the default takes the engine's slower, per-byte overlap
// path; the default costs nothing.
func (a *Assembler) SetOverlapPolicy(p OverlapPolicy) {
	a.mu.Lock()
	defer a.mu.Unlock()
	r := p.rule()
	a.eng.overlaps.rule = r
	a.eng.overlaps.policy = r != ruleLast
	a.eng.screening.active = a.eng.overlaps.policy
}

// SetFlushHeldFINs makes flushes push through a FIN that waits behind a
// hole with no bytes after the hole, as they do held bytes: one that
// arrived before FlushOptions.T, and any at FlushAll, is delivered (empty,
// with the hole as its skip) and ends its direction. Off by default, as
// upstream reassembly, which dropped such a FIN; the tcpassembly face turns
// it on, as upstream tcpassembly held the FIN as a page.
func (a *Assembler) SetFlushHeldFINs(on bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.eng.life.heldFIN = on
}

// Assemble reassembles a packet stamped with the current time, for packets
// read off the wire.
func (a *Assembler) Assemble(netFlow gopacket.Flow, t *layers.TCP) {
	ctx := captureContext{Timestamp: time.Now()}
	a.AssembleWithContext(netFlow, t, &ctx)
}

// AssembleWithTimestamp reassembles a packet seen at ts, as the older
// tcpassembly package's method of the same name did.
func (a *Assembler) AssembleWithTimestamp(netFlow gopacket.Flow, t *layers.TCP, ts time.Time) {
	ctx := captureContext{Timestamp: ts}
	a.AssembleWithContext(netFlow, t, &ctx)
}

// AssembleWithContext reassembles a packet whose capture metadata ac
// carries; its timestamp decides what later flushes treat as old. A nil
// packet is ignored, and a nil context counts as a zero CaptureInfo.
//
// It causes at most one StreamFactory.New call, one Accept call, and
// ReassembledSG and ReassemblyComplete calls for that packet's connection.
func (a *Assembler) AssembleWithContext(netFlow gopacket.Flow, t *layers.TCP, ac AssemblerContext) {
	if t == nil {
		return
	}
	if ac == nil {
		ac = &captureContext{}
	}
	if s, ok := ac.(*stamp.Context); ok && s.Serialized {
		// The tcpassembly face holds its own lock around every call.
		a.applyLimits()
		a.eng.enter(s.Lock)
		_ = a.eng.assemble(netFlow, t, ac)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.applyLimits()
	a.eng.enter(&a.mu)
	_ = a.eng.assemble(netFlow, t, ac)
}

// FlushWithOptions delivers, skipping the holes before them, the bytes
// buffered before opt.T, and closes the connections idle since before
// opt.TC. It returns the number of directions flushed and closed.
func (a *Assembler) FlushWithOptions(opt FlushOptions) (flushed, closed int) {
	a.lock()
	defer a.mu.Unlock()
	return a.eng.flushWithOptions(opt)
}

// FlushCloseOlderThan flushes and closes what is older than t; it is
// FlushWithOptions with T and TC both t.
func (a *Assembler) FlushCloseOlderThan(t time.Time) (flushed, closed int) {
	return a.FlushWithOptions(FlushOptions{T: t, TC: t})
}

// FlushAll delivers everything buffered, closes every connection of the
// pool, and returns how many connections the pool held.
func (a *Assembler) FlushAll() (closed int) {
	a.lock()
	defer a.mu.Unlock()
	return a.eng.flushAll()
}

// Dump returns a one-line summary of the buffers the Assembler uses.
func (a *Assembler) Dump() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	b := &a.eng.table.budget
	return fmt.Sprintf("pageCache: used: %d, peak: %d, free: %d, connections: %d",
		b.pages(), b.peak.Load(), a.eng.pc.freeChunks(), a.eng.table.size())
}
