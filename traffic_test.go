package reassembly

import (
	"net"
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
	raw := wireTCP(tcp, src.Addr().AsSlice(), dst.Addr().AsSlice(), s.payload)
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

// wireTCP returns t with payload as it is on the wire between addresses
// src and dst (both IPv4, or both IPv6): serialized by gopacket, the
// oracle of the checksum, with the data offset filled in and the checksum
// computed over the pseudo-header.
func wireTCP(t *layers.TCP, src, dst net.IP, payload []byte) []byte {
	var ip gopacket.NetworkLayer = &layers.IPv6{Version: 6, NextHeader: layers.IPProtocolTCP, SrcIP: src, DstIP: dst}
	if src.To4() != nil {
		ip = &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: src, DstIP: dst}
	}
	if err := t.SetNetworkLayerForChecksum(ip); err != nil {
		panic(err)
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{ComputeChecksums: true, FixLengths: true}
	if err := gopacket.SerializeLayers(buf, opts, t, gopacket.Payload(payload)); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// trPacket is p as the trace kit's runners (kit_streams_test.go) take it.
func (p testPacket) trPacket() trPacket {
	ctx := trCtx(p.ci)
	return trPacket{flow: p.netFlow, tcp: p.tcp, ctx: &ctx}
}
