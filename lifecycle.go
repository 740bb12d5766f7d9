package reassembly

import (
	"math"
	"time"

	"github.com/google/gopacket/layers"
)

// lifecycle are the rules that end a connection early or move a direction
// on without a flush: a new conversation on the 4-tuple (port reuse), an
// idle timeout applied before the packet, holes the peer acknowledged, and
// the pickup of directions whose SYN was not captured.
type lifecycle struct {
	// idle, when positive, is the Safe face's ConnectionTimeout in capture
	// time: a packet for a connection idle longer completes it first.
	idle time.Duration
	// ackGaps skips a hole as soon as the peer acknowledges past it.
	ackGaps bool
	// midstream starts a direction whose SYN was not seen at its first
	// packet, unless the Stream's Accept clears start.
	midstream bool
	// heldFIN makes flushes treat a FIN held behind a hole like held
	// bytes: one older than the flush's T, or any at a FlushAll, is
	// delivered (empty, with its skip) and ends the direction.
	heldFIN bool
	// acking is set while an acknowledgement moves a direction over a
	// hole, so that the skip is counted as acknowledged.
	acking bool
}

// holdsFIN reports whether half knows its end but has not reached it.
func (h *halfConnection) holdsFIN() bool {
	return h.finPos >= 0 && !h.closed && (!h.started() || h.finPos > h.nextPos)
}

// settleHint resets half's oldestQueued hint when nothing is queued, but
// keeps a held FIN's time when flushes push FINs through.
func (e *engine) settleHint(conn *connection, half *halfConnection) {
	half.clearQueuedHint()
	if e.life.heldFIN && half.queue.empty() && half.holdsFIN() {
		half.noteQueued(*conn.finSeenOf(half))
	}
}

// pushFIN delivers the FIN half holds behind a hole, with nothing queued
// before it: an empty delivery that skips the hole and ends the direction.
// Its context is the FIN's capture time alone.
func (e *engine) pushFIN(conn *connection, half *halfConnection) {
	sg := &e.sg
	sg.reset()
	conn.endCtx = captureContext{Timestamp: *conn.finSeenOf(half)}
	sg.add(sgPart{seq: half.anchorSeq.Add(int(half.finPos - half.anchorPos)), pos: half.finPos, ac: &conn.endCtx})
	sg.end, sg.rst = true, half.rstEnd
	e.send(conn, half, sg.parts[0].ac)
	sg.reset()
}

// restartReason tells why a packet ends its connection before it is
// processed.
type restartReason uint8

const (
	noRestart     restartReason = iota
	restartIdle                 // conn was idle past the timeout
	restartReuse                // a SYN opens a new conversation on the 4-tuple
	restartAnswer               // a SYN-ACK answers the SYN of a completed conn
)

// restarts reports whether the packet belongs to a new conversation
// rather than to conn, which must then be completed first: conn was idle
// past the timeout, the packet is a SYN that reuses the 4-tuple of a
// closing conversation, or the SYN-ACK answering such a SYN on an open
// one (the new connection then starts the SYN's direction), or a
// SYN-ACK answering the SYN of a connection completed (by an RST refusing
// it) but kept by its Stream: the host went on after all, and the
// conversation resumes in a new connection (graveyard.go, answeredSYN).
func (e *engine) restarts(conn *connection, fromLo bool, t *layers.TCP, ts time.Time) restartReason {
	if e.life.idle > 0 {
		if last := conn.seenNs; last != math.MinInt64 {
			if ns := nanos(ts); ns > last && uint64(ns)-uint64(last) > uint64(e.life.idle) {
				return restartIdle
			}
		}
	}
	if !t.SYN {
		return noRestart
	}
	half, peer := conn.half(fromLo)
	if t.ACK {
		switch {
		case peer.hasNewSYN && t.Ack == peer.newSYN+1:
			// The host answered the new SYN: the old conversation is over.
			e.answered = Sequence(t.Ack)
			return restartReuse
		case conn.completed && !half.started() && peer.started() && peer.hasOrigin &&
			peer.nextPos == peer.origin && Sequence(t.Ack) == peer.nextSeq:
			return restartAnswer
		}
		return noRestart
	}
	if !half.reusedBy(Sequence(t.Seq)) {
		return noRestart
	}
	if half.closed || peer.closed || half.finPos >= 0 || peer.finPos >= 0 {
		return restartReuse
	}
	// On an open conversation a host answers such a SYN with an ACK and
	// goes on (RFC 5961, suricata-verify bug-5437): only its SYN-ACK
	// would tell that the 4-tuple was reused.
	half.newSYN, half.hasNewSYN = t.Seq, true
	return noRestart
}

