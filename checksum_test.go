package reassembly

// The TCP checksum (checksum.go, checksum_amd64.go, checksum_other.go):
// tcpChecksum against gopacket's and on the shipped captures, each onesSum
// and segmentSum against the byte-by-byte sum of RFC 1071, the policies'
// names, and the ChecksumDrop screen's place before the lookup.

import (
	"bytes"
	"encoding/binary"
	"math/rand"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"

	"github.com/safepacket/reassembly/internal/capture"
	"github.com/safepacket/reassembly/internal/capturetest"
)

// Property: tcpChecksum agrees with gopacket's checksum on IPv4 and IPv6
// segments of every payload length parity, with options, and finds any
// flipped byte of the header, the payload or an address wrong.
func TestTCPChecksumMatchesGopacket(t *testing.T) {
	t.Parallel()
	addrs := [][2]net.IP{
		{net.IP{10, 0, 0, 1}, net.IP{192, 168, 7, 9}},
		{net.ParseIP("2001:db8::1"), net.ParseIP("fe80::1234:5678")},
	}
	for _, a := range addrs {
		typ := layers.EndpointIPv6
		if a[0].To4() != nil {
			typ, a[0], a[1] = layers.EndpointIPv4, a[0].To4(), a[1].To4()
		}
		flow := gopacket.NewFlow(typ, a[0], a[1])
		for n := 0; n < 40; n++ {
			payload := []byte(strings.Repeat("xyzzy", 8)[:n])
			tcp := &layers.TCP{SrcPort: 4000, DstPort: 80, Seq: 0xFFFFFF00 + uint32(n), Ack: 7, ACK: true, PSH: n%2 == 0, Window: 1000}
			if n%3 == 0 {
				tcp.Options = []layers.TCPOption{{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{7}}}
			}
			raw := wireTCP(tcp, a[0], a[1], payload)
			dec := &layers.TCP{}
			require.NoError(t, dec.DecodeFromBytes(raw, gopacket.NilDecodeFeedback))
			good, verified := tcpChecksum(&flow, dec)
			require.True(t, verified)
			require.True(t, good, "%v, %d bytes: gopacket's checksum found wrong", typ, n)
			for i := range raw {
				raw[i] ^= 0x10
				if dec.DecodeFromBytes(raw, gopacket.NilDecodeFeedback) != nil {
					raw[i] ^= 0x10
					continue // a data offset the decoder refuses
				}
				good, _ = tcpChecksum(&flow, dec)
				require.False(t, good, "%v, %d bytes: byte %d flipped, checksum still right", typ, n, i)
				raw[i] ^= 0x10
			}
			require.NoError(t, dec.DecodeFromBytes(raw, gopacket.NilDecodeFeedback))
			swapped := flow.Reverse()
			good, _ = tcpChecksum(&swapped, dec)
			require.True(t, good, "the pseudo-header's sum does not depend on the order of the addresses")
			src2 := net.IP{10, 0, 0, 2}
			if len(a[1]) == 16 {
				src2 = net.ParseIP("2001:db8::2")
			}
			other := gopacket.NewFlow(typ, src2, a[1])
			good, _ = tcpChecksum(&other, dec)
			require.False(t, good, "another source address, checksum still right")
		}
	}
}

// Property: a segment the checksum cannot be computed for is unverified,
// never bad: a layer built without header bytes, a flow that is not IP.
func TestTCPChecksumUnverifiable(t *testing.T) {
	t.Parallel()
	c := kitConnN(1)
	built := c.segOff(false, "A", 0, []byte("data"))
	flow := c.flow(false)
	_, verified := tcpChecksum(&flow, built)
	require.False(t, verified, "no Contents")
	wired := c.wire(false, built)
	_, verified = tcpChecksum(&flow, wired)
	require.True(t, verified)
	eth := gopacket.NewFlow(layers.EndpointMAC, []byte{1, 2, 3, 4, 5, 6}, []byte{6, 5, 4, 3, 2, 1})
	_, verified = tcpChecksum(&eth, wired)
	require.False(t, verified, "a MAC flow")
}

// Property: the policies have their configuration names, and Validate
// refuses a value that is none of them.
func TestChecksumPolicyNamesAndValidation(t *testing.T) {
	t.Parallel()
	require.Equal(t, []string{"off", "count", "drop", "ChecksumPolicy(3)"},
		[]string{ChecksumOff.String(), ChecksumCount.String(), ChecksumDrop.String(), numChecksumPolicies.String()})
	for _, p := range []ChecksumPolicy{-1, numChecksumPolicies} {
		o := SafeAssemblerOptions{ChecksumPolicy: p}
		err := o.Validate()
		require.ErrorIs(t, err, ErrInvalidOptions)
		require.Contains(t, err.Error(), "ChecksumPolicy")
	}
}

