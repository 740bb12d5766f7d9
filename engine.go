package reassembly

import (
	"sync/atomic"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/safepacket/reassembly/internal/stamp"
)

// captureContext is the AssemblerContext of Assemble and
// AssembleWithTimestamp, and of completions that no packet triggered.
type captureContext gopacket.CaptureInfo

func (c *captureContext) GetCaptureInfo() gopacket.CaptureInfo { return gopacket.CaptureInfo(*c) }

// callbacks runs the user's Stream methods. The drop-in face calls them
// directly; the Safe face recovers panics. Accept, called for every
// packet, is not among them: the engine calls it on the Stream itself
// (drop-in) or through safeCallbacks.accept with the packet's CaptureInfo
// by pointer (Safe), since a dynamic call would take it by value, one
// more copy of 72 bytes per packet, made from the copy just made.
type callbacks interface {
	newStream(c *connection, f StreamFactory, tcp *layers.TCP, ac AssemblerContext) (Stream, error)
	reassembled(c *connection, sg *scatterGather, ac AssemblerContext)
	complete(c *connection, ac AssemblerContext) bool
	// conflict hands a Conflict to the OnConflict handler f.
	conflict(c *connection, f func(Conflict), x Conflict)
	// depth asks a DepthOverrider Stream for the depth of dir.
	depth(c *connection, dir TCPFlowDirection) int
}

// engine is the reassembly machinery shared by Assembler and SafeAssembler.
// It is not safe for concurrent use; each face serializes calls to its own.
// Besides what every stage shares (the pool, the callbacks, the delivery
// being prepared, the counters), it holds the state of each stage of a
// packet's path in that stage's own struct, declared in the stage's file.
type engine struct {
	table *connTable
	pc    *pageCache
	cb    callbacks
	// direct tells that cb is directCallbacks, which packets in order
	// call around: the Stream's own Accept and ReassembledSG, without a
	// second dynamic call and a second copy of the CaptureInfo.
	direct bool
	// safe is cb when it is the Safe face's, which every packet's Accept
	// goes through with its CaptureInfo by pointer; nil when direct.
	safe *safeCallbacks
	// sg is the delivery being prepared, one per engine, reused for every
	// delivery as upstream does.
	sg  scatterGather
	ctr counters
	// clock, when set, is the coarse wall clock recorded per connection for
	// the Safe face's idle timeout.
	clock *atomic.Int64
	// lastTS is the capture time of the last packet; droppedClosed tells
	// that its payload was dropped because its direction was closed.
	lastTS        time.Time
	droppedClosed bool
	// start is Accept's start argument for the packet being processed:
	// its address goes to user code, and a local would be allocated for
	// every packet.
	start bool
	free  connFreeList
	// answered is where the client's data starts when a SYN-ACK ends a
	// conversation by answering a new SYN on its 4-tuple, else
	// invalidSequence: the next connection find makes starts there.
	answered Sequence
	// slot is set while the engine holds a slot of a capped pool's cap
	// that an eviction freed for the connection it is making, so that
	// another assembler cannot take it first (pressure.go).
	slot bool
	// stampCopy is the copy of the current packet's reused context that
	// its buffers keep (kept_context.go).
	stampCopy stampCopy
	// solo tells that the engine owns its pool for the call it is in, and
	// takes no connection's lock; joined, that it made a call (sole.go).
	solo, joined bool

	checksums checksums     // screen by checksum, before find (checksum.go)
	recent    recentFlows   // find the connection (lookup.go)
	life      lifecycle     // restarts and acknowledged holes (lifecycle.go)
	screening screening     // screen the segment (screen.go)
	depth     depthRule     // reassembly depth (depth.go)
	conflicts conflictWatch // compare with held copies (conflict.go)
	room      room          // make room under the limits (room.go)
	overlaps  overlaps      // resolve overlaps (overlap.go)
	flushes   flushState    // flushes and trims (flush.go)
	acked     ackedDelivery // acknowledged delivery (acked_delivery.go)
}

func (e *engine) init(t *connTable, cb callbacks) {
	e.table = t
	e.pc = newPageCache(&t.budget)
	e.cb = cb
	_, e.direct = cb.(directCallbacks)
	e.safe, _ = cb.(*safeCallbacks)
	e.sg.parts = make([]sgPart, 0, 16)
	e.answered = invalidSequence
}

