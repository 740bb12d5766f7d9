package reassembly

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// captureContext is the AssemblerContext of Assemble and
// AssembleWithTimestamp, and of completions that no packet triggered.
type captureContext gopacket.CaptureInfo

func (c *captureContext) GetCaptureInfo() gopacket.CaptureInfo { return gopacket.CaptureInfo(*c) }

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

// callbacks runs the user's Stream methods. The drop-in face calls them
// directly; the Safe face recovers panics.
type callbacks interface {
	newStream(c *connection, f StreamFactory, tcp *layers.TCP, ac AssemblerContext) (Stream, error)
	accept(c *connection, tcp *layers.TCP, ci gopacket.CaptureInfo, dir TCPFlowDirection, next Sequence, start *bool, ac AssemblerContext) bool
	reassembled(c *connection, sg *scatterGather, ac AssemblerContext)
	complete(c *connection, ac AssemblerContext) bool
	// conflict hands a Conflict to the OnConflict handler f.
	conflict(c *connection, f func(Conflict), x Conflict)
	// depth asks a DepthOverrider Stream for the depth of dir.
	depth(c *connection, dir TCPFlowDirection) int
}

// engine is the reassembly machinery shared by Assembler and SafeAssembler.
// It is not safe for concurrent use; each face serializes calls to its own.
type engine struct {
	table *connTable
	pc    *pageCache
	lim   limits
	cb    callbacks
	sg    scatterGather
	refs  []connRef
	ctr   counters
	// forcing is set while a buffer limit forces a direction over a hole.
	forcing bool
	// clock, when set, is the coarse wall clock recorded per connection for
	// the Safe face's idle timeout.
	clock *atomic.Int64
	// lastTS is the capture time of the last packet; droppedClosed tells
	// that its payload was dropped because its direction was closed.
	lastTS        time.Time
	droppedClosed bool
	start         bool
	// reserved is the pages makeRoom booked for the chunks being inserted.
	reserved int64
	lastTrim time.Time // when trimEvery last released free pages
	flows    [2]flowCache
	flowNext int // the entry to replace next
	free     connFreeList
	// ev are the Safe face's overlap, conflict, depth and RST settings.
	ev evasion
	// life are the rules that end connections early or move directions
	// on; acking is set while an acknowledgement moves one over a hole.
	life   lifecycle
	acking bool
	// answered is where the client's data starts when a SYN-ACK ends a
	// conversation by answering a new SYN on its 4-tuple, else
	// invalidSequence: the next connection made starts there.
	answered Sequence
	// seg is the extent of the packet being processed, as it arrived, and
	// spans the ranges an overlap policy lets it buffer.
	seg   span
	spans []span
	// meta is the acknowledgement number and flags of the packet being
	// processed, which its parts carry.
	meta pktMeta
}

func (e *engine) init(t *connTable, cb callbacks) {
	e.table = t
	e.pc = newPageCache(&t.budget)
	e.cb = cb
	e.sg.parts = make([]sgPart, 0, 16)
	e.answered = invalidSequence
}

// assemble feeds one packet. It returns the connection error of the pool
// (limit reached, nil Stream) and otherwise nil.
func (e *engine) assemble(netFlow gopacket.Flow, t *layers.TCP, ac AssemblerContext) error {
	ci := ac.GetCaptureInfo()
	ts := ci.Timestamp
	e.lastTS = ts
	e.droppedClosed = false
	payload := t.Payload
	e.ctr.packets++
	e.ctr.bytesIn += int64(len(payload))

	// A packet that carries neither a SYN nor data cannot start anything;
	// upstream made a connection (and a Stream) for every bare ACK, so the
	// final ACK of a closed connection resurrected it.
	create := t.SYN || len(payload) > 0
	sp, dp := uint16(t.SrcPort), uint16(t.DstPort)
	conn, fromLo := e.cached(netFlow, sp, dp)
	var k connKey
	keyed := false
	for pass := 0; ; pass++ {
		if conn == nil {
			if !keyed {
				k, fromLo = makeKey(netFlow, t)
			}
			var err error
			conn, err = e.connect(k, fromLo, create, ts, t, ac)
			if conn == nil {
				switch {
				case err == ErrConnectionClosed:
					// A late copy of a completed connection's packet.
					e.ctr.discard(discardClosed, len(payload))
					e.droppedClosed = len(payload) > 0
					return nil
				case err != nil:
					e.ctr.discard(discardRefused, len(payload))
					if err == ErrNilStream && forkFlavour {
						// The fork lets a factory decline a connection
						// with a nil Stream: a decision, not an error.
						return nil
					}
				}
				return err
			}
			e.remember(netFlow, sp, dp, conn, fromLo)
		}
		if pass > 0 {
			break
		}
		// A connection idle past the timeout, or a SYN that reuses the
		// 4-tuple, ends the connection: the packet starts a new one.
		why := e.restarts(conn, fromLo, t, ts)
		if why == noRestart {
			break
		}
		k, keyed = e.restart(conn, why), true
		conn = nil
	}
	defer conn.mu.Unlock()
	e.packet(conn, fromLo, t, ci, ac)
	return nil
}