// Property: with ChecksumDrop, a SYN or data segment with a wrong
// checksum makes no connection (the host never had one), an RST with one
// ends none, and layers built without header bytes are counted as
// unverified and reassembled.
func TestChecksumDropMakesNoConnection(t *testing.T) {
	t.Parallel()
	c := kitConnN(3)
	opts := kitReplayOpts()
	opts.ChecksumPolicy = ChecksumDrop
	_, st, pool := idsRun(t, c, opts, []*layers.TCP{
		corrupt(idsSeg(c, false, "S", 0, "", 0, 65535)),
		corrupt(idsSeg(c, false, "", 0, "hello", 1, 65535)),
	})
	require.Zero(t, pool.Stats().TotalCreated)
	require.Equal(t, int64(2), st.BadChecksums)
	require.Equal(t, int64(5), st.BytesBadChecksum)

	got, st, _ := idsRun(t, c, opts, []*layers.TCP{
		c.segOff(false, "S", 0, nil),
		c.segOff(false, "A", 0, []byte("built")),
	})
	require.Equal(t, "built", got)
	require.Equal(t, int64(2), st.UnverifiedChecksums)
	require.Zero(t, st.BadChecksums)

	// An RST with a wrong checksum ends nothing: the bytes after it are
	// delivered in the same Stream.
	f, pool, a := newKitSafe(t, opts)
	for i, p := range []*layers.TCP{
		idsSeg(c, false, "S", 0, "", 0, 65535),
		idsSeg(c, true, "S", 0, "", c.seqAt(false, 0), 65535),
		idsSeg(c, false, "", 0, "before ", c.seqAt(true, 0), 65535),
		corrupt(idsSeg(c, true, "R", 0, "", c.seqAt(false, 7), 0)),
		idsSeg(c, false, "", 7, "after", c.seqAt(true, 0), 65535),
	} {
		require.NoError(t, a.AssembleWithContext(c.flow(p.SrcPort == kitServerPort), p, kitAt(kitT0.Add(time.Duration(i)))))
	}
	require.Zero(t, f.stream(c).completes.Load(), "the RST completed the Stream")
	a.FlushAll()
	require.Equal(t, "before after", f.stream(c).bytes(0))
	require.Equal(t, int64(1), pool.Stats().TotalCreated)
	kitCloseSound(t, f, a)
}

// Property: tcpChecksum's verdict on every segment of the shipped
// captures is gopacket's (the segment serialized again, its checksum
// recomputed, compared with the one captured), and the screen's, whose
// address sum is cached from flow to flow, is tcpChecksum's.
func TestTCPChecksumOnCaptures(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(capturetest.Testdata("captures", "*.pcap*"))
	require.NoError(t, err)
	var checked, bad, filesBad int
	for _, path := range files {
		before := bad
		var cache checksums
		_, err := capture.ReadFile(path, func(n int64, seg *capture.Segment, ci gopacket.CaptureInfo) error {
			good, verified := tcpChecksum(&seg.NetFlow, seg.TCP)
			cgood, cverified := cache.verify(&seg.NetFlow, seg.TCP)
			require.Equal(t, [2]bool{good, verified}, [2]bool{cgood, cverified}, "%s packet %d: the cached address sum", filepath.Base(path), n)
			if !verified || ci.CaptureLength < ci.Length {
				return nil
			}
			src, dst := seg.NetFlow.Endpoints()
			again := *seg.TCP
			raw := wireTCP(&again, src.Raw(), dst.Raw(), seg.TCP.Payload)
			want := binary.BigEndian.Uint16(raw[16:]) == seg.TCP.Checksum
			require.Equal(t, want, good, "%s packet %d", filepath.Base(path), n)
			checked++
			if !good {
				bad++
			}
			return nil
		})
		require.NoError(t, err)
		if bad > before {
			filesBad++
		}
	}
	t.Logf("%d captures, %d with wrong checksums; %d segments verified, %d wrong", len(files), filesBad, checked, bad)
	require.Positive(t, checked)
	require.Positive(t, bad, "the captures hold wrong checksums (offload): the test can fail")
}

