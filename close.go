package reassembly

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
		conn.resetEnded = e.screening.checkWindow
		other := conn.other(half)
		for !other.closed && !conn.removed {
			e.skipFlush(conn, other)
		}
	}
	e.completeIfDone(conn, ac)
}

// completeIfDone completes the Stream, once, when both directions of conn
// are closed. When ReassemblyComplete lets the connection go, it is
// retired (its grave catches late copies of its packets); a Stream that
// panicked takes it out of the pool at once.
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