// flowCache remembers the connections of the last two directional flows:
// packets come in bursts per connection, in both directions, and a hit
// skips building the canonical key and the map lookup.
type flowCache struct {
	netFlow gopacket.Flow
	sp, dp  uint16
	fromLo  bool
	conn    *connection
	gen     uint64
}

// cached returns, locked, the connection of a remembered flow that is still
// in the pool, and the direction of the flow.
func (e *engine) cached(netFlow gopacket.Flow, sp, dp uint16) (*connection, bool) {
	for i := range e.flows {
		f := &e.flows[i]
		if f.conn == nil || f.sp != sp || f.dp != dp || f.netFlow != netFlow {
			continue
		}
		c := f.conn
		c.mu.Lock()
		if c.gen != f.gen || c.removed {
			c.mu.Unlock()
			f.conn = nil
			return nil, false
		}
		e.flowNext = 1 - i
		return c, f.fromLo
	}
	return nil, false
}

func (e *engine) remember(netFlow gopacket.Flow, sp, dp uint16, c *connection, fromLo bool) {
	e.flows[e.flowNext] = flowCache{netFlow: netFlow, sp: sp, dp: dp, fromLo: fromLo, conn: c, gen: c.gen}
	e.flowNext = 1 - e.flowNext
}

func (e *engine) newStream(c *connection, tcp *layers.TCP, ac AssemblerContext) (Stream, error) {
	s, err := e.cb.newStream(c, e.table.factory, tcp, ac)
	if err == nil && s != nil && e.ev.active {
		c.depthOv, _ = s.(DepthOverrider)
		c.halves[0].depth, c.halves[1].depth = e.ev.depth, e.ev.depth
	}
	return s, err
}

