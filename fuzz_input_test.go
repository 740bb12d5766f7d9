package reassembly

// How a fuzz input becomes a run (see fuzz_test.go): the reader, the
// bytes every payload is made of, and the header that sizes the run.

import (
	"net/netip"
	"time"
)

// fzInput reads the fuzz bytes; past the end it reads zeros.
type fzInput struct {
	b []byte
	i int
}

func (in *fzInput) more() bool { return in.i < len(in.b) }

func (in *fzInput) u8() byte {
	if in.i >= len(in.b) {
		return 0
	}
	v := in.b[in.i]
	in.i++
	return v
}

func (in *fzInput) u16() int    { return int(in.u8())<<8 | int(in.u8()) }
func (in *fzInput) u32() uint32 { return uint32(in.u16())<<16 | uint32(in.u16()) }

// fzTruth is the byte the sender puts at stream offset off of direction dir
// of connection conn, before any version mask.
func fzTruth(conn, dir int, off int64) byte {
	// mix64 adds 0x9E3779B97F4A7C15 before it mixes.
	return byte(mix64(uint64(off)*0x9E3779B97F4A7C15 + uint64(conn)<<58 + uint64(dir)<<57 + 0x632BE59BD9B4E019 - 0x9E3779B97F4A7C15))
}

// fzVersions are the masks of the four versions of a byte; a
// retransmission with another version carries different bytes.
var fzVersions = [4]byte{0, 0x5A, 0xA5, 0xFF}

func fzVersionOf(b, truth byte) int {
	for v, m := range fzVersions {
		if b^truth == m {
			return v
		}
	}
	return -1
}

// fzSent records, per stream offset, the versions sent there (a bit each).
type fzSent struct{ pages map[int64]*[4096]byte }

func (s *fzSent) mark(off int64, n, version int) {
	if s.pages == nil {
		s.pages = map[int64]*[4096]byte{}
	}
	for i := int64(0); i < int64(n); i++ {
		o := off + i
		p := s.pages[o>>12]
		if p == nil {
			p = new([4096]byte)
			s.pages[o>>12] = p
		}
		p[o&4095] |= 1 << version
	}
}

func (s *fzSent) versions(off int64) byte {
	if p := s.pages[off>>12]; p != nil {
		return p[off&4095]
	}
	return 0
}

// fzPacket is what the harness remembers of each packet it sent; the id is
// carried in CaptureInfo.InterfaceIndex (id+1) so a delivery names the
// packet its first byte came from.
type fzPacket struct {
	conn, dir int
	off       int64 // stream offset of the payload's first byte
	n         int
	// What the parts of a delivery must show of the packet.
	dataSeq Sequence // sequence number of the payload's first byte
	ack     uint32
	flags   TCPFlags
	version int
}

// fzConnCfg is how a connection's Stream behaves.
type fzConnCfg struct {
	forceStart    bool // Accept sets *start while the direction has none
	completeFalse bool // ReassemblyComplete returns false
	keepMode      int  // 0 none, 1 keep a short tail, 2 KeepFrom(0), 3 odd offsets
	rejectMode    int  // 0 none, 1 every 3rd packet, 2 every 7th, 3 RSTs
	panicMode     int  // Safe face: 0 none, 1 Accept, 2 ReassembledSG, 3 ReassemblyComplete
	panicAt       int  // the call of that kind that panics
}

// fzConfig is the decoded header of an input.
type fzConfig struct {
	nConns     int
	ipv6Odd    bool // odd connections use IPv6
	sameHost   bool // client and server share an address (ports tell them apart)
	assemblers int
	maxConns   int // pool cap, 0 none
	opts       SafeAssemblerOptions
	isn        [fzMaxConns][2]uint32
	conns      [fzMaxConns]fzConnCfg
}

var fzISNs = [...]uint32{0, 1, 0xFFFFFFFF, 0xFFFFFFF5, 0x7FFFFFFF, 0x80000000, 0xFFFFF000}

func fzDecodeConfig(in *fzInput, safe bool) fzConfig {
	var c fzConfig
	h := in.u8()
	c.nConns = 1 + int(h&3)
	c.ipv6Odd = h&4 != 0
	c.sameHost = h&8 != 0
	c.assemblers = 1 + int(h>>4&1)
	capv := in.u8()
	if h&32 != 0 {
		c.maxConns = 1 + int(capv%4)
	}
	total := int(in.u8() % 33)
	per := int(in.u8() % 17)
	if total > 0 && per > total {
		per = total
	}
	c.opts.MaxBufferedPagesTotal = total
	c.opts.MaxBufferedPagesPerConnection = per
	c.opts.MaxBufferedBytesPerConnection = int(in.u8()) * 64
	c.opts.MaxGapsPerConnection = int(in.u8() % 9)
	if t := in.u8(); t > 0 {
		c.opts.ConnectionTimeout = time.Duration(t%16+1) * 50 * time.Millisecond
	}
	c.opts.DisableBackgroundFlush = true
	c.opts.Logger = kitQuietLogger() // the planned panics are logged
	// The Safe face's overlap policy, reassembly depth and conflict window;
	// the policy's byte also turns the insertion screens and AckedDelivery
	// on.
	pol, depth, window := in.u8(), in.u8(), in.u8()
	if safe {
		c.opts.OverlapPolicy = OverlapPolicy(int(pol) % int(numOverlapPolicies))
		c.opts.CheckWindow = pol&0x80 != 0
		if pol&0x40 != 0 {
			c.opts.ChecksumPolicy = ChecksumDrop
		}
		c.opts.AckedDelivery = pol&0x20 != 0
		c.opts.ReassemblyDepth = int(depth) * 16
		c.opts.ConflictWindow = int(window) * 8
	}
	for i := 0; i < c.nConns; i++ {
		for d := 0; d < 2; d++ {
			sel := in.u8() % 8
			if int(sel) < len(fzISNs) {
				c.isn[i][d] = fzISNs[sel]
			} else {
				c.isn[i][d] = in.u32()
			}
		}
		b := in.u8()
		cc := fzConnCfg{
			forceStart:    b&1 != 0,
			completeFalse: b&2 != 0,
			keepMode:      int(b >> 2 & 3),
			rejectMode:    int(b >> 4 & 3),
			panicAt:       int(in.u8() % 8),
		}
		if safe {
			cc.panicMode = int(b >> 6 & 3)
		}
		c.conns[i] = cc
	}
	if safe {
		// Validate fills the defaults the harness checks against.
		if err := c.opts.Validate(); err != nil {
			panic(err) // the decoder only makes valid options
		}
	}
	return c
}

func (c *fzConfig) addrs(conn int) (client, server netip.AddrPort) {
	a := netip.AddrFrom4([4]byte{10, 0, byte(conn), 1})
	b := netip.AddrFrom4([4]byte{10, 0, byte(conn), 2})
	if c.ipv6Odd && conn%2 == 1 {
		a = netip.AddrFrom16([16]byte{0: 0xfd, 13: byte(conn), 15: 1})
		b = netip.AddrFrom16([16]byte{0: 0xfd, 13: byte(conn), 15: 2})
	}
	if c.sameHost {
		b = a
	}
	return netip.AddrPortFrom(a, uint16(fzClientPort+conn)), netip.AddrPortFrom(b, fzServerPort)
}
