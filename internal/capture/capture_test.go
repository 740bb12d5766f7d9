package capture

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	ct "github.com/safepacket/reassembly/internal/capturetest"
	"io"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// checkSeg asserts that a decoded segment is the one described by s.
func checkSeg(t *testing.T, s ct.Seg, seg *Segment) {
	t.Helper()
	require.NotNil(t, seg, "no TCP segment decoded")
	assert.Equal(t, s.Src, addrOf(seg.NetFlow.Src()))
	assert.Equal(t, s.Dst, addrOf(seg.NetFlow.Dst()))
	assert.Equal(t, layers.TCPPort(s.Sport), seg.TCP.SrcPort)
	assert.Equal(t, layers.TCPPort(s.Dport), seg.TCP.DstPort)
	assert.Equal(t, s.Seq, seg.TCP.Seq)
	assert.Equal(t, s.Payload, []byte(seg.TCP.Payload))
}

// addrOf prints an endpoint as an address where it is one.
func addrOf(ep gopacket.Endpoint) string {
	if a, ok := netip.AddrFromSlice(ep.Raw()); ok {
		return a.String()
	}
	return ep.String()
}

func le32(v uint32) []byte { b := make([]byte, 4); binary.LittleEndian.PutUint32(b, v); return b }
func be32(v uint32) []byte { b := make([]byte, 4); binary.BigEndian.PutUint32(b, v); return b }

func sllHeader(proto uint16) []byte {
	h := make([]byte, 16)
	binary.BigEndian.PutUint16(h[2:4], 1) // ARPHRD_ETHER
	binary.BigEndian.PutUint16(h[4:6], 6)
	copy(h[6:12], ct.MACA)
	binary.BigEndian.PutUint16(h[14:16], proto)
	return h
}