// packet processes a packet of a locked connection.
func (e *engine) packet(conn *connection, fromLo bool, t *layers.TCP, ci gopacket.CaptureInfo, ac AssemblerContext) {
	half, peer := conn.half(fromLo)
	payload := t.Payload
	e.meta = pktMeta{ack: t.Ack, flags: flagsOf(t)}
	if e.clock != nil {
		conn.wallLast = e.clock.Load()
	}
	if half.lastSeen.Before(ci.Timestamp) {
		half.lastSeen = ci.Timestamp
		if ns := nanos(ci.Timestamp); ns > conn.lastSeenNs.Load() {
			conn.lastSeenNs.Store(ns)
		}
	}
	// start lives in the engine: its address goes to user code, and a
	// local would be allocated for every packet.
	e.start = !half.started() && (t.SYN || e.life.midstream && !t.RST && (len(payload) > 0 || t.FIN))
	accepted := e.cb.accept(conn, t, ci, half.dir, half.nextSeq, &e.start, ac)
	if conn.poisoned {
		// Accept panicked (recovered by the Safe face): close at once.
		e.ctr.discard(discardClosed, len(payload))
		e.abort(conn, ac)
		return
	}
	if !accepted {
		e.ctr.discard(discardRejected, len(payload))
		return
	}
	if e.life.ackGaps && t.ACK && peer.mayHoldHole() {
		e.ackedPast(conn, peer, Sequence(t.Ack), ac)
		if conn.removed {
			// The acknowledgement completed the connection.
			e.ctr.discard(discardClosed, len(payload))
			e.droppedClosed = len(payload) > 0
			return
		}
	}
	if half.closed {
		e.ctr.discard(discardClosed, len(payload))
		e.droppedClosed = len(payload) > 0
		if t.RST && !conn.halves[0].closed || t.RST && !conn.halves[1].closed {
			// An RST after this direction's FIN still ends the connection:
			// the other direction is flushed and closed.
			half.closed = false
			e.closeHalf(conn, half, ac, true)
		}
		return
	}
	if e.ev.active && (t.RST || conn.depthOv != nil || half.depthDone) {
		var ok bool
		if payload, ok = e.screen(conn, half, t, payload, ac); !ok {
			return
		}
	}
	seq := Sequence(t.Seq)
	// The SYN takes one sequence number, so its data starts one later,
	// also on a retransmitted SYN (upstream lost a byte there).
	dataSeq := seq
	if t.SYN {
		dataSeq = seq.Add(1)
	}
	queue := true
	if !half.started() {
		if t.SYN || e.start {
			e.startAt(half, dataSeq)
			half.pickedUp = !t.SYN && e.life.midstream
			queue = false
		} else if t.RST && e.refuses(conn, half, t) {
			// A connection refused, or aborted before this direction sent
			// anything: upstream left it open until a flush.
			e.ctr.discard(discardAfterEnd, len(payload))
			e.closeHalf(conn, half, ac, true)
			return
		}
	} else if half.nextSeq.Difference(dataSeq) <= 0 {
		queue = false
	}
	pos := half.posOf(dataSeq)
	end := t.FIN || t.RST
	if end {
		if fin := pos + int64(len(payload)); half.finPos < 0 || fin < half.finPos {
			half.finPos, half.rstEnd = fin, t.RST
			*conn.finSeenOf(half) = ci.Timestamp
		}
	}
	e.seg = span{pos, pos + int64(len(payload))}
	if e.ev.active && len(payload) > 0 {
		if e.mayLimitDepth(conn) {
			payload = e.clipDepth(half, payload, pos)
			if e.depthDue(conn, half, ac) {
				return
			}
		}
		if e.ev.detect && len(payload) > 0 && (!half.queue.empty() || half.started() && pos < half.nextPos) {
			e.checkConflicts(conn, half, payload, dataSeq, pos, ci)
			if conn.poisoned {
				e.ctr.discard(discardClosed, len(payload))
				e.abort(conn, ac)
				return
			}
		}
	}

	sg := &e.sg
	sg.reset()
	if queue && e.lim.strict && len(payload) > 0 {
		fit := e.makeRoom(conn, half, payload, pos)
		if half.depthDone {
			// A push delivered the direction's depth: nothing more goes in.
			e.pc.budget.inUse.Add(-e.reserved)
			e.reserved = 0
			e.ctr.discard(discardDepth, len(payload))
			return
		}
		if !fit {
			if half.closed || conn.removed {
				e.ctr.discard(discardAfterEnd, len(payload))
				return
			}
			// Nothing of this direction is left to push out and the pool's
			// budget is spent: the new bytes go out at once, over the hole.
			e.ctr.forcedFlushes++
			e.forcing = true
			queue = false
			sg.add(livePart(payload, dataSeq, pos, ac, e.meta))
			sg.end = end && half.finPos == pos+int64(len(payload))
			sg.rst = sg.end && t.RST
		} else if half.started() && pos <= half.nextPos {
			queue = false
		}
	}
	if len(sg.parts) > 0 {
		// The bytes were sent over a hole above.
	} else if queue {
		e.enqueue(half, payload, dataSeq, pos, ac, ci.Timestamp)
		if e.reserved > 0 {
			// The bytes went into a buffered chunk: give the booking back.
			e.pc.budget.inUse.Add(-e.reserved)
			e.reserved = 0
		}
		if !e.lim.strict && e.overLimit(half) {
			e.ctr.forcedFlushes++
			e.forcing = true
			e.takeFirst(half)
		}
	} else {
		// Bytes before nextSeq were delivered already: the first copy wins.
		if d := int(half.nextPos - pos); d > 0 {
			n := min(d, len(payload))
			if len(payload) > 0 {
				// TCPAssemblyStats counts the distance behind nextSeq, as
				// upstream does; AssemblerStats counts the bytes.
				half.countOverlap(1, d)
				e.ctr.overlapBytes += int64(n)
			}
			payload = payload[n:]
			pos, dataSeq = half.nextPos, half.nextSeq
		}
		if len(payload) > 0 && !half.queue.empty() {
			to := pos + int64(len(payload))
			if e.ev.policy && e.resolveInOrder(half, payload, dataSeq, pos, ac) {
				// The delivery mixes the packet's bytes and buffered ones.
			} else {
				before := half.queue.runStartsIn(pos, to)
				e.trimQueued(half, pos, to)
				half.runs += half.queue.runStartsIn(pos, to) - before
			}
		}
		if len(sg.parts) > 0 {
			sg.start = (t.SYN || half.resumed) && !half.delivered
			sg.end = end
			sg.rst = t.RST
		} else if len(payload) > 0 || end || (t.SYN && !half.delivered) {
			sg.add(livePart(payload, dataSeq, pos, ac, e.meta))
			sg.start = (t.SYN || half.resumed) && !half.delivered
			sg.end = end
			sg.rst = t.RST
		}
	}
	if len(sg.parts) > 0 {
		e.send(conn, half, ac)
	}
	e.forcing = false
	e.settleHint(conn, half)
}

