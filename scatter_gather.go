package reassembly

import "github.com/google/gopacket"

// sgPart is one buffer of a delivery: the packet being assembled, a chunk
// taken from the out-of-order queue, or a chunk kept by KeepFrom.
type sgPart struct {
	bytes  []byte
	seq    Sequence
	pos    int64
	ac     AssemblerContext
	chunk  *chunk // owning chunk, nil for the live packet
	packet bool   // the buffer starts a packet (counted in Stats.Packets)
	kept   bool   // delivered before, kept by KeepFrom
	// rewritten tells that a later copy replaced some of the bytes.
	rewritten bool
	flags     TCPFlags // the packet's, as its acknowledgement number
	ack       uint32
}

// chunkPart is the part of a delivery that chunk c holds.
func chunkPart(c *chunk, kept bool) sgPart {
	var p sgPart
	p.fromChunk(c, kept)
	return p
}

// fromChunk fills p, field by field (in place, in a delivery's parts), as
// the part of a delivery that chunk c holds.
func (p *sgPart) fromChunk(c *chunk, kept bool) {
	p.bytes, p.seq, p.ack, p.pos, p.ac, p.chunk = c.bytes, c.seq, c.ack, c.pos, c.ac, c
	p.packet, p.kept, p.rewritten, p.flags = c.packetStart, kept, c.rewritten, c.flags
}

// livePart is the part of a delivery that the packet being processed, of
// metadata m, gives without being buffered.
func livePart(data []byte, seq Sequence, pos int64, ac AssemblerContext, m pktMeta) sgPart {
	var p sgPart
	p.fromPacket(data, seq, pos, ac, m)
	return p
}

// fromPacket fills p, field by field, as livePart's part.
func (p *sgPart) fromPacket(data []byte, seq Sequence, pos int64, ac AssemblerContext, m pktMeta) {
	p.bytes, p.seq, p.ack, p.pos, p.ac, p.chunk = data, seq, m.ack, pos, ac, nil
	p.packet, p.kept, p.rewritten, p.flags = true, false, false, m.flags
}

// scatterGather is the ScatterGather handed to Stream.ReassembledSG. One per
// engine is reused for every delivery, as upstream does.
type scatterGather struct {
	parts  []sgPart
	total  int
	saved  int
	dir    TCPFlowDirection
	start  bool
	end    bool
	rst    bool // the end is an RST
	depth  bool // the direction reached its reassembly depth
	skip   int
	toKeep int
	stats  TCPAssemblyStats
}

var _ ScatterGather = (*scatterGather)(nil)

func (sg *scatterGather) reset() {
	clear(sg.parts)
	sg.parts = sg.parts[:0]
	sg.total, sg.saved, sg.skip, sg.toKeep = 0, 0, 0, -1
	sg.start, sg.end, sg.rst, sg.depth = false, false, false, false
	sg.stats = TCPAssemblyStats{}
}

func (sg *scatterGather) add(p sgPart) {
	sg.parts = append(sg.parts, p)
	sg.total += len(p.bytes)
}

// grow adds a part to the delivery and returns it, to be filled in place.
func (sg *scatterGather) grow() *sgPart {
	n := len(sg.parts)
	if n == cap(sg.parts) {
		sg.parts = append(sg.parts, sgPart{})
	} else {
		sg.parts = sg.parts[:n+1]
	}
	return &sg.parts[n]
}

// addChunk adds the part of queued chunk c: add(chunkPart(c, false))
// filled in place, as addLive, for the chunks a delivery takes from the
// queue.
func (sg *scatterGather) addChunk(c *chunk) {
	sg.grow().fromChunk(c, false)
	sg.total += len(c.bytes)
}

// addLive adds the part of the packet s, unbuffered: add(livePart(...))
// filled in place, since building the part aside and copying it in costs
// packets in order more than the rest of their delivery's preparation.
func (sg *scatterGather) addLive(s *arrival) {
	sg.grow().fromPacket(s.payload, s.seq, s.pos, s.ac, s.meta)
	sg.total += len(s.payload)
}

// Lengths returns the bytes available and, of those, the bytes kept from
// the previous delivery.
func (sg *scatterGather) Lengths() (int, int) {
	return sg.total, sg.saved
}

// Fetch returns the first length bytes, clamped to what is available. It
// returns the packet's own buffer when one buffer holds them, and a fresh
// copy otherwise.
func (sg *scatterGather) Fetch(length int) []byte {
	length = max(0, min(length, sg.total))
	if len(sg.parts) == 0 {
		return nil
	}
	if first := sg.parts[0].bytes; length <= len(first) {
		return first[:length]
	}
	out := make([]byte, 0, length)
	for _, p := range sg.parts {
		if len(out)+len(p.bytes) >= length {
			return append(out, p.bytes[:length-len(out)]...)
		}
		out = append(out, p.bytes...)
	}
	return out
}

// KeepFrom asks for the bytes from offset on to be delivered again ahead of
// the next bytes of this direction; an offset outside the delivery keeps
// nothing.
func (sg *scatterGather) KeepFrom(offset int) {
	sg.toKeep = offset
}

// CaptureInfo returns the capture metadata of the packet that carried the
// byte at offset, or the zero value when offset is out of range. Unlike
// upstream it is right for every byte of a packet larger than a page.
func (sg *scatterGather) CaptureInfo(offset int) gopacket.CaptureInfo {
	if offset < 0 {
		return gopacket.CaptureInfo{}
	}
	at := 0
	for _, p := range sg.parts {
		if at+len(p.bytes) > offset {
			if p.ac == nil {
				return gopacket.CaptureInfo{}
			}
			return p.ac.GetCaptureInfo()
		}
		at += len(p.bytes)
	}
	return gopacket.CaptureInfo{}
}

// Info returns the direction, start and end flags and the bytes skipped
// before this delivery (-1 when the direction's start is unknown).
func (sg *scatterGather) Info() (TCPFlowDirection, bool, bool, int) {
	return sg.dir, sg.start, sg.end, sg.skip
}

// Stats returns the chunk and packet counts of this delivery and the
// half-connection's queue and overlap counts since the previous one.
func (sg *scatterGather) Stats() TCPAssemblyStats {
	s := sg.stats
	s.Chunks = len(sg.parts)
	for _, p := range sg.parts {
		if p.packet {
			s.Packets++
		}
	}
	return s
}
