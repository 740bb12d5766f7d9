package capture

import (
	"bytes"
	"net"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"
)

// capturePath names a capture shipped in the repository's testdata.
func capturePath(name string) string {
	return filepath.Join("..", "..", "testdata", "captures", name)
}

func addrOf(ep gopacket.Endpoint) string {
	if a, ok := netip.AddrFromSlice(ep.Raw()); ok {
		return a.String()
	}
	return ep.String()
}

// segSpec describes a TCP segment to build.
type segSpec struct {
	src, dst     string
	sport, dport uint16
	seq, ack     uint32
	ackFlag      bool
	payload      []byte
}

// ipPacket returns a whole IP packet (v4 or v6 by address) carrying the segment.
func ipPacket(t testing.TB, s segSpec) []byte {
	t.Helper()
	src, dst := net.ParseIP(s.src), net.ParseIP(s.dst)
	require.NotNil(t, src, s.src)
	require.NotNil(t, dst, s.dst)
	var ip gopacket.NetworkLayer
	if src.To4() != nil {
		ip = &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: src.To4(), DstIP: dst.To4()}
	} else {
		ip = &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP, SrcIP: src, DstIP: dst}
	}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(s.sport), DstPort: layers.TCPPort(s.dport),
		Seq: s.seq, Ack: s.ack, ACK: s.ackFlag, Window: 65535}
	require.NoError(t, tcp.SetNetworkLayerForChecksum(ip))
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		ip.(gopacket.SerializableLayer), tcp, gopacket.Payload(s.payload)))
	return append([]byte(nil), buf.Bytes()...)
}

var (
	macA = []byte{0x02, 0, 0, 0, 0, 1}
	macB = []byte{0x02, 0, 0, 0, 0, 2}
)

// ethernetFrame wraps an IP packet in Ethernet with the given VLAN tags
// (outermost first, TPID 0x88a8 for the outer one when there are two).
func ethernetFrame(ipPkt []byte, vlans ...uint16) []byte {
	var b bytes.Buffer
	b.Write(macB)
	b.Write(macA)
	for i, id := range vlans {
		tpid := []byte{0x81, 0x00}
		if len(vlans) > 1 && i == 0 {
			tpid = []byte{0x88, 0xa8}
		}
		b.Write(tpid)
		b.Write([]byte{byte(id >> 8), byte(id)})
	}
	if ipPkt[0]>>4 == 6 {
		b.Write([]byte{0x86, 0xdd})
	} else {
		b.Write([]byte{0x08, 0x00})
	}
	b.Write(ipPkt)
	return b.Bytes()
}