// refuses reports whether an RST on a direction that has not started is
// acceptable: it must acknowledge exactly what the other direction sent, as
// TCP requires of an RST answering a SYN (RFC 9293, SYN-SENT state).
func (e *engine) refuses(conn *connection, half *halfConnection, t *layers.TCP) bool {
	other := &conn.halves[0]
	if other == half {
		other = &conn.halves[1]
	}
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

func (e *engine) release(half *halfConnection, c *chunk) {
	half.pages--
	half.cost -= c.cost()
	e.pc.put(c)
}

// enqueue stores out-of-order bytes. Where they overlap buffered bytes, the
// newer copy wins, as upstream does; bytes already delivered are never
// changed.
func (e *engine) enqueue(half *halfConnection, data []byte, seq Sequence, pos int64, ac AssemblerContext, ts time.Time) {
	if len(data) == 0 {
		return
	}
	if e.ev.policy {
		e.enqueuePolicy(half, data, seq, pos, e.seg, ac, ts)
		return
	}
	end := pos + int64(len(data))
	q := &half.queue
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
	e.insertChunks(half, data, seq, pos, ac, e.meta, ts, true, pos, end)
	half.runs += half.queue.runStartsIn(pos, end) - before
}

// insertChunks copies data into chunks of at most pageBytes and queues them;
// the segment [segStart, segEnd) supplied the bytes.
func (e *engine) insertChunks(half *halfConnection, data []byte, seq Sequence, pos int64, ac AssemblerContext, m pktMeta, ts time.Time, packet bool, segStart, segEnd int64) {
	for first := true; len(data) > 0; first = false {
		n := min(len(data), pageBytes)
		var c *chunk
		if e.reserved > 0 {
			c = e.pc.getReserved(n)
			e.reserved--
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

func (e *engine) overLimit(half *halfConnection) bool {
	return (e.lim.maxPagesPerConn > 0 && half.pages >= e.lim.maxPagesPerConn) ||
		(e.lim.maxPagesTotal > 0 && e.table.budget.inUse.Load() >= int64(e.lim.maxPagesTotal))
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

// fits reports whether data at pos can be buffered by half within the
// per-direction limits, counting the hole it may open.
func (e *engine) fits(half *halfConnection, data []byte, pos int64) bool {
	l := &e.lim
	pages, cost := e.need(half, data, pos)
	if l.maxPagesPerConn > 0 && half.pages+pages > l.maxPagesPerConn {
		return false
	}
	if l.maxBytesPerConn > 0 && half.cost+cost > l.maxBytesPerConn {
		return false
	}
	if l.maxGapsPerConn > 0 && half.runs >= l.maxGapsPerConn {
		// Only bytes that extend or fill an existing run may come in.
		if p := half.queue.floor(pos); p == nil || p.end() < pos {
			if n := half.queue.after(pos); n == nil || n.pos > pos+int64(len(data)) {
				return false
			}
		}
	}
	return true
}

// makeRoom pushes the first holes of half out, skipping them, until data
// fits its limits, and reserves the pages it needs in the pool's budget.
// It returns false when nothing is left to push and it still does not fit.
func (e *engine) makeRoom(conn *connection, half *halfConnection, data []byte, pos int64) bool {
	for {
		if half.closed || conn.removed {
			return false
		}
		if half.started() && pos <= half.nextPos {
			return true // a push made the bytes in order: nothing to buffer
		}
		if e.fits(half, data, pos) {
			pages, _ := e.need(half, data, pos)
			if need := int64(pages); e.reserve(need) {
				e.reserved = need
				return true
			}
		}
		if half.queue.empty() {
			return false
		}
		e.ctr.forcedFlushes++
		e.forcing = true
		e.sg.reset()
		e.takeFirst(half)
		e.send(conn, half, e.sg.parts[0].ac)
		e.forcing = false
		e.sg.reset()
	}
}

// reserve books n pages of the pool's budget, atomically, so that
// assemblers sharing the pool never exceed MaxBufferedPagesTotal together.
func (e *engine) reserve(n int64) bool {
	b := e.pc.budget
	limit := int64(e.lim.maxPagesTotal)
	if limit <= 0 {
		return true
	}
	for {
		used := b.inUse.Load()
		if used+n > limit {
			return false
		}
		if b.inUse.CompareAndSwap(used, used+n) {
			return true
		}
	}
}

// takeFirst moves the first queued chunk into the delivery, skipping the
// hole before it.
func (e *engine) takeFirst(half *halfConnection) {
	c := half.queue.min()
	if c == nil {
		return
	}
	half.popMin(c)
	e.sg.add(chunkPart(c, false))
}

// send completes the delivery prepared in e.sg: it prepends kept bytes,
// appends the queued bytes that follow without a hole, calls the Stream,
// keeps what it asked for, and closes the direction at its end.
func (e *engine) send(conn *connection, half *halfConnection, ac AssemblerContext) {
	sg := &e.sg
	first := sg.parts[0]
	sg.dir = half.dir
	sg.skip = -1
	if !half.delivered && half.pickedUp {
		// Picked up mid-stream: what came before is unknown, as upstream
		// reports a start it did not see.
	} else if half.started() {
		sg.skip = int(first.pos - half.nextPos)
	} else {
		half.origin, half.hasOrigin = first.pos, true
	}
	if sg.skip > 0 {
		e.ctr.gaps++
		e.ctr.gapBytes += int64(sg.skip)
		if e.forcing {
			e.ctr.forcedGapBytes += int64(sg.skip)
		}
		if e.acking {
			e.ctr.ackedGapBytes += int64(sg.skip)
		}
	}
	tail := &sg.parts[len(sg.parts)-1] // several parts when a policy mixed copies
	last := tail.pos + int64(len(tail.bytes))
	lastSeq := tail.seq.Add(len(tail.bytes))
	if !sg.end {
		for {
			if half.finPos >= 0 && last >= half.finPos {
				sg.end, sg.rst = true, half.rstEnd
				break
			}
			c := half.queue.min()
			if c == nil || c.pos != last {
				break
			}
			half.popMin(c)
			sg.add(chunkPart(c, false))
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
	for _, p := range sg.parts {
		e.ctr.deliveredBytes += int64(len(p.bytes))
	}
	if e.ev.window > 0 {
		if half.win == nil {
			half.win = &deliveredWindow{}
		}
		for _, p := range sg.parts {
			half.win.add(p.bytes, p.pos, e.ev.window)
		}
	}
	e.prependKept(half, first)
	sg.stats = half.takeStats()
	half.delivered = true
	if !half.started() || last > half.nextPos {
		half.setNext(lastSeq, last)
	}
	end, rst, depth := sg.end, sg.rst, sg.depth
	e.ctr.deliveries++
	e.cb.reassembled(conn, sg, ac)
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
func (e *engine) prependKept(half *halfConnection, first sgPart) {
	if half.kept == nil {
		return
	}
	n := 0
	var lastKept *chunk
	for c := half.kept; c != nil; c = c.next {
		n += len(c.bytes)
		lastKept = c
	}
	if lastKept.end() != first.pos {
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
		data, pos, seq := p.bytes[from:], p.pos+int64(from), p.seq.Add(from)
		for firstPiece := true; len(data) > 0; firstPiece = false {
			n := min(len(data), pageBytes)
			c := e.pc.get(n)
			copy(c.bytes, data[:n])
			c.pos, c.seq, c.ac = pos, seq, p.ac
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
	if e.lim.strict {
		e.boundKept(half)
	}
}

// boundKept holds the bytes a Stream keeps with KeepFrom to the Safe
// face's limits: while the direction or the pool is over a limit, the
// oldest kept bytes are let go (counted). The Stream sees it in the saved
// length of its next delivery; the kept bytes that remain still end where
// the stream goes on.
func (e *engine) boundKept(half *halfConnection) {
	l := &e.lim
	for half.kept != nil &&
		((l.maxPagesPerConn > 0 && half.pages > l.maxPagesPerConn) ||
			(l.maxBytesPerConn > 0 && half.cost > l.maxBytesPerConn) ||
			(l.maxPagesTotal > 0 && e.pc.budget.inUse.Load() > int64(l.maxPagesTotal))) {
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

// closeHalf closes one direction, discarding what it still buffers. An RST
// ends the whole connection: the other direction is flushed and closed too
// (upstream waited for a FIN or a flush that might never come). When both
// directions are closed the Stream is completed, once.
func (e *engine) closeHalf(conn *connection, half *halfConnection, ac AssemblerContext, rst bool) {
	if half.closed {
		return
	}
	half.closed = true
	e.dropBuffered(half, discardAfterEnd)
	if rst {
		other := &conn.halves[0]
		if other == half {
			other = &conn.halves[1]
		}
		for !other.closed && !conn.removed {
			e.skipFlush(conn, other)
		}
	}
	e.completeIfDone(conn, ac)
}

func (e *engine) completeIfDone(conn *connection, ac AssemblerContext) {
	if conn.completed || conn.removed || !conn.halves[0].closed || !conn.halves[1].closed {
		return
	}
	conn.completed = true
	e.ctr.completed++
	if ac == nil {
		conn.endCtx = captureContext{Timestamp: conn.lastSeen()}
		ac = &conn.endCtx
	}
	if e.cb.complete(conn, ac) || conn.poisoned {
		if conn.poisoned {
			e.table.remove(conn, &e.free)
		} else {
			e.table.retire(conn, &e.free)
		}
	}
}

// abort ends a connection whose Stream panicked: whatever it buffers is
// dropped and counted, the Stream is completed if it was not yet (itself
// under recover), and the connection leaves the pool.
func (e *engine) abort(conn *connection, ac AssemblerContext) {
	if conn.removed {
		return
	}
	for i := range conn.halves {
		h := &conn.halves[i]
		h.closed = true
		e.dropBuffered(h, discardAfterEnd)
	}
	if !conn.completed {
		conn.completed = true
		e.ctr.completed++
		if ac == nil {
			conn.endCtx = captureContext{Timestamp: conn.lastSeen()}
			ac = &conn.endCtx
		}
		e.cb.complete(conn, ac)
	}
	e.table.remove(conn, &e.free)
}

// expireIdle flushes and closes the connections whose last packet was
// handed in before cutoff (wall clock, ns), and returns how many directions
// it closed.
func (e *engine) expireIdle(cutoff int64) int {
	closed := 0
	e.refs = e.table.snapshot(e.refs[:0])
	for _, r := range e.refs {
		if !r.lock() {
			continue
		}
		conn := r.c
		if conn.wallLast != 0 && conn.wallLast < cutoff {
			// Idle for so long, it goes, even if its Stream kept it.
			closed += e.finish(conn)
		}
		conn.mu.Unlock()
	}
	clear(e.refs)
	return closed
}

// dropBuffered discards the queue and kept bytes of a direction that closed
// or reached its depth, counting the queued bytes as discarded for reason r.
func (e *engine) dropBuffered(half *halfConnection, r discardReason) {
	half.win = nil
	if !half.queue.empty() {
		half.queue.drain(func(c *chunk) {
			e.ctr.discard(r, len(c.bytes))
			e.release(half, c)
		})
	}
	half.clearQueuedHint()
	e.releaseKept(half)
	half.runs = 0
}

// releaseKept gives the bytes kept by KeepFrom back to the cache.
func (e *engine) releaseKept(half *halfConnection) {
	for c := half.kept; c != nil; {
		next := c.next
		c.next = nil
		e.release(half, c)
		c = next
	}
	half.kept, half.keptN = nil, 0
}

// skipFlush delivers the first queued bytes, skipping the hole before them,
// or closes the direction when nothing is queued.
func (e *engine) skipFlush(conn *connection, half *halfConnection) {
	if half.queue.empty() {
		if e.life.heldFIN && half.holdsFIN() {
			e.pushFIN(conn, half)
			return
		}
		e.closeHalf(conn, half, nil, false)
		return
	}
	e.sg.reset()
	e.takeFirst(half)
	e.send(conn, half, e.sg.parts[0].ac)
}

// flushClose flushes one direction's bytes older than t, and closes it when
// nothing is left and the connection was idle since before tc.
func (e *engine) flushClose(conn *connection, half *halfConnection, t, tc time.Time) (flushed, closed bool) {
	if half.closed {
		return false, false
	}
	for !half.closed && !conn.removed {
		c := half.queue.min()
		if c == nil || !c.seen.Before(t) {
			break
		}
		flushed = true
		e.skipFlush(conn, half)
	}
	if e.life.heldFIN && !conn.removed && half.queue.empty() && half.holdsFIN() && conn.finSeenOf(half).Before(t) {
		flushed = true
		e.pushFIN(conn, half)
	}
	if half.closed {
		return flushed, true
	}
	if !conn.removed && half.queue.empty() && conn.lastSeen().Before(tc) {
		e.closeHalf(conn, half, nil, false)
		return flushed, true
	}
	return flushed, false
}

// flushWithOptions is FlushWithOptions for either face.
func (e *engine) flushWithOptions(opt FlushOptions) (flushes, closes int) {
	tNs, tcNs := int64(math.MinInt64), int64(math.MinInt64)
	if !opt.T.IsZero() {
		tNs = nanos(opt.T)
	}
	if !opt.TC.IsZero() {
		tcNs = nanos(opt.TC)
	}
	e.refs = e.table.snapshotDue(e.refs[:0], tNs, tcNs)
	for _, r := range e.refs {
		if !r.lock() {
			continue
		}
		conn := r.c
		for _, half := range [2]*halfConnection{&conn.halves[1], &conn.halves[0]} {
			if conn.removed {
				break
			}
			f, c := e.flushClose(conn, half, opt.T, opt.TC)
			if f {
				flushes++
				e.ctr.flushedHalves++
			}
			if c {
				closes++
				e.ctr.closedByFlush++
			}
		}
		if !conn.removed && conn.halves[0].closed && conn.halves[1].closed &&
			conn.halves[0].lastSeen.Before(opt.TC) && conn.halves[1].lastSeen.Before(opt.TC) {
			e.table.remove(conn, &e.free)
		}
		e.settleHint(conn, &conn.halves[0])
		e.settleHint(conn, &conn.halves[1])
		conn.mu.Unlock()
	}
	clear(e.refs)
	e.trimEvery(opt.T)
	return flushes, closes
}

// trimPeriod is how often, in the time flushes are given, a flush also
// releases what went unused: trimming on every flush would drop pages and
// objects that the next packets need again.
const trimPeriod = 10 * time.Second

// trimEvery releases idle free pages and connection objects, and shrinks
// indexes and graveyards left mostly empty, if trimPeriod has passed since
// the last time, judged by the flush's own time now.
func (e *engine) trimEvery(now time.Time) {
	if now.IsZero() {
		return
	}
	if e.lastTrim.IsZero() || now.Before(e.lastTrim) {
		e.lastTrim = now
		return
	}
	if now.Sub(e.lastTrim) >= trimPeriod {
		e.pc.trim()
		e.free.trim()
		e.table.trimIndexes()
		e.lastTrim = now
	}
}

// flushAll delivers everything buffered and closes every connection. It
// forgets the graves too, those it leaves included: what comes after it,
// such as the same capture replayed, is new traffic.
func (e *engine) flushAll() int {
	e.refs = e.table.snapshot(e.refs[:0])
	n := 0
	for _, r := range e.refs {
		if !r.lock() {
			continue
		}
		conn := r.c
		n++
		for _, half := range [2]*halfConnection{&conn.halves[1], &conn.halves[0]} {
			for !half.closed && !conn.removed {
				e.skipFlush(conn, half)
			}
		}
		conn.mu.Unlock()
	}
	clear(e.refs)
	e.table.reapGraves()
	e.pc.trim()
	return n
}
