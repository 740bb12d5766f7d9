package reassembly

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// Native fuzz targets (issue 4). Each decodes arbitrary bytes into a
// sequence of TCP segments over up to four connections, both directions,
// with flush, close and nil-packet calls interleaved, and drives the drop-in
// Assembler (FuzzAssembler) or SafeAssemblers sharing a SafeStreamPool
// (FuzzSafeAssembler, with small limits, a connection cap, an overlap
// policy, a reassembly depth, a conflict window, and Streams that panic).
// After every call the harness checks:
//
//   - nothing panics (the Safe face's own recovered panics aside);
//   - conservation: BytesProcessed = BytesDelivered + BytesOverlap +
//     BytesOverwritten + BytesDiscarded + PageCache.QueuedBytes, summed over
//     the assemblers of the pool and the pool's Closing counters;
//     BytesDiscarded is the sum of its parts; the bytes, deliveries, holes,
//     completions and conflicts the Streams saw equal BytesDelivered,
//     Deliveries, Gaps and GapBytes, StreamsCompleted, OverlapConflicts and
//     ConflictBytes;
//   - limits (Safe face): ActiveConnections <= the pool's cap and equal to
//     created - removed, PagesInUse <= MaxBufferedPagesTotal, and per
//     direction the pages and charged bytes, queued or kept by KeepFrom,
//     and the holes within MaxBufferedPagesPerConnection,
//     MaxBufferedBytesPerConnection and MaxGapsPerConnection; for both
//     faces, the engine's own page, byte and hole counts agree with its
//     queues, which never overlap nor reach back before the delivery point;
//   - the Stream contract: Accept with the packet's direction, start only
//     on the first delivery of a direction, Skip -1 only there, nothing for
//     a direction after its end (FIN, RST or reassembly depth), no call
//     after ReassemblyComplete returned true or after the Stream panicked,
//     no ReassembledSG after ReassemblyComplete at all, ReassemblyComplete
//     at most once, and exactly once for every Stream after the final
//     FlushAll (drop-in) or Close (Safe face); a Conflict names two
//     different copies that were both sent at its offset;
//   - the bytes: every payload byte is a function of (connection, direction,
//     stream offset) XOR one of four version masks (retransmissions may
//     carry other bytes), so each delivered byte is checked at its offset,
//     found by following Skip from the packet that carried the first byte
//     of the direction: it must be one of the versions sent at that offset,
//     in order, each offset at most once, and bytes kept by KeepFrom must
//     come back unchanged in front of the next delivery.
//
// The input: a header (fzDecodeConfig: connections, addresses, cap, limits,
// timeout, policy, depth, window, then per connection the ISNs of both
// directions and how its Stream behaves), then operations (fzHarness.run:
// a packet, with its connection, direction, flags, version, offset mode
// and length; a flush; FlushAll; a nil packet; closing an assembler;
// closing the pool), each advancing capture time. fzBuilder writes inputs.
//
// FuzzSequence reassembles one direction cut into segments delivered in any
// order, with duplicates, from any ISN (wraps anywhere), and checks that the
// output is exactly the stream. The seed corpus is under testdata/fuzz;
// TestFuzzSeedCorpus keeps it in step with fzSeeds (REASSEMBLY_WRITE_SEEDS=1
// rewrites it) and replays it, and scripts/fuzz.sh runs each target for
// FUZZTIME. FZTRACE=1 prints the decoded operations of a failing input:
//
//	FZTRACE=1 go test -run 'FuzzSafeAssembler/<name>' -v .

