package reassembly

import (
	"strings"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/safepacket/reassembly/internal/stamp"
)

// PartWalker is implemented by the ScatterGather of every delivery: it
// takes the delivery apart into the pieces the packets contributed, each
// with its own packet's metadata, where ScatterGather only gives the bytes
// as one run. Get it with a type assertion, sg.(PartWalker), so that
// ScatterGather stays upstream's interface.
//
// The parts cover the delivery exactly and in order: their bytes, one
// after the other, are Fetch(n) for the n of Lengths. Walking them
// allocates nothing. Like the rest of the delivery they are valid during
// the ReassembledSG call only.
type PartWalker interface {
	// NumParts returns the number of parts of the delivery.
	NumParts() int
	// Part returns part i, 0 <= i < NumParts(), or the zero Part for an
	// index out of range.
	Part(i int) Part
}

// Part is one piece of a delivery: bytes that one packet carried, in
// stream order, with that packet's metadata. A packet whose bytes do not
// fit one buffer (1900 bytes) while they wait out of order, or whose bytes
// lost in the middle to another packet's under an overlap policy, gives
// several parts, each with the packet's metadata.
type Part struct {
	// Bytes are the part's bytes. They belong to the assembler: copy what
	// you keep after ReassembledSG returns. A part may be empty, as the
	// one of a FIN that carries no data.
	Bytes []byte
	// Seq is the sequence number of Bytes[0] (where it would be, when the
	// part is empty).
	Seq Sequence
	// Ack is the packet's acknowledgement number; it means something when
	// Flags has TCPFlagACK.
	Ack Sequence
	// Flags are the packet's TCP flags (TCPFlagPSH, TCPFlagFIN, ...). A
	// packet given as several parts has its flags on each of them.
	Flags TCPFlags
	// Context is the AssemblerContext the packet was handed in with.
	Context AssemblerContext
	// Skip is the number of bytes missing from the stream right before the
	// part: on the first part, the skip of Info (-1 when the start of the
	// direction is unknown); 0 on the others, as the parts of a delivery
	// follow each other without a hole. Kept bytes are handed over again
	// only when no bytes are missing after them.
	Skip int
	// Kept tells that the part was delivered before, and is handed over
	// again because the Stream asked for it with KeepFrom.
	Kept bool
	// Rewritten tells that some of the part's bytes were replaced, while
	// they waited out of order, by a later copy of them from another
	// packet (the default overlap policy keeps the newest copy); the
	// metadata is that of the packet that first carried them.
	Rewritten bool
}

// CaptureInfo returns the capture metadata of the part's packet, or the
// zero value when it has no Context.
func (p Part) CaptureInfo() gopacket.CaptureInfo {
	if p.Context == nil {
		return gopacket.CaptureInfo{}
	}
	return p.Context.GetCaptureInfo()
}

// TCPFlags are the flags of a TCP header, one bit each, at their place in
// the header's flags byte.
type TCPFlags uint8

// The flags of a TCP header.
const (
	TCPFlagFIN TCPFlags = 1 << iota
	TCPFlagSYN
	TCPFlagRST
	TCPFlagPSH
	TCPFlagACK
	TCPFlagURG
	TCPFlagECE
	TCPFlagCWR
)

// tcpFlagNames are the flags' names, bit by bit.
var tcpFlagNames = [...]string{"FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"}

// Has reports whether every flag of x is set in f.
func (f TCPFlags) Has(x TCPFlags) bool { return f&x == x }

// String returns the names of the flags set, joined by "|", or "" when
// none is.
func (f TCPFlags) String() string {
	var b strings.Builder
	for i, name := range tcpFlagNames {
		if f&(1<<i) == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('|')
		}
		b.WriteString(name)
	}
	return b.String()
}

// flagsOf returns the flags of t. Unrolled, flag by flag: every packet
// pays for it, and a loop over the flags costs it several times as much.
func flagsOf(t *layers.TCP) TCPFlags {
	return flagIf(t.FIN, TCPFlagFIN) | flagIf(t.SYN, TCPFlagSYN) | flagIf(t.RST, TCPFlagRST) |
		flagIf(t.PSH, TCPFlagPSH) | flagIf(t.ACK, TCPFlagACK) | flagIf(t.URG, TCPFlagURG) |
		flagIf(t.ECE, TCPFlagECE) | flagIf(t.CWR, TCPFlagCWR)
}

// flagIf returns f when set, else no flag.
func flagIf(set bool, f TCPFlags) TCPFlags {
	if set {
		return f
	}
	return 0
}

// pktMeta is what a part tells of its packet besides its context.
type pktMeta struct {
	ack   uint32
	flags TCPFlags
}

// NumParts returns the number of parts of the delivery.
func (sg *scatterGather) NumParts() int { return len(sg.parts) }

// Part returns part i of the delivery, or the zero Part out of range.
func (sg *scatterGather) Part(i int) Part {
	if i < 0 || i >= len(sg.parts) {
		return Part{}
	}
	p := &sg.parts[i]
	skip := 0
	if i == 0 {
		skip = sg.skip
	}
	return Part{
		Bytes:     p.bytes,
		Seq:       p.seq,
		Ack:       Sequence(p.ack),
		Flags:     p.flags,
		Context:   p.ac,
		Skip:      skip,
		Kept:      p.kept,
		Rewritten: p.rewritten,
	}
}

var _ PartWalker = (*scatterGather)(nil)

// PartSeen is Part(i)'s bytes and skip, and its packet's capture time,
// for the tcpassembly face (stamp.PartReader). The context of a packet in
// order is the face's own stamp, read without the call and the copy of a
// whole CaptureInfo.
func (sg *scatterGather) PartSeen(i int) ([]byte, int, time.Time) {
	p := &sg.parts[i]
	skip := 0
	if i == 0 {
		skip = sg.skip
	}
	switch c := p.ac.(type) {
	case *stamp.Context:
		return p.bytes, skip, c.Info.Timestamp
	case nil:
		return p.bytes, skip, time.Time{}
	}
	return p.bytes, skip, p.ac.GetCaptureInfo().Timestamp
}

var _ stamp.PartReader = (*scatterGather)(nil)
