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
// for the drop-in face.
type checksums struct {
	policy ChecksumPolicy
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
		good, verified = tcpChecksum(netFlow, t)
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

// tcpChecksum reports whether the checksum of t is right, computed over the
// pseudo-header of RFC 9293 §3.1 (IPv4) or RFC 8200 §8.1 (IPv6), built from
// the addresses of netFlow, and over the segment as it was on the wire: the
// header bytes a decoder leaves in t.Contents, and t.Payload. verified is
// false when it cannot tell: t holds no header bytes (a layer built rather
// than decoded), or netFlow is not an IPv4 or IPv6 flow.
func tcpChecksum(netFlow *gopacket.Flow, t *layers.TCP) (good, verified bool) {
	src, dst := netFlow.Endpoints()
	sr, dr := src.Raw(), dst.Raw()
	switch typ := src.EndpointType(); {
	case typ == layers.EndpointIPv4 && len(sr) == 4 && len(dr) == 4:
	case typ == layers.EndpointIPv6 && len(sr) == 16 && len(dr) == 16:
	default:
		return false, false
	}
	hdr := t.Contents
	if len(hdr) < 20 || len(hdr)&3 != 0 {
		return false, false
	}
	n := uint64(len(hdr) + len(t.Payload))
	// The pseudo-header: addresses, protocol 6 and the segment's length
	// (16 bits for IPv4, 32 for IPv6: as 16-bit words the sums agree).
	sum := onesSum(sr) + onesSum(dr) + uint64(layers.IPProtocolTCP) + n>>16 + n&0xFFFF
	// The header's length is a multiple of 4, so the payload's words
	// start on an even offset, as the sum requires.
	sum += onesSum(hdr) + onesSum(t.Payload)
	for sum > 0xFFFF {
		sum = sum>>16 + sum&0xFFFF
	}
	// A right checksum makes the sum of everything, itself included, all
	// ones.
	return sum == 0xFFFF, true
}

// onesSum adds b up as big-endian 16-bit words, a last odd byte padded
// with zero: the ones' complement sum of RFC 1071, not yet folded to 16
// bits. It adds 64-bit words with end-around carry, for speed: folded,
// their sum is that of their 16-bit quarters (RFC 1071 §2(B)). The result
// is below 2^33, so that a caller can add a few of them up.
func onesSum(b []byte) uint64 {
	var sum, c uint64
	for len(b) >= 32 {
		sum, c = bits.Add64(sum, binary.BigEndian.Uint64(b), c)
		sum, c = bits.Add64(sum, binary.BigEndian.Uint64(b[8:]), c)
		sum, c = bits.Add64(sum, binary.BigEndian.Uint64(b[16:]), c)
		sum, c = bits.Add64(sum, binary.BigEndian.Uint64(b[24:]), c)
		b = b[32:]
	}
	for len(b) >= 8 {
		sum, c = bits.Add64(sum, binary.BigEndian.Uint64(b), c)
		b = b[8:]
	}
	var tail uint64
	if len(b) >= 4 {
		tail += uint64(binary.BigEndian.Uint32(b))
		b = b[4:]
	}
	if len(b) >= 2 {
		tail += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		tail += uint64(b[0]) << 8
	}
	sum, c = bits.Add64(sum, tail, c)
	// The carries go back in at the bottom; twice, as the first can carry
	// again.
	sum, c = bits.Add64(sum, 0, c)
	sum += c
	return sum>>32 + sum&0xFFFFFFFF
}