const (
	fzMaxConns   = 4
	fzMaxOps     = 3000
	fzServerPort = 80
	fzClientPort = 10000
	fzMaxOffset  = 1 << 30   // offsets stay in [-fzMinOffset, fzMaxOffset)
	fzMinOffset  = 1 << 20   // so that any two are less than 2^31 apart
	fzTraceEnv   = "FZTRACE" // set to print each decoded operation
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
	z := uint64(off)*0x9E3779B97F4A7C15 + uint64(conn)<<58 + uint64(dir)<<57 + 0x632BE59BD9B4E019
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return byte(z ^ (z >> 31))
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

type fzCtx struct{ ci gopacket.CaptureInfo }

func (c *fzCtx) GetCaptureInfo() gopacket.CaptureInfo { return c.ci }

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
	// The Safe face's overlap policy, reassembly depth and conflict window.
	pol, depth, window := in.u8(), in.u8(), in.u8()
	if safe {
		c.opts.OverlapPolicy = OverlapPolicy(int(pol) % int(numOverlapPolicies))
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

// fzFace is one face of the package under test.
type fzFace interface {
	assemble(asm int, p *testPacket, ac AssemblerContext) error
	assembleNil(asm int) error
	flush(asm int, opt FlushOptions)
	flushOlder(asm int, t time.Time)
	flushAll(asm int)
	closeAsm(asm int)
	closePool()
	// stats sums the counters of every assembler of the pool.
	stats() AssemblerStats
	// check verifies the face's limits and the engine's bookkeeping.
	check(h *fzHarness)
	finish()
}

// fzHarness runs one input and checks it.
type fzHarness struct {
	tb   testing.TB
	safe bool
	cfg  fzConfig
	face fzFace

	now     time.Time
	cursor  [fzMaxConns][2]int64
	sent    [fzMaxConns][2]fzSent
	packets []fzPacket
	streams []*fzStream
	trace   bool

	// What the Streams saw, to compare with the counters.
	seenFresh, seenDeliveries, seenGaps, seenGapBytes, seenCompletes int64
	seenKeptShort                                                    int64 // kept bytes that did not come back
	seenConflicts, seenConflictBytes                                 int64
	err                                                              error
}

func (h *fzHarness) fail(format string, args ...any) {
	if h.err == nil {
		h.err = fmt.Errorf(format, args...)
	}
}

// fzStream checks the contract of one Stream.
type fzStream struct {
	h     *fzHarness
	id    int
	conn  int
	gen   [2]int // generator direction of TCPDirClientToServer and TCPDirServerToClient
	cfg   fzConnCfg
	calls [4]int // Accept, ReassembledSG, ReassemblyComplete calls (index by panic mode)

	completed bool
	panicked  bool
	dirs      [2]fzDirState
}

type fzDirState struct {
	deliveries int
	ended      bool
	// cands are the possible stream offsets of the next byte: more than one
	// only while the first bytes could sit at several offsets of their packet.
	cands []int64
	known bool
	lost  bool   // the first bytes came from a packet with no context
	keep  []byte // bytes KeepFrom asked for, nil when none
}

func fzDirIndex(d TCPFlowDirection) int {
	if d == TCPDirServerToClient {
		return 1
	}
	return 0
}

type fzFactory struct{ h *fzHarness }

func (f fzFactory) New(netFlow, tcpFlow gopacket.Flow, tcp *layers.TCP, ac AssemblerContext) Stream {
	h := f.h
	src := binary.BigEndian.Uint16(tcpFlow.Src().Raw())
	dst := binary.BigEndian.Uint16(tcpFlow.Dst().Raw())
	s := &fzStream{h: h, id: len(h.streams)}
	client := dst
	if src != fzServerPort {
		client = src
		s.gen = [2]int{0, 1}
	} else {
		s.gen = [2]int{1, 0}
	}
	s.conn = int(client) - fzClientPort
	if s.conn < 0 || s.conn >= h.cfg.nConns {
		h.fail("New: flow %v %v is no connection of the input", netFlow, tcpFlow)
		s.conn = 0
	}
	if tcp == nil || uint16(tcp.SrcPort) != src {
		h.fail("New: the packet is not the client->server direction of %v", tcpFlow)
	}
	s.cfg = h.cfg.conns[s.conn]
	h.streams = append(h.streams, s)
	return s
}

func (s *fzStream) maybePanic(kind int) {
	if s.h.safe && s.cfg.panicMode == kind && s.calls[kind] == s.cfg.panicAt+1 {
		s.panicked = true
		panic(fmt.Sprintf("fuzz stream %d: planned panic in callback %d", s.id, kind))
	}
}

func (s *fzStream) Accept(tcp *layers.TCP, ci gopacket.CaptureInfo, dir TCPFlowDirection, nextSeq Sequence, start *bool, ac AssemblerContext) bool {
	h := s.h
	s.calls[1]++
	if s.completed && !s.cfg.completeFalse {
		h.fail("stream %d: Accept after ReassemblyComplete returned true", s.id)
	}
	if s.panicked {
		h.fail("stream %d: Accept after the Stream panicked", s.id)
	}
	gd := 0
	if uint16(tcp.SrcPort) == fzServerPort {
		gd = 1
	}
	if s.gen[fzDirIndex(dir)] != gd {
		h.fail("stream %d: Accept called with direction %v for a packet from port %d", s.id, dir, tcp.SrcPort)
	}
	if s.cfg.forceStart && nextSeq == invalidSequence {
		*start = true
	}
	ok := true
	if id := ci.InterfaceIndex - 1; id >= 0 {
		switch s.cfg.rejectMode {
		case 1:
			ok = id%3 != 2
		case 2:
			ok = id%7 != 6
		case 3:
			ok = !tcp.RST
		}
	}
	s.maybePanic(1)
	return ok
}

func (s *fzStream) ReassembledSG(sg ScatterGather, ac AssemblerContext) {
	h := s.h
	s.calls[2]++
	h.seenDeliveries++
	if s.completed {
		h.fail("stream %d: ReassembledSG after ReassemblyComplete", s.id)
	}
	if s.panicked {
		h.fail("stream %d: ReassembledSG after the Stream panicked", s.id)
	}
	dir, start, end, skip := sg.Info()
	di := fzDirIndex(dir)
	st := &s.dirs[di]
	gd := s.gen[di]
	switch {
	case st.ended:
		h.fail("stream %d %v: delivery after the direction's end", s.id, dir)
	case start && st.deliveries > 0:
		h.fail("stream %d %v: start reported on delivery %d", s.id, dir, st.deliveries+1)
	case skip == -1 && st.deliveries > 0:
		h.fail("stream %d %v: Skip -1 on delivery %d", s.id, dir, st.deliveries+1)
	case skip < -1:
		h.fail("stream %d %v: Skip %d", s.id, dir, skip)
	}
	st.deliveries++
	if skip > 0 {
		h.seenGaps++
		h.seenGapBytes += int64(skip)
	}
	avail, saved := sg.Lengths()
	data := sg.Fetch(avail)
	if len(data) != avail || saved < 0 || saved > avail {
		h.fail("stream %d %v: Lengths %d,%d but Fetch gave %d bytes", s.id, dir, avail, saved, len(data))
		return
	}
	// The Safe face may let go of the oldest kept bytes at its limits
	// (counted in KeptBytesDropped): what comes back is then the end of
	// what was kept, and the rest is counted.
	if saved > len(st.keep) || (saved > 0 && !bytes.Equal(data[:saved], st.keep[len(st.keep)-saved:])) {
		h.fail("stream %d %v: %d saved bytes are not the end of the %d bytes kept by KeepFrom", s.id, dir, saved, len(st.keep))
	}
	if st.keep != nil && skip == 0 && saved < len(st.keep) && avail > 0 {
		if !h.safe {
			h.fail("stream %d %v: %d of %d bytes kept by KeepFrom were not delivered again after no hole", s.id, dir, len(st.keep)-saved, len(st.keep))
		}
		h.seenKeptShort += int64(len(st.keep) - saved)
	}
	st.keep = nil
	s.checkParts(sg, data, saved, skip, gd)
	fresh := data[saved:]
	h.seenFresh += int64(len(fresh))
	s.locate(st, sg, gd, skip, fresh)
	if d, ok := sg.(DepthReporter); end || (ok && d.DepthReached()) {
		st.ended = true // the direction's last delivery
	}
	if k := s.keepFrom(avail); k >= 0 && k < avail {
		st.keep = append([]byte(nil), data[k:]...)
		sg.KeepFrom(k)
	} else if k != -2 {
		sg.KeepFrom(k)
	}
	s.maybePanic(2)
}

// checkParts checks the parts walk of a delivery of data (saved of them
// kept): the parts are data, in sequence order, kept ones first, the skip
// on the first, and each part with a context shows its own packet's
// acknowledgement number, flags and bytes (unless rewritten).
func (s *fzStream) checkParts(sg ScatterGather, data []byte, saved, skip, gd int) {
	h := s.h
	w, ok := sg.(PartWalker)
	if !ok {
		h.fail("stream %d: the ScatterGather is no PartWalker", s.id)
		return
	}
	at, kept := 0, 0
	var next Sequence
	for i := 0; i < w.NumParts(); i++ {
		p := w.Part(i)
		if at+len(p.Bytes) > len(data) || !bytes.Equal(p.Bytes, data[at:at+len(p.Bytes)]) {
			h.fail("stream %d: part %d is not bytes [%d, %d) of Fetch", s.id, i, at, at+len(p.Bytes))
			return
		}
		wantSkip := 0
		if i == 0 {
			wantSkip = skip
		}
		if p.Kept != (at < saved) || p.Skip != wantSkip || i > 0 && p.Seq != next {
			h.fail("stream %d: part %d at %d (saved %d): kept %v, skip %d (delivery %d), seq %d (want %d)", s.id, i, at, saved, p.Kept, p.Skip, skip, p.Seq, next)
			return
		}
		if p.Kept {
			kept += len(p.Bytes)
		}
		at += len(p.Bytes)
		next = p.Seq.Add(len(p.Bytes))
		id := p.CaptureInfo().InterfaceIndex - 1
		if id < 0 {
			continue // a packet handed in without context
		}
		if id >= len(h.packets) {
			h.fail("stream %d: part %d names packet %d, which was never sent", s.id, i, id)
			return
		}
		pk := h.packets[id]
		off := pk.dataSeq.Difference(p.Seq)
		switch {
		case pk.conn != s.conn || pk.dir != gd:
			h.fail("stream %d (conn %d dir %d): part %d from packet %d of conn %d dir %d", s.id, s.conn, gd, i, id, pk.conn, pk.dir)
		case p.Ack != Sequence(pk.ack) || p.Flags != pk.flags:
			h.fail("stream %d: part %d of packet %d: ack %d flags %v, want %d %v", s.id, i, id, p.Ack, p.Flags, pk.ack, pk.flags)
		case len(p.Bytes) > 0 && (off < 0 || off+len(p.Bytes) > pk.n):
			h.fail("stream %d: part %d holds bytes [%d, %d) of packet %d, which carried %d", s.id, i, off, off+len(p.Bytes), id, pk.n)
		case len(p.Bytes) > 0 && !p.Rewritten:
			for j, b := range p.Bytes {
				if b != fzTruth(pk.conn, pk.dir, pk.off+int64(off+j))^fzVersions[pk.version] {
					h.fail("stream %d: part %d byte %d is not packet %d's", s.id, i, j, id)
					return
				}
			}
		}
	}
	if at != len(data) || kept != saved || saved > 0 && skip != 0 {
		h.fail("stream %d: parts hold %d of %d bytes, %d kept of %d saved, skip %d", s.id, at, len(data), kept, saved, skip)
	}
}

// keepFrom picks the KeepFrom offset of a delivery; -2 means no call.
func (s *fzStream) keepFrom(avail int) int {
	switch s.cfg.keepMode {
	case 1:
		return max(0, avail-1-s.calls[2]%8)
	case 2:
		return 0
	case 3:
		switch s.calls[2] % 4 {
		case 0:
			return -1
		case 1:
			return avail
		case 2:
			return avail + 5
		}
		return avail / 2
	}
	return -2
}

// locate checks the fresh bytes of a delivery against what was sent, at the
// offsets Skip leads to, or, for the first bytes of a direction, anywhere
// in the packet that carried the first of them.
func (s *fzStream) locate(st *fzDirState, sg ScatterGather, gd, skip int, fresh []byte) {
	h := s.h
	if st.lost {
		return
	}
	if !st.known {
		if len(fresh) == 0 {
			// An empty delivery, even one that starts the direction, is not
			// always where its packet's bytes were: a SYN whose bytes lie
			// before a start forced earlier reports the start at the forced
			// one. The first bytes delivered place the direction instead.
			return
		}
		_, saved := sg.Lengths()
		id := sg.CaptureInfo(saved).InterfaceIndex - 1
		if id == -1 {
			// A packet handed in without context: its bytes cannot be placed.
			st.lost = true
			return
		}
		if id < 0 || id >= len(h.packets) {
			h.fail("stream %d: delivery names packet %d, which was never sent", s.id, id)
			return
		}
		p := h.packets[id]
		if p.conn != s.conn || p.dir != gd {
			h.fail("stream %d (conn %d dir %d): bytes from packet %d of conn %d dir %d", s.id, s.conn, gd, id, p.conn, p.dir)
			return
		}
		st.cands = st.cands[:0]
		for o := p.off; o < p.off+int64(p.n); o++ {
			st.cands = append(st.cands, o)
		}
		skip = 0
		st.known = true
	}
	kept := st.cands[:0]
	for _, c := range st.cands {
		o := c + int64(max(skip, 0))
		if s.matches(gd, o, fresh) {
			kept = append(kept, o+int64(len(fresh)))
		}
	}
	if len(kept) == 0 {
		o := st.cands[0] + int64(max(skip, 0))
		h.fail("stream %d conn %d dir %d: %d bytes delivered after skip %d do not match what was sent at offset %d (%s)",
			s.id, s.conn, gd, len(fresh), skip, o, s.mismatch(gd, o, fresh))
		// Nothing left to place later deliveries by.
		st.lost = true
		return
	}
	st.cands = kept
}

func (s *fzStream) matches(gd int, off int64, b []byte) bool {
	sent := &s.h.sent[s.conn][gd]
	for i, x := range b {
		o := off + int64(i)
		v := fzVersionOf(x, fzTruth(s.conn, gd, o))
		if v < 0 || sent.versions(o)&(1<<v) == 0 {
			return false
		}
	}
	return true
}

func (s *fzStream) mismatch(gd int, off int64, b []byte) string {
	sent := &s.h.sent[s.conn][gd]
	for i, x := range b {
		o := off + int64(i)
		t := fzTruth(s.conn, gd, o)
		v := fzVersionOf(x, t)
		if v < 0 || sent.versions(o)&(1<<v) == 0 {
			return fmt.Sprintf("byte %d at offset %d is %#x: version %d, versions sent there %04b", i, o, x, v, sent.versions(o))
		}
	}
	return "?"
}

func (s *fzStream) ReassemblyComplete(ac AssemblerContext) bool {
	h := s.h
	s.calls[3]++
	h.seenCompletes++
	if s.completed {
		h.fail("stream %d: ReassemblyComplete called twice", s.id)
	}
	s.completed = true
	s.maybePanic(3)
	return !s.cfg.completeFalse
}

// onConflict checks a Conflict: two different copies, both sent at the
// offsets its sequence number names, for a Stream still open.
func (h *fzHarness) onConflict(c Conflict) {
	h.seenConflicts++
	h.seenConflictBytes += int64(len(c.New))
	s, ok := c.Stream.(*fzStream)
	if !ok {
		h.fail("Conflict for Stream %T", c.Stream)
		return
	}
	if s.completed {
		h.fail("stream %d: Conflict after ReassemblyComplete", s.id)
	}
	if len(c.Old) != len(c.New) || len(c.New) == 0 || bytes.Equal(c.Old, c.New) {
		h.fail("stream %d: Conflict of %d old and %d new bytes, equal %v", s.id, len(c.Old), len(c.New), bytes.Equal(c.Old, c.New))
		return
	}
	gd := s.gen[fzDirIndex(c.Direction)]
	off := int64(int32(uint32(c.Seq) - (h.cfg.isn[s.conn][gd] + 1)))
	for _, b := range [][]byte{c.Old, c.New} {
		if !s.matches(gd, off, b) {
			h.fail("stream %d: Conflict at seq %d (offset %d) names bytes never sent there (%s)", s.id, c.Seq, off, s.mismatch(gd, off, b))
		}
	}
}

// run decodes and replays the operations of an input, at most fzMaxOps.
// Each starts with a byte: its high nibble n moves capture time on by
// n*n*5 ms (15: back by 200 ms), its low nibble is the operation: 0-8 a
// packet (fzHarness.packet), 9 a packet without AssemblerContext, 10
// FlushWithOptions (T and TC so many 10 ms ago, 255: zero; assembler),
// 11 FlushCloseOlderThan, 12 FlushAll, 13 a nil packet, 14 closing an
// assembler (or replacing a closed one), 15 closing the pool.
func (h *fzHarness) run(in *fzInput) {
	h.now = time.Unix(1_700_000_000, 0)
	for ops := 0; in.more() && ops < fzMaxOps && h.err == nil; ops++ {
		op := in.u8()
		kind := op & 15
		adv := int(op >> 4)
		if adv == 15 {
			h.now = h.now.Add(-200 * time.Millisecond) // capture time may go back
		} else {
			h.now = h.now.Add(time.Duration(adv*adv*5) * time.Millisecond)
		}
		switch {
		case kind <= 9:
			h.packet(in, kind == 9)
		case kind == 10:
			a, b, asm := in.u8(), in.u8(), int(in.u8()&1)
			opt := FlushOptions{}
			if a != 255 {
				opt.T = h.now.Add(-time.Duration(a) * 10 * time.Millisecond)
			}
			if b != 255 {
				opt.TC = h.now.Add(-time.Duration(b) * 10 * time.Millisecond)
			}
			h.logf("flush T=%v TC=%v asm %d", opt.T, opt.TC, asm)
			h.face.flush(asm, opt)
		case kind == 11:
			a, asm := in.u8(), int(in.u8()&1)
			h.logf("flushOlder %d asm %d", a, asm)
			h.face.flushOlder(asm, h.now.Add(-time.Duration(a)*10*time.Millisecond))
		case kind == 12:
			asm := int(in.u8() & 1)
			h.logf("flushAll asm %d", asm)
			h.face.flushAll(asm)
		case kind == 13:
			asm := int(in.u8() & 1)
			h.logf("nil packet asm %d", asm)
			if err := h.face.assembleNil(asm); h.safe && !errors.Is(err, ErrNilPacket) && !errors.Is(err, ErrAssemblerClosed) {
				h.fail("nil packet: error %v", err)
			}
		case kind == 14:
			asm := int(in.u8() & 1)
			h.logf("close asm %d", asm)
			h.face.closeAsm(asm)
		case kind == 15:
			h.logf("close pool")
			h.face.closePool()
		}
		h.checkAll()
	}
	if h.err == nil {
		h.face.finish()
		h.checkAll()
		h.checkFinal()
	}
	if h.err != nil {
		h.tb.Fatal(h.err)
	}
}

func (h *fzHarness) logf(format string, args ...any) {
	if h.trace {
		h.tb.Logf(format, args...)
	}
}

// packet decodes and hands in one packet: a byte with the connection (low
// 6 bits mod the count), assembler (bit 6) and direction (bit 7); the
// flags (SYN, FIN, RST, ACK, PSH, the version in bits 5-6, a wrong ACK
// number in bit 7); the shape: an offset mode (low 3 bits: 0-2 at the
// direction's cursor, 3 back by a byte, 4 forward by a u16 mod 4096, 5 at
// a u16 - 1000, 6 forward by a u32 mod 2^30, 7 at minus a byte) and a
// length class (high 5 bits: 0-15 that length, 16-23 a byte, 24-29 a u16
// mod 1461, 30-31 a u16 mod 3001), then the mode's and the length's bytes.
func (h *fzHarness) packet(in *fzInput, nilCtx bool) {
	p0, flags, shape := in.u8(), in.u8(), in.u8()
	conn := int(p0) % h.cfg.nConns
	dir := int(p0 >> 7)
	asm := int(p0 >> 6 & 1)
	cur := h.cursor[conn][dir]
	off := cur
	switch shape & 7 {
	case 3:
		off = cur - int64(in.u8())
	case 4:
		off = cur + int64(in.u16()%4096)
	case 5:
		off = int64(in.u16()) - 1000
	case 6:
		off = cur + int64(in.u32()%fzMaxOffset)
	case 7:
		off = -int64(in.u8())
	}
	var n int
	switch cl := int(shape >> 3); {
	case cl < 16:
		n = cl
	case cl < 24:
		n = int(in.u8())
	case cl < 30:
		n = in.u16() % 1461
	default:
		n = in.u16() % 3001
	}
	off = max(-fzMinOffset, min(off, fzMaxOffset-4096))
	version := int(flags >> 5 & 3)
	syn, fin, rst, ack := flags&1 != 0, flags&2 != 0, flags&4 != 0, flags&8 != 0
	isn := h.cfg.isn[conn][dir]
	seq := isn + 1 + uint32(off)
	if syn {
		seq-- // the SYN takes the number before its data
	}
	var ackNo uint32
	if ack {
		ackNo = h.cfg.isn[conn][1-dir] + 1 + uint32(h.cursor[conn][1-dir])
		if flags&128 != 0 {
			ackNo ^= 0xDEADBEEF
		}
	}
	payload := make([]byte, n)
	for i := range payload {
		payload[i] = fzTruth(conn, dir, off+int64(i)) ^ fzVersions[version]
	}
	if n > 0 {
		h.sent[conn][dir].mark(off, n, version)
	}
	h.cursor[conn][dir] = max(cur, off+int64(n))
	client, server := h.cfg.addrs(conn)
	pkt := segment{
		client: client, server: server, fromServer: dir == 1,
		seq: seq, ack: ackNo, syn: syn, fin: fin, rst: rst, psh: flags&16 != 0, hasAck: ack,
		payload: payload, ts: h.now,
	}.build()
	id := len(h.packets)
	h.packets = append(h.packets, fzPacket{conn: conn, dir: dir, off: off, n: n,
		dataSeq: Sequence(isn + 1 + uint32(off)), ack: ackNo, flags: ptFlags(segment{syn: syn, fin: fin, rst: rst, psh: flags&16 != 0, hasAck: ack}), version: version})
	var ac AssemblerContext
	if !nilCtx {
		ci := pkt.ci
		ci.InterfaceIndex = id + 1
		ac = &fzCtx{ci: ci}
	}
	h.logf("pkt %d asm %d conn %d dir %d off %d len %d v%d syn=%v fin=%v rst=%v ack=%v seq=%d nilctx=%v",
		id, asm, conn, dir, off, n, version, syn, fin, rst, ack, seq, nilCtx)
	err := h.face.assemble(asm, &pkt, ac)
	if !h.safe || err == nil {
		return
	}
	for _, ok := range []error{ErrConnectionLimit, ErrConnectionClosed, ErrAssemblerClosed, ErrPoolClosed, ErrStreamPanic} {
		if errors.Is(err, ok) {
			return
		}
	}
	h.fail("pkt %d: unexpected error %v", id, err)
}

// checkAll runs the checks that hold after every call.
func (h *fzHarness) checkAll() {
	if h.err != nil {
		return
	}
	s := h.face.stats()
	queued := s.PageCache.QueuedBytes
	if sum := s.BytesDelivered + s.BytesOverlap + s.BytesOverwritten + s.BytesDiscarded + queued; sum != s.BytesProcessed {
		h.fail("conservation: processed %d != delivered %d + overlap %d + overwritten %d + discarded %d + queued %d (= %d)",
			s.BytesProcessed, s.BytesDelivered, s.BytesOverlap, s.BytesOverwritten, s.BytesDiscarded, queued, sum)
		return
	}
	if d := s.BytesRejected + s.BytesAfterClose + s.BytesBeforeStart + s.BytesAfterEnd + s.BytesBeyondDepth + s.BytesOnReset; d != s.BytesDiscarded {
		h.fail("BytesDiscarded %d is not the sum of its parts %d", s.BytesDiscarded, d)
	}
	if s.BytesDelivered != h.seenFresh {
		h.fail("BytesDelivered %d, Streams saw %d new bytes", s.BytesDelivered, h.seenFresh)
	}
	if s.Deliveries != h.seenDeliveries {
		h.fail("Deliveries %d, Streams saw %d", s.Deliveries, h.seenDeliveries)
	}
	if s.Gaps != h.seenGaps || s.GapBytes != h.seenGapBytes {
		h.fail("Gaps %d (%d bytes), Streams saw %d (%d bytes)", s.Gaps, s.GapBytes, h.seenGaps, h.seenGapBytes)
	}
	if s.KeptBytesDropped < h.seenKeptShort {
		h.fail("KeptBytesDropped %d, but %d kept bytes did not come back", s.KeptBytesDropped, h.seenKeptShort)
	}
	if s.StreamsCompleted != h.seenCompletes {
		h.fail("StreamsCompleted %d, Streams saw %d", s.StreamsCompleted, h.seenCompletes)
	}
	if h.safe && (s.OverlapConflicts != h.seenConflicts || s.ConflictBytes != h.seenConflictBytes) {
		h.fail("OverlapConflicts %d (%d bytes), OnConflict saw %d (%d bytes)",
			s.OverlapConflicts, s.ConflictBytes, h.seenConflicts, h.seenConflictBytes)
	}
	if s.ForcedGapBytes > s.GapBytes {
		h.fail("ForcedGapBytes %d > GapBytes %d", s.ForcedGapBytes, s.GapBytes)
	}
	if s.PageCache.QueuedBytes < 0 || s.PageCache.PagesInUse < 0 || s.PageCache.BytesInUse < 0 {
		h.fail("negative page cache figures: %+v", s.PageCache)
	}
	h.face.check(h)
}

// checkFinal runs after the final FlushAll or Close.
func (h *fzHarness) checkFinal() {
	if h.err != nil {
		return
	}
	for _, s := range h.streams {
		if !s.completed {
			h.fail("stream %d (conn %d) never completed", s.id, s.conn)
			return
		}
	}
	s := h.face.stats()
	if s.PageCache.QueuedBytes != 0 || s.PageCache.PagesInUse != 0 || s.PageCache.BytesInUse != 0 {
		h.fail("buffers left after the end: %+v", s.PageCache)
	}
}

// checkTable verifies the engine's per-direction bookkeeping against its
// queues, and, in strict mode, the per-direction limits.
func (h *fzHarness) checkTable(t *connTable, lim limits) {
	var refs []connRef
	refs = t.snapshot(refs)
	for _, r := range refs {
		if !r.lock() {
			continue
		}
		c := r.c
		for i := range c.halves {
			hc := &c.halves[i]
			pages, cost, runs, qbytes := 0, int64(0), 0, 0
			var prev *chunk
			hc.queue.each(func(ch *chunk) bool {
				pages++
				cost += ch.cost()
				qbytes += len(ch.bytes)
				if prev == nil || prev.end() != ch.pos {
					runs++
				}
				if prev != nil && prev.end() > ch.pos {
					h.fail("conn %v dir %d: queued chunks overlap at %d", c.key, i, ch.pos)
				}
				if hc.started() && ch.pos < hc.nextPos {
					h.fail("conn %v dir %d: chunk at %d queued before nextPos %d", c.key, i, ch.pos, hc.nextPos)
				}
				prev = ch
				return true
			})
			for k := hc.kept; k != nil; k = k.next {
				pages++
				cost += k.cost()
			}
			if pages != hc.pages || cost != hc.cost || runs != hc.runs || qbytes != hc.queue.bytes {
				h.fail("conn %v dir %d: bookkeeping pages %d cost %d runs %d bytes %d, queue holds %d, %d, %d, %d",
					c.key, i, hc.pages, hc.cost, hc.runs, hc.queue.bytes, pages, cost, runs, qbytes)
			}
			if !lim.strict {
				continue
			}
			if lim.maxPagesPerConn > 0 && pages > lim.maxPagesPerConn {
				h.fail("conn %v dir %d: %d pages queued or kept, MaxBufferedPagesPerConnection %d", c.key, i, pages, lim.maxPagesPerConn)
			}
			if lim.maxGapsPerConn > 0 && runs > lim.maxGapsPerConn {
				h.fail("conn %v dir %d: %d holes, MaxGapsPerConnection %d", c.key, i, runs, lim.maxGapsPerConn)
			}
			if lim.maxBytesPerConn > 0 && cost > lim.maxBytesPerConn {
				h.fail("conn %v dir %d: %d bytes charged, MaxBufferedBytesPerConnection %d", c.key, i, cost, lim.maxBytesPerConn)
			}
		}
		c.mu.Unlock()
	}
}

// fzOurs is the drop-in face: Assemblers sharing a StreamPool. It has no
// Close: the close operations call Dump instead.
type fzOurs struct {
	pool *StreamPool
	asms []*Assembler
}

func (f *fzOurs) assemble(i int, p *testPacket, ac AssemblerContext) error {
	f.asms[i%len(f.asms)].AssembleWithContext(p.netFlow, p.tcp, ac)
	return nil
}

func (f *fzOurs) assembleNil(i int) error {
	f.asms[i%len(f.asms)].AssembleWithContext(gopacket.Flow{}, nil, nil)
	return nil
}

func (f *fzOurs) flush(i int, opt FlushOptions) { f.asms[i%len(f.asms)].FlushWithOptions(opt) }
func (f *fzOurs) flushOlder(i int, t time.Time) { f.asms[i%len(f.asms)].FlushCloseOlderThan(t) }
func (f *fzOurs) flushAll(i int)                { f.asms[i%len(f.asms)].FlushAll() }
func (f *fzOurs) closeAsm(i int)                { _ = f.asms[i%len(f.asms)].Dump() }
func (f *fzOurs) closePool()                    { _ = f.asms[0].Dump() }
func (f *fzOurs) finish()                       { f.asms[0].FlushAll() }
func (f *fzOurs) check(h *fzHarness)            { h.checkTable(&f.pool.t, limits{}) }
func (f *fzOurs) stats() (s AssemblerStats)     { return kitSumStats(f.snapshots()) }
func (f *fzOurs) snapshots() (out []AssemblerStats) {
	for _, a := range f.asms {
		out = append(out, a.eng.ctr.snapshot(&f.pool.t.budget))
	}
	return out
}

// fzSafe is the Safe face: SafeAssemblers sharing a SafeStreamPool; a
// closed assembler may be replaced by a new one.
type fzSafe struct {
	h    *fzHarness
	pool *SafeStreamPool
	asms []*SafeAssembler
	all  []*SafeAssembler // every assembler made, for the counters
}

func (f *fzSafe) asm(i int) *SafeAssembler { return f.asms[i%len(f.asms)] }

func (f *fzSafe) assemble(i int, p *testPacket, ac AssemblerContext) error {
	return f.asm(i).AssembleWithContext(p.netFlow, p.tcp, ac)
}

func (f *fzSafe) assembleNil(i int) error {
	return f.asm(i).AssembleWithContext(gopacket.Flow{}, nil, nil)
}

func (f *fzSafe) flush(i int, opt FlushOptions) { f.asm(i).FlushWithOptions(opt) }
func (f *fzSafe) flushOlder(i int, t time.Time) { f.asm(i).FlushCloseOlderThan(t) }
func (f *fzSafe) flushAll(i int)                { f.asm(i).FlushAll() }

func (f *fzSafe) closeAsm(i int) {
	a := f.asm(i)
	if !a.closed {
		if err := a.Close(); err != nil {
			f.h.fail("Close: %v", err)
		}
		if err := a.Close(); err != nil {
			f.h.fail("second Close: %v", err)
		}
		return
	}
	// Closed already: replace it with a new assembler, if the pool lets us.
	n, err := NewSafeAssembler(f.pool, f.h.cfg.opts)
	if err != nil {
		if !errors.Is(err, ErrPoolClosed) {
			f.h.fail("NewSafeAssembler: %v", err)
		}
		return
	}
	f.asms[i%len(f.asms)] = n
	f.all = append(f.all, n)
}

func (f *fzSafe) closePool() {
	if err := f.pool.Close(); err != nil {
		f.h.fail("pool Close: %v", err)
	}
}

func (f *fzSafe) finish() {
	for _, a := range f.asms {
		if err := a.Close(); err != nil {
			f.h.fail("Close: %v", err)
		}
	}
	if err := f.pool.Close(); err != nil {
		f.h.fail("pool Close: %v", err)
	}
	for _, a := range f.all {
		if err := a.Assemble(gopacket.Flow{}, &layers.TCP{}); !errors.Is(err, ErrAssemblerClosed) {
			f.h.fail("Assemble after Close: %v, want ErrAssemblerClosed", err)
		}
	}
}

func (f *fzSafe) stats() AssemblerStats {
	// What SafeStreamPool.Close flushed is counted in the pool's Closing.
	all := []AssemblerStats{f.pool.Stats().Closing}
	for _, a := range f.all {
		all = append(all, a.Stats())
	}
	return kitSumStats(all)
}

func (f *fzSafe) check(h *fzHarness) {
	ps := f.pool.Stats()
	if c := h.cfg.maxConns; c > 0 && ps.ActiveConnections > int64(c) {
		h.fail("ActiveConnections %d > cap %d", ps.ActiveConnections, c)
	}
	if ps.ActiveConnections != ps.TotalCreated-ps.ConnectionsRemoved {
		h.fail("ActiveConnections %d != created %d - removed %d", ps.ActiveConnections, ps.TotalCreated, ps.ConnectionsRemoved)
	}
	if ps.TotalCreated != int64(len(h.streams)) {
		h.fail("TotalCreated %d, factory made %d Streams", ps.TotalCreated, len(h.streams))
	}
	o := h.cfg.opts
	h.checkTable(&f.pool.t, limits{
		strict:          true,
		maxPagesPerConn: o.MaxBufferedPagesPerConnection,
		maxPagesTotal:   o.MaxBufferedPagesTotal,
		maxBytesPerConn: int64(o.MaxBufferedBytesPerConnection),
		maxGapsPerConn:  o.MaxGapsPerConnection,
	})
	if ps.PageCache.PagesInUse > int64(o.MaxBufferedPagesTotal) {
		h.fail("PagesInUse %d > MaxBufferedPagesTotal %d", ps.PageCache.PagesInUse, o.MaxBufferedPagesTotal)
	}
}

// fzRun replays data through one face.
func fzRun(t testing.TB, data []byte, safe bool) {
	in := &fzInput{b: data}
	h := &fzHarness{tb: t, safe: safe, trace: os.Getenv(fzTraceEnv) != ""}
	h.cfg = fzDecodeConfig(in, safe)
	f := fzFactory{h: h}
	if safe {
		h.cfg.opts.OnConflict = h.onConflict
		sf := &fzSafe{h: h, pool: NewSafeStreamPool(f, h.cfg.maxConns)}
		for range h.cfg.assemblers {
			a, err := NewSafeAssembler(sf.pool, h.cfg.opts)
			if err != nil {
				t.Fatalf("NewSafeAssembler(%+v): %v", h.cfg.opts, err)
			}
			sf.asms = append(sf.asms, a)
		}
		sf.all = append(sf.all, sf.asms...)
		h.face = sf
	} else {
		of := &fzOurs{pool: NewStreamPool(f)}
		for range h.cfg.assemblers {
			a := NewAssembler(of.pool)
			a.MaxBufferedPagesTotal = h.cfg.opts.MaxBufferedPagesTotal
			a.MaxBufferedPagesPerConnection = h.cfg.opts.MaxBufferedPagesPerConnection
			of.asms = append(of.asms, a)
		}
		h.face = of
	}
	h.logf("config %+v", h.cfg)
	h.run(in)
}

func FuzzAssembler(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) { fzRun(t, data, false) })
}

