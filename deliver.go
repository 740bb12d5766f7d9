package reassembly

import "math"

// takeFirst moves the first queued chunk into the delivery, skipping the
// hole before it.
func (e *engine) takeFirst(half *halfConnection) {
	c := half.queue.min()
	if c == nil {
		return
	}
	half.popMin(c)
	e.sg.addChunk(c)
}

// send is the last stage of a packet's path, and how flushes and
// acknowledged holes deliver too. It completes the delivery prepared in
// e.sg: it prepends kept bytes,
// appends the queued bytes that follow without a hole, calls the Stream,
// keeps what it asked for, and closes the direction at its end.
func (e *engine) send(conn *connection, half *halfConnection, ac AssemblerContext) {
	sg := &e.sg
	// Only its offset: copying the whole part costs packets in order.
	firstPos := sg.parts[0].pos
	sg.dir = half.dir
	sg.skip = -1
	if !half.delivered && half.resumed {
		// A resumed direction has no SYN in this connection: its first
		// delivery starts it, whichever path sends it (in order, held for
		// an acknowledgement, flushed, forced).
		sg.start = true
	}
	if !half.delivered && half.pickedUp {
		// Picked up mid-stream: what came before is unknown, as upstream
		// reports a start it did not see.
	} else if half.started() {
		sg.skip = int(firstPos - half.nextPos)
	} else {
		half.origin, half.hasOrigin = firstPos, true
	}
	if e.room.forcing && sg.skip != 0 {
		// Counted here, not where the limit forces the delivery: a push
		// can find its bytes in order (the hole already filled), and a
		// skip of unknown size (-1) is a hole too.
		e.ctr.forcedFlushes++
	}
	if sg.skip > 0 {
		e.ctr.gaps++
		e.ctr.gapBytes += int64(sg.skip)
		if e.room.forcing {
			e.ctr.forcedGapBytes += int64(sg.skip)
		}
		if e.life.acking {
			e.ctr.ackedGapBytes += int64(sg.skip)
		}
	}
	tail := &sg.parts[len(sg.parts)-1] // several parts when a policy mixed copies
	last := tail.pos + int64(len(tail.bytes))
	lastSeq := tail.seq.Add(len(tail.bytes))
	if !sg.end {
		limit := int64(math.MaxInt64)
		if e.acked.on {
			limit = e.ackLimit(conn, half)
		}
		for {
			if half.finPos >= 0 && last >= half.finPos {
				sg.end, sg.rst = true, half.rstEnd
				break
			}
			c := half.queue.min()
			if c == nil || c.pos != last || c.pos >= limit || c.packetStart && e.acked.releasing {
				break
			}
			if c.end() > limit {
				// Only its acknowledged head goes (acked_delivery.go).
				e.takeHead(half, c, limit)
				lastSeq = lastSeq.Add(int(limit - last))
				last = limit
				break
			}
			half.popMin(c)
			sg.addChunk(c)
			last = c.end()
			lastSeq = c.seq.Add(len(c.bytes))
		}
	}
	if half.finPos >= 0 && last > half.finPos {
		// Nothing after a FIN or RST belongs to the stream.
		last, lastSeq = e.cutAt(half, half.finPos, discardAfterEnd)
		sg.end, sg.rst = true, half.rstEnd
	}
	if e.mayLimitDepth(conn) {
		last, lastSeq = e.cutAtDepth(half, last, lastSeq)
	}
	// Delivered bytes count once, when first handed over.
	// By index: a copy of each part costs packets in order.
	for i := range sg.parts {
		e.ctr.deliveredBytes += int64(len(sg.parts[i].bytes))
	}
	if e.acked.on {
		e.countAcked(conn, half)
	}
	if e.conflicts.window > 0 {
		if half.win == nil {
			half.win = &deliveredWindow{}
		}
		for i := range sg.parts {
			half.win.add(sg.parts[i].bytes, sg.parts[i].pos, e.conflicts.window)
		}
	}
	e.prependKept(half, firstPos)
	sg.stats = half.takeStats()
	half.delivered = true
	if !half.started() || last > half.nextPos {
		half.setNext(lastSeq, last)
	}
	end, rst, depth := sg.end, sg.rst, sg.depth
	e.ctr.deliveries++
	if e.direct {
		conn.stream.ReassembledSG(sg, ac)
	} else {
		e.cb.reassembled(conn, sg, ac)
	}
	if conn.poisoned || conn.removed {
		e.releaseParts(half)
		e.abort(conn, ac)
		return
	}
	if depth {
		e.releaseParts(half)
		e.reachDepth(half)
	} else {
		e.keep(half)
	}
	if end {
		if !rst && half.finPos >= 0 {
			// The FIN takes one sequence number.
			half.setNext(half.nextSeq.Add(1), half.nextPos+1)
		}
		e.closeHalf(conn, half, ac, rst)
	}
}

