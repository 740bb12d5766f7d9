package reassembly

import "github.com/google/gopacket/layers"

// receiveWindow is what one direction told the other about its receive
// window (SafeAssemblerOptions.CheckWindow): its SYN's window scale option
// and the right edge of the windows it advertised.
type receiveWindow struct {
	// edge is the sequence number (of the other direction's bytes) just
	// past the furthest window advertised, ack plus scaled window, once
	// known is set. The furthest, not the last: a window shrinks only in
	// misbehaving stacks (RFC 9293 §3.8.6.2.2), while a capture that
	// reorders an older ACK after a newer one is common. ack is the
	// furthest acknowledgement the direction sent (of the other
	// direction's bytes), once acked is set: the next byte its host
	// expected then, which an RST must hit (resetAtNext).
	edge, ack    Sequence
	known, acked bool
	// syn is set once the direction's SYN was seen, with a well-formed
	// window scale option or none; scaled when it had one, shift its
	// value (at most 14, RFC 7323 §2.3).
	syn, scaled bool
	shift       uint8
}

// note records what t, sent by the direction whose window w is, tells of
// that window. The window scale is in effect only when both SYNs offered
// it (RFC 7323 §2.2), and a SYN's own window is never scaled; when either
// SYN was not seen the scale is unknown, so only SYNs' windows count:
// taking the window as unscaled would put the edge short of where the
// host's really is on a connection picked up mid-stream that scales, and
// drop the bytes it accepts (TCPOptionCheck's fault, kept from gopacket).
func (w *receiveWindow) note(t *layers.TCP, peer *receiveWindow) {
	if t.SYN {
		_, scale, err := synOptions(t.Options)
		// A malformed option leaves the scale unknown: nothing is checked.
		w.syn, w.scaled = err == nil, scale >= 0
		w.shift = uint8(min(max(scale, 0), maxWindowShift))
	}
	if !t.ACK {
		return
	}
	if ack := Sequence(t.Ack); !w.acked || w.ack.Difference(ack) > 0 {
		w.ack, w.acked = ack, true
	}
	wnd := int(t.Window)
	switch {
	case t.SYN:
	case !w.syn || !peer.syn:
		return
	case w.scaled && peer.scaled:
		wnd <<= w.shift
	}
	edge := Sequence(t.Ack).Add(wnd)
	if !w.known || w.edge.Difference(edge) > 0 {
		w.edge, w.known = edge, true
	}
}

// windowsOf returns the receive windows of the direction that sent s and
// of the other one.
func windowsOf(s *arrival) (own, peer *receiveWindow) {
	i := s.conn.side(s.half)
	return &s.conn.windows[i], &s.conn.windows[1-i]
}

// noteWindow records the window the packet advertises for its own
// direction (Safe face, CheckWindow). Every packet that reaches the screen
// stage counts, whatever the screens then decide: one that Accept refuses,
// or for a direction already closed (a side that sent its FIN still
// acknowledges), still tells where the sender's window is, and a window
// missed would only leave the edge short.
func (e *engine) noteWindow(s *arrival) {
	own, peer := windowsOf(s)
	own.note(s.tcp, peer)
}

// inWindow is the window screen (Safe face, CheckWindow): it keeps out a
// segment whose data, or an RST, starts at or past the right edge of the
// window the receiver advertised, which the receiver drops (RFC 9293
// §3.10.7.4): such an RST ends nothing, so that an attacker cannot blind
// the sensor to what follows by tearing the connection down where the
// host does not. Only data entirely beyond the window is kept out: data
// before it is old, and goes on to be resolved as an overlap, as without
// the option (an RST before it is judged by resetAtNext); and a receiver
// whose window is not known (no ACK from it yet, or a SYN not seen) keeps
// everything. It reports whether the packet goes on.
func (e *engine) inWindow(s *arrival) bool {
	t := s.tcp
	_, rw := windowsOf(s)
	if len(s.payload) == 0 && !t.RST || !rw.known {
		return true
	}
	seq := dataSeq(t)
	// A zero window still takes an RST at its next byte (RFC 9293
	// §3.10.7.4).
	if rw.edge.Difference(seq) < 0 || t.RST && rw.acked && seq == rw.ack {
		return true
	}
	if len(s.payload) > 0 {
		e.ctr.outOfWindow++
		e.ctr.discard(discardWindow, len(s.payload))
	}
	if t.RST {
		e.ctr.resetsOutOfWindow++
	}
	return false
}

// resetAtNext reports whether an RST, of a direction that has started and
// located at s.seq, hits the next byte its receiver expects (Safe face,
// CheckWindow): only such an RST resets the connection in a host that
// follows RFC 9293 §3.10.7.4 and RFC 5961 §3.2; one before that byte is
// outside the window and dropped, one after it, inside the window, is
// answered with a challenge ACK, and the connection goes on. The next byte
// is the one the direction delivers next, or, when the receiver
// acknowledged further (bytes the capture missed), its furthest
// acknowledgement. An RST not at it is counted and ends nothing.
func (e *engine) resetAtNext(s *arrival) bool {
	half := s.half
	_, rw := windowsOf(s)
	next := half.nextSeq
	if rw.acked && next.Difference(rw.ack) > 0 {
		next = rw.ack
	}
	switch d := next.Difference(s.seq); {
	case d == 0:
		return true
	case d < 0:
		e.ctr.resetsOutOfWindow++
	default:
		e.ctr.resetsNotExact++
	}
	return false
}

// resetEnds reports whether an RST that a screen meets before its segment
// is located (for a closed direction, or one past its depth) ends the
// connection: with CheckWindow only at its receiver's next byte
// (resetAtNext), as for an open direction, so that a forged RST cannot end
// a connection one of whose sides has finished or reached its depth.
func (e *engine) resetEnds(s *arrival) bool {
	if !e.screening.checkWindow || !s.half.started() {
		return true
	}
	s.seq = dataSeq(s.tcp)
	return e.resetAtNext(s)
}