func FuzzSafeAssembler(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) { fzRun(t, data, true) })
}

// FuzzSequence cuts a stream of n bytes (n from the input, at most 64 KiB)
// into segments at the input's cut points, sends them in the input's order
// with duplicates from an ISN anywhere in the sequence space (so the stream
// may wrap at 2^32 anywhere), then the FIN, through both faces, and checks
// that each delivers exactly the stream, with no hole and one end.
func FuzzSequence(f *testing.F) {
	f.Add(uint32(0xFFFFFFF0), uint16(100), []byte{5, 10, 20, 3, 2, 1, 0})
	f.Fuzz(func(t *testing.T, isn uint32, size uint16, cuts []byte) {
		n := int(size)
		stream := make([]byte, n)
		for i := range stream {
			stream[i] = fzTruth(0, 0, int64(i))
		}
		// Segments: cut points from the input, in the order given by it.
		type seg struct{ off, n int }
		var segs []seg
		for off, i := 0, 0; off < n; i++ {
			l := 1 + n/4
			if i < len(cuts) {
				l = 1 + int(cuts[i])*7
			}
			l = min(l, n-off)
			segs = append(segs, seg{off, l})
			off += l
		}
		// Permute with the remaining input bytes, then duplicate some.
		rest := cuts[min(len(cuts), len(segs)):]
		for i := len(segs) - 1; i > 0 && len(rest) > 0; i-- {
			j := int(rest[0]) % (i + 1)
			rest = rest[1:]
			segs[i], segs[j] = segs[j], segs[i]
		}
		for _, b := range rest {
			if len(segs) > 0 && len(segs) < 4096 {
				segs = append(segs, segs[int(b)%len(segs)])
			}
		}
		client := netip.MustParseAddrPort("10.1.0.1:40000")
		server := netip.MustParseAddrPort("10.1.0.2:80")
		ts := time.Unix(1_700_000_000, 0)
		var pkts []testPacket
		pkts = append(pkts, segment{client: client, server: server, seq: isn, syn: true, ts: ts}.build())
		for _, s := range segs {
			pkts = append(pkts, segment{client: client, server: server, seq: isn + 1 + uint32(s.off), hasAck: true,
				payload: stream[s.off : s.off+s.n], ts: ts}.build())
		}
		pkts = append(pkts, segment{client: client, server: server, seq: isn + 1 + uint32(n), fin: true, hasAck: true, ts: ts}.build())
		for _, safe := range []bool{false, true} {
			rec := &fzSeqStream{first: Sequence(isn).Add(1)}
			var feed func(p *testPacket)
			var end func()
			if safe {
				pool := NewSafeStreamPool(fzSeqFactory{rec}, 0)
				// Limits far above what an input can send: any skip is a fault.
				a, err := NewSafeAssembler(pool, atkSafeInsertOptions)
				if err != nil {
					t.Fatal(err)
				}
				feed = func(p *testPacket) {
					if err := a.AssembleWithTimestamp(p.netFlow, p.tcp, p.ci.Timestamp); err != nil {
						t.Fatalf("safe: %v", err)
					}
				}
				end = func() { a.Close(); pool.Close() }
			} else {
				a := NewAssembler(NewStreamPool(fzSeqFactory{rec}))
				feed = func(p *testPacket) { a.AssembleWithTimestamp(p.netFlow, p.tcp, p.ci.Timestamp) }
				end = func() { a.FlushAll() }
			}
			for i := range pkts {
				feed(&pkts[i])
			}
			// The server never answered: its direction closes at the end.
			end()
			if rec.err != nil {
				t.Fatalf("safe=%v isn=%#x n=%d: %v", safe, isn, n, rec.err)
			}
			if !bytes.Equal(rec.got, stream) {
				t.Fatalf("safe=%v isn=%#x n=%d: got %d bytes, want %d (first difference at %d)", safe, isn, n, len(rec.got), n, fzFirstDiff(rec.got, stream))
			}
			if !rec.ended || rec.completes != 1 {
				t.Fatalf("safe=%v isn=%#x: end %v, %d completions", safe, isn, rec.ended, rec.completes)
			}
		}
	})
}

func fzFirstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

type fzSeqStream struct {
	first     Sequence // the sequence number of the stream's first byte
	got       []byte
	ended     bool
	completes int
	err       error
}

type fzSeqFactory struct{ s *fzSeqStream }

func (f fzSeqFactory) New(gopacket.Flow, gopacket.Flow, *layers.TCP, AssemblerContext) Stream {
	return f.s
}

func (s *fzSeqStream) Accept(*layers.TCP, gopacket.CaptureInfo, TCPFlowDirection, Sequence, *bool, AssemblerContext) bool {
	return true
}

func (s *fzSeqStream) ReassembledSG(sg ScatterGather, _ AssemblerContext) {
	dir, _, end, skip := sg.Info()
	if dir != TCPDirClientToServer {
		return
	}
	if skip != 0 && s.err == nil {
		s.err = fmt.Errorf("skip %d after %d bytes", skip, len(s.got))
	}
	if s.ended && s.err == nil {
		s.err = fmt.Errorf("delivery after the end")
	}
	n, _ := sg.Lengths()
	data := sg.Fetch(n)
	// The parts are the delivery, each where its sequence number says and
	// marked as a data packet's (only the ACK flag).
	at, w := 0, sg.(PartWalker)
	for i := 0; i < w.NumParts() && s.err == nil; i++ {
		p := w.Part(i)
		switch {
		case !bytes.Equal(p.Bytes, data[at:min(len(data), at+len(p.Bytes))]):
			s.err = fmt.Errorf("part %d is not bytes [%d, %d) of the delivery", i, at, at+len(p.Bytes))
		case p.Seq != s.first.Add(len(s.got)+at):
			s.err = fmt.Errorf("part %d at stream offset %d has sequence number %d", i, len(s.got)+at, p.Seq)
		case len(p.Bytes) > 0 && p.Flags != TCPFlagACK:
			s.err = fmt.Errorf("part %d has flags %v", i, p.Flags)
		}
		at += len(p.Bytes)
	}
	if at != n && s.err == nil {
		s.err = fmt.Errorf("parts hold %d of %d bytes", at, n)
	}
	s.got = append(s.got, data...)
	s.ended = s.ended || end
}