// cutAt drops from the delivery every byte at or past offset fin (the
// direction's FIN or RST, or its depth), counting them as discarded for
// reason r, and returns the offset and sequence number that follow what is
// left.
func (e *engine) cutAt(half *halfConnection, fin int64, r discardReason) (int64, Sequence) {
	sg := &e.sg
	first := sg.parts[0]
	last, lastSeq := first.pos, first.seq
	n := 0
	for i := range sg.parts {
		p := &sg.parts[i]
		if p.pos+int64(len(p.bytes)) <= fin {
			n = i + 1
			last, lastSeq = p.pos+int64(len(p.bytes)), p.seq.Add(len(p.bytes))
			continue
		}
		if p.pos < fin || i == 0 {
			keep := int(max(0, fin-p.pos))
			e.ctr.discard(r, len(p.bytes)-keep)
			sg.total -= len(p.bytes) - keep
			p.bytes = p.bytes[:keep]
			n = i + 1
			last, lastSeq = p.pos+int64(keep), p.seq.Add(keep)
			continue
		}
		e.ctr.discard(r, len(p.bytes))
		sg.total -= len(p.bytes)
		if p.chunk != nil {
			e.release(half, p.chunk)
		}
		*p = sgPart{}
	}
	sg.parts = sg.parts[:n]
	return last, lastSeq
}

// prependKept puts the bytes kept by the previous KeepFrom in front of the
// delivery when they end where it begins; otherwise they are dropped, as
// upstream does after a hole.
func (e *engine) prependKept(half *halfConnection, firstPos int64) {
	if half.kept == nil {
		return
	}
	n := 0
	var lastKept *chunk
	for c := half.kept; c != nil; c = c.next {
		n += len(c.bytes)
		lastKept = c
	}
	if lastKept.end() != firstPos {
		e.releaseKept(half)
		return
	}
	sg := &e.sg
	parts := make([]sgPart, 0, half.keptN)
	for c := half.kept; c != nil; {
		next := c.next
		c.next = nil
		parts = append(parts, chunkPart(c, true))
		c = next
	}
	half.kept, half.keptN = nil, 0
	sg.parts = append(parts, sg.parts...)
	sg.total += n
	sg.saved = n
}

// keep releases the delivered buffers, except the bytes the Stream asked to
// keep with KeepFrom, which become the kept list of the direction.
func (e *engine) keep(half *halfConnection) {
	sg := &e.sg
	if sg.toKeep < 0 || sg.toKeep >= sg.total {
		e.releaseParts(half)
		return
	}
	at := 0
	var tail *chunk
	appendKept := func(c *chunk) {
		c.next = nil
		if tail == nil {
			half.kept = c
		} else {
			tail.next = c
		}
		tail = c
		half.keptN++
	}
	for i := range sg.parts {
		p := &sg.parts[i]
		from := max(0, sg.toKeep-at)
		at += len(p.bytes)
		if from >= len(p.bytes) {
			if p.chunk != nil {
				e.release(half, p.chunk)
			}
			p.chunk = nil
			continue
		}
		if p.chunk != nil {
			c := p.chunk
			c.bytes = c.bytes[from:]
			c.pos += int64(from)
			c.seq = c.seq.Add(from)
			appendKept(c)
			p.chunk = nil
			continue
		}
		// The live packet's bytes belong to the caller: copy them.
		data, pos, seq, ac := p.bytes[from:], p.pos+int64(from), p.seq.Add(from), e.keptContext(p.ac)
		for firstPiece := true; len(data) > 0; firstPiece = false {
			n := min(len(data), pageBytes)
			c := e.pc.get(n)
			copy(c.bytes, data[:n])
			c.pos, c.seq, c.ac = pos, seq, ac
			c.ack, c.flags, c.rewritten = p.ack, p.flags, p.rewritten
			c.packetStart = firstPiece
			half.pages++
			half.cost += c.cost()
			appendKept(c)
			data, pos, seq = data[n:], pos+int64(n), seq.Add(n)
		}
	}
	clear(sg.parts)
	sg.parts = sg.parts[:0]
	if e.room.strict {
		e.boundKept(half)
	}
}

// boundKept holds the bytes a Stream keeps with KeepFrom to the Safe
// face's limits: while the direction or the pool is over a limit, the
// oldest kept bytes are let go (counted). The Stream sees it in the saved
// length of its next delivery; the kept bytes that remain still end where
// the stream goes on.
func (e *engine) boundKept(half *halfConnection) {
	l := &e.room.limits
	for half.kept != nil &&
		((l.maxPagesPerConn > 0 && half.pages > l.maxPagesPerConn) ||
			(l.maxBytesPerConn > 0 && half.cost > l.maxBytesPerConn) ||
			(l.maxPagesTotal > 0 && e.pc.budget.pages() > int64(l.maxPagesTotal))) {
		c := half.kept
		half.kept = c.next
		c.next = nil
		half.keptN--
		e.ctr.keptDropped += int64(len(c.bytes))
		e.release(half, c)
	}
}

// releaseParts gives the chunks of the last delivery back to the cache.
func (e *engine) releaseParts(half *halfConnection) {
	sg := &e.sg
	for i := range sg.parts {
		if c := sg.parts[i].chunk; c != nil {
			e.release(half, c)
		}
	}
	clear(sg.parts)
	sg.parts = sg.parts[:0]
}
