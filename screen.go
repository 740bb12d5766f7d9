package reassembly

import (
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/safepacket/reassembly/internal/stamp"
)

// screening is the state of the screen stage: zero for the drop-in face
// by default, which screens as upstream does.
type screening struct {
	// active is set when the evasion checks apply: the screens below,
	// reassembly depths and DepthOverrider. The Safe face sets it, and the
	// drop-in face's SetOverlapPolicy with a policy other than the default.
	active bool
	// dropRST keeps the payload of an RST out of the stream.
	dropRST bool
	// checkWindow keeps out segments beyond the receiver's window
	// (window.go).
	checkWindow bool
}

// screen is the second stage of a packet's path: it notes the packet's
// time, decides whether the segment goes on, and where its bytes lie. The
// Stream's Accept may refuse it; an acknowledgement may first move the
// other direction over a hole; a closed direction takes nothing
// (closedDirection); the Safe face may keep out a segment beyond the
// receiver's window (inWindow), drops an RST's data and stops a
// direction at its reassembly depth (safeScreens). A segment that goes on
// is located in its direction's stream and cut to its depth. It reports
// whether the packet goes on.
func (e *engine) screen(s *arrival, ci *gopacket.CaptureInfo) bool {
	conn, half, t := s.conn, s.half, s.tcp
	// The packet's time counts for flushes and timeouts whatever the
	// screens decide.
	if e.clock != nil {
		conn.wallLast = e.clock.Load()
	}
	if ts := ci.Timestamp; half.lastSeen.Before(ts) {
		half.lastSeen = ts
		if ns := nanos(ts); ns > conn.seenNs {
			conn.noteSeen(ns, e.table.maxConns > 0, e.solo)
		}
	}
	if e.screening.checkWindow {
		e.noteWindow(s)
	}
	e.start = !half.started() && (t.SYN || e.life.midstream && !t.RST && (len(s.payload) > 0 || t.FIN))
	var accepted bool
	steady := &conn.steady[conn.side(half)]
	switch {
	case *steady:
		accepted = true
	case e.direct:
		accepted = conn.stream.Accept(t, *ci, half.dir, half.nextSeq, &e.start, s.ac)
		if accepted && conn.steadyOK {
			*steady = conn.stream.(stamp.SteadyAccepter).AcceptsAll(half.dir == TCPDirServerToClient)
		}
	default:
		accepted = e.safe.accept(conn, t, ci, half.dir, half.nextSeq, &e.start, s.ac)
	}
	if conn.poisoned {
		// Accept panicked (recovered by the Safe face): close at once.
		e.ctr.discard(discardClosed, len(s.payload))
		e.abort(conn, s.ac)
		return false
	}
	if !accepted {
		e.ctr.discard(discardRejected, len(s.payload))
		return false
	}
	if e.life.ackGaps && t.ACK && (e.acked.on || s.peer.mayHoldHole()) {
		if e.acked.on {
			// What the packet acknowledges may be delivered now, a hole
			// it passes skipped as ackedPast does (acked_delivery.go).
			e.noteAck(s)
		} else {
			e.ackedPast(conn, s.peer, Sequence(t.Ack), s.ac)
		}
		if conn.removed {
			// The acknowledgement completed the connection.
			e.ctr.discard(discardClosed, len(s.payload))
			e.droppedClosed = len(s.payload) > 0
			return false
		}
	}
	if half.closed {
		e.closedDirection(s)
		return false
	}
	if e.screening.checkWindow && !e.inWindow(s) {
		return false
	}
	if e.screening.active && (t.RST || conn.depthOv != nil || half.depthDone) && !e.safeScreens(s) {
		return false
	}

	// Locate the segment in its direction's stream. (Here rather than in
	// a function of its own: packets in order pay for every call.) The
	// SYN takes one sequence number, so its data starts one later, also
	// on a retransmitted SYN (upstream lost a byte there).
	s.seq = dataSeq(t)
	s.queue = true
	if !half.started() {
		// A SYN, or a first packet Accept let start it, starts the
		// direction.
		if t.SYN || e.start {
			e.startAt(half, s.seq)
			half.pickedUp = !t.SYN && e.life.midstream
			s.queue = false
		} else if t.RST && e.refuses(conn, half, t) {
			// A connection refused, or aborted before this direction sent
			// anything: upstream left it open until a flush.
			e.ctr.discard(discardAfterEnd, len(s.payload))
			e.closeHalf(conn, half, s.ac, true)
			return false
		}
	} else if half.nextSeq.Difference(s.seq) <= 0 {
		s.queue = false // nothing lies between it and the next byte to deliver
	}
	s.pos = half.posOf(s.seq)
	s.end = t.FIN || t.RST
	if (t.FIN || t.RST) && half.started() && s.pos+int64(len(s.payload)) < half.nextPos {
		// A FIN or an RST inside bytes the direction already went past is
		// a stale or forged copy: a host drops such a segment, FIN and all
		// (RFC 9293, 3.10.7.4; an RST must be in the window, RFC 5961), so
		// it ends nothing here either.
		s.end = false
	}
	if t.RST && e.screening.checkWindow && half.started() {
		// Following the host: only an RST at its receiver's next byte
		// ends the connection.
		s.end = e.resetAtNext(s)
	}
	if s.end {
		if fin := s.pos + int64(len(s.payload)); half.finPos < 0 || fin < half.finPos {
			half.finPos, half.rstEnd = fin, t.RST
			*conn.finSeenOf(half) = ci.Timestamp
		}
	}
	s.extent = span{s.pos, s.pos + int64(len(s.payload))}
	if e.screening.active && len(s.payload) > 0 && e.mayLimitDepth(conn) {
		s.payload = e.clipDepth(half, s.payload, s.pos)
		if e.depthDue(s) {
			return false
		}
	}
	if e.acked.on && !s.queue && e.holds(s) {
		// In order, but not acknowledged yet: it waits in the queue.
		s.queue = true
	}
	return true
}

