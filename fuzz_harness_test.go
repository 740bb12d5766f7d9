package reassembly

// The fuzz harness (see fuzz_test.go): it plays the operations of an input
// through a face and checks, after every call, what the doc of
// fuzz_test.go lists.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

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
	// The packet is the client's, or the server's SYN-ACK that resumes a
	// conversation whose SYN was remembered.
	if tcp == nil || uint16(tcp.SrcPort) != src && !(tcp.SYN && tcp.ACK && uint16(tcp.DstPort) == src) {
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
	if s.gen[kitDirOf(dir)] != gd {
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
	di := kitDirOf(dir)
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
	s.checkParts(sg, gd)
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

// checkParts checks the parts walk of a delivery (kitCheckParts) and that
// each part with a context shows its own packet's acknowledgement number,
// flags and bytes (unless rewritten).
func (s *fzStream) checkParts(sg ScatterGather, gd int) {
	h := s.h
	err := kitCheckParts(sg, func(i, _ int, p Part) error {
		id := p.CaptureInfo().InterfaceIndex - 1
		if id < 0 {
			return nil // a packet handed in without context
		}
		if id >= len(h.packets) {
			return fmt.Errorf("part %d names packet %d, which was never sent", i, id)
		}
		pk := h.packets[id]
		off := pk.dataSeq.Difference(p.Seq)
		switch {
		case pk.conn != s.conn || pk.dir != gd:
			return fmt.Errorf("(conn %d dir %d): part %d from packet %d of conn %d dir %d", s.conn, gd, i, id, pk.conn, pk.dir)
		case p.Ack != Sequence(pk.ack) || p.Flags != pk.flags:
			return fmt.Errorf("part %d of packet %d: ack %d flags %v, want %d %v", i, id, p.Ack, p.Flags, pk.ack, pk.flags)
		case len(p.Bytes) > 0 && (off < 0 || off+len(p.Bytes) > pk.n):
			return fmt.Errorf("part %d holds bytes [%d, %d) of packet %d, which carried %d", i, off, off+len(p.Bytes), id, pk.n)
		case len(p.Bytes) > 0 && !p.Rewritten:
			for j, b := range p.Bytes {
				if b != fzTruth(pk.conn, pk.dir, pk.off+int64(off+j))^fzVersions[pk.version] {
					return fmt.Errorf("part %d byte %d is not packet %d's", i, j, id)
				}
			}
		}
		return nil
	})
	if err != nil {
		h.fail("stream %d: %v", s.id, err)
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
	gd := s.gen[kitDirOf(c.Direction)]
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
	seg := segment{
		client: client, server: server, fromServer: dir == 1,
		seq: seq, ack: ackNo, syn: syn, fin: fin, rst: rst, psh: flags&16 != 0, hasAck: ack,
		payload: payload, ts: h.now,
	}
	pkt := seg.build()
	id := len(h.packets)
	h.packets = append(h.packets, fzPacket{conn: conn, dir: dir, off: off, n: n,
		dataSeq: Sequence(isn + 1 + uint32(off)), ack: ackNo, flags: seg.flags(), version: version})
	var ac AssemblerContext
	if !nilCtx {
		ci := pkt.ci
		ci.InterfaceIndex = id + 1
		ac = &kitCtx{ci: ci}
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
	if err := kitConservation(s); err != nil {
		h.fail("%v", err)
		return
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
		if !r.lock(false) {
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