func sll2Header(proto uint16) []byte {
	h := make([]byte, 20)
	binary.BigEndian.PutUint16(h[0:2], proto)
	binary.BigEndian.PutUint32(h[4:8], 3) // ifindex
	binary.BigEndian.PutUint16(h[8:10], 1)
	h[11] = 6
	copy(h[12:18], ct.MACA)
	return h
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// TestDecodeLinkTypes decodes a frame of every supported link type.
func TestDecodeLinkTypes(t *testing.T) {
	ip4, ip6 := ct.IPPacket(t, ct.Seg4), ct.IPPacket(t, ct.Seg6)
	padded := ct.EthernetFrame(ip4)
	for len(padded) < 60+len(ip4) {
		padded = append(padded, 0xee) // trailer bytes that are not TCP payload
	}
	cases := []struct {
		name  string
		link  layers.LinkType
		frame []byte
		seg   ct.Seg
		vlans int64
	}{
		{"ethernet", layers.LinkTypeEthernet, ct.EthernetFrame(ip4), ct.Seg4, 0},
		{"ethernet ipv6", layers.LinkTypeEthernet, ct.EthernetFrame(ip6), ct.Seg6, 0},
		{"ethernet padding", layers.LinkTypeEthernet, padded, ct.Seg4, 0},
		{"802.1Q", layers.LinkTypeEthernet, ct.EthernetFrame(ip4, 100), ct.Seg4, 1},
		{"QinQ", layers.LinkTypeEthernet, ct.EthernetFrame(ip6, 10, 20), ct.Seg6, 2},
		{"linux sll", layers.LinkTypeLinuxSLL, cat(sllHeader(0x0800), ip4), ct.Seg4, 0},
		{"linux sll vlan", layers.LinkTypeLinuxSLL, cat(sllHeader(0x8100), []byte{0, 5, 0x86, 0xdd}, ip6), ct.Seg6, 1},
		{"linux sll2", linkTypeLinuxSLL2, cat(sll2Header(0x86dd), ip6), ct.Seg6, 0},
		{"null little endian", layers.LinkTypeNull, cat(le32(2), ip4), ct.Seg4, 0},
		{"null big endian", layers.LinkTypeNull, cat(be32(2), ip4), ct.Seg4, 0},
		{"null ipv6 darwin", layers.LinkTypeNull, cat(le32(30), ip6), ct.Seg6, 0},
		{"null ipv6 linux", layers.LinkTypeNull, cat(le32(10), ip6), ct.Seg6, 0},
		{"loop", layers.LinkTypeLoop, cat(be32(2), ip4), ct.Seg4, 0},
		{"raw 101 ipv4", layers.LinkTypeRaw, ip4, ct.Seg4, 0},
		{"raw 101 ipv6", layers.LinkTypeRaw, ip6, ct.Seg6, 0},
		{"raw 12", linkTypeRawAlt1, ip4, ct.Seg4, 0},
		{"ipv4 228", layers.LinkTypeIPv4, ip4, ct.Seg4, 0},
		{"ipv6 229", layers.LinkTypeIPv6, ip6, ct.Seg6, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := NewDecoder()
			seg, err := d.Decode(c.frame, c.link, ct.T0)
			require.NoError(t, err)
			checkSeg(t, c.seg, seg)
			assert.Equal(t, int64(1), d.stats.TCPSegments)
			assert.Equal(t, c.vlans, d.stats.VLANTags)
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	ip4 := ct.IPPacket(t, ct.Seg4)
	cases := []struct {
		name    string
		link    layers.LinkType
		frame   []byte
		wantErr bool
	}{
		{"arp is not tcp", layers.LinkTypeEthernet, cat(ct.MACB, ct.MACA, []byte{0x08, 0x06}, make([]byte, 28)), false},
		{"ipv4 udp is not tcp", layers.LinkTypeRaw, func() []byte {
			b := append([]byte(nil), ip4...)
			b[9] = 17
			return b
		}(), false},
		{"short ethernet", layers.LinkTypeEthernet, []byte{1, 2, 3}, true},
		{"ipv4 header cut", layers.LinkTypeEthernet, ct.EthernetFrame(ip4)[:14+12], true},
		{"tcp header cut", layers.LinkTypeRaw, ip4[:20+10], true},
		{"ipv4 wrong version", layers.LinkTypeIPv4, append([]byte{0x65}, ip4[1:]...), true},
		{"raw garbage version", layers.LinkTypeRaw, append([]byte{0x15}, ip4[1:]...), true},
		{"ipv4 total length below header", layers.LinkTypeRaw, func() []byte {
			b := append([]byte(nil), ip4...)
			binary.BigEndian.PutUint16(b[2:4], 12)
			return b
		}(), true},
		{"unsupported link type", layers.LinkTypeFDDI, ip4, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := NewDecoder()
			seg, err := d.Decode(c.frame, c.link, ct.T0)
			assert.Nil(t, seg)
			if c.wantErr {
				require.Error(t, err)
				assert.Equal(t, int64(1), d.stats.Undecodable)
			} else {
				require.NoError(t, err)
				assert.Equal(t, int64(1), d.stats.NonTCP)
			}
		})
	}
}

// TestDecodeLenientTCP keeps segments whose header is cut by the snap
// length or whose options are malformed.
func TestDecodeLenientTCP(t *testing.T) {
	s := ct.Seg4
	ip := ct.IPPacket(t, s)
	// Give the header 12 bytes of options: NOP NOP then a bad option (kind 8, length 0).
	opts := []byte{1, 1, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	withOpts := cat(ip[:40], opts, ip[40:])
	withOpts[32] = 8 << 4 // data offset 32 bytes
	binary.BigEndian.PutUint16(withOpts[2:4], uint16(len(withOpts)))

	d := NewDecoder()
	seg, err := d.Decode(withOpts, layers.LinkTypeRaw, ct.T0)
	require.NoError(t, err)
	checkSeg(t, s, seg)
	assert.Equal(t, int64(1), d.stats.TCPBadOptions)

	// Snap length cut inside the options: header kept, no payload.
	cut := withOpts[:20+24]
	seg, err = d.Decode(cut, layers.LinkTypeRaw, ct.T0)
	require.NoError(t, err)
	require.NotNil(t, seg)
	assert.Equal(t, layers.TCPPort(s.Dport), seg.TCP.DstPort)
	assert.Empty(t, seg.TCP.Payload)
	assert.Equal(t, uint8(8), seg.TCP.DataOffset)
	assert.Equal(t, int64(1), d.stats.TCPTruncatedHeader)

	// Snap length cut inside the payload: the captured bytes are kept.
	seg, err = d.Decode(ip[:len(ip)-5], layers.LinkTypeRaw, ct.T0)
	require.NoError(t, err)
	require.NotNil(t, seg)
	assert.Equal(t, s.Payload[:len(s.Payload)-5], []byte(seg.TCP.Payload))
}

// fragmentIPv4 splits an IPv4 packet (20-byte header) into fragments of at
// most size payload bytes (a multiple of 8), with DF set when df is true.
func fragmentIPv4(pkt []byte, size int, df bool) [][]byte {
	hdr, body := pkt[:20], pkt[20:]
	var out [][]byte
	for off := 0; off < len(body); off += size {
		end := min(off+size, len(body))
		f := cat(hdr, body[off:end])
		binary.BigEndian.PutUint16(f[2:4], uint16(len(f)))
		fo := uint16(off / 8)
		if end < len(body) {
			fo |= 0x2000 // MF
		}
		if df {
			fo |= 0x4000
		}
		binary.BigEndian.PutUint16(f[6:8], fo)
		out = append(out, f)
	}
	return out
}

// TestIPv4FragmentsWithDF reassembles fragments that carry DF and MF
// together, out of order, with an overlapping copy (first arrival wins).
func TestIPv4FragmentsWithDF(t *testing.T) {
	s := ct.Seg4
	s.Payload = bytes.Repeat([]byte("0123456789abcdef"), 10)
	pkt := ct.IPPacket(t, s)
	binary.BigEndian.PutUint16(pkt[4:6], 0x4242)
	frags := fragmentIPv4(pkt, 64, true)
	require.Len(t, frags, 3)

	// A forged copy of the middle fragment with other bytes, sent first.
	forged := append([]byte(nil), frags[1]...)
	for i := 20; i < len(forged); i++ {
		forged[i] = 'X'
	}
	d := NewDecoder()
	for _, f := range [][]byte{frags[2], frags[1], forged} {
		seg, err := d.Decode(f, layers.LinkTypeRaw, ct.T0)
		require.NoError(t, err)
		assert.Nil(t, seg)
	}
	seg, err := d.Decode(frags[0], layers.LinkTypeRaw, ct.T0)
	require.NoError(t, err)
	checkSeg(t, s, seg)
	assert.Equal(t, int64(4), d.stats.IPv4Fragments)
	assert.Equal(t, int64(1), d.stats.DatagramsReassembled)
	assert.Equal(t, int64(0), d.stats.NonTCP, "held fragments are not counted as non-TCP")
	assert.Empty(t, d.frags.pending)
	assert.Zero(t, d.frags.bytes)
}

func TestIPv4FragmentErrors(t *testing.T) {
	pkt := ct.IPPacket(t, ct.Seg4)
	frags := fragmentIPv4(pkt, 16, false)
	d := NewDecoder()
	last := append([]byte(nil), frags[1]...)
	binary.BigEndian.PutUint16(last[6:8], 0x1fff) // offset 65528: its 16 bytes end beyond 64 KiB
	_, err := d.Decode(last, layers.LinkTypeRaw, ct.T0)
	require.Error(t, err)

	// Expired: the rest arrives after the timeout and never completes.
	_, err = d.Decode(frags[0], layers.LinkTypeRaw, ct.T0)
	require.NoError(t, err)
	require.Len(t, d.frags.pending, 1)
	_, err = d.Decode(frags[1], layers.LinkTypeRaw, ct.T0.Add(fragTimeout+2*time.Second))
	require.NoError(t, err)
	assert.Equal(t, int64(1), d.stats.DatagramsDropped)
}

func TestDefragmenterBounded(t *testing.T) {
	var st DecodeStats
	f := newDefragmenter(time.Minute, 8, 1<<20, &st)
	for i := range 100 {
		_, _, done, err := f.add(fragKey{id: uint32(i)}, 0, true, 6, make([]byte, 64), ct.T0)
		require.NoError(t, err)
		require.False(t, done)
	}
	assert.Len(t, f.pending, 8)
	assert.Equal(t, int64(92), st.DatagramsDropped)
	assert.Equal(t, 8*64, f.bytes)
}

// ipv6Fragment builds an IPv6 packet with a fragment header.
func ipv6Fragment(t *testing.T, src6 []byte, id uint32, off int, more bool, nh uint8, chunk []byte) []byte {
	t.Helper()
	h := append([]byte(nil), src6[:40]...)
	h[6] = 44
	binary.BigEndian.PutUint16(h[4:6], uint16(8+len(chunk)))
	fh := make([]byte, 8)
	fh[0] = nh
	fo := uint16(off)
	if more {
		fo |= 1
	}
	binary.BigEndian.PutUint16(fh[2:4], fo)
	binary.BigEndian.PutUint32(fh[4:8], id)
	return cat(h, fh, chunk)
}

func TestIPv6Fragments(t *testing.T) {
	s := ct.Seg6
	pkt := ct.IPPacket(t, s)
	body := pkt[40:]

	d := NewDecoder()
	seg, err := d.Decode(ipv6Fragment(t, pkt, 1, 0, false, 6, body), layers.LinkTypeIPv6, ct.T0)
	require.NoError(t, err)
	checkSeg(t, s, seg)
	assert.Equal(t, int64(1), d.stats.IPv6AtomicFragments)

	seg, err = d.Decode(ipv6Fragment(t, pkt, 2, 16, false, 6, body[16:]), layers.LinkTypeIPv6, ct.T0)
	require.NoError(t, err)
	assert.Nil(t, seg)
	seg, err = d.Decode(ipv6Fragment(t, pkt, 2, 0, true, 6, body[:16]), layers.LinkTypeIPv6, ct.T0)
	require.NoError(t, err)
	checkSeg(t, s, seg)
	assert.Equal(t, int64(3), d.stats.IPv6Fragments)
	assert.Equal(t, int64(1), d.stats.DatagramsReassembled)
}

func TestDecodeTunnels(t *testing.T) {
	inner := ct.IPPacket(t, ct.Seg4)
	outer := func(proto byte, payload []byte) []byte {
		h := make([]byte, 20)
		h[0] = 0x45
		binary.BigEndian.PutUint16(h[2:4], uint16(20+len(payload)))
		h[8] = 64
		h[9] = proto
		copy(h[12:16], []byte{198, 51, 100, 1})
		copy(h[16:20], []byte{198, 51, 100, 2})
		return cat(h, payload)
	}
	udp := func(dport uint16, payload []byte) []byte {
		h := make([]byte, 8)
		binary.BigEndian.PutUint16(h[0:2], 5555)
		binary.BigEndian.PutUint16(h[2:4], dport)
		binary.BigEndian.PutUint16(h[4:6], uint16(8+len(payload)))
		return cat(h, payload)
	}
	gtp := cat([]byte{0x30, 0xff}, []byte{byte(len(inner) >> 8), byte(len(inner))}, be32(77), inner)
	gtpSeq := cat([]byte{0x32, 0xff}, []byte{0, 0}, be32(77), []byte{0, 1, 0, 0}, inner)
	vxlan := cat([]byte{0x08, 0, 0, 0, 0, 0, 1, 0}, ct.EthernetFrame(inner))
	cases := []struct {
		name  string
		frame []byte
	}{
		{"ip in ip", outer(4, inner)},
		{"gre ipv4", outer(47, cat([]byte{0, 0, 0x08, 0x00}, inner))},
		{"gre key seq ethernet", outer(47, cat([]byte{0x30, 0, 0x65, 0x58}, be32(1), be32(2), ct.EthernetFrame(inner)))},
		{"gre erspan ii", outer(47, cat([]byte{0x10, 0, 0x88, 0xbe}, be32(9), make([]byte, 8), ct.EthernetFrame(inner, 7)))},
		{"gtp-u", outer(17, udp(portGTPU, gtp))},
		{"gtp-u with sequence", outer(17, udp(portGTPU, gtpSeq))},
		{"vxlan", outer(17, udp(portVXLAN, vxlan))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := NewDecoder()
			seg, err := d.Decode(ct.EthernetFrame(c.frame), layers.LinkTypeEthernet, ct.T0)
			require.NoError(t, err)
			checkSeg(t, ct.Seg4, seg)
			assert.Equal(t, int64(1), d.stats.Tunnelled)
		})
	}
}

// TestDecodeShippedCaptures decodes every packet of captures covering each
// link type and encapsulation present in testdata.
func TestDecodeShippedCaptures(t *testing.T) {
	cases := []struct {
		name    string
		format  string
		link    layers.LinkType
		packets int
		tcp     int64
		check   func(t *testing.T, st DecodeStats)
	}{
		{name: "sv-http-gap-simple.pcap", format: "pcap", link: layers.LinkTypeNull, packets: 31, tcp: 31},
		{name: "sv-smb-eicar-overlap.pcap", format: "pcap", link: layers.LinkTypeLinuxSLL, packets: 27, tcp: 27},
		{name: "sv-tcp-empty-sack.pcap", format: "pcap", link: layers.LinkTypeRaw, packets: 42, tcp: 42},
		{name: "sv-midstream.pcap", format: "pcap", link: layers.LinkTypeEthernet, packets: 5, tcp: 5},
		{name: "gp-test301.pcapng", format: "pcapng", link: layers.LinkTypeEthernet, packets: 276, tcp: 276},
		{name: "td-of13-ericsson.pcapng", format: "pcapng", link: layers.LinkTypeEthernet, packets: 174, tcp: 174},
		{name: "sv-eve-data-gap.pcap", format: "pcap", link: layers.LinkTypeEthernet, packets: 7, tcp: 7,
			check: func(t *testing.T, st DecodeStats) { assert.Equal(t, int64(7), st.VLANTags) }},
		{name: "pf-ip-fragmented-ooo.pcap", format: "pcap", link: layers.LinkTypeEthernet, packets: 444, tcp: 0,
			check: func(t *testing.T, st DecodeStats) {
				assert.Equal(t, int64(444), st.IPv4Fragments)
				assert.Positive(t, st.DatagramsReassembled)
				assert.Equal(t, st.TCPSegments, st.DatagramsReassembled, "every datagram carries TCP")
				assert.Zero(t, st.DatagramsDropped)
			}},
		{name: "zk-gtp-fragmentation.pcap", format: "pcap", link: layers.LinkTypeEthernet, packets: 108,
			check: func(t *testing.T, st DecodeStats) {
				assert.Positive(t, st.Tunnelled)
				assert.Positive(t, st.DatagramsReassembled)
			}},
		{name: "sv-bug-5437-02.pcap", format: "pcap", link: layers.LinkTypeEthernet, packets: 60, tcp: 60,
			check: func(t *testing.T, st DecodeStats) { assert.Equal(t, int64(60), st.Tunnelled) }},
		{name: "zk-ipv6-http-atomic-frag.pcap", format: "pcap", link: layers.LinkTypeEthernet, packets: 38,
			check: func(t *testing.T, st DecodeStats) {
				assert.Positive(t, st.IPv6AtomicFragments)
				assert.Equal(t, st.IPv6Fragments, st.IPv6AtomicFragments)
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fh, err := os.Open(ct.Testdata("captures", c.name))
			require.NoError(t, err)
			defer fh.Close()
			st, err := fh.Stat()
			require.NoError(t, err)
			cr, err := Open(fh, fh, st.Size())
			require.NoError(t, err)
			assert.Equal(t, c.format, cr.Format())
			d := NewDecoder()
			n := 0
			for {
				data, ci, link, err := cr.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				require.NoError(t, err)
				n++
				assert.Equal(t, c.link, link)
				_, err = d.Decode(data, link, ci.Timestamp)
				assert.NoError(t, err, "packet %d", n)
			}
			assert.Equal(t, c.packets, n)
			assert.Zero(t, d.stats.Undecodable)
			if c.tcp > 0 {
				assert.Equal(t, c.tcp, d.stats.TCPSegments)
			} else {
				assert.Positive(t, d.stats.TCPSegments)
			}
			if c.check != nil {
				c.check(t, d.stats)
			}
		})
	}
}

func TestOpenCaptureRejects(t *testing.T) {
	_, err := Open(bytes.NewReader([]byte("hello world, not a capture")), nil, 0)
	require.ErrorIs(t, err, ErrNotCapture)
	_, err = Open(bytes.NewReader([]byte{0xd4}), nil, 0)
	require.ErrorIs(t, err, ErrNotCapture)
	// Good magic, header cut short.
	_, err = Open(bytes.NewReader([]byte{0xd4, 0xc3, 0xb2, 0xa1, 2, 0}), nil, 0)
	require.Error(t, err)
}

// FuzzDecode feeds arbitrary frames to the decoder under every link type it
// knows: it must never panic, and a segment it returns must carry a header.
func FuzzDecode(f *testing.F) {
	f.Add(ct.EthernetFrame(ct.IPPacket(f, ct.Seg4), 100))
	f.Add(cat(le32(30), ct.IPPacket(f, ct.Seg6)))
	f.Add([]byte{0x45, 0, 0, 20})
	links := []layers.LinkType{layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL, linkTypeLinuxSLL2,
		layers.LinkTypeNull, layers.LinkTypeLoop, layers.LinkTypeRaw, layers.LinkTypeIPv4, layers.LinkTypeIPv6}
	d := NewDecoder()
	f.Fuzz(func(t *testing.T, frame []byte) {
		for i, lt := range links {
			seg, err := d.Decode(frame, lt, ct.T0.Add(time.Duration(i)*time.Millisecond))
			if err == nil && seg != nil {
				require.NotNil(t, seg.TCP)
				require.GreaterOrEqual(t, int(seg.TCP.DataOffset), 5)
			}
		}
	})
}

// TestReadFile walks a capture with the convenience reader: packet numbers
// count every frame, segments come with their capture time.
func TestReadFile(t *testing.T) {
	var n int
	var last int64
	var payload int
	st, err := ReadFile(ct.Testdata("captures", "sv-http-gap-simple.pcap"), func(packet int64, seg *Segment, ci gopacket.CaptureInfo) error {
		n++
		assert.Greater(t, packet, last)
		last = packet
		assert.False(t, ci.Timestamp.IsZero())
		payload += len(seg.TCP.Payload)
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, 31, n)
	assert.Equal(t, int64(31), last)
	assert.Equal(t, int64(31), st.TCPSegments)
	assert.Equal(t, 120+418, payload)

	stop := errors.New("stop")
	_, err = ReadFile(ct.Testdata("captures", "sv-http-gap-simple.pcap"), func(int64, *Segment, gopacket.CaptureInfo) error { return stop })
	require.ErrorIs(t, err, stop)
	_, err = ReadFile(ct.Testdata("captures", "no-such.pcap"), nil)
	require.Error(t, err)
}

// TestCompressed: a gzip-compressed capture says so, whether opened from
// memory or from a file, and a plain one does not, since a caller that
// releases what Consumed counts must know whether its offsets are the
// file's.
func TestCompressed(t *testing.T) {
	raw, err := os.ReadFile(ct.Testdata("captures", "sv-http-gap-simple.pcap"))
	require.NoError(t, err)
	var zbuf bytes.Buffer
	zw := gzip.NewWriter(&zbuf)
	_, err = zw.Write(raw)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	for name, tc := range map[string]struct {
		b    []byte
		want bool
	}{"plain": {raw, false}, "gzip": {zbuf.Bytes(), true}} {
		r, err := OpenBytes(tc.b)
		require.NoError(t, err, name)
		assert.Equal(t, tc.want, r.Compressed(), "%s from memory", name)
		r, err = Open(bytes.NewReader(tc.b), bytes.NewReader(tc.b), int64(len(tc.b)))
		require.NoError(t, err, name)
		assert.Equal(t, tc.want, r.Compressed(), "%s from a reader", name)
	}
}