// closedDirection drops a segment for a direction that is closed. An RST
// after the direction's FIN still ends the connection: the other
// direction is flushed and closed; with CheckWindow only one at the next
// byte its receiver expects (past the FIN), as for an open direction
// (resetAtNext).
func (e *engine) closedDirection(s *arrival) {
	conn, half, t := s.conn, s.half, s.tcp
	if conn.resetEnded {
		e.ctr.discard(discardAfterReset, len(s.payload))
	} else {
		e.ctr.discard(discardClosed, len(s.payload))
	}
	e.droppedClosed = len(s.payload) > 0
	if t.RST && !conn.halves[0].closed || t.RST && !conn.halves[1].closed {
		if !e.resetEnds(s) {
			return
		}
		half.closed = false
		e.closeHalf(conn, half, s.ac, true)
	}
}

// safeScreens are the Safe face's screens of a segment for an open
// direction that carries an RST, has a DepthOverrider Stream, or reached
// its depth: the Stream's depth override, the payload of an RST, and a
// direction past its depth, whose packets only close it (an RST, with
// CheckWindow, only at its receiver's next byte: resetEnds). It reports
// whether the packet goes on.
func (e *engine) safeScreens(s *arrival) bool {
	conn, half, t := s.conn, s.half, s.tcp
	if conn.depthOv != nil && !half.depthDone && !e.overrideDepth(s) {
		return false
	}
	if t.RST && len(s.payload) > 0 && e.screening.dropRST {
		// The receiver drops an RST's data; an IDS that reassembled it
		// would see bytes the host never did (Suricata bug 6244).
		e.ctr.discard(discardRST, len(s.payload))
		s.payload = nil
	}
	if half.depthDone {
		// Nothing more is buffered or delivered: a FIN or an RST only
		// closes the direction, so that the connection ends as usual.
		e.ctr.discard(discardDepth, len(s.payload))
		if t.RST && !e.resetEnds(s) {
			return false
		}
		if t.RST || t.FIN {
			e.closeHalf(conn, half, s.ac, t.RST)
		}
		return false
	}
	return true
}

// dataSeq returns the sequence number of the first byte of t's data: a
// SYN takes one sequence number, so its data starts one later.
func dataSeq(t *layers.TCP) Sequence {
	if t.SYN {
		return Sequence(t.Seq).Add(1)
	}
	return Sequence(t.Seq)
}

// refuses reports whether an RST on a direction that has not started is
// acceptable: it must acknowledge exactly what the other direction sent, as
// TCP requires of an RST answering a SYN (RFC 9293, SYN-SENT state).
func (e *engine) refuses(conn *connection, half *halfConnection, t *layers.TCP) bool {
	other := conn.other(half)
	return t.ACK && other.started() && Sequence(t.Ack) == other.nextSeq
}

// startAt makes seq the first byte of the direction, discarding buffered
// bytes that lie before it.
func (e *engine) startAt(half *halfConnection, seq Sequence) {
	pos := half.posOf(seq)
	half.setNext(seq, pos)
	half.origin, half.hasOrigin = pos, true
	for c := half.queue.min(); c != nil && c.pos < pos; c = half.queue.min() {
		if c.end() <= pos {
			half.popMin(c)
			e.ctr.discard(discardBeforeStart, len(c.bytes))
			e.release(half, c)
			continue
		}
		cut := int(pos - c.pos)
		e.ctr.discard(discardBeforeStart, cut)
		c.bytes = c.bytes[cut:]
		c.pos, c.seq = pos, seq
		half.queue.resized(-cut)
		break
	}
	if half.finPos >= 0 && half.finPos < pos {
		half.finPos = -1
	}
}