// refSum is the reference ones' complement sum of RFC 1071 over the
// concatenation of parts, byte by byte: a byte at an even offset of the
// whole is the high half of its 16-bit word, one at an odd offset the low
// half, and every carry out of 16 bits is added back at once.
func refSum(parts ...[]byte) uint16 {
	var sum uint32
	i := 0
	for _, p := range parts {
		for _, c := range p {
			w := uint32(c)
			if i%2 == 0 {
				w <<= 8
			}
			sum += w
			if sum > 0xFFFF {
				sum = sum&0xFFFF + 1
			}
			i++
		}
	}
	return uint16(sum)
}

// refSegmentSum is segmentSum by the book: the pseudo-header's bytes laid
// out as RFC 9293 §3.1 (4-byte addresses) or RFC 8200 §8.1 (16-byte ones)
// draw them, then the segment, summed byte by byte.
func refSegmentSum(src, dst, hdr, payload []byte) uint16 {
	n := len(hdr) + len(payload)
	var pseudo []byte
	pseudo = append(pseudo, src...)
	pseudo = append(pseudo, dst...)
	if len(src) == 4 {
		pseudo = append(pseudo, 0, byte(layers.IPProtocolTCP), byte(n>>8), byte(n))
	} else {
		pseudo = append(pseudo, byte(n>>24), byte(n>>16), byte(n>>8), byte(n), 0, 0, 0, byte(layers.IPProtocolTCP))
	}
	return refSum(pseudo, hdr, payload)
}

// onesSumsUnderTest is every onesSum of this machine (onesSums: the
// assembly ones it can run and the pure Go one) and the one segmentSum
// dispatches to.
func onesSumsUnderTest() []onesSumImpl {
	return append(onesSums(), onesSumImpl{"dispatch", onesSum})
}

// Property: every onesSum, folded, is the byte-by-byte sum for every
// length from 0 to 2000 (odd ones included), at every alignment of the
// slice in memory, for random bytes and for bytes all ones, which carry
// the most.
func TestOnesSumMatchesByteByByte(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewSource(1))
	buf := make([]byte, 2000+8)
	for _, fill := range []string{"ones", "random"} {
		for i := range buf {
			buf[i] = 0xFF
			if fill == "random" {
				buf[i] = byte(r.Intn(256))
			}
		}
		for _, impl := range onesSumsUnderTest() {
			for n := 0; n <= 2000; n++ {
				for align := 0; align < 8; align++ {
					b := buf[align : align+n]
					require.Equal(t, refSum(b), fold16(impl.sum(b)), "%s: %d bytes at offset %d, %s", impl.name, n, align, fill)
				}
			}
		}
	}
}

// Property: every onesSum keeps the sum exact past what 32-bit lanes
// hold: 1 MiB of bytes all ones, and a single word of ones among zeros
// (the sum is then that word, not 0: a zero sum would pass for all-zero
// bytes), at the start, the middle and the end.
func TestOnesSumLarge(t *testing.T) {
	t.Parallel()
	ones := bytes.Repeat([]byte{0xFF}, 1<<20)
	for _, impl := range onesSumsUnderTest() {
		require.Equal(t, refSum(ones), fold16(impl.sum(ones)), impl.name)
		for _, at := range []int{0, 1 << 19, 1<<20 - 2} {
			b := make([]byte, 1<<20)
			b[at], b[at+1] = 0xFF, 0xFF
			require.Equal(t, uint16(0xFFFF), fold16(impl.sum(b)), "%s: ones at %d", impl.name, at)
		}
		require.Zero(t, fold16(impl.sum(make([]byte, 4096))), "%s: all zero", impl.name)
	}
}

// Property: segmentSum is the byte-by-byte sum of the pseudo-header and
// the segment, with the payload summed by each onesSum of the machine,
// for IPv4 and IPv6 addresses, headers of 20 to 60 bytes, payloads of
// every length from 0 to 2000, each slice at an odd or even address,
// random bytes (the checksum field random too), and the length field
// carrying past 16 bits for IPv6.
func TestSegmentSumMatchesByteByByte(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewSource(2))
	fill := func(n, align int) []byte {
		b := make([]byte, n+align)[align:]
		r.Read(b)
		return b
	}
	check := func(src, dst, hdr, payload []byte) {
		t.Helper()
		want := refSegmentSum(src, dst, hdr, payload)
		require.Equal(t, want, segmentSum(src, dst, hdr, payload),
			"%d-byte addresses, %d-byte header, %d-byte payload", len(src), len(hdr), len(payload))
		for _, impl := range onesSums() {
			require.Equal(t, want, segmentSumWith(addrSum(src)+addrSum(dst), hdr, len(payload), impl.sum(payload)),
				"%s: %d-byte addresses, %d-byte header, %d-byte payload", impl.name, len(src), len(hdr), len(payload))
		}
	}
	for n := 0; n <= 2000; n++ {
		for _, alen := range []int{4, 16} {
			align := n % 2
			src, dst := fill(alen, align), fill(alen, 1-align)
			hdr := fill(20+4*r.Intn(11), 1-align)
			check(src, dst, hdr, fill(n, align))
		}
	}
	for _, n := range []int{65535 - 20, 65536 - 20, 70000, 1 << 17} {
		check(fill(16, 0), fill(16, 1), fill(20, 1), fill(n, 1))
	}
}