func (s *fzSeqStream) ReassemblyComplete(AssemblerContext) bool {
	s.completes++
	return true
}

// fzBuilder writes inputs for FuzzAssembler and FuzzSafeAssembler, for the
// seed corpus and for tests.
type fzBuilder struct{ b []byte }

// fzHdr is the header of an input: see fzDecodeConfig.
type fzHdr struct {
	conns              int // 1..4
	ipv6Odd, sameHost  bool
	twoAssemblers      bool
	maxConns           int // 0 none, else 1..4
	pagesTotal, perCon int // 0..32, 0..16
	bytes64            int // MaxBufferedBytesPerConnection / 64, 0 default
	gaps               int // 0..8
	timeout50ms        int // 0 default, else 1..16
	policy             OverlapPolicy
	depth16            int // ReassemblyDepth / 16, 0 none
	window8            int // ConflictWindow / 8
	isnSel             [fzMaxConns][2]byte
	isnRaw             [fzMaxConns][2]uint32
	cfg                [fzMaxConns]byte
	panicAt            [fzMaxConns]byte
}

func (b *fzBuilder) header(h fzHdr) *fzBuilder {
	x := byte(h.conns-1) & 3
	if h.ipv6Odd {
		x |= 4
	}
	if h.sameHost {
		x |= 8
	}
	if h.twoAssemblers {
		x |= 16
	}
	capv := byte(0)
	if h.maxConns > 0 {
		x |= 32
		capv = byte(h.maxConns - 1)
	}
	t := byte(0)
	if h.timeout50ms > 0 {
		t = byte(h.timeout50ms - 1)
		if t == 0 {
			t = 16 // 16%16+1 = 1
		}
	}
	b.b = append(b.b, x, capv, byte(h.pagesTotal), byte(h.perCon), byte(h.bytes64), byte(h.gaps), t,
		byte(h.policy), byte(h.depth16), byte(h.window8))
	for i := 0; i < h.conns; i++ {
		for d := 0; d < 2; d++ {
			b.b = append(b.b, h.isnSel[i][d])
			if h.isnSel[i][d]%8 == 7 {
				b.b = binary.BigEndian.AppendUint32(b.b, h.isnRaw[i][d])
			}
		}
		b.b = append(b.b, h.cfg[i], h.panicAt[i])
	}
	return b
}

