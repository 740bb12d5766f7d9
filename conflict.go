package reassembly

import (
	"bytes"

	"github.com/google/gopacket"
)

// Conflict reports bytes of a direction that arrived twice with different
// content: a retransmission or an overlapping segment that disagrees with
// the bytes already held for the same stream offsets. Benign stacks resend
// the same bytes; different bytes mean a broken stack, or someone injecting
// data that the IDS and the host may resolve differently (Zeek's
// rexmit_inconsistency event is the model).
//
// Old and New are copies, of the same length, that the handler may keep.
type Conflict struct {
	// NetFlow and TCPFlow are the flows of the direction that sent the
	// bytes, as the StreamFactory saw them for the connection.
	NetFlow, TCPFlow gopacket.Flow
	// Direction is the direction of the bytes.
	Direction TCPFlowDirection
	// Stream is the connection's Stream.
	Stream Stream
	// Seq is the sequence number of the first byte of Old and New.
	Seq Sequence
	// Offset is the stream offset of that byte: how many bytes of the
	// direction come before it, counting from its first byte (after the
	// SYN), or -1 while the start of the direction is not known.
	Offset int64
	// Delivered is set when Old had been delivered to the Stream already
	// (it was kept in the ConflictWindow), and so stands whatever the
	// overlap policy; otherwise Old was buffered, out of order, and the
	// policy chooses which copy the Stream will get.
	Delivered bool
	// Old is the copy held before the packet came; New is the packet's.
	Old, New []byte
	// CaptureInfo is the capture metadata of the packet that carried New.
	CaptureInfo gopacket.CaptureInfo
}

// deliveredWindow keeps the last bytes delivered in one direction, up to a
// limit, so that later copies of them can be compared. It is a ring that
// grows with what it holds, so a short connection pays only for its bytes.
type deliveredWindow struct {
	buf []byte
	end int64 // stream offset just past the newest byte held
	n   int   // bytes held, at most len(buf)
}

func (w *deliveredWindow) index(pos int64) int {
	l := int64(len(w.buf))
	return int(((pos % l) + l) % l)
}

// add appends the delivered bytes b, at offset pos, keeping at most limit
// bytes; bytes that do not follow the last ones held start the window anew.
func (w *deliveredWindow) add(b []byte, pos int64, limit int) {
	if len(b) == 0 || limit <= 0 {
		return
	}
	if w.n > 0 && pos != w.end {
		w.n = 0
	}
	if len(b) >= limit {
		pos += int64(len(b) - limit)
		b = b[len(b)-limit:]
		w.n = 0
	}
	if need := w.n + len(b); need > len(w.buf) && len(w.buf) < limit {
		w.grow(min(limit, max(need, 2*len(w.buf), 256)))
	}
	i := w.index(pos)
	k := copy(w.buf[i:], b)
	copy(w.buf, b[k:])
	w.end = pos + int64(len(b))
	w.n = min(len(w.buf), w.n+len(b))
}

func (w *deliveredWindow) grow(size int) {
	var held []byte
	if w.n > 0 {
		held = make([]byte, w.n)
		w.read(held, w.from())
	}
	w.buf = make([]byte, size)
	if len(held) > 0 {
		i := w.index(w.from())
		k := copy(w.buf[i:], held)
		copy(w.buf, held[k:])
	}
}

// from returns the offset of the oldest byte held.
func (w *deliveredWindow) from() int64 { return w.end - int64(w.n) }

// read copies the bytes held from offset pos into dst, which must lie
// within the window.
func (w *deliveredWindow) read(dst []byte, pos int64) {
	i := w.index(pos)
	k := copy(dst, w.buf[i:])
	copy(dst[k:], w.buf)
}

// equal reports whether the bytes held from offset pos equal b, which must
// lie within the window.
func (w *deliveredWindow) equal(b []byte, pos int64) bool {
	i := w.index(pos)
	first := min(len(b), len(w.buf)-i)
	return bytes.Equal(w.buf[i:i+first], b[:first]) && bytes.Equal(w.buf[:len(b)-first], b[first:])
}

// conflictWatch is the state of the compare stage: whether it runs (the
// Safe face), who hears of conflicts, and how many delivered bytes each
// direction keeps to compare later copies with.
type conflictWatch struct {
	// detect compares overlapping bytes and counts conflicts; onConflict,
	// when set, receives them.
	detect     bool
	onConflict func(Conflict)
	window     int // delivered bytes kept per direction (deliveredWindow)
}

