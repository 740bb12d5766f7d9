package reassembly

// limits are the buffering limits the engine enforces; both faces fill them
// from their options before each call.
type limits struct {
	maxPagesPerConn int // chunks per connection direction, <= 0: none
	maxPagesTotal   int // chunks per pool, <= 0: none
	// strict is the Safe face's mode: room is made before bytes are
	// buffered, pages are reserved atomically against maxPagesTotal, and
	// the byte and gap caps apply, so no limit is ever exceeded. Without
	// it the limits act as upstream's do: checked after buffering, one hole
	// skipped per packet.
	strict          bool
	maxBytesPerConn int64 // memory charged per direction, <= 0: none
	maxGapsPerConn  int   // holes per direction, <= 0: none
}

// room is the state of the make-room stage: the limits both faces set,
// and what the stage did for the packet being processed.
type room struct {
	limits
	// reserved is the pages pushHoles booked for the chunks the packet is
	// about to buffer, and reservedCost what it booked for their costs;
	// buffering gives back what its chunks did not take.
	reserved, reservedCost int64
	// forcing is set while a limit forces a direction over a hole, so that
	// the skip is counted as forced.
	forcing bool
}

// makeRoom is the fourth stage of a packet's path, for the Safe face's
// limits (strict): before an out-of-order segment is buffered, the first
// holes of its direction are pushed out until it fits, and its pages are
// booked. When nothing is left to push, the segment is sent out at once,
// over its hole. Without strict limits, buffering checks them after the
// fact, as upstream did. engine.packet calls it for a segment with bytes
// to queue under strict limits only. It reports whether the packet goes
// on.
func (e *engine) makeRoom(s *arrival) bool {
	conn, half, sg := s.conn, s.half, &e.sg
	fit := e.pushHoles(s)
	if half.depthDone {
		// A push delivered the direction's depth: nothing more goes in.
		e.giveBack()
		e.ctr.discard(discardDepth, len(s.payload))
		return false
	}
	if !fit {
		if half.closed || conn.removed {
			e.ctr.discard(discardAfterEnd, len(s.payload))
			return false
		}
		// Nothing of this direction is left to push out and the pool's
		// budget is spent: the new bytes go out at once, over the hole.
		e.room.forcing = true
		s.queue = false
		sg.add(livePart(s.payload, s.seq, s.pos, s.ac, s.meta))
		sg.end = s.end && half.finPos == s.pos+int64(len(s.payload))
		sg.rst = sg.end && s.tcp.RST
	} else if half.started() && s.pos <= half.nextPos && !(e.acked.on && e.holds(s)) {
		s.queue = false
	}
	return true
}

// giveBack returns the pages pushHoles booked, once the bytes they were
// booked for are buffered (their chunks count now) or dropped.
func (e *engine) giveBack() {
	if e.room.reserved != 0 || e.room.reservedCost != 0 {
		e.pc.budget.held.Add(-heldWord(e.room.reserved, e.room.reservedCost))
		e.room.reserved, e.room.reservedCost = 0, 0
	}
}

// overLimit reports whether half, or the pool, holds as many pages as the
// limits allow: upstream's check, after buffering.
func (e *engine) overLimit(half *halfConnection) bool {
	l := &e.room.limits
	return (l.maxPagesPerConn > 0 && half.pages >= l.maxPagesPerConn) ||
		(l.maxPagesTotal > 0 && e.table.budget.pages() >= int64(l.maxPagesTotal))
}

// pagesFor is the number of chunks n bytes are buffered in.
func pagesFor(n int) int { return (n + pageBytes - 1) / pageBytes }

// costFor is the memory n bytes are charged when buffered.
func costFor(n int) int64 {
	full, rest := n/pageBytes, n%pageBytes
	c := int64(full) * (int64(chunkClasses[numChunkClasses-1]) + chunkOverhead)
	if rest > 0 {
		c += int64(chunkClasses[classFor(rest)]) + chunkOverhead
	}
	return c
}

// fits reports whether the segment's bytes can be buffered by its
// direction within the per-direction limits, counting the hole they may
// open, and returns the pages they need and their cost.
func (e *engine) fits(s *arrival) (int, int64, bool) {
	l := &e.room.limits
	half, data, pos := s.half, s.payload, s.pos
	pages, cost := e.need(s)
	if l.maxPagesPerConn > 0 && half.pages+pages > l.maxPagesPerConn {
		return pages, cost, false
	}
	if l.maxBytesPerConn > 0 && half.cost+cost > l.maxBytesPerConn {
		return pages, cost, false
	}
	if l.maxGapsPerConn > 0 && half.runs >= l.maxGapsPerConn {
		// Only bytes that extend or fill an existing run may come in.
		if p := half.queue.floor(pos); p == nil || p.end() < pos {
			if n := half.queue.after(pos); n == nil || n.pos > pos+int64(len(data)) {
				return pages, cost, false
			}
		}
	}
	return pages, cost, true
}

// need returns what buffering the segment's bytes costs its direction, in
// pages and bytes: under a policy, only the ranges the new bytes win are
// buffered, but they may be many.
func (e *engine) need(s *arrival) (pages int, cost int64) {
	data, pos := s.payload, s.pos
	if !e.overlaps.policy {
		return pagesFor(len(data)), costFor(len(data))
	}
	for _, sp := range e.planOverlap(s.half, s.extent, pos, pos+int64(len(data))) {
		n := int(sp.to - sp.from)
		pages += pagesFor(n)
		cost += costFor(n)
	}
	return pages, cost
}

// pushHoles pushes the first holes of the segment's direction out,
// skipping them, until the segment fits its limits, and reserves the pages
// it needs in the pool's budget. It returns false when nothing is left to
// push and it still does not fit.
func (e *engine) pushHoles(s *arrival) bool {
	conn, half := s.conn, s.half
	for {
		if half.closed || conn.removed {
			return false
		}
		if half.started() && s.pos <= half.nextPos {
			if !e.acked.on || !e.holds(s) {
				return true // a push made the bytes in order: nothing to buffer
			}
			// Held until acknowledged (acked_delivery.go): a push may
			// have delivered some of the bytes.
			e.dropDelivered(s)
		}
		pages, cost, ok := e.fits(s)
		if ok {
			if need := int64(pages); e.reserve(need, cost) {
				e.room.reserved, e.room.reservedCost = need, cost
				return true
			}
		} else if e.fallBackOneSided(s) {
			continue
		}
		if half.queue.empty() {
			return false
		}
		e.room.forcing = true
		e.sg.reset()
		e.takeFirst(half)
		e.send(conn, half, e.sg.parts[0].ac)
		e.room.forcing = false
		e.sg.reset()
	}
}

// reserve books n pages of the pool's budget, and their cost, atomically,
// so that assemblers sharing the pool never exceed MaxBufferedPagesTotal
// together. The chunks the pages are booked for are charged nothing more
// (getReserved).
func (e *engine) reserve(n, cost int64) bool {
	b := e.pc.budget
	limit := int64(e.room.maxPagesTotal)
	if limit <= 0 {
		b.held.Add(heldWord(n, cost))
		return true
	}
	for {
		h := b.held.Load()
		if pagesOf(h)+n > limit {
			return false
		}
		if b.held.CompareAndSwap(h, h+heldWord(n, cost)) {
			return true
		}
	}
}