// fzPkt describes one packet op.
type fzPkt struct {
	conn, dir, asm     int
	syn, fin, rst, ack bool
	psh, bogusAck      bool
	version            int
	mode               int // see fzHarness.packet
	arg                int // the mode's argument
	n                  int // payload length, 0..3000
	adv                int // time advance code, 0..15
	nilCtx             bool
}

func (b *fzBuilder) pkt(p fzPkt) *fzBuilder {
	kind := byte(0)
	if p.nilCtx {
		kind = 9
	}
	b.b = append(b.b, byte(p.adv)<<4|kind)
	p0 := byte(p.conn) & 0x3F
	p0 |= byte(p.asm&1) << 6
	p0 |= byte(p.dir&1) << 7
	var fl byte
	for i, f := range []bool{p.syn, p.fin, p.rst, p.ack, p.psh} {
		if f {
			fl |= 1 << i
		}
	}
	fl |= byte(p.version&3) << 5
	if p.bogusAck {
		fl |= 128
	}
	var cl byte
	switch {
	case p.n < 16:
		cl = byte(p.n)
	case p.n < 256:
		cl = 16
	case p.n < 1461:
		cl = 24
	default:
		cl = 30
	}
	b.b = append(b.b, p0, fl, cl<<3|byte(p.mode&7))
	switch p.mode {
	case 3, 7:
		b.b = append(b.b, byte(p.arg))
	case 4, 5:
		b.b = binary.BigEndian.AppendUint16(b.b, uint16(p.arg))
	case 6:
		b.b = binary.BigEndian.AppendUint32(b.b, uint32(p.arg))
	}
	switch {
	case p.n < 16:
	case p.n < 256:
		b.b = append(b.b, byte(p.n))
	default:
		b.b = binary.BigEndian.AppendUint16(b.b, uint16(p.n))
	}
	return b
}