// compare is the third stage of a packet's path, on the Safe face: it
// reports the bytes of the segment that differ from a copy its direction
// holds, delivered (in the window) or buffered, before overlap resolution
// picks the copy that stays. engine.packet calls it when detect is set and
// the segment mayOverlapHeld. It reports false when the OnConflict handler
// panicked: the connection is then aborted.
func (e *engine) compare(s *arrival, ci *gopacket.CaptureInfo) bool {
	conn := s.conn
	e.checkConflicts(conn, s.half, s.payload, s.seq, s.pos, *ci)
	if conn.poisoned {
		e.ctr.discard(discardClosed, len(s.payload))
		e.abort(conn, s.ac)
		return false
	}
	return true
}

// mayOverlapHeld reports, cheaply, whether the segment may overlap a copy
// its direction holds: it has bytes, and starts before the next byte to
// deliver or the direction buffers some. Only then has compare anything
// to do; packets in order pay for every call.
func (s *arrival) mayOverlapHeld() bool {
	h := s.half
	return len(s.payload) > 0 && (!h.queue.empty() || h.started() && s.pos < h.nextPos)
}

// checkConflicts compares the payload data, at offset pos and sequence
// number seq, with the bytes the direction holds for the same offsets: the
// delivered bytes still in its window, and its buffered bytes. Each range
// where they differ is counted and reported: the delivered range, and each
// run of adjacent buffered bytes.
func (e *engine) checkConflicts(conn *connection, half *halfConnection, data []byte, seq Sequence, pos int64, ci gopacket.CaptureInfo) {
	end := pos + int64(len(data))
	from := pos
	if half.started() && pos < half.nextPos {
		from = min(end, half.nextPos)
		if w := half.win; w != nil && w.n > 0 {
			lo, hi := max(pos, w.from()), min(from, w.end)
			if lo < hi && !w.equal(data[lo-pos:hi-pos], lo) {
				e.conflict(conn, half, data, seq, pos, lo, hi, true, ci)
			}
		}
	}
	if from >= end || half.queue.empty() {
		return
	}
	q := &half.queue
	c := q.floor(from)
	if c == nil || c.end() <= from {
		c = q.after(from)
	}
	for c != nil && c.pos < end {
		lo := max(from, c.pos)
		hi := lo
		differs := false
		for c != nil && c.pos < end && (c.pos <= hi) {
			a, b := max(from, c.pos), min(end, c.end())
			if !differs && !bytes.Equal(c.bytes[a-c.pos:b-c.pos], data[a-pos:b-pos]) {
				differs = true
			}
			hi = b
			c = q.after(c.pos)
		}
		if differs {
			e.conflict(conn, half, data, seq, pos, lo, hi, false, ci)
		}
	}
}

// conflict counts the conflict over [lo, hi) and, when a handler is set,
// hands it copies of both versions.
func (e *engine) conflict(conn *connection, half *halfConnection, data []byte, seq Sequence, pos, lo, hi int64, delivered bool, ci gopacket.CaptureInfo) {
	e.ctr.conflicts++
	e.ctr.conflictBytes += hi - lo
	if e.conflicts.onConflict == nil {
		return
	}
	old := make([]byte, hi-lo)
	if delivered {
		half.win.read(old, lo)
	} else {
		q := &half.queue
		c := q.floor(lo)
		for ; c != nil && c.pos < hi; c = q.after(c.pos) {
			a, b := max(lo, c.pos), min(hi, c.end())
			if a < b {
				copy(old[a-lo:], c.bytes[a-c.pos:b-c.pos])
			}
		}
	}
	fromLo := conn.c2sFromLo == (half.dir == TCPDirClientToServer)
	netFlow, tcpFlow := conn.key.flows(fromLo)
	offset := int64(-1)
	if half.hasOrigin {
		offset = lo - half.origin
	}
	e.cb.conflict(conn, e.conflicts.onConflict, Conflict{
		NetFlow:     netFlow,
		TCPFlow:     tcpFlow,
		Direction:   half.dir,
		Stream:      conn.stream,
		Seq:         seq.Add(int(lo - pos)),
		Offset:      offset,
		Delivered:   delivered,
		Old:         old,
		New:         bytes.Clone(data[lo-pos : hi-pos]),
		CaptureInfo: ci,
	})
}

func (directCallbacks) conflict(_ *connection, f func(Conflict), x Conflict) { f(x) }

func (s *safeCallbacks) conflict(c *connection, f func(Conflict), x Conflict) {
	defer func() {
		if r := recover(); r != nil {
			s.recovered(c, "OnConflict", r)
		}
	}()
	f(x)
}
