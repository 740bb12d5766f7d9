package reassembly

import (
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// testPacket is one generated packet, decoded the way a capture loop
// decodes: TransportFlow works on it, which upstream needs.
type testPacket struct {
	netFlow gopacket.Flow
	tcp     *layers.TCP
	ci      gopacket.CaptureInfo
}

// segment describes a TCP segment to build.
type segment struct {
	client, server     netip.AddrPort
	fromServer         bool
	seq, ack           uint32
	syn, fin, rst, psh bool
	hasAck             bool
	payload            []byte
	ts                 time.Time
}

// build serializes and decodes a segment so the TCP layer is what a real
// decoder would hand over.
func (s segment) build() testPacket {
	src, dst := s.client, s.server
	if s.fromServer {
		src, dst = dst, src
	}
	tcp := &layers.TCP{
		SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()),
		Seq: s.seq, Ack: s.ack, SYN: s.syn, FIN: s.fin, RST: s.rst, PSH: s.psh, ACK: s.hasAck,
		Window: 65535,
	}
	hdr := make([]byte, 20, 20+len(s.payload))
	binary.BigEndian.PutUint16(hdr[0:], uint16(tcp.SrcPort))
	binary.BigEndian.PutUint16(hdr[2:], uint16(tcp.DstPort))
	binary.BigEndian.PutUint32(hdr[4:], tcp.Seq)
	binary.BigEndian.PutUint32(hdr[8:], tcp.Ack)
	hdr[12] = 5 << 4
	var flags byte
	for i, f := range []bool{s.fin, s.syn, s.rst, s.psh, s.hasAck} {
		if f {
			flags |= 1 << i
		}
	}
	hdr[13] = flags
	binary.BigEndian.PutUint16(hdr[14:], tcp.Window)
	raw := append(hdr, s.payload...)
	decoded := &layers.TCP{}
	if err := decoded.DecodeFromBytes(raw, gopacket.NilDecodeFeedback); err != nil {
		panic(err)
	}
	a, b := src.Addr().AsSlice(), dst.Addr().AsSlice()
	typ, ipLen := layers.EndpointIPv4, 20
	if src.Addr().Is6() {
		typ, ipLen = layers.EndpointIPv6, 40
	}
	return testPacket{
		netFlow: gopacket.NewFlow(typ, a, b),
		tcp:     decoded,
		// The lengths a capture of the IP packet would give.
		ci: gopacket.CaptureInfo{Timestamp: s.ts, CaptureLength: ipLen + len(raw), Length: ipLen + len(raw)},
	}
}

// trPacket is p as the trace kit's runners (kit_streams_test.go) take it.
func (p testPacket) trPacket() trPacket {
	ctx := trCtx(p.ci)
	return trPacket{flow: p.netFlow, tcp: p.tcp, ctx: &ctx}
}
