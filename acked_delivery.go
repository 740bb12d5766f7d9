package reassembly

import "math"

// Acknowledged delivery (the Safe face's AckedDelivery option): the bytes
// of a direction reach its Stream only once the other side acknowledged
// them, as Suricata's IDS mode inspects only ACKed data, so that a copy the
// host never accepted (a TTL too low to reach it, a checksum it drops) can
// still be replaced by the copy it did accept before anything is
// delivered. Unacknowledged bytes wait in the direction's queue, under the
// page and byte budgets, even when they are in order; an acknowledgement
// delivers what it covers, and a hole it passes is a gap by lifecycle.go's
// rule (ackedPast). Bytes still unacknowledged are delivered when the
// connection ends (an RST, both FINs, or a FIN the other side can never
// acknowledge because it never acknowledged anything), when a limit or a
// flush forces them, and, for captures that miss the other side, once the
// direction holds oneSided bytes without any acknowledgement: each such
// byte is counted under its reason.

// ackedDelivery is the engine's state for acknowledged delivery.
type ackedDelivery struct {
	// on is the AckedDelivery option.
	on bool
	// hold is set while a packet goes down its path: only then do
	// acknowledgements limit what is delivered. Flushes, evictions and
	// closing deliver whatever they take.
	hold bool
	// oneSided is how many bytes a direction holds, while the other side
	// has acknowledged nothing at all, before it stops waiting.
	oneSided int
	// releasing is set while an acknowledgement delivers held bytes: one
	// packet's bytes per delivery, as they would have been delivered on
	// arrival, so that a Stream's Fetch need not join several.
	releasing bool
	// why is the reason counted for unacknowledged bytes delivered while
	// hold is clear: the end of the connection unless a flush or an
	// eviction says otherwise.
	why unackedReason
}

// ackState is what the other side acknowledged of one direction
// (connection.acks).
type ackState struct {
	// pos is the offset just past the bytes acknowledged, once seen.
	pos  int64
	seen bool
	// oneSided is set once the direction stopped waiting for an
	// acknowledgement that never came: it delivers as without the option.
	oneSided bool
}

// unackedReason tells why bytes were delivered before the other side
// acknowledged them.
type unackedReason uint8

const (
	unackedAtEnd    unackedReason = iota // the connection ended
	unackedLimit                         // a buffer or connection limit forced them
	unackedFlush                         // a flush or a timeout forced them
	unackedOneSided                      // the other side never acknowledged anything
	numUnackedReasons
)

// noAck is the delivery limit of a direction nothing of which was
// acknowledged: below every offset.
const noAck = math.MinInt64

// ackOf returns the acknowledgement state of half.
func (c *connection) ackOf(half *halfConnection) *ackState {
	return &c.acks[c.side(half)]
}

// ackLimit returns the offset up to which half may deliver now: everything
// unless a packet's path is delivering under acknowledged delivery, where
// it is what the other side acknowledged, and everything again when a
// limit forces bytes out, the direction stopped waiting, or the
// connection ends.
func (e *engine) ackLimit(conn *connection, half *halfConnection) int64 {
	st := conn.ackOf(half)
	if !e.acked.hold || e.room.forcing || st.oneSided || e.ackEnds(conn, half) {
		return math.MaxInt64
	}
	if !st.seen {
		return noAck
	}
	return st.pos
}

// ackEnds reports whether half's unacknowledged bytes are due because the
// connection ends: half or its peer ended with an RST, both sent their FIN,
// or half sent its FIN and the peer has acknowledged nothing of it (a
// one-sided capture).
func (e *engine) ackEnds(conn *connection, half *halfConnection) bool {
	peer := conn.other(half)
	if peer.finPos >= 0 && peer.rstEnd {
		return true
	}
	return half.finPos >= 0 && (half.rstEnd || peer.finPos >= 0 || !conn.ackOf(half).seen)
}

// holds reports whether the in-order segment of s must wait for an
// acknowledgement before it is delivered.
func (e *engine) holds(s *arrival) bool {
	return len(s.payload) > 0 && s.pos+int64(len(s.payload)) > e.ackLimit(s.conn, s.half)
}

// noteAck records what the packet of s acknowledges of the other direction,
// and delivers the bytes that direction held that it covers.
func (e *engine) noteAck(s *arrival) {
	peer := s.peer
	if !peer.started() {
		return
	}
	st := s.conn.ackOf(peer)
	pos := peer.posOf(Sequence(s.tcp.Ack))
	if !st.seen || pos > st.pos {
		st.pos, st.seen = pos, true
	}
	if peer.mayHoldHole() {
		e.releaseAcked(s.conn, peer, s.ac, pos)
	}
}

