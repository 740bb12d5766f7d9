package reassembly

import "time"

// overlaps is the state of overlap resolution: the rule of the Safe face's
// OverlapPolicy, and the plan it makes for the packet being processed.
type overlaps struct {
	rule overlapRule
	// policy is set when the rule is not upstream's: overlaps are resolved
	// byte by byte instead of the newer copy always winning.
	policy bool
	// spans are the ranges where the segment's bytes win (planOverlap).
	spans []span
}

// span is a range [from, to) of stream offsets.
type span struct{ from, to int64 }

// dropDelivered resolves the overlap of an in-order segment with the bytes
// its direction delivered already: those cannot change, so the first copy
// wins whatever the policy, and the segment is cut to what follows them.
func (e *engine) dropDelivered(s *arrival) {
	half := s.half
	d := int(half.nextPos - s.pos)
	if d <= 0 {
		return
	}
	n := min(d, len(s.payload))
	if len(s.payload) > 0 {
		// TCPAssemblyStats counts the distance behind nextSeq, as
		// upstream does; AssemblerStats counts the bytes.
		half.countOverlap(1, d)
		e.ctr.overlapBytes += int64(n)
	}
	s.payload = s.payload[n:]
	s.pos, s.seq = half.nextPos, half.nextSeq
}

// resolveBuffered resolves the overlap of an in-order segment, cut by
// dropDelivered, with the bytes its direction buffers, when both are
// there: where the policy
// keeps buffered bytes, the delivery mixes them with the segment's
// (resolveInOrder); where the segment wins, the buffered copy is dropped.
func (e *engine) resolveBuffered(s *arrival) {
	half := s.half
	if e.overlaps.policy && e.resolveInOrder(s) {
		return // the delivery mixes the packet's bytes and buffered ones
	}
	from, to := s.pos, s.pos+int64(len(s.payload))
	before := half.queue.runStartsIn(from, to)
	e.trimQueued(half, from, to)
	half.runs += half.queue.runStartsIn(from, to) - before
}

// planOverlap fills e.overlaps.spans with the ranges of [from, to) where
// the bytes of the new segment seg are to go: the holes of the queue, and
// the buffered bytes the policy lets the new copy replace. Adjacent ranges
// are merged, so a segment that wins everywhere gives one range.
func (e *engine) planOverlap(half *halfConnection, seg span, from, to int64) []span {
	o := &e.overlaps
	o.spans = o.spans[:0]
	q := &half.queue
	p := from
	c := q.floor(from)
	if c == nil || c.end() <= from {
		c = q.after(from)
	}
	for ; c != nil && c.pos < to; c = q.after(c.pos) {
		if c.pos > p {
			o.addSpan(p, c.pos)
		}
		lo, hi := max(p, c.pos), min(to, c.end())
		if o.rule.newWins(seg.from, seg.to, c.segStart, c.segEnd) {
			o.addSpan(lo, hi)
		}
		p = hi
	}
	o.addSpan(p, to)
	return o.spans
}

func (o *overlaps) addSpan(from, to int64) {
	if from >= to {
		return
	}
	if n := len(o.spans); n > 0 && o.spans[n-1].to == from {
		o.spans[n-1].to = to
		return
	}
	o.spans = append(o.spans, span{from, to})
}

// enqueuePolicy buffers the segment's bytes, resolving their overlaps with
// the buffered bytes by the policy's rule.
func (e *engine) enqueuePolicy(s *arrival, ts time.Time) {
	half, data, seq, at, seg := s.half, s.payload, s.seq, s.pos, s.extent
	to := at + int64(len(data))
	spans := e.planOverlap(half, seg, at, to)
	before := half.queue.runStartsIn(at, to)
	won := 0
	for i, sp := range spans {
		e.trimQueued(half, sp.from, sp.to)
		off, n := int(sp.from-at), int(sp.to-sp.from)
		e.insertChunks(half, data[off:off+n], seq.Add(off), sp.from, s.ac, s.meta, ts, i == 0, seg.from, seg.to)
		won += n
	}
	half.runs += half.queue.runStartsIn(at, to) - before
	half.countQueued(len(data))
	e.lostOverlap(half, len(data)-won)
}

// lostOverlap counts new bytes that lost to buffered ones.
func (e *engine) lostOverlap(half *halfConnection, n int) {
	if n > 0 {
		half.countOverlap(1, n)
		e.ctr.overwrittenBytes += int64(n)
	}
}

// resolveInOrder handles a segment whose bytes, starting at the next
// offset to deliver, overlap buffered bytes that the policy keeps: it puts
// into the delivery, in order and without copying, the segment's bytes
// where they win and the buffered chunks where those win. It returns
// false, and does nothing, when the segment wins everywhere.
func (e *engine) resolveInOrder(s *arrival) bool {
	half, payload, seq, pos := s.half, s.payload, s.seq, s.pos
	to := pos + int64(len(payload))
	spans := e.planOverlap(half, s.extent, pos, to)
	if len(spans) == 1 && spans[0] == (span{pos, to}) {
		return false
	}
	before := half.queue.runStartsIn(pos, to)
	won := 0
	for _, sp := range spans {
		e.trimQueued(half, sp.from, sp.to)
		won += int(sp.to - sp.from)
	}
	half.runs += half.queue.runStartsIn(pos, to) - before
	e.lostOverlap(half, len(payload)-won)
	sg := &e.sg
	packet := true
	for p, i := pos, 0; p < to; {
		if i < len(spans) && spans[i].from == p {
			sp := spans[i]
			off := int(sp.from - pos)
			part := livePart(payload[off:off+int(sp.to-sp.from)], seq.Add(off), p, s.ac, s.meta)
			part.packet = packet
			sg.add(part)
			packet = false
			p = sp.to
			i++
			continue
		}
		// A buffered chunk wins here; it starts at p, the first byte not
		// yet in the delivery.
		c := half.queue.min()
		if c == nil || c.pos != p {
			break // cannot happen: every byte of [pos, to) is held
		}
		half.popMin(c)
		sg.addChunk(c)
		p = c.end()
	}
	return true
}
