package reassembly

import "github.com/google/gopacket/layers"

// arrival is the packet being processed, as the stages of engine.packet
// hand it on: each stage reads what the earlier ones decided, and may cut
// payload. It lives on the stack of engine.packet and no stage keeps it,
// so handing it on costs no allocation. The packet's CaptureInfo is not in
// it: the stages that need it take a pointer to packet's copy, which an
// arrival could not hold without sending it to the heap (the stages hand
// what an arrival points to on to user code), and copying it in would
// cost packets in order more than the calls of the stages.
type arrival struct {
	conn *connection
	// half is the direction that sent the packet, peer the other one.
	half, peer *halfConnection
	tcp        *layers.TCP
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