func (b *fzBuilder) op(kind byte, args ...byte) *fzBuilder {
	b.b = append(b.b, kind)
	b.b = append(b.b, args...)
	return b
}

// Op codes of fzHarness.run besides packets.
const (
	fzOpFlush      = 10 // T ago (x10ms, 255: zero), TC ago, assembler
	fzOpFlushOlder = 11 // ago (x10ms), assembler
	fzOpFlushAll   = 12 // assembler
	fzOpNilPacket  = 13 // assembler
	fzOpClose      = 14 // assembler (Safe: close, or replace when closed; drop-in: Dump)
	fzOpClosePool  = 15 // (drop-in: Dump)
)

// handshake appends SYN, SYN-ACK, ACK for conn.
func (b *fzBuilder) handshake(conn int) *fzBuilder {
	b.pkt(fzPkt{conn: conn, syn: true})
	b.pkt(fzPkt{conn: conn, dir: 1, syn: true, ack: true})
	return b.pkt(fzPkt{conn: conn, ack: true})
}

// fzSeeds are the committed seed corpus, by file name; both targets share
// it.
func fzSeeds() map[string][]byte {
	seeds := map[string][]byte{}
	add := func(name string, b *fzBuilder) { seeds[name] = b.b }

	// 1. A clean connection: handshake, data both ways in order, FINs.
	{
		b := (&fzBuilder{}).header(fzHdr{conns: 1})
		b.handshake(0)
		for i := 0; i < 4; i++ {
			b.pkt(fzPkt{ack: true, n: 1460, adv: 1})
			b.pkt(fzPkt{dir: 1, ack: true, n: 300, adv: 1})
		}
		b.pkt(fzPkt{ack: true, fin: true})
		b.pkt(fzPkt{dir: 1, ack: true, fin: true})
		add("clean-handshake-fin", b)
	}
	// 2. ISNs at the wrap: 2^32-1 and 2^32-11, data across 2^32.
	{
		h := fzHdr{conns: 2, isnSel: [fzMaxConns][2]byte{{2, 3}, {3, 2}}}
		b := (&fzBuilder{}).header(h)
		b.handshake(0).handshake(1)
		for i := 0; i < 3; i++ {
			b.pkt(fzPkt{conn: 0, ack: true, n: 7})
			b.pkt(fzPkt{conn: 1, dir: 1, ack: true, n: 700})
		}
		b.pkt(fzPkt{conn: 0, fin: true, ack: true}).pkt(fzPkt{conn: 1, dir: 1, rst: true})
		add("isn-wrap", b)
	}
	// 3. Out of order behind a hole with a small page budget (forced skips).
	{
		b := (&fzBuilder{}).header(fzHdr{conns: 1, pagesTotal: 4, perCon: 2, gaps: 2})
		b.handshake(0)
		for i := 0; i < 8; i++ {
			b.pkt(fzPkt{ack: true, mode: 4, arg: 100, n: 200 + i})
		}
		b.op(fzOpFlushAll, 0)
		add("hole-page-budget", b)
	}
	// 4. Overlapping retransmissions with different bytes (versions).
	{
		b := (&fzBuilder{}).header(fzHdr{conns: 1})
		b.handshake(0)
		b.pkt(fzPkt{ack: true, mode: 4, arg: 50, n: 100})
		for v := 1; v < 4; v++ {
			b.pkt(fzPkt{ack: true, mode: 3, arg: 120, n: 100, version: v})
		}
		b.pkt(fzPkt{ack: true, mode: 5, arg: 1000, n: 300, version: 2})
		b.pkt(fzPkt{ack: true, mode: 3, arg: 30, n: 200, version: 3})
		add("overlap-versions", b)
	}
	// 4b. A copy of bytes inside a buffered chunk, rewritten in place by
	// the default policy: the part that holds them says it was rewritten.
	{
		b := (&fzBuilder{}).header(fzHdr{conns: 1})
		b.handshake(0)
		b.pkt(fzPkt{ack: true, mode: 4, arg: 50, n: 100})
		b.pkt(fzPkt{ack: true, mode: 3, arg: 80, n: 20, version: 1})
		b.pkt(fzPkt{ack: true, mode: 5, arg: 1000, n: 50, version: 2})
		add("overlap-in-place", b)
	}
	// 5. Garbage flags: SYN+FIN+RST, data on RST, bare ACKs, zero length.
	{
		b := (&fzBuilder{}).header(fzHdr{conns: 2})
		b.pkt(fzPkt{conn: 0, syn: true, fin: true, rst: true, ack: true, n: 10})
		b.pkt(fzPkt{conn: 0, dir: 1, ack: true})
		b.pkt(fzPkt{conn: 1, syn: true})
		b.pkt(fzPkt{conn: 1, rst: true, n: 40})
		b.pkt(fzPkt{conn: 1, dir: 1, ack: true, bogusAck: true})
		b.pkt(fzPkt{conn: 1, ack: true, n: 0, mode: 6, arg: 1_000_000_000})
		b.op(fzOpNilPacket, 0)
		add("garbage-flags", b)
	}
	// 6. A billion-byte jump in sequence.
	{
		b := (&fzBuilder{}).header(fzHdr{conns: 1, pagesTotal: 8})
		b.handshake(0)
		b.pkt(fzPkt{ack: true, n: 100})
		b.pkt(fzPkt{ack: true, mode: 6, arg: 1_000_000_000, n: 500})
		b.pkt(fzPkt{ack: true, n: 100})
		b.op(fzOpFlush, 0, 255, 0)
		add("billion-jump", b)
	}
	// 7. Connection cap with four connections and two assemblers.
	{
		b := (&fzBuilder{}).header(fzHdr{conns: 4, maxConns: 2, twoAssemblers: true})
		for c := 0; c < 4; c++ {
			b.pkt(fzPkt{conn: c, asm: c, syn: true})
			b.pkt(fzPkt{conn: c, asm: c, mode: 4, arg: 10, n: 50})
		}
		b.pkt(fzPkt{conn: 0, dir: 1, syn: true, ack: true, asm: 1})
		b.op(fzOpClose, 0).op(fzOpClose, 0)
		b.pkt(fzPkt{conn: 2, syn: true})
		add("conn-cap-two-assemblers", b)
	}
	// 8. No SYN: data only, forced start on one connection, flushes in
	// capture time with a short timeout.
	{
		h := fzHdr{conns: 2, timeout50ms: 2, cfg: [fzMaxConns]byte{1, 0}}
		b := (&fzBuilder{}).header(h)
		for i := 0; i < 3; i++ {
			b.pkt(fzPkt{conn: 0, ack: true, mode: 4, arg: 10, n: 30, adv: 3})
			b.pkt(fzPkt{conn: 1, dir: 1, ack: true, mode: 4, arg: 10, n: 30, adv: 3})
		}
		b.op(fzOpFlushOlder, 5, 0)
		b.pkt(fzPkt{conn: 1, ack: true, n: 10, adv: 14})
		add("no-syn-timeouts", b)
	}
	// 9. KeepFrom: a short tail kept, and KeepFrom(0) on another connection.
	{
		h := fzHdr{conns: 2, cfg: [fzMaxConns]byte{1 << 2, 2 << 2}}
		b := (&fzBuilder{}).header(h)
		b.handshake(0).handshake(1)
		for i := 0; i < 5; i++ {
			b.pkt(fzPkt{conn: 0, ack: true, n: 20 + i})
			b.pkt(fzPkt{conn: 1, ack: true, n: 300})
		}
		b.pkt(fzPkt{conn: 0, ack: true, mode: 4, arg: 5, n: 9})
		b.op(fzOpFlushAll, 0)
		add("keepfrom", b)
	}
	// 10. Streams that panic (Safe face) or reject packets, and
	// ReassemblyComplete returning false.
	{
		h := fzHdr{conns: 4, cfg: [fzMaxConns]byte{2<<6 | 2, 1<<6 | 1<<4, 3 << 6, 3<<4 | 2}, panicAt: [fzMaxConns]byte{1, 2, 0, 0}}
		b := (&fzBuilder{}).header(h)
		for c := 0; c < 4; c++ {
			b.handshake(c)
			b.pkt(fzPkt{conn: c, ack: true, n: 10})
			b.pkt(fzPkt{conn: c, ack: true, n: 10})
			b.pkt(fzPkt{conn: c, ack: true, rst: true, n: 3})
		}
		b.op(fzOpFlushAll, 1)
		b.pkt(fzPkt{conn: 0, ack: true, n: 10})
		add("panics-rejects", b)
	}
	// 11. Close the pool under an open assembler, then go on.
	{
		b := (&fzBuilder{}).header(fzHdr{conns: 2, twoAssemblers: true})
		b.handshake(0)
		b.pkt(fzPkt{conn: 0, ack: true, mode: 4, arg: 7, n: 40})
		b.op(fzOpClose, 1)
		b.op(fzOpClosePool)
		b.pkt(fzPkt{conn: 1, syn: true})
		b.op(fzOpClose, 1)
		add("close-pool-early", b)
	}
	// 12. Descending arrival, 1-byte segments, tiny byte budget.
	{
		b := (&fzBuilder{}).header(fzHdr{conns: 1, bytes64: 8, gaps: 8})
		b.handshake(0)
		for i := 40; i > 0; i-- {
			b.pkt(fzPkt{ack: true, mode: 5, arg: 1000 + 2*i, n: 1})
		}
		b.pkt(fzPkt{ack: true, n: 1})
		add("descending-byte-budget", b)
	}
	// 13. FIN out of order, data past the FIN, IPv6 and shared host.
	{
		b := (&fzBuilder{}).header(fzHdr{conns: 2, ipv6Odd: true, sameHost: true})
		b.handshake(1)
		b.pkt(fzPkt{conn: 1, ack: true, fin: true, mode: 4, arg: 100, n: 10})
		b.pkt(fzPkt{conn: 1, ack: true, mode: 4, arg: 20, n: 10})
		b.pkt(fzPkt{conn: 1, ack: true, mode: 5, arg: 1000, n: 100})
		b.pkt(fzPkt{conn: 1, dir: 1, ack: true, fin: true})
		add("fin-out-of-order-ipv6", b)
	}
	// 14. Overlap policy (Linux), a 320-byte reassembly depth and a
	// 128-byte conflict window: retransmissions with other bytes, of
	// delivered and of buffered data, then data past the depth.
	{
		b := (&fzBuilder{}).header(fzHdr{conns: 1, policy: OverlapLinux, depth16: 20, window8: 16})
		b.handshake(0)
		b.pkt(fzPkt{ack: true, n: 100})
		b.pkt(fzPkt{ack: true, mode: 3, arg: 50, n: 50, version: 1})
		b.pkt(fzPkt{ack: true, mode: 4, arg: 20, n: 60})
		b.pkt(fzPkt{ack: true, mode: 3, arg: 70, n: 90, version: 2})
		b.pkt(fzPkt{ack: true, mode: 5, arg: 1100, n: 30, version: 3})
		b.pkt(fzPkt{ack: true, mode: 5, arg: 1000, n: 400})
		b.pkt(fzPkt{ack: true, n: 100, fin: true})
		add("policy-depth-conflicts", b)
	}
	return seeds
}

