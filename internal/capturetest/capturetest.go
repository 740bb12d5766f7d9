// Package capturetest builds the packets and capture files that the tests of
// cmd/reassemble and internal/capture feed to their decoders: whole IP
// packets, Ethernet frames with VLAN tags, and pcap files.
package capturetest

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/stretchr/testify/require"
)

// T0 is the capture time the tests start from.
var T0 = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

// Seg describes a TCP segment to build.
type Seg struct {
	Src, Dst           string
	Sport, Dport       uint16
	Seq, Ack           uint32
	SYN, FIN, RST, ACK bool
	Payload            []byte
}

// Seg4 is an IPv4 data segment of an HTTP request.
var Seg4 = Seg{Src: "10.1.2.3", Dst: "192.0.2.9", Sport: 40000, Dport: 80, Seq: 1000, Ack: 1, ACK: true,
	Payload: []byte("GET / HTTP/1.1\r\nHost: example\r\n\r\n")}

// Seg6 is an IPv6 data segment.
var Seg6 = Seg{Src: "2001:db8::1", Dst: "2001:db8:0:1::2", Sport: 40001, Dport: 443, Seq: 7, Ack: 9, ACK: true,
	Payload: []byte("hello over ipv6")}

// MACA and MACB are the source and destination addresses of EthernetFrame.
var (
	MACA = []byte{0x02, 0, 0, 0, 0, 1}
	MACB = []byte{0x02, 0, 0, 0, 0, 2}
)

// Testdata names a file under the testdata folder of the nearest module
// root above this file that has one, wherever the test runs from: the
// generated fork flavour, a module nested in this one, finds the one
// shared copy (and, published alone, a folder that does not exist, so that
// tests needing it skip).
func Testdata(parts ...string) string {
	_, self, _, _ := runtime.Caller(0)
	nearest := ""
	for dir := filepath.Dir(self); ; {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if nearest == "" {
				nearest = dir
			}
			if fi, err := os.Stat(filepath.Join(dir, "testdata")); err == nil && fi.IsDir() {
				return filepath.Join(append([]string{dir, "testdata"}, parts...)...)
			}
		}
		up := filepath.Dir(dir)
		if up == dir {
			break
		}
		dir = up
	}
	if nearest == "" {
		panic("capturetest: no go.mod above " + self)
	}
	return filepath.Join(append([]string{nearest, "testdata"}, parts...)...)
}

// IPPacket returns a whole IP packet (v4 or v6 by address) carrying the
// segment, with lengths and checksums right.
func IPPacket(t testing.TB, s Seg) []byte {
	t.Helper()
	src, dst := net.ParseIP(s.Src), net.ParseIP(s.Dst)
	require.NotNil(t, src, s.Src)
	require.NotNil(t, dst, s.Dst)
	var ip gopacket.NetworkLayer
	if src.To4() != nil {
		ip = &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: src.To4(), DstIP: dst.To4()}
	} else {
		ip = &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP, SrcIP: src, DstIP: dst}
	}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(s.Sport), DstPort: layers.TCPPort(s.Dport),
		Seq: s.Seq, Ack: s.Ack, SYN: s.SYN, FIN: s.FIN, RST: s.RST, ACK: s.ACK, Window: 65535}
	require.NoError(t, tcp.SetNetworkLayerForChecksum(ip))
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		ip.(gopacket.SerializableLayer), tcp, gopacket.Payload(s.Payload)))
	return append([]byte(nil), buf.Bytes()...)
}

// EthernetFrame wraps an IP packet in Ethernet with the given VLAN tags
// (outermost first, TPID 0x88a8 for the outer one when there are two).
func EthernetFrame(ipPkt []byte, vlans ...uint16) []byte {
	var b bytes.Buffer
	b.Write(MACB)
	b.Write(MACA)
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

// WritePcap writes frames (all of one link type) to a pcap file, one
// timestamp per frame.
func WritePcap(t testing.TB, path string, link layers.LinkType, frames [][]byte, times []time.Time) {
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
