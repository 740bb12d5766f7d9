package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

var seg4 = segSpec{src: "10.1.2.3", dst: "192.0.2.9", sport: 40000, dport: 80, seq: 1000, ack: 1, ackFlag: true,
	payload: []byte("GET / HTTP/1.1\r\nHost: example\r\n\r\n")}

var seg6 = segSpec{src: "2001:db8::1", dst: "2001:db8:0:1::2", sport: 40001, dport: 443, seq: 7, ack: 9, ackFlag: true,
	payload: []byte("hello over ipv6")}

// testdataDir is the repository's testdata folder.
var testdataDir = filepath.Join("..", "..", "testdata")

func capturePath(name string) string { return filepath.Join(testdataDir, "captures", name) }

func expectedDir(name string) string { return filepath.Join(testdataDir, "expected", name) }

// segSpec describes a TCP segment to build.
type segSpec struct {
	src, dst     string
	sport, dport uint16
	seq, ack     uint32
	syn, fin     bool
	rst, ackFlag bool
	payload      []byte
}

func ipLayer(t testing.TB, s segSpec) gopacket.NetworkLayer {
	t.Helper()
	src, dst := net.ParseIP(s.src), net.ParseIP(s.dst)
	require.NotNil(t, src, s.src)
	require.NotNil(t, dst, s.dst)
	if src.To4() != nil {
		return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: src.To4(), DstIP: dst.To4()}
	}
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP, SrcIP: src, DstIP: dst}
}

// ipPacket returns a whole IP packet (v4 or v6 by address) carrying the segment.
func ipPacket(t testing.TB, s segSpec) []byte {
	t.Helper()
	ip := ipLayer(t, s)
	tcp := &layers.TCP{SrcPort: layers.TCPPort(s.sport), DstPort: layers.TCPPort(s.dport),
		Seq: s.seq, Ack: s.ack, SYN: s.syn, FIN: s.fin, RST: s.rst, ACK: s.ackFlag, Window: 65535}
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

// writePcap writes frames (all of one link type) to a pcap file, one
// timestamp per frame.
func writePcap(t *testing.T, path string, link layers.LinkType, frames [][]byte, times []time.Time) {
	t.Helper()
	fh, err := os.Create(path)
	require.NoError(t, err)
	defer fh.Close()
	w := pcapgo.NewWriter(fh)
	require.NoError(t, w.WriteFileHeader(65535, link))
	for i, f := range frames {
		ci := gopacket.CaptureInfo{Timestamp: times[i], CaptureLength: len(f), Length: len(f)}
		require.NoError(t, w.WritePacket(ci, f))
	}
	require.NoError(t, fh.Close())
}