// fzSequenceSeed is one input of FuzzSequence.
type fzSequenceSeed struct {
	isn   uint32
	size  uint16
	order []byte
}

// fzSequenceSeeds are FuzzSequence's committed corpus: the four ISNs of
// issue 4, the middle of the space and a wrap a page in, with segments cut
// small and large, sent in order, reversed, shuffled and duplicated.
func fzSequenceSeeds() map[string]fzSequenceSeed {
	// seed cuts the stream into segments of 1+7c bytes, one per cut c, so
	// that the cuts cover it exactly, and appends order: the swaps of the
	// shuffle, then the duplicates.
	seed := func(isn uint32, cuts []byte, order func(n int) []byte) fzSequenceSeed {
		size := 0
		for _, c := range cuts {
			size += 1 + 7*int(c)
		}
		return fzSequenceSeed{isn, uint16(size), append(append([]byte(nil), cuts...), order(len(cuts))...)}
	}
	inOrder := func(n int) []byte { return nil }
	// reversed makes the shuffle (j chosen for i = n-1 down to 1) a
	// reversal: i swaps with n-1-i in the upper half, with itself below.
	reversed := func(n int) []byte {
		var b []byte
		for i := n - 1; i > 0; i-- {
			b = append(b, byte(min(i, n-1-i)))
		}
		return b
	}
	mixed := func(n int) []byte {
		var b []byte
		for i := n - 1; i > 0; i-- {
			b = append(b, byte(i*37+11))
		}
		return append(b, 1, 1, 3, 0, 7) // then five duplicates
	}
	small := bytes.Repeat([]byte{0, 3, 1}, 20)        // 1-, 22- and 8-byte segments
	large := []byte{208, 208, 208, 208, 100, 208, 50} // about 1460 bytes each
	return map[string]fzSequenceSeed{
		"isn-0-reversed":        seed(0, small, reversed),
		"isn-1-in-order":        seed(1, large, inOrder),
		"isn-max-reversed":      seed(0xFFFFFFFF, large, reversed),
		"isn-max-minus-10-dups": seed(0xFFFFFFF5, small, mixed),
		"isn-half-shuffled":     seed(0x7FFFFFF0, append(small, large...), mixed),
		"isn-wrap-page-cuts":    seed(0xFFFFF000, large, mixed),
		"empty":                 {0xFFFFFFFF, 0, nil},
	}
}

// TestFuzzSeedCorpus checks that the committed corpus is the one fzSeeds
// describes (REASSEMBLY_WRITE_SEEDS=1 writes it), and runs every seed
// through both faces with the operation trace on failure.
func TestFuzzSeedCorpus(t *testing.T) {
	write := os.Getenv("REASSEMBLY_WRITE_SEEDS") != ""
	for name, data := range fzSeeds() {
		content := "go test fuzz v1\n[]byte(" + strconv.Quote(string(data)) + ")\n"
		for _, target := range []string{"FuzzAssembler", "FuzzSafeAssembler"} {
			fzSyncSeed(t, filepath.Join("testdata", "fuzz", target, name), content, write)
		}
		for _, safe := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/safe=%v", name, safe), func(t *testing.T) { fzRun(t, data, safe) })
		}
	}
	for name, sd := range fzSequenceSeeds() {
		content := fmt.Sprintf("go test fuzz v1\nuint32(%d)\nuint16(%d)\n[]byte(%s)\n", sd.isn, sd.size, strconv.Quote(string(sd.order)))
		fzSyncSeed(t, filepath.Join("testdata", "fuzz", "FuzzSequence", name), content, write)
	}
}

// fzSyncSeed writes the seed file at path when write is set, and otherwise
// reports it if it is missing or differs from content.
func fzSyncSeed(t *testing.T, path, content string, write bool) {
	t.Helper()
	if write {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != content {
		t.Errorf("%s is missing or stale: run REASSEMBLY_WRITE_SEEDS=1 go test -run TestFuzzSeedCorpus", path)
	}
}
