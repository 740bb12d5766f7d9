package reassembly

import (
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// arrival is the packet being processed, as the stages of engine.packet
// hand it on: each stage reads what the earlier ones decided, and may cut
// payload. It lives on the stack of engine.packet and no stage keeps it,
// so handing it on costs no allocation.
type arrival struct {
	conn *connection
	// half is the direction that sent the packet, peer the other one.
	half, peer *halfConnection
	tcp        *layers.TCP
	ci         gopacket.CaptureInfo
	ac         AssemblerContext
	// meta is the acknowledgement number and flags, which the parts of
	// deliveries carry.
	meta pktMeta
	// payload is what is left of the packet's bytes; seq and pos are the
	// sequence number and stream offset of its first byte (the SYN takes
	// one sequence number, so its data starts one later).
	payload []byte
	seq     Sequence
	pos     int64
	// extent is the segment as it arrived, before depth or overlaps cut
	// it: the overlap rules compare the extents of two segments.
	extent span
	end    bool // the packet carries a FIN or an RST
	// queue is set while the bytes lie beyond the next byte to deliver:
	// they are to be buffered, not delivered.
	queue bool
}

// arrive is where a packet enters engine.packet: it fills the arrival s
// and records the packet's time on the connection, which flushes and
// timeouts read, before any stage may drop the packet.
func (e *engine) arrive(s *arrival, conn *connection, fromLo bool, t *layers.TCP, ci gopacket.CaptureInfo, ac AssemblerContext) {
	s.conn, s.tcp, s.ci, s.ac = conn, t, ci, ac
	s.half, s.peer = conn.half(fromLo)
	s.payload = t.Payload
	s.meta = pktMeta{ack: t.Ack, flags: flagsOf(t)}
	if e.clock != nil {
		conn.wallLast = e.clock.Load()
	}
	half := s.half
	if half.lastSeen.Before(ci.Timestamp) {
		half.lastSeen = ci.Timestamp
		if ns := nanos(ci.Timestamp); ns > conn.lastSeenNs.Load() {
			conn.lastSeenNs.Store(ns)
		}
	}
}