// releaseAcked delivers what half holds up to its delivery limit: the
// bytes in order, and, by lifecycle.go's rule, over a hole that the
// acknowledgement of the packet, up to offset ack (noAck for none),
// passes.
func (e *engine) releaseAcked(conn *connection, half *halfConnection, ac AssemblerContext, ack int64) {
	for !half.closed && !conn.removed {
		limit := e.ackLimit(conn, half)
		if limit <= half.nextPos {
			return
		}
		c := half.queue.min()
		if c == nil || c.pos > half.nextPos {
			// A hole, or only the FIN, is left. Without a limit, the
			// bytes after a hole wait as they do without the option.
			if ack = min(ack, limit); ack <= half.nextPos || !half.mayHoldHole() {
				return
			}
			before := half.nextPos
			e.ackedPast(conn, half, half.anchorSeq.Add(int(ack-half.anchorPos)), ac)
			if half.nextPos == before {
				return // the rule waits for a second acknowledgement
			}
			continue
		}
		e.sg.reset()
		e.takeHead(half, c, limit)
		e.acked.releasing = true
		e.send(conn, half, e.sg.parts[0].ac)
		e.acked.releasing = false
		e.sg.reset()
	}
}

// takeHead moves the bytes of the first queued chunk c before limit into
// the delivery: all of c, or its head, c keeping the rest.
func (e *engine) takeHead(half *halfConnection, c *chunk, limit int64) {
	if c.end() <= limit {
		half.popMin(c)
		e.sg.addChunk(c)
		return
	}
	n := int(limit - c.pos)
	p := chunkPart(c, false)
	p.bytes, p.chunk = c.bytes[:n:n], nil
	e.sg.add(p)
	c.bytes = c.bytes[n:]
	c.pos += int64(n)
	c.seq = c.seq.Add(n)
	c.packetStart = false
	half.queue.resized(-n)
}

// settleAcked ends the path of a packet under acknowledged delivery: a SYN
// that carries held data still starts the direction's deliveries; a
// direction that held as many bytes as a one-sided capture allows stops
// waiting; and both directions deliver what their limits now allow, all
// they hold in order when the connection ends. Holes are waited on as
// without the option: a FIN can come before the last bytes.
func (e *engine) settleAcked(s *arrival) {
	conn, half := s.conn, s.half
	if conn.removed {
		return
	}
	if s.tcp.SYN && !half.delivered && half.started() && !half.closed {
		e.sg.reset()
		e.sg.add(livePart(nil, half.nextSeq, half.nextPos, s.ac, s.meta))
		e.sg.start = true
		e.send(conn, half, s.ac)
		e.sg.reset()
	}
	if st := conn.ackOf(half); !st.seen && !st.oneSided && !half.closed && half.queue.bytes >= e.acked.oneSided {
		st.oneSided = true
		e.ctr.oneSidedFallbacks++
	}
	for _, h := range [2]*halfConnection{half, s.peer} {
		if !conn.removed && h.mayHoldHole() {
			e.releaseAcked(conn, h, s.ac, noAck)
		}
	}
}

// fallBackOneSided is AckedDeliveryOneSided's rule reached by the
// direction's own buffer limit before its byte threshold: a direction that
// holds all its limits allow while its peer has acknowledged nothing is one
// whose other side the capture misses, so it stops waiting and delivers
// what it holds in order. The pool's limit is no such sign (other
// connections fill it too): makeRoom calls this only when the direction's
// own limits refuse the segment. It reports whether the direction fell
// back.
func (e *engine) fallBackOneSided(s *arrival) bool {
	conn, half := s.conn, s.half
	if !e.acked.on || half.closed {
		return false
	}
	st := conn.ackOf(half)
	if st.seen || st.oneSided {
		return false
	}
	st.oneSided = true
	e.ctr.oneSidedFallbacks++
	e.releaseAcked(conn, half, s.ac, noAck)
	return true
}

// countAcked counts the bytes of the delivery being sent for half as
// acknowledged or not, and those not under the reason that delivers them.
func (e *engine) countAcked(conn *connection, half *halfConnection) {
	st := conn.ackOf(half)
	why := e.acked.why
	switch {
	case e.room.forcing:
		why = unackedLimit
	case st.oneSided || !st.seen:
		why = unackedOneSided
	}
	for i := range e.sg.parts {
		p := &e.sg.parts[i]
		if p.kept {
			continue
		}
		n := int64(len(p.bytes))
		acked := int64(0)
		if st.seen {
			acked = min(n, max(0, st.pos-p.pos))
		}
		e.ctr.ackedBytes += acked
		e.ctr.unacked[why] += n - acked
	}
}

// forcedBy sets the reason counted for unacknowledged bytes delivered
// until the returned function restores the previous one.
func (e *engine) forcedBy(r unackedReason) func() {
	prev := e.acked.why
	e.acked.why = r
	return func() { e.acked.why = prev }
}
