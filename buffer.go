package reassembly

import "time"

// buffer is the fifth stage of a packet's path for an out-of-order
// segment captured at ts: its bytes are buffered, their overlaps with
// buffered bytes resolved (enqueue), and the pages makeRoom booked given
// back. Without the Safe face's strict limits, a direction or pool over
// its limit then skips its first hole, as upstream did.
func (e *engine) buffer(s *arrival, ts time.Time) {
	e.enqueue(s, ts)
	// The bytes went into buffered chunks, which count in the budget now:
	// give the booking back.
	e.giveBack()
	if !e.room.strict && e.overLimit(s.half) {
		e.room.forcing = true
		e.takeFirst(s.half)
	}
}

// deliverInOrder is the fifth stage of a packet's path for an in-order
// segment: it puts into the delivery what is left
// of it once the copies already delivered win (dropDelivered), with the
// buffered bytes the policy keeps (resolveBuffered). A segment with no
// bytes left still goes in when it ends or starts the direction.
func (e *engine) deliverInOrder(s *arrival) {
	half, t, sg := s.half, s.tcp, &e.sg
	e.dropDelivered(s)
	if len(s.payload) > 0 && !half.queue.empty() {
		e.resolveBuffered(s)
	}
	if len(sg.parts) == 0 {
		if len(s.payload) == 0 && !s.end && !(t.SYN && !half.delivered) {
			return
		}
		sg.addLive(s)
	}
	sg.start = t.SYN && !half.delivered
	sg.end = s.end
	sg.rst = t.RST
}

// enqueue buffers the bytes of an out-of-order segment. Where they overlap
// buffered bytes, the newer copy wins, as upstream does, unless a policy
// decides (enqueuePolicy); bytes already delivered are never changed.
func (e *engine) enqueue(s *arrival, ts time.Time) {
	half, data, seq, pos := s.half, s.payload, s.seq, s.pos
	if len(data) == 0 {
		return
	}
	if e.overlaps.policy {
		e.enqueuePolicy(s, ts)
		return
	}
	end := pos + int64(len(data))
	q := &half.queue
	if last := q.max(); last == nil || last.end() <= pos {
		// The bytes go after all the buffered ones, as every segment held
		// in order for its acknowledgement does: nothing to overwrite or
		// trim, and they start a run unless they extend the last one.
		half.countQueued(len(data))
		e.insertChunks(half, data, seq, pos, s.ac, s.meta, ts, true, pos, end)
		if last == nil || last.end() < pos {
			half.runs++
		}
		return
	}
	// A buffered chunk that holds all of the new bytes takes them in place.
	if c := q.floor(pos); c != nil && c.end() >= end && !(c.pos == pos && c.end() == end) {
		copy(c.bytes[pos-c.pos:], data)
		c.rewritten = true
		e.ctr.overwrittenBytes += int64(len(data))
		return
	}
	before := half.queue.runStartsIn(pos, end)
	e.trimQueued(half, pos, end)
	half.countQueued(len(data))
	e.insertChunks(half, data, seq, pos, s.ac, s.meta, ts, true, pos, end)
	half.runs += half.queue.runStartsIn(pos, end) - before
}

// insertChunks copies data into chunks of at most pageBytes and queues them;
// the segment [segStart, segEnd) supplied the bytes.
func (e *engine) insertChunks(half *halfConnection, data []byte, seq Sequence, pos int64, ac AssemblerContext, m pktMeta, ts time.Time, packet bool, segStart, segEnd int64) {
	ac = e.keptContext(ac)
	for first := true; len(data) > 0; first = false {
		n := min(len(data), pageBytes)
		var c *chunk
		if e.room.reserved > 0 {
			c = e.pc.getReserved(n)
			e.room.reserved--
			e.room.reservedCost -= c.cost()
		} else {
			c = e.pc.get(n)
		}
		copy(c.bytes, data[:n])
		c.pos, c.seq, c.ac, c.seen = pos, seq, ac, ts
		c.ack, c.flags = m.ack, m.flags
		c.segStart, c.segEnd = segStart, segEnd
		c.packetStart = packet && first
		half.queue.insert(c)
		half.noteQueued(c.seen)
		half.pages++
		half.cost += c.cost()
		data = data[n:]
		pos += int64(n)
		seq = seq.Add(n)
	}
}

// trimQueued removes from the queue every byte in [from, to), which newer
// bytes replace: chunks inside are dropped (counted as overlap, as upstream
// does), chunks across either edge are cut.
func (e *engine) trimQueued(half *halfConnection, from, to int64) {
	if from >= to {
		return
	}
	q := &half.queue
	c := q.floor(from)
	if c == nil || c.end() <= from {
		c = q.after(from)
	}
	for c != nil && c.pos < to {
		next := q.after(c.pos)
		switch {
		case c.pos >= from && c.end() <= to:
			packets := 0
			if c.packetStart {
				packets = 1
			}
			half.countOverlap(packets, len(c.bytes))
			e.ctr.overwrittenBytes += int64(len(c.bytes))
			q.remove(c)
			e.release(half, c)
		case c.pos < from && c.end() > to:
			// The new bytes fall inside c: keep c's head, and its tail as
			// a chunk of its own.
			tail := c.bytes[to-c.pos:]
			e.insertChunks(half, tail, c.seq.Add(int(to-c.pos)), to, c.ac, pktMeta{c.ack, c.flags}, c.seen, false, c.segStart, c.segEnd)
			cut := int(c.end() - from)
			c.bytes = c.bytes[:len(c.bytes)-cut]
			q.resized(-cut)
			e.ctr.overwrittenBytes += int64(to - from)
			return
		case c.pos < from:
			// Keep the head; the tail is replaced.
			cut := int(c.end() - from)
			c.bytes = c.bytes[:len(c.bytes)-cut]
			q.resized(-cut)
			e.ctr.overwrittenBytes += int64(cut)
		default:
			cut := int(to - c.pos)
			c.bytes = c.bytes[cut:]
			c.pos = to
			c.seq = c.seq.Add(cut)
			q.resized(-cut)
			e.ctr.overwrittenBytes += int64(cut)
		}
		c = next
	}
}

// release gives a chunk of half back to the cache.
func (e *engine) release(half *halfConnection, c *chunk) {
	half.pages--
	half.cost -= c.cost()
	e.pc.put(c)
}
