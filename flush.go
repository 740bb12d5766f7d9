package reassembly

import (
	"math"
	"time"
)

// flushState is what flushes and trims keep between calls.
type flushState struct {
	refs     []connRef // the connections a flush visits, reused
	lastTrim time.Time // when trimEvery last released free pages
}

// expireIdle flushes and closes the connections whose last packet was
// handed in before cutoff (wall clock, ns), and returns how many directions
// it closed.
func (e *engine) expireIdle(cutoff int64) int {
	defer e.forcedBy(unackedFlush)()
	closed := 0
	e.flushes.refs = e.table.snapshot(e.flushes.refs[:0])
	for _, r := range e.flushes.refs {
		if !r.lock(e.solo) {
			continue
		}
		conn := r.c
		if conn.wallLast != 0 && conn.wallLast < cutoff {
			// Idle for so long, it goes, even if its Stream kept it.
			closed += e.finish(conn)
		}
		e.unlockConn(conn)
	}
	clear(e.flushes.refs)
	return closed
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
	defer e.forcedBy(unackedFlush)()
	tNs, tcNs := int64(math.MinInt64), int64(math.MinInt64)
	if !opt.T.IsZero() {
		tNs = nanos(opt.T)
	}
	if !opt.TC.IsZero() {
		tcNs = nanos(opt.TC)
	}
	e.flushes.refs = e.table.snapshotDue(e.flushes.refs[:0], tNs, tcNs)
	for _, r := range e.flushes.refs {
		if !r.lock(e.solo) {
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
		e.unlockConn(conn)
	}
	clear(e.flushes.refs)
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
	if e.flushes.lastTrim.IsZero() || now.Before(e.flushes.lastTrim) {
		e.flushes.lastTrim = now
		return
	}
	if now.Sub(e.flushes.lastTrim) >= trimPeriod {
		e.pc.trim()
		e.free.trim()
		e.table.trimIndexes()
		e.flushes.lastTrim = now
	}
}

// flushAll delivers everything buffered and closes every connection. It
// forgets the graves too, those it leaves included: what comes after it,
// such as the same capture replayed, is new traffic.
func (e *engine) flushAll() int {
	e.flushes.refs = e.table.snapshot(e.flushes.refs[:0])
	n := 0
	for _, r := range e.flushes.refs {
		if !r.lock(e.solo) {
			continue
		}
		conn := r.c
		n++
		for _, half := range [2]*halfConnection{&conn.halves[1], &conn.halves[0]} {
			for !half.closed && !conn.removed {
				e.skipFlush(conn, half)
			}
		}
		e.unlockConn(conn)
	}
	clear(e.flushes.refs)
	e.table.reapGraves()
	e.pc.trim()
	return n
}