// FuzzSegmentSum compares segmentSum, and segmentSumWith each onesSum of
// the machine, with the byte-by-byte reference on any bytes: the first 4
// or 16 of them (by the first byte's low bit) and as many again are the
// addresses, the next 20 the header, the rest the payload, read at the
// alignment the second byte gives.
func FuzzSegmentSum(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30})
	f.Add(bytes.Repeat([]byte{0xFF}, 97))
	f.Add(append([]byte{1, 3}, bytes.Repeat([]byte{0xFF}, 301)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 2 {
			return
		}
		alen := 4
		if data[0]&1 == 1 {
			alen = 16
		}
		align := int(data[1] % 8)
		if len(data) < 2*alen+20 {
			return
		}
		buf := make([]byte, len(data)+align)[align:]
		copy(buf, data)
		src, dst, hdr, payload := buf[:alen], buf[alen:2*alen], buf[2*alen:2*alen+20], buf[2*alen+20:]
		want := refSegmentSum(src, dst, hdr, payload)
		require.Equal(t, want, segmentSum(src, dst, hdr, payload))
		for _, impl := range onesSums() {
			require.Equal(t, want, segmentSumWith(addrSum(src)+addrSum(dst), hdr, len(payload), impl.sum(payload)), impl.name)
		}
	})
}

// BenchmarkTCPChecksum is the checksum of one full-sized segment, the
// same one again (hot: in the CPU's caches), or each of the 1000 data
// segments of a trace in turn (cold: 1.5 MB, as the in-order benchmarks
// read them); cpu-ns/op is the process's CPU time, which a wait for a
// core does not count.
func BenchmarkTCPChecksum(b *testing.B) {
	var data []testPacket
	for _, p := range inOrderTraffic(1000, 1460) {
		if len(p.tcp.Payload) == 1460 {
			data = append(data, p)
		}
	}
	for _, cache := range []string{"hot", "cold"} {
		b.Run("cache="+cache, func(b *testing.B) {
			b.SetBytes(int64(len(data[0].tcp.Contents) + len(data[0].tcp.Payload)))
			c0 := processCPU()
			for i := 0; i < b.N; i++ {
				p := &data[0]
				if cache == "cold" {
					p = &data[i%len(data)]
				}
				if good, _ := tcpChecksum(&p.netFlow, p.tcp); !good {
					b.Fatal("checksum wrong")
				}
			}
			b.ReportMetric(float64((processCPU()-c0).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkOnesSum is each onesSum of the machine over the payload of one
// full-sized segment (1460 bytes), hot and cold as BenchmarkTCPChecksum:
//
//	go test -run X -bench OnesSum -count 10 > sum.out
//	benchstat -col /impl sum.out
func BenchmarkOnesSum(b *testing.B) {
	var data [][]byte
	for _, p := range inOrderTraffic(1000, 1460) {
		if len(p.tcp.Payload) == 1460 {
			data = append(data, p.tcp.Payload)
		}
	}
	for _, cache := range []string{"hot", "cold"} {
		for _, impl := range onesSums() {
			b.Run("cache="+cache+"/impl="+impl.name, func(b *testing.B) {
				b.SetBytes(int64(len(data[0])))
				var sink uint64
				c0 := processCPU()
				for i := 0; i < b.N; i++ {
					p := data[0]
					if cache == "cold" {
						p = data[i%len(data)]
					}
					sink += impl.sum(p)
				}
				b.ReportMetric(float64((processCPU()-c0).Nanoseconds())/float64(b.N), "cpu-ns/op")
				if sink == 1 {
					b.Log(sink)
				}
			})
		}
	}
}