// reusedBy reports whether a SYN (without ACK) with sequence number syn
// opens a new conversation on a direction that has started: its first data
// byte lies outside the range of sequence numbers the direction has used,
// as a new ISN does. A retransmitted SYN, or one inside that range, does
// not: TCP answers those with an ACK on the open connection (RFC 5961).
func (h *halfConnection) reusedBy(syn Sequence) bool {
	if !h.started() || !h.hasOrigin {
		return false
	}
	pos := h.posOf(syn.Add(1))
	if pos < h.origin {
		return true
	}
	hi := h.nextPos
	if c := h.queue.floor(math.MaxInt64); c != nil && c.end() > hi {
		hi = c.end()
	}
	if h.finPos >= hi {
		hi = h.finPos + 1
	}
	return pos > hi
}

// finish completes conn now, delivering what it buffers over its holes,
// and takes it out of the pool: for a new conversation on its 4-tuple, or
// after an idle timeout. It returns how many directions it closed.
func (e *engine) finish(conn *connection) int {
	closed := 0
	for _, half := range [2]*halfConnection{&conn.halves[1], &conn.halves[0]} {
		if !half.closed {
			closed++
		}
		for !half.closed && !conn.removed {
			e.skipFlush(conn, half)
		}
	}
	if !conn.removed {
		// Completed but kept by its Stream: the new conversation replaces it.
		e.table.remove(conn, &e.free)
	}
	return closed
}

// restart completes the locked conn for a packet of a new conversation on
// its 4-tuple, unlocks it, and returns its key for the new connection.
func (e *engine) restart(conn *connection, why restartReason) connKey {
	k, h := conn.key, conn.hash
	if why == restartAnswer && !conn.removed {
		// Completed already, and kept by its Stream: its grave is what
		// the answer resumes from.
		e.table.retire(conn, &e.free)
	}
	if why == restartIdle {
		defer e.forcedBy(unackedFlush)()
	}
	closed := e.finish(conn)
	switch why {
	case restartReuse:
		e.ctr.reused++
	case restartIdle:
		e.ctr.timedOut += int64(closed)
	}
	e.unlockConn(conn)
	if why != restartAnswer {
		// The grave just left would judge the packet by the old
		// conversation; an answer needs it to resume.
		e.table.forgetGrave(h, &k)
	}
	return k
}

// ackedPast moves half on when the peer acknowledged bytes up to ack past
// a hole: the host received bytes the capture missed, so the hole before
// the first buffered bytes (or before the FIN) will never fill. The hole is
// skipped at once, reported to the Stream as Skip and counted, and the
// bytes after it are delivered; a FIN so reached closes the direction.
func (e *engine) ackedPast(conn *connection, half *halfConnection, ack Sequence, ac AssemblerContext) {
	acked := half.posOf(ack)
	for acked > half.nextPos && !half.closed && !conn.removed {
		sg := &e.sg
		sg.reset()
		if c := half.queue.min(); c != nil {
			// The host must have received some of the buffered bytes, not
			// only those of the hole: a capture that merges two links can
			// show an ACK a little before the data it acknowledges.
			if c.pos >= acked {
				return
			}
			// One acknowledgement could still come before the data in a
			// capture that shuffled packets; a second, or one that covers
			// the FIN, leaves no doubt.
			if (half.finPos < 0 || half.finPos >= acked) && half.ackedHoleAt != half.nextPos {
				half.ackedHoleAt = half.nextPos
				return
			}
			e.ctr.ackedGaps++
			// Only as far as acknowledged, with AckedDelivery: the
			// acknowledgement may end inside the chunk after the hole.
			e.takeHead(half, c, e.ackLimit(conn, half))
		} else {
			if half.finPos < half.nextPos || half.finPos >= acked {
				return
			}
			// Only the FIN is left: an empty delivery ends the direction.
			if half.finPos > half.nextPos {
				e.ctr.ackedGaps++
			}
			seq := half.anchorSeq.Add(int(half.finPos - half.anchorPos))
			// No packet of this direction carries it: its context is the
			// capture time of the acknowledgement alone.
			conn.endCtx = captureContext{Timestamp: ac.GetCaptureInfo().Timestamp}
			sg.add(sgPart{seq: seq, pos: half.finPos, ac: &conn.endCtx})
			sg.end, sg.rst = true, half.rstEnd
		}
		e.life.acking = true
		e.send(conn, half, sg.parts[0].ac)
		e.life.acking = false
		sg.reset()
	}
}

// mayHoldHole reports, cheaply, whether an acknowledgement could move half
// over a hole: it started, is open, and buffers bytes or knows its end.
func (h *halfConnection) mayHoldHole() bool {
	return h.started() && !h.closed && (!h.queue.empty() || h.finPos >= 0)
}
