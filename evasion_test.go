package reassembly

// Insertion attacks (Ptacek & Newsham, 1998): segments the host drops but
// a sensor may reassemble. For each screen, what the default Safe face
// delivers (the attacker's bytes) and what the screen delivers (the
// host's).

import (
	"bytes"
	"encoding/binary"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	upstream "github.com/google/gopacket/reassembly"
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

// Property: a segment with a wrong checksum, carrying other bytes than the
// real one and arriving first, is what the default face delivers; with
// ChecksumCount it is counted and still delivered; with ChecksumDrop the
// host's bytes are delivered and the attacker's counted as discarded.
func TestEvasionBadChecksum(t *testing.T) {
	t.Parallel()
	c := kitConnN(2)
	pkts := func() []*layers.TCP {
		return []*layers.TCP{
			idsSeg(c, false, "S", 0, "", 0, 65535),
			idsSeg(c, true, "S", 0, "", c.seqAt(false, 0), 65535),
			idsSeg(c, false, "", 0, "", c.seqAt(true, 0), 65535),
			corrupt(idsSeg(c, false, "", 0, "EVIL", c.seqAt(true, 0), 65535)),
			idsSeg(c, false, "", 0, "GOOD", c.seqAt(true, 0), 65535),
			idsSeg(c, false, "", 4, " day", c.seqAt(true, 0), 65535),
		}
	}
	for _, tc := range []struct {
		policy  ChecksumPolicy
		want    string
		bad     int64
		dropped int64
	}{
		{ChecksumOff, "EVIL day", 0, 0},
		{ChecksumCount, "EVIL day", 1, 0},
		{ChecksumDrop, "GOOD day", 1, 4},
	} {
		t.Run(tc.policy.String(), func(t *testing.T) {
			t.Parallel()
			opts := kitReplayOpts()
			opts.ChecksumPolicy = tc.policy
			got, st, _ := idsRun(t, c, opts, pkts())
			require.Equal(t, tc.want, got)
			require.Equal(t, tc.bad, st.BadChecksums)
			require.Equal(t, tc.dropped, st.BytesBadChecksum)
			require.Zero(t, st.UnverifiedChecksums)
		})
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

// Property: a segment beyond the window the server advertised (100
// scaled by 2: 400 bytes), which the server drops, is what the default
// face delivers when it arrives first; CheckWindow delivers the copy sent
// once the window opened, and counts the other. Data inside the scaled
// window but past the unscaled one goes on (the scale is applied), an
// older ACK reordered after a newer one does not pull the edge back, and
// a retransmission of bytes already acknowledged goes on as an overlap.
func TestEvasionOutOfWindow(t *testing.T) {
	t.Parallel()
	c := kitConnN(4)
	a400 := strings.Repeat("a", 400)
	pkts := func() []*layers.TCP {
		sAck := c.seqAt(true, 0)
		return []*layers.TCP{
			idsSeg(c, false, "S", 0, "", 0, 65535, wsOpt(7)),
			idsSeg(c, true, "S", 0, "", c.seqAt(false, 0), 100, wsOpt(2)), // a SYN's window is not scaled
			idsSeg(c, false, "", 0, "", sAck, 500),
			idsSeg(c, true, "", 0, "", c.seqAt(false, 0), 100),
			idsSeg(c, false, "", 0, a400[:300], sAck, 500),
			idsSeg(c, false, "", 300, a400[300:], sAck, 500), // past 100, inside 400
			idsSeg(c, false, "", 400, "EVIL", sAck, 500),     // at the edge: dropped by the host
			idsSeg(c, true, "", 0, "", c.seqAt(false, 400), 100),
			idsSeg(c, true, "", 0, "", c.seqAt(false, 0), 100), // an older ACK, reordered: the edge stays
			idsSeg(c, false, "", 0, "aaaa", sAck, 500),         // retransmitted, acknowledged
			idsSeg(c, false, "", 400, "GOOD", sAck, 500),
		}
	}
	got, st, _ := idsRun(t, c, kitReplayOpts(), pkts())
	require.Equal(t, a400+"EVIL", got, "the default face")
	require.Zero(t, st.OutOfWindow)

	opts := kitReplayOpts()
	opts.CheckWindow = true
	got, st, _ = idsRun(t, c, opts, pkts())
	require.Equal(t, a400+"GOOD", got, "CheckWindow")
	require.Equal(t, int64(1), st.OutOfWindow)
	require.Equal(t, int64(4), st.BytesOutOfWindow)
	require.Equal(t, int64(4), st.BytesOverlap, "the retransmission goes on as an overlap")
}

// Property: CheckWindow checks nothing where the window is not known: a
// connection picked up mid-stream (no SYN, the scale unknown) delivers
// data far past the raw window, and without a scale option on both SYNs
// the window is unscaled.
func TestCheckWindowUnknownOrUnscaled(t *testing.T) {
	t.Parallel()
	c := kitConnN(5)
	opts := kitReplayOpts()
	opts.CheckWindow, opts.Midstream = true, true
	got, st, _ := idsRun(t, c, opts, []*layers.TCP{
		idsSeg(c, false, "", 0, "0123456789abcdef", c.seqAt(true, 0), 10),
		idsSeg(c, true, "", 0, "", c.seqAt(false, 0), 10),
		idsSeg(c, false, "", 16, "later", c.seqAt(true, 0), 10),
	})
	require.Equal(t, "0123456789abcdeflater", got)
	require.Zero(t, st.OutOfWindow)

	opts.Midstream = false
	got, st, _ = idsRun(t, c, opts, []*layers.TCP{
		idsSeg(c, false, "S", 0, "", 0, 65535), // no scale: the server's window 10 is not shifted by its 7
		idsSeg(c, true, "S", 0, "", c.seqAt(false, 0), 10, wsOpt(7)),
		idsSeg(c, true, "", 0, "", c.seqAt(false, 0), 10),
		idsSeg(c, false, "", 0, "0123456789", c.seqAt(true, 0), 500),
		idsSeg(c, false, "", 10, "x", c.seqAt(true, 0), 500),
	})
	require.Equal(t, "0123456789", got)
	require.Equal(t, int64(1), st.OutOfWindow)
}

// idsScreens are the insertion screens' settings the benchmark and the
// allocation test compare: none, each alone, both.
var idsScreens = []struct {
	name string
	set  func(*SafeAssemblerOptions)
}{
	{"off", func(*SafeAssemblerOptions) {}},
	{"checksum", func(o *SafeAssemblerOptions) { o.ChecksumPolicy = ChecksumDrop }},
	{"window", func(o *SafeAssemblerOptions) { o.CheckWindow = true }},
	{"both", func(o *SafeAssemblerOptions) { o.ChecksumPolicy, o.CheckWindow = ChecksumDrop, true }},
}

// Property: with the insertion screens on, an in-order packet of an open
// connection still allocates nothing, and every byte is delivered (none
// is screened out of a well-formed connection).
func TestInsertionScreensDoNotAllocate(t *testing.T) {
	pkts := inOrderTraffic(200, 1460)
	ctxs := contexts(pkts)
	for _, sc := range idsScreens[1:] {
		t.Run(sc.name, func(t *testing.T) {
			opts := kitReplayOpts()
			sc.set(&opts)
			f := &atkFactory{sinkAll: true}
			a := newKitAssembler(t, NewSafeStreamPool(f, 10), opts)
			feed := func(j int, p []testPacket, c []benchCtx) { _ = a.AssembleWithContext(p[j].netFlow, p[j].tcp, &c[j]) }
			// The connection opens with the handshake; the steady state is
			// the data and ACKs, fed once each.
			for j := 0; j < 3; j++ {
				feed(j, pkts, ctxs)
			}
			steady, sctx := pkts[3:len(pkts)-2], ctxs[3:len(ctxs)-2]
			i := 0
			allocs := testing.AllocsPerRun(len(steady)-1, func() {
				feed(i, steady, sctx)
				i++
			})
			require.Zero(t, allocs, "allocations per in-order packet")
			st := a.Stats()
			require.Equal(t, st.BytesProcessed, st.BytesDelivered, "%+v", st)
			require.Zero(t, st.BadChecksums+st.OutOfWindow+st.UnverifiedChecksums)
		})
	}
}

// BenchmarkInsertionScreens is the cost of the insertion screens on one
// long in-order connection (1460-byte segments both ways, each ACKed),
// the Safe face's cheapest traffic, where their share is the largest; the
// count consumer never reads the bytes, the copy consumer copies them out
// as a parser would:
//
//	go test -run X -bench InsertionScreens -count 10 > ids.out
//	benchstat -col /screens ids.out
func BenchmarkInsertionScreens(b *testing.B) {
	pkts := inOrderTraffic(2000, 1460)
	var payload int64
	for _, p := range pkts {
		payload += int64(len(p.tcp.Payload))
	}
	scratch := make([]byte, 0, 64<<10)
	for _, consumer := range []string{"count", "copy"} {
		for _, sc := range idsScreens {
			b.Run("consumer="+consumer+"/screens="+sc.name, func(b *testing.B) {
				ctxs := contexts(pkts)
				for i := range ctxs {
					ctxs[i].scratch = &scratch
				}
				opts := benchSafeOptions
				sc.set(&opts)
				b.SetBytes(payload / int64(len(pkts)))
				var cpu time.Duration
				b.ResetTimer()
				for left := b.N; left > 0; {
					// A fresh assembler per replay, not timed: the trace
					// opens and closes its one connection.
					b.StopTimer()
					var f StreamFactory = &atkFactory{sinkAll: true}
					if consumer == "copy" {
						bf := &benchFactory{copyBytes: true}
						bf.init(1, 4)
						f = bf
					}
					a, err := NewSafeAssembler(NewSafeStreamPool(f, 0), opts)
					if err != nil {
						b.Fatal(err)
					}
					n := min(left, len(pkts))
					b.StartTimer()
					c0 := processCPU()
					for j := 0; j < n; j++ {
						_ = a.AssembleWithContext(pkts[j].netFlow, pkts[j].tcp, &ctxs[j])
					}
					cpu += processCPU() - c0
					b.StopTimer()
					_ = a.Close()
					b.StartTimer()
					left -= n
				}
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/pkt")
			})
		}
	}
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

// Property: on the shipped captures, real traffic, CheckWindow changes
// nothing (no false positive) but in sv-stream-out-of-window, whose one
// data segment lies beyond the window the SYN-ACK advertised (Suricata's
// tcp-session-stream-out-of-window test), and kept out there, and in
// sv-urgent11, whose exploit segment follows the client's RST at its next
// byte (the host has no connection left to take it).
func TestInsertionScreensOnCaptures(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(capturetest.Testdata("captures", "*.pcap*"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			plain, _ := idsReplay(t, path, SafeAssemblerOptions{})
			windowed, st := idsReplay(t, path, SafeAssemblerOptions{CheckWindow: true})
			switch name {
			case "sv-stream-out-of-window.pcap":
			case "sv-urgent11.pcap":
				require.Equal(t, int64(1024), st.BytesAfterReset)
				require.Zero(t, st.BytesDelivered)
				return
			default:
				require.Equal(t, plain, windowed)
				require.Zero(t, st.OutOfWindow+st.BytesAfterReset)
				return
			}
			require.Equal(t, int64(1), st.OutOfWindow)
			require.Equal(t, int64(11), st.BytesOutOfWindow)
			require.Zero(t, st.BytesDelivered)
		})
	}
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

// Property: a side that sent its FIN still moves its window with its
// ACKs: the other side's data within the window goes on (as in
// zk-tcp-reassembly, where the server closes first and acknowledges 30 KB
// after).
func TestCheckWindowFollowsClosedSide(t *testing.T) {
	t.Parallel()
	c := kitConnN(6)
	sAck := c.seqAt(true, 1) // past the server's FIN
	opts := kitReplayOpts()
	opts.CheckWindow = true
	got, st, _ := idsRun(t, c, opts, []*layers.TCP{
		idsSeg(c, false, "S", 0, "", 0, 65535),
		idsSeg(c, true, "S", 0, "", c.seqAt(false, 0), 8),
		idsSeg(c, true, "F", 0, "", c.seqAt(false, 0), 8),
		idsSeg(c, false, "", 0, "01234567", sAck, 500),
		idsSeg(c, true, "", 1, "", c.seqAt(false, 8), 8),
		idsSeg(c, false, "", 8, "89abcdef", sAck, 500),
	})
	require.Equal(t, "0123456789abcdef", got)
	require.Zero(t, st.OutOfWindow)
}

// idsHandshake opens c with windows win (unscaled) both ways, the
// client's ACK included.
func idsHandshake(c kitConn, win uint16) []*layers.TCP {
	return []*layers.TCP{
		idsSeg(c, false, "S", 0, "", 0, win),
		idsSeg(c, true, "S", 0, "", c.seqAt(false, 0), win),
		idsSeg(c, false, "", 0, "", c.seqAt(true, 0), win),
	}
}

// idsRec feeds pkts, timed as idsRun times them, to a fresh upstream
// Assembler (upstream) or Safe face with opts (the connection kept after
// its Stream completes, keep), recorded by a trRec, and returns the
// client's bytes, Stream by Stream as idsRun does.
func idsRec(t *testing.T, c kitConn, pkts []*layers.TCP, upstreamFace, keep bool, opts SafeAssemblerOptions) (string, AssemblerStats) {
	t.Helper()
	trp := make([]trPacket, len(pkts))
	ts := kitT0
	for i, p := range pkts {
		ts = ts.Add(1e6)
		trp[i] = trPacket{flow: c.flow(p.SrcPort == kitServerPort), tcp: p, ctx: &trCtx{Timestamp: ts}}
	}
	r := &trRec{keepOpen: keep}
	var st AssemblerStats
	if upstreamFace {
		a, pv := trUp(r, upstream.AssemblerOptions{}, trp)
		require.Nil(t, pv)
		a.FlushAll()
	} else {
		a, _, _ := trSafe(t, r, opts, trp)
		a.FlushAll()
		st = a.Stats()
		kitRequireConserved(t, st)
	}
	var got []string
	for _, s := range r.streams {
		got = append(got, s.data(false))
	}
	return strings.Join(got, "|"), st
}

// idsOptions are the IDS options: the host's view on every screen.
func idsOptions() SafeAssemblerOptions {
	opts := kitReplayOpts()
	opts.ChecksumPolicy, opts.CheckWindow = ChecksumDrop, true
	return opts
}

// Property: teardown by an RST outside the window. An RST from the client
// at or past the right edge of the window the server advertised (100
// bytes), which the server drops, ends the default face's stream (here
// when the server's ACK passes it): the attacker's data after it escapes
// the stream, into a second Stream picked up at the flush. With the IDS options it ends nothing and
// is counted, and the whole conversation is one stream. The same for an
// RST before the next byte the server expects, which it acknowledged past
// bytes the capture missed.
func TestEvasionResetOutOfWindow(t *testing.T) {
	t.Parallel()
	c := kitConnN(7)
	sAck := c.seqAt(true, 0)
	x96, y100 := strings.Repeat("x", 96), strings.Repeat("y", 100)
	beyond := append(idsHandshake(c, 100),
		idsSeg(c, false, "", 0, "GET ", sAck, 100),
		idsSeg(c, false, "R", 150, "", sAck, 0), // the edge is at 100
		idsSeg(c, true, "", 0, "", c.seqAt(false, 100), 100),
		idsSeg(c, false, "", 4, x96, sAck, 100),
		idsSeg(c, true, "", 0, "", c.seqAt(false, 200), 100),
		idsSeg(c, false, "", 100, y100, sAck, 100))
	got, _ := idsRec(t, c, beyond, true, false, SafeAssemblerOptions{})
	require.Equal(t, "GET "+x96+y100, got, "upstream ignores an RST out of order")
	got, st, _ := idsRun(t, c, kitReplayOpts(), beyond)
	require.Equal(t, "GET "+x96+"|"+y100, got, "the default face")
	require.Zero(t, st.ResetsOutOfWindow)
	got, st, pool := idsRun(t, c, idsOptions(), beyond)
	require.Equal(t, "GET "+x96+y100, got, "the IDS options")
	require.Equal(t, int64(1), st.ResetsOutOfWindow)
	require.Zero(t, st.ResetsNotExact+st.BytesAfterReset+st.OutOfWindow)
	require.Equal(t, int64(1), pool.Stats().TotalCreated)

	before := append(idsHandshake(c, 1000),
		idsSeg(c, false, "", 0, "GET ", sAck, 1000),
		idsSeg(c, true, "", 0, "", c.seqAt(false, 8), 1000), // the capture missed bytes 4 to 8
		idsSeg(c, false, "R", 4, "", sAck, 0),
		idsSeg(c, false, "", 8, "more", sAck, 1000),
		idsSeg(c, true, "", 0, "", c.seqAt(false, 12), 1000))
	got, _, _ = idsRun(t, c, kitReplayOpts(), before)
	require.Equal(t, "GET |more", got, "the default face")
	got, st, _ = idsRun(t, c, idsOptions(), before)
	require.Equal(t, "GET more", got, "the IDS options")
	require.Equal(t, int64(1), st.ResetsOutOfWindow)
	require.Equal(t, int64(4), st.GapBytes)
}

// Property: an RST inside the window but past the next byte the server
// expects, which a host answers with a challenge ACK (RFC 5961 §3.2),
// cuts the default face's stream at the RST, so that the attacker chooses
// where the sensor stops; with the IDS options the conversation goes on,
// the RST counted.
func TestEvasionResetNotAtNextByte(t *testing.T) {
	t.Parallel()
	c := kitConnN(8)
	sAck := c.seqAt(true, 0)
	pkts := append(idsHandshake(c, 1000),
		idsSeg(c, false, "", 0, "GET ", sAck, 1000),
		idsSeg(c, false, "R", 8, "", sAck, 0),
		idsSeg(c, false, "", 4, "/index.html", sAck, 1000))
	got, _ := idsRec(t, c, pkts, true, false, SafeAssemblerOptions{})
	require.Equal(t, "GET /index.html", got, "upstream ignores an RST out of order")
	got, st, _ := idsRun(t, c, kitReplayOpts(), pkts)
	require.Equal(t, "GET /ind", got, "the default face")
	require.Equal(t, int64(7), st.BytesAfterEnd)
	got, st, _ = idsRun(t, c, idsOptions(), pkts)
	require.Equal(t, "GET /index.html", got, "the IDS options")
	require.Equal(t, int64(1), st.ResetsNotExact)
	require.Zero(t, st.ResetsOutOfWindow+st.BytesAfterEnd)
}

// Property: a side that sent its FIN is held to the same RST rule as an
// open one: with the IDS options, a forged RST from it away from the byte
// after its FIN ends nothing (counted), so the other side's data goes on
// being delivered; an RST at that byte ends the connection, and what
// follows is data after the RST.
func TestEvasionResetAfterFIN(t *testing.T) {
	t.Parallel()
	c := kitConnN(10)
	sAck := c.seqAt(true, 1) // past the server's FIN
	run := func(rst int) (string, AssemblerStats) {
		got, st, _ := idsRun(t, c, idsOptions(), append(idsHandshake(c, 1000),
			idsSeg(c, true, "F", 0, "", c.seqAt(false, 0), 1000),
			idsSeg(c, false, "", 0, "0123", sAck, 1000),
			idsSeg(c, true, "R", rst, "", 0, 0),
			idsSeg(c, false, "", 4, "4567", sAck, 1000),
			idsSeg(c, true, "", 1, "", c.seqAt(false, 8), 1000)))
		return got, st
	}
	got, st := run(500)
	require.Equal(t, "01234567", got, "a forged RST inside the window")
	require.Equal(t, int64(1), st.ResetsNotExact)
	require.Zero(t, st.BytesAfterReset)
	got, st = run(1)
	require.Equal(t, "0123", got, "an RST at the byte after the FIN")
	require.Equal(t, int64(4), st.BytesAfterReset)
	require.Zero(t, st.ResetsNotExact+st.ResetsOutOfWindow)
}

// Property: a side past its reassembly depth is held to the same RST rule:
// with the IDS options, a forged RST from it away from its receiver's next
// byte ends nothing (counted), so the other side's bytes under their depth
// are still delivered; one at that byte (here the acknowledged end of
// the bytes past the depth) ends the connection, and what follows is data
// after the RST.
func TestEvasionResetPastDepth(t *testing.T) {
	t.Parallel()
	c := kitConnN(11)
	opts := idsOptions()
	opts.ReassemblyDepth = 8
	run := func(rst int) AssemblerStats {
		_, st, _ := idsRun(t, c, opts, append(idsHandshake(c, 1000),
			idsSeg(c, false, "", 0, "abcdefghij", c.seqAt(true, 0), 1000),
			idsSeg(c, true, "", 0, "01", c.seqAt(false, 10), 1000),
			idsSeg(c, false, "R", rst, "", 0, 0),
			idsSeg(c, true, "", 2, "23", c.seqAt(false, 10), 1000)))
		require.Equal(t, int64(2), st.BytesBeyondDepth)
		return st
	}
	st := run(500)
	require.Equal(t, int64(8+4), st.BytesDelivered, "a forged RST inside the window")
	require.Equal(t, int64(1), st.ResetsNotExact)
	require.Zero(t, st.BytesAfterReset)
	st = run(10)
	require.Equal(t, int64(8+2), st.BytesDelivered, "an RST at the server's acknowledgement")
	require.Equal(t, int64(2), st.BytesAfterReset)
	require.Zero(t, st.ResetsNotExact+st.ResetsOutOfWindow)
}

// Property: the next byte an RST must hit is the receiver's furthest
// acknowledgement, not its last (an older ACK the capture reorders after
// a newer one does not move it back), and it takes the RST even when the
// window there is zero (RFC 9293 §3.10.7.4): such an RST ends the
// connection, neither counted as out of the window nor as off the next
// byte.
func TestCheckWindowResetAtTheAck(t *testing.T) {
	t.Parallel()
	c := kitConnN(12)
	sAck := c.seqAt(true, 0)
	reordered := append(idsHandshake(c, 1000),
		idsSeg(c, false, "", 0, "GET ", sAck, 1000),
		idsSeg(c, true, "", 0, "", c.seqAt(false, 8), 1000), // the capture missed bytes 4 to 8
		idsSeg(c, true, "", 0, "", c.seqAt(false, 4), 1000), // an older ACK, reordered
		idsSeg(c, false, "R", 8, "", sAck, 0))
	zero := []*layers.TCP{
		idsSeg(c, false, "S", 0, "", 0, 1000),
		idsSeg(c, true, "S", 0, "", c.seqAt(false, 0), 4), // the edge is at 4
		idsSeg(c, false, "", 0, "", sAck, 1000),
		idsSeg(c, false, "", 0, "GET ", sAck, 1000),
		idsSeg(c, true, "", 0, "", c.seqAt(false, 4), 0), // the window closes there
		idsSeg(c, false, "R", 4, "", sAck, 0),
		idsSeg(c, false, "", 4, "EVIL", sAck, 1000),
	}
	for name, pkts := range map[string][]*layers.TCP{"reordered ACK": reordered, "zero window": zero} {
		got, st, _ := idsRun(t, c, idsOptions(), pkts)
		require.Equal(t, "GET ", got, name)
		require.Zero(t, st.ResetsOutOfWindow+st.ResetsNotExact, name)
	}
	_, st, _ := idsRun(t, c, idsOptions(), zero)
	require.Equal(t, int64(4), st.BytesAfterReset, "the RST at a zero window ended the connection")
}

// Property: data after an RST the host accepted (at the server's next
// byte) is what the default face delivers, in a second Stream picked up
// at the flush; the host has no connection left to take it. With the
// IDS options it is counted (BytesAfterReset), whichever side sends it,
// and reported as for a closed connection; a SYN still opens a new
// conversation on the 4-tuple. The same for an RST at the server's
// acknowledgement past bytes the capture missed, and for data sent to a
// connection whose Stream chose to stay after the RST.
func TestEvasionDataAfterReset(t *testing.T) {
	t.Parallel()
	c := kitConnN(9)
	sAck := c.seqAt(true, 0)
	pkts := append(idsHandshake(c, 1000),
		idsSeg(c, false, "", 0, "GET ", sAck, 1000),
		idsSeg(c, false, "R", 4, "", sAck, 0),
		idsSeg(c, false, "", 4, "EVIL", sAck, 1000),
		idsSeg(c, true, "", 0, "HTTP", c.seqAt(false, 4), 1000))
	got, _ := idsRec(t, c, pkts, true, false, SafeAssemblerOptions{})
	require.Equal(t, "GET ", got, "upstream: the RST's half stays closed")
	got, st, _ := idsRun(t, c, kitReplayOpts(), pkts)
	require.Equal(t, "GET |EVIL", got, "the default face")
	require.Zero(t, st.BytesAfterReset)
	got, st, pool := idsRun(t, c, idsOptions(), pkts)
	require.Equal(t, "GET ", got, "the IDS options")
	require.Equal(t, int64(8), st.BytesAfterReset)
	require.Zero(t, st.ResetsOutOfWindow+st.ResetsNotExact)
	require.Equal(t, int64(1), pool.Stats().TotalCreated)

	reopened := append(pkts, idsHandshake(c.withISNs(7000, 9000), 1000)...)
	reopened = append(reopened, idsSeg(c.withISNs(7000, 9000), false, "", 0, "next", c.withISNs(7000, 9000).seqAt(true, 0), 1000))
	got, _, pool = idsRun(t, c, idsOptions(), reopened)
	require.Equal(t, "GET |next", got, "a new conversation after the RST")
	require.Equal(t, int64(2), pool.Stats().TotalCreated)

	acked := append(idsHandshake(c, 1000),
		idsSeg(c, false, "", 0, "GET ", sAck, 1000),
		idsSeg(c, true, "", 0, "", c.seqAt(false, 8), 1000), // the capture missed bytes 4 to 8
		idsSeg(c, false, "R", 8, "", sAck, 0),
		idsSeg(c, false, "", 8, "EVIL", sAck, 1000))
	got, st = idsRec(t, c, pkts, false, true, idsOptions())
	require.Equal(t, "GET ", got, "a connection kept by its Stream after the RST")
	require.Equal(t, int64(8), st.BytesAfterReset)

	got, st, _ = idsRun(t, c, idsOptions(), acked)
	require.Equal(t, "GET ", got, "an RST at the server's acknowledgement")
	require.Equal(t, int64(4), st.BytesAfterEnd, "held behind the hole with the RST, then cut at it")
}

// idsCaptureRun reassembles a capture with the Safe face and opts, its
// directions named as the reference names them (confReassemble).
func idsCaptureRun(t *testing.T, path string, opts SafeAssemblerOptions) (*confRun, AssemblerStats) {
	t.Helper()
	opts.DisableBackgroundFlush, opts.Logger = true, kitQuietLogger()
	// The Safe face's own rules start a direction: Accept leaves start.
	rec := &trRec{}
	a, _, _ := trSafe(t, rec, opts, nil)
	run := confReassemble(t, path, rec, func(nf gopacket.Flow, tcp *layers.TCP, ac *trCtx) { _ = a.AssembleWithContext(nf, tcp, ac) },
		func() { a.FlushAll() })
	st := a.Stats()
	kitRequireConserved(t, st, "%s", path)
	return run, st
}

// Property: on the evasion captures of suricata-verify, the IDS options
// (ChecksumDrop, CheckWindow and its RST rules) deliver, direction by
// direction, what the host accepted: Wireshark's reference where the host
// took every byte the capture shows, less what the capture's attack sent
// past the host, each exception argued from the capture; the default Safe
// face delivers the attacker's version where the two differ. The
// reference is read from testdata/expected, never from our output.
func TestEvasionCaptures(t *testing.T) {
	t.Parallel()
	// host says what the host accepted of each direction: "ref" all of
	// the reference, "" nothing; a direction not named is expected
	// nowhere. dflt is what the default Safe face delivers where it
	// differs from host.
	type dir struct{ host, dflt string }
	for _, tc := range []struct {
		name string
		why  string
		// offload: the capture was taken on a host with checksum
		// offload, whose every segment carries a wrong checksum: the IDS
		// options then count checksums instead of dropping (ChecksumDrop
		// would drop all of that host's traffic: checked apart).
		offload string
		dirs    map[string]dir
	}{
		{name: "sv-bug-3286-01-no-evasion.pcap", why: "a clean HTTP exchange: the baseline",
			dirs: map[string]dir{
				"192.168.1.43.35488-192.168.1.90.80.bin": {host: "ref"},
				"192.168.1.90.80-192.168.1.43.35488.bin": {host: "ref"},
			}},
		{name: "sv-bug-3286-03-windows-evasion.pcap",
			why: "an RST and a FIN answer the client's SYN before the SYN-ACK; the Windows client ignores them, completes the handshake and sends " +
				"its request, which the server acknowledges (packet 7), and acknowledges the response (packet 9): both hosts took every byte",
			dirs: map[string]dir{
				"192.168.1.27.58432-192.168.1.90.80.bin": {host: "ref"},
				"192.168.1.90.80-192.168.1.27.58432.bin": {host: "ref"},
			}},
		{name: "sv-stream-out-of-window.pcap",
			why: "the one data segment starts 100,000 bytes past the 256-byte window of the SYN-ACK (no window scale): the server drops it",
			dirs: map[string]dir{
				"192.0.2.10.43210-198.51.100.5.80.bin": {host: "", dflt: "ref"},
			}},
		{name: "sv-rst-unacked-03-gap.pcap",
			why: "the server's bytes, a hole the capture missed among them, all precede the client's RST, which is at the client's next byte; " +
				"the reference's client bytes are the RST's own data, which a host never takes",
			dirs: map[string]dir{
				"2.2.2.2.8080-1.1.1.1.12345.bin": {host: "ref"},
				"1.1.1.1.12345-2.2.2.2.8080.bin": {host: ""},
			}},
		{name: "sv-rst-unacked-10.pcap",
			why: "a download with lost and reordered segments, all inside the client's window (256 scaled by 2^8), ended by the client's RST at its next byte",
			dirs: map[string]dir{
				"10.3.11.101.49309-174.56.47.59.80.bin": {host: "ref"},
				"174.56.47.59.80-10.3.11.101.49309.bin": {host: "ref"},
			}},
		{name: "sv-eve-overlap-exact.pcap",
			why: "GOOD, then EVIL over the same 4 bytes: the first copy was in order, handed to the server's application at once, so " +
				"every stack keeps it (the reference's first copy), and the server acknowledges 4 bytes",
			dirs: map[string]dir{
				"1.1.1.1.12345-2.2.2.2.8080.bin": {host: "ref"},
			}},
		{name: "sv-smb-eicar-overlap.pcap", offload: "192.168.1.100",
			why: "SMB carrying EICAR; the server's last segment is sent twice, the same bytes; every segment of the client, where the " +
				"capture was taken, has the wrong checksum of NIC offload, and the server acknowledges each of them",
			dirs: map[string]dir{
				"192.168.1.100.48234-192.168.1.3.445.bin": {host: "ref"},
				"192.168.1.3.445-192.168.1.100.48234.bin": {host: "ref"},
			}},
		{name: "sv-urgent11.pcap",
			why: "the client resets its handshake with an RST at its next byte, then sends the exploit's 1024 bytes without a new SYN: " +
				"the server has no connection left to take them (it answers them with an RST)",
			dirs: map[string]dir{
				"192.168.1.24.31337-178.128.142.56.443.bin": {host: "", dflt: "ref"},
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := capturetest.Testdata("captures", tc.name)
			ref := func(file string) string {
				b, err := os.ReadFile(capturetest.Testdata("expected", tc.name, file))
				require.NoError(t, err)
				return string(b)
			}
			want := func(which, file string) string {
				if which == "ref" {
					return ref(file)
				}
				return which
			}
			got := func(run *confRun, file string) string {
				if d := run.files[file]; d != nil {
					return string(d.data)
				}
				return ""
			}
			ids := SafeAssemblerOptions{ChecksumPolicy: ChecksumDrop, CheckWindow: true}
			if tc.offload != "" {
				ids.ChecksumPolicy = ChecksumCount
			}
			hostRun, st := idsCaptureRun(t, path, ids)
			plainRun, _ := idsCaptureRun(t, path, SafeAssemblerOptions{})
			for file, d := range tc.dirs {
				require.Equal(t, want(d.host, file), got(hostRun, file), "IDS options, %s: %s", file, tc.why)
				dflt := d.dflt
				if dflt == "" && d.host != "" {
					dflt = d.host
				}
				if d.dflt != "" || d.host != "" {
					require.Equal(t, want(dflt, file), got(plainRun, file), "default Safe face, %s", file)
				}
			}
			for file, d := range hostRun.files {
				if _, named := tc.dirs[file]; !named {
					require.Empty(t, d.data, "IDS options: a direction the capture does not have: %s", file)
				}
			}
			if tc.offload == "" {
				require.Zero(t, st.BadChecksums)
				return
			}
			// ChecksumDrop on such a capture drops all that host sent.
			ids.ChecksumPolicy = ChecksumDrop
			_, st = idsCaptureRun(t, path, ids)
			var sent int64
			for file, d := range tc.dirs {
				if strings.HasPrefix(file, tc.offload+".") && d.host == "ref" {
					sent += int64(len(ref(file)))
				}
			}
			require.Equal(t, sent, st.BytesBadChecksum, "ChecksumDrop drops every byte of the offloading host")
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
