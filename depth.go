package reassembly

// depthRule is the Safe face's reassembly depth: how many bytes of each
// direction are reassembled before the rest is dropped.
type depthRule struct {
	perDirection int64 // SafeAssemblerOptions.ReassemblyDepth, 0: none
}

// DepthOverrider is implemented by a Stream that chooses its own
// reassembly depth, per direction, instead of the SafeAssembler's
// ReassemblyDepth: an HTTP analyzer may lift the limit for a file transfer
// it wants whole, or lower it once it has seen the headers it needs.
//
// The Safe face calls ReassemblyDepth after every Accept that returned
// true, for the packet's direction, until that direction reaches its depth;
// the answer holds from that packet on. A depth at or below what the
// direction already delivered ends it at its next delivery. The drop-in
// face ignores it.
type DepthOverrider interface {
	// ReassemblyDepth returns the depth of direction dir in bytes: > 0
	// sets it, 0 keeps SafeAssemblerOptions.ReassemblyDepth, and < 0
	// removes the limit.
	ReassemblyDepth(dir TCPFlowDirection) int
}

// DepthReporter is implemented by the ScatterGather handed to
// Stream.ReassembledSG. A Stream that sets a reassembly depth learns that a
// direction reached it with a type assertion:
//
//	if d, ok := sg.(reassembly.DepthReporter); ok && d.DepthReached() {
//		// the last delivery of this direction
//	}
type DepthReporter interface {
	// DepthReached reports whether the delivery ends its direction's
	// stream because the direction reached its reassembly depth: its bytes
	// stop exactly at the depth (holes count towards it, as stream
	// offsets), and the direction gets no further ReassembledSG call. The
	// Stream still gets ReassemblyComplete when the connection ends.
	DepthReached() bool
}

// DepthReached reports whether the direction reached its reassembly depth
// with this delivery.
func (sg *scatterGather) DepthReached() bool { return sg.depth }

var _ DepthReporter = (*scatterGather)(nil)

// mayLimitDepth reports whether a direction of conn can have a reassembly
// depth: only then is the half's depth, on a cache line that packets in
// order do not otherwise touch, worth reading.
func (e *engine) mayLimitDepth(conn *connection) bool {
	return e.depth.perDirection > 0 || conn.depthOv != nil
}

// overrideDepth sets the depth of the segment's direction from the
// answer of its DepthOverrider Stream, asked before anything of the
// segment is buffered. It reports false when the Stream panicked: the
// connection is then aborted.
func (e *engine) overrideDepth(s *arrival) bool {
	conn, half := s.conn, s.half
	d := e.cb.depth(conn, half.dir)
	if conn.poisoned {
		e.ctr.discard(discardClosed, len(s.payload))
		e.abort(conn, s.ac)
		return false
	}
	switch {
	case d > 0:
		half.depth = int64(d)
	case d == 0:
		half.depth = e.depth.perDirection
	default:
		half.depth = 0
	}
	return true
}

// depthLimit returns the stream offset at which half reaches its depth, or
// -1 when it has none or its start is not known yet.
func (half *halfConnection) depthLimit() int64 {
	if half.depth <= 0 || !half.hasOrigin {
		return -1
	}
	return half.origin + half.depth
}

// clipDepth drops the bytes of payload, at offset pos, that lie at or past
// the direction's depth, so that they are never buffered.
func (e *engine) clipDepth(half *halfConnection, payload []byte, pos int64) []byte {
	limit := half.depthLimit()
	if limit < 0 {
		return payload
	}
	if end := pos + int64(len(payload)); end > limit {
		keep := int(max(0, limit-pos))
		e.ctr.discard(discardDepth, len(payload)-keep)
		payload = payload[:keep]
	}
	return payload
}

// cutAtDepth marks the delivery being prepared, which ends at offset last
// (sequence number lastSeq), as the direction's last when it reaches the
// depth, and cuts it there; it returns the new end. The delivery also ends
// the stream when the direction's end was seen already.
func (e *engine) cutAtDepth(half *halfConnection, last int64, lastSeq Sequence) (int64, Sequence) {
	limit := half.depthLimit()
	if limit < 0 || last < limit {
		return last, lastSeq
	}
	if last > limit {
		last, lastSeq = e.cutAt(half, limit, discardDepth)
	}
	e.sg.depth = true
	if half.finPos >= 0 {
		e.sg.end, e.sg.rst = true, half.rstEnd
	}
	return last, lastSeq
}

// depthDue ends, with an empty delivery marked DepthReached, a direction
// that delivered its depth already: its depth was lowered below what it
// delivered. It reports whether it did.
func (e *engine) depthDue(s *arrival) bool {
	half := s.half
	limit := half.depthLimit()
	if limit < 0 || half.nextPos < limit {
		return false
	}
	e.sg.reset()
	e.sg.add(sgPart{seq: half.nextSeq, ack: s.meta.ack, pos: half.nextPos, ac: s.ac, flags: s.meta.flags})
	e.send(s.conn, half, s.ac)
	return true
}

// reachDepth ends a direction that delivered its depth: what it buffers or
// keeps is dropped, and it buffers nothing from now on.
func (e *engine) reachDepth(half *halfConnection) {
	half.depthDone = true
	e.ctr.depthReached++
	e.dropBuffered(half, discardDepth)
}

func (directCallbacks) depth(c *connection, dir TCPFlowDirection) int {
	return c.depthOv.ReassemblyDepth(dir)
}

func (s *safeCallbacks) depth(c *connection, dir TCPFlowDirection) (d int) {
	defer func() {
		if r := recover(); r != nil {
			s.recovered(c, "DepthOverrider.ReassemblyDepth", r)
			d = 0
		}
	}()
	return c.depthOv.ReassemblyDepth(dir)
}
