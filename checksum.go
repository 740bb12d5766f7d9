package reassembly

import (
	"encoding/binary"
	"fmt"
	"math/bits"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// ChecksumPolicy says what the Safe face does with a TCP segment whose
// checksum is wrong (SafeAssemblerOptions.ChecksumPolicy). The host drops
// such a segment; a sensor that reassembles it sees bytes the host never
// did, which an attacker can send ahead of the real ones (an insertion
// attack, as Suricata's stream.checksum-validation guards against).
type ChecksumPolicy int

const (
	// ChecksumOff verifies nothing, as upstream: captures taken on the
	// sending host carry the checksums of NIC offload, mostly wrong.
	ChecksumOff ChecksumPolicy = iota
	// ChecksumCount verifies every segment and counts the wrong ones in
	// AssemblerStats.BadChecksums, but reassembles them as any other.
	ChecksumCount
	// ChecksumDrop verifies every segment and drops the wrong ones before
	// they reach a connection: counted in BadChecksums, their bytes in
	// BytesBadChecksum, never buffered nor delivered, and they neither
	// start, restart nor end a connection.
	ChecksumDrop
	numChecksumPolicies
)

// String returns "off", "count" or "drop".
func (p ChecksumPolicy) String() string {
	switch p {
	case ChecksumOff:
		return "off"
	case ChecksumCount:
		return "count"
	case ChecksumDrop:
		return "drop"
	}
	return fmt.Sprintf("ChecksumPolicy(%d)", int(p))
}

// checksums is the state of the checksum screen: the policy, ChecksumOff
// for the drop-in face, and the pseudo-header's address sum of the last
// flow verified, kept for it and its reverse (the sum of the two
// addresses does not depend on their order): a connection's packets come
// flow after flow, and gopacket.Flow.Endpoints, which copies the flow
// twice, costs more than comparing it.
type checksums struct {
	policy ChecksumPolicy
	// flow and reverse are the last flow verified and its reverse, addrs
	// their address sum; cached is false until one is.
	flow, reverse gopacket.Flow
	addrs         uint64
	cached        bool
}

// checkSum screens a packet by its TCP checksum, before it is looked up: a
// segment the host drops must not make, restart or end a connection any
// more than it may carry bytes. A segment that cannot be verified (see
// tcpChecksum) is counted and goes on. It reports whether the packet goes
// on.
func (e *engine) checkSum(netFlow *gopacket.Flow, t *layers.TCP, ci *gopacket.CaptureInfo) bool {
	// A capture cut short of the packet's length lacks bytes the sum
	// covers.
	good, verified := ci.CaptureLength >= ci.Length, false
	if good {
		good, verified = e.checksums.verify(netFlow, t)
	}
	switch {
	case !verified:
		e.ctr.checksumUnverified++
		return true
	case good:
		return true
	}
	e.ctr.checksumBad++
	if e.checksums.policy != ChecksumDrop {
		return true
	}
	e.ctr.discard(discardChecksum, len(t.Payload))
	return false
}

// verify is tcpChecksum, the address sum taken from the cache when netFlow
// is the last flow verified or its reverse, and cached otherwise.
func (c *checksums) verify(netFlow *gopacket.Flow, t *layers.TCP) (good, verified bool) {
	hdr := t.Contents
	if len(hdr) < 20 || len(hdr)&3 != 0 {
		return false, false
	}
	if !c.cached || *netFlow != c.flow && *netFlow != c.reverse {
		addrs, ok := flowAddrSum(netFlow)
		if !ok {
			return false, false
		}
		c.flow, c.reverse, c.addrs, c.cached = *netFlow, netFlow.Reverse(), addrs, true
	}
	// A right checksum makes the sum of everything, itself included, all
	// ones.
	return segmentSumWith(c.addrs, hdr, len(t.Payload), onesSum(t.Payload)) == 0xFFFF, true
}

// tcpChecksum reports whether the checksum of t is right, computed over the
// pseudo-header of RFC 9293 §3.1 (IPv4) or RFC 8200 §8.1 (IPv6), built from
// the addresses of netFlow, and over the segment as it was on the wire: the
// header bytes a decoder leaves in t.Contents, and t.Payload. verified is
// false when it cannot tell: t holds no header bytes (a layer built rather
// than decoded), or netFlow is not an IPv4 or IPv6 flow. It allocates
// nothing: the pseudo-header is summed from the addresses in place.
func tcpChecksum(netFlow *gopacket.Flow, t *layers.TCP) (good, verified bool) {
	var c checksums // nothing cached
	return c.verify(netFlow, t)
}

// flowAddrSum is the onesSum of the source and destination addresses of
// netFlow, and whether it is an IPv4 or IPv6 flow, with addresses of 4 or
// 16 bytes.
func flowAddrSum(netFlow *gopacket.Flow) (uint64, bool) {
	src, dst := netFlow.Endpoints()
	sr, dr := src.Raw(), dst.Raw()
	switch typ := src.EndpointType(); {
	case typ == layers.EndpointIPv4 && len(sr) == 4 && len(dr) == 4:
	case typ == layers.EndpointIPv6 && len(sr) == 16 && len(dr) == 16:
	default:
		return 0, false
	}
	return addrSum(sr) + addrSum(dr), true
}

// segmentSum is the ones' complement sum, folded to 16 bits, of a TCP
// segment (header hdr, then payload) and its pseudo-header with the
// addresses src and dst, of 4 or 16 bytes each.
func segmentSum(src, dst, hdr, payload []byte) uint16 {
	return segmentSumWith(addrSum(src)+addrSum(dst), hdr, len(payload), onesSum(payload))
}

// segmentSumWith is segmentSum of the addresses whose onesSum is addrs and
// a payload of n bytes whose onesSum is payloadSum: the header, a few
// words, is summed here by onesSumRun, the payload by whichever onesSum
// the caller chose (the tests try each of onesSums).
func segmentSumWith(addrs uint64, hdr []byte, n int, payloadSum uint64) uint16 {
	// Every piece starts at an even offset of the sum (addresses of 4 or
	// 16 bytes, a header a multiple of 4 long), so their sums add up.
	sum := addrs + onesSumRun(hdr) + payloadSum
	// The rest of the pseudo-header: protocol 6 and the segment's length
	// (16 bits for IPv4, 32 for IPv6: as 16-bit words the sums agree),
	// little-endian as onesSum's sums are.
	l := uint32(len(hdr) + n)
	sum += uint64(bits.ReverseBytes16(uint16(layers.IPProtocolTCP))) +
		uint64(bits.ReverseBytes16(uint16(l>>16))) + uint64(bits.ReverseBytes16(uint16(l)))
	return fold16(sum)
}

// addrSum is onesSumGo of an IPv4 or IPv6 address: an IPv4 one in one
// load, without onesSumRun's loop and tail.
func addrSum(b []byte) uint64 {
	if len(b) == 4 {
		return uint64(binary.LittleEndian.Uint32(b))
	}
	return onesSumRun(b)
}

// onesSumGo is the ones' complement sum of RFC 1071 over b, a last odd byte
// padded with zero, not yet folded to 16 bits, in little-endian order: the
// sum of b's 16-bit words read little-endian, which is the big-endian sum
// with its two bytes swapped (RFC 1071 §2(B)), and saves swapping every
// word. Every onesSum returns a value that folds to the same 16 bits as
// this one (the values themselves may differ). It is onesSum where no
// assembly sum is built (other architectures, the purego tag). A segment's
// worth is summed as two halves side by side, in two independent chains
// (onesSumPair), which keeps twice the adds and the cache misses in flight
// as one chain does; the rest in one chain (onesSumRun). The result is
// below 2^35, so that a caller can add a few of them up before fold16.
func onesSumGo(b []byte) uint64 {
	var sum uint64
	if len(b) >= 128 {
		// Halves of a multiple of 64 bytes: the second starts at an even
		// offset, as the sum requires, and both run whole turns.
		h := len(b) / 2 &^ 63
		sum = onesSumPair(b[:h], b[h:2*h])
		b = b[2*h:]
	}
	return sum + onesSumRun(b)
}

// onesSumPair is onesSumGo of x and y, of the same length, a multiple of 64,
// each added 8 bytes at a time, 64 bytes to a turn of the loop, in a chain
// of add-with-carry of its own: the carry out of 64 bits goes into the
// next add, and the last one back at the bottom (end-around carry, as
// 16-bit words would have it: folded, a sum of 64-bit words is that of
// their 16-bit quarters). The result is below 2^34.
func onesSumPair(x, y []byte) uint64 {
	var sx, cx, sy, cy uint64
	for len(x) >= 64 && len(y) >= 64 {
		sx, cx = bits.Add64(sx, binary.LittleEndian.Uint64(x), cx)
		sy, cy = bits.Add64(sy, binary.LittleEndian.Uint64(y), cy)
		sx, cx = bits.Add64(sx, binary.LittleEndian.Uint64(x[8:]), cx)
		sy, cy = bits.Add64(sy, binary.LittleEndian.Uint64(y[8:]), cy)
		sx, cx = bits.Add64(sx, binary.LittleEndian.Uint64(x[16:]), cx)
		sy, cy = bits.Add64(sy, binary.LittleEndian.Uint64(y[16:]), cy)
		sx, cx = bits.Add64(sx, binary.LittleEndian.Uint64(x[24:]), cx)
		sy, cy = bits.Add64(sy, binary.LittleEndian.Uint64(y[24:]), cy)
		sx, cx = bits.Add64(sx, binary.LittleEndian.Uint64(x[32:]), cx)
		sy, cy = bits.Add64(sy, binary.LittleEndian.Uint64(y[32:]), cy)
		sx, cx = bits.Add64(sx, binary.LittleEndian.Uint64(x[40:]), cx)
		sy, cy = bits.Add64(sy, binary.LittleEndian.Uint64(y[40:]), cy)
		sx, cx = bits.Add64(sx, binary.LittleEndian.Uint64(x[48:]), cx)
		sy, cy = bits.Add64(sy, binary.LittleEndian.Uint64(y[48:]), cy)
		sx, cx = bits.Add64(sx, binary.LittleEndian.Uint64(x[56:]), cx)
		sy, cy = bits.Add64(sy, binary.LittleEndian.Uint64(y[56:]), cy)
		x, y = x[64:], y[64:]
	}
	return endAround(sx, cx) + endAround(sy, cy)
}

// onesSumRun is onesSumGo of b in one chain of add-with-carry, 8 bytes at a
// time, then the last 4, 2 and 1. The result is below 2^33.
func onesSumRun(b []byte) uint64 {
	var sum, c uint64
	for len(b) >= 8 {
		sum, c = bits.Add64(sum, binary.LittleEndian.Uint64(b), c)
		b = b[8:]
	}
	var tail uint64
	if len(b) >= 4 {
		tail = uint64(binary.LittleEndian.Uint32(b))
		b = b[4:]
	}
	if len(b) >= 2 {
		tail += uint64(binary.LittleEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		// The last byte is the first of its word: the low one,
		// little-endian.
		tail += uint64(b[0])
	}
	sum, c = bits.Add64(sum, tail, c)
	return endAround(sum, c)
}

// endAround adds the carry c out of a 64-bit sum back in at the bottom
// and folds the result to below 2^33. The add cannot carry again: in a
// chain of add-with-carry that starts from zero, a sum that carried out
// is at most 2^64 - 2.
func endAround(sum, c uint64) uint64 {
	sum += c
	return sum>>32 + sum&0xFFFFFFFF
}

// fold16 folds a little-endian ones' complement sum to 16 bits, carries
// added back at the bottom, and returns it big-endian (RFC 1071's order).
func fold16(sum uint64) uint16 {
	sum = sum>>32 + sum&0xFFFFFFFF // below 2^33
	sum = sum>>32 + sum&0xFFFFFFFF // at most 2^32
	sum = sum>>16 + sum&0xFFFF     // at most 0x1FFFE
	sum = sum>>16 + sum&0xFFFF     // at most 0xFFFF
	return bits.ReverseBytes16(uint16(sum))
}

// onesSumImpl is one implementation of onesSum, by name (onesSums).
type onesSumImpl struct {
	name string
	sum  func(b []byte) uint64
}