// assemble feeds one packet. It returns the connection error of the pool
// (limit reached, nil Stream) and otherwise nil.
func (e *engine) assemble(netFlow gopacket.Flow, t *layers.TCP, ac AssemblerContext) error {
	// The face's stamp is read in place; any other context copied once.
	var ci *gopacket.CaptureInfo
	if st, ok := ac.(*stamp.Context); ok {
		ci = &st.Info
	} else {
		own := ac.GetCaptureInfo()
		ci = &own
	}
	e.lastTS = ci.Timestamp
	e.droppedClosed = false
	e.ctr.packets++
	e.ctr.bytesIn += int64(len(t.Payload))
	if e.checksums.policy != ChecksumOff && !e.checkSum(&netFlow, t, ci) {
		return nil
	}
	conn, fromLo, err := e.find(&netFlow, t, ci.Timestamp, ac)
	if conn == nil {
		return err
	}
	defer e.unlockConn(conn)
	e.packet(conn, fromLo, t, ci, ac)
	return nil
}

func (e *engine) newStream(c *connection, tcp *layers.TCP, ac AssemblerContext) (Stream, error) {
	s, err := e.cb.newStream(c, e.table.factory, tcp, ac)
	if err == nil && e.direct {
		_, c.steadyOK = s.(stamp.SteadyAccepter)
	}
	if err == nil && s != nil && e.screening.active {
		c.depthOv, _ = s.(DepthOverrider)
		c.halves[0].depth, c.halves[1].depth = e.depth.perDirection, e.depth.perDirection
	}
	return s, err
}

// packet takes a packet of a locked connection down the stages of its
// path, each in the file of its idea, always in this order (README.md,
// "How it works"); a stage that is done with the packet (refused, dropped,
// or the connection ended) ends it. Room is made before overlaps are
// resolved because pushing holes out delivers buffered bytes, which
// changes what the segment overlaps. The tests in front of compare and
// makeRoom are those stages' first tests, here so that a packet they have
// nothing to do for does not pay for the call: packets in order are most
// of the traffic.
func (e *engine) packet(conn *connection, fromLo bool, t *layers.TCP, ci *gopacket.CaptureInfo, ac AssemblerContext) {
	// Filled field by field: a composite literal is built aside and copied.
	var s arrival
	s.conn, s.tcp, s.ac, s.payload = conn, t, ac, t.Payload
	s.meta = pktMeta{ack: t.Ack, flags: flagsOf(t)}
	s.half, s.peer = conn.half(fromLo)

	// Screen the segment (screen.go).
	e.acked.hold = e.acked.on
	if !e.screen(&s, ci) {
		e.acked.hold = false
		return
	}
	// Compare it with the copies its direction holds (conflict.go).
	if e.conflicts.detect && s.mayOverlapHeld() && !e.compare(&s, ci) {
		e.acked.hold = false
		return
	}
	if s.queue && e.acked.on && s.half.started() && s.pos < s.half.nextPos {
		// Held until acknowledged (acked_delivery.go): its copy of bytes
		// already delivered goes as in order.
		e.dropDelivered(&s)
	}
	// Make room for it under the Safe face's limits (room.go); the
	// packet's delivery starts empty.
	e.sg.reset()
	if s.queue && e.room.strict && len(s.payload) > 0 && !e.makeRoom(&s) {
		e.acked.hold = false
		return
	}
	// Resolve its overlaps, and buffer it or deliver it (buffer.go,
	// overlap.go).
	switch {
	case len(e.sg.parts) > 0:
		// makeRoom sent the bytes out at once, over their hole.
	case s.queue:
		e.buffer(&s, ci.Timestamp)
	default:
		e.deliverInOrder(&s)
	}
	// Complete the delivery: hand it to the Stream with the buffered bytes
	// that now follow, and close the direction at its end (deliver.go,
	// close.go).
	if len(e.sg.parts) > 0 {
		e.send(conn, s.half, ac)
	}
	e.room.forcing = false
	if e.acked.on {
		// Deliver what acknowledgements allow, or the connection's end
		// forces (acked_delivery.go).
		e.settleAcked(&s)
		e.acked.hold = false
	}
	e.settleHint(conn, s.half)
}
