package reassembly

// Tests of the parts walk (PartWalker): the parts of every delivery cover
// it exactly, in order, each with the metadata of the packet that carried
// its bytes, whatever the order of arrival, the overlaps and the overlap
// policy, KeepFrom, skips and flushes; and walking them allocates nothing.

import (
	"bytes"
	"fmt"
	"math/rand"
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/safepacket/reassembly/internal/stamp"
	"github.com/stretchr/testify/require"
)

// ptCtx is the context of one packet of a parts test: the index of the
// packet tells a part which packet it must describe.
type ptCtx struct {
	ci  gopacket.CaptureInfo
	idx int
}

func (c *ptCtx) GetCaptureInfo() gopacket.CaptureInfo { return c.ci }

// ptPacket is a packet of a parts test with what its parts must show.
type ptPacket struct {
	seg     segment
	pkt     testPacket
	dataSeq Sequence // sequence number of payload[0]
	flags   TCPFlags // set from the segment, not through flagsOf
}

func ptFlags(s segment) TCPFlags {
	var f TCPFlags
	for _, x := range []struct {
		on bool
		f  TCPFlags
	}{{s.fin, TCPFlagFIN}, {s.syn, TCPFlagSYN}, {s.rst, TCPFlagRST}, {s.psh, TCPFlagPSH}, {s.hasAck, TCPFlagACK}} {
		if x.on {
			f |= x.f
		}
	}
	return f
}

func ptMake(segs []segment) []ptPacket {
	out := make([]ptPacket, len(segs))
	for i, s := range segs {
		ds := Sequence(s.seq)
		if s.syn {
			ds = ds.Add(1)
		}
		out[i] = ptPacket{seg: s, pkt: s.build(), dataSeq: ds, flags: ptFlags(s)}
	}
	return out
}

// ptTally counts what the deliveries exercised, so that a test can show
// it reached the cases it is about.
type ptTally struct {
	deliveries, parts, multiPart, kept, rewritten, skipped, empty int
}

// ptChecker is a Stream that checks the parts of every delivery against
// the packets handed in, and asks for KeepFrom at random.
type ptChecker struct {
	t     testing.TB
	pkts  []ptPacket
	rng   *rand.Rand // nil: never KeepFrom
	tally *ptTally
	// kept are the bytes the last KeepFrom asked for, per direction.
	kept [2][]byte
}

func (s *ptChecker) Accept(*layers.TCP, gopacket.CaptureInfo, TCPFlowDirection, Sequence, *bool, AssemblerContext) bool {
	return true
}

func (s *ptChecker) ReassemblyComplete(AssemblerContext) bool { return true }

func (s *ptChecker) New(gopacket.Flow, gopacket.Flow, *layers.TCP, AssemblerContext) Stream { return s }

func (s *ptChecker) ReassembledSG(sg ScatterGather, _ AssemblerContext) {
	s.t.Helper()
	if err := ptCheck(sg, s.pkts, s.kept, s.tally); err != nil {
		s.t.Error(err)
	}
	dir, _, _, _ := sg.Info()
	d := 0
	if dir == TCPDirServerToClient {
		d = 1
	}
	s.kept[d] = nil
	n, _ := sg.Lengths()
	if s.rng != nil && n > 0 && s.rng.Intn(3) == 0 {
		off := s.rng.Intn(n)
		sg.KeepFrom(off)
		s.kept[d] = bytes.Clone(sg.Fetch(n)[off:])
	}
}

// ptCheck returns what is wrong with the parts of sg, given the packets
// handed in and the bytes each direction asked to keep before.
func ptCheck(sg ScatterGather, pkts []ptPacket, kept [2][]byte, tally *ptTally) error {
	w, ok := sg.(PartWalker)
	if !ok {
		return fmt.Errorf("the ScatterGather %T is no PartWalker", sg)
	}
	n, saved := sg.Lengths()
	dir, _, _, skip := sg.Info()
	var cat []byte
	keptBytes, firstNew := 0, -1
	for i := 0; i < w.NumParts(); i++ {
		p := w.Part(i)
		cat = append(cat, p.Bytes...)
		if b, sk, seen := sg.(stamp.PartReader).PartSeen(i); len(b) != len(p.Bytes) || len(b) > 0 && &b[0] != &p.Bytes[0] ||
			sk != p.Skip || !seen.Equal(p.CaptureInfo().Timestamp) {
			return fmt.Errorf("part %d: PartSeen gives %d bytes, skip %d, seen %v; Part %d bytes, skip %d, seen %v",
				i, len(b), sk, seen, len(p.Bytes), p.Skip, p.CaptureInfo().Timestamp)
		}
		if p.Kept {
			if firstNew >= 0 {
				return fmt.Errorf("part %d is kept but follows new part %d", i, firstNew)
			}
			keptBytes += len(p.Bytes)
			tally.kept++
		} else if firstNew < 0 {
			firstNew = i
		}
		wantSkip := 0
		if i == 0 {
			wantSkip = skip
		}
		if p.Skip != wantSkip {
			return fmt.Errorf("part %d: Skip %d, want %d (delivery skip %d)", i, p.Skip, wantSkip, skip)
		}
		if i > 0 {
			prev := w.Part(i - 1)
			if want := prev.Seq.Add(len(prev.Bytes)); p.Seq != want {
				return fmt.Errorf("part %d: Seq %d, want %d where part %d ends", i, p.Seq, want, i-1)
			}
		}
		c, ok := p.Context.(*ptCtx)
		if !ok {
			return fmt.Errorf("part %d: context %T, not the packet's", i, p.Context)
		}
		pk := pkts[c.idx]
		if p.Ack != Sequence(pk.seg.ack) || p.Flags != pk.flags {
			return fmt.Errorf("part %d of packet %d: ack %d flags %v, want %d %v", i, c.idx, p.Ack, p.Flags, pk.seg.ack, pk.flags)
		}
		if got := p.CaptureInfo(); !got.Timestamp.Equal(pk.seg.ts) {
			return fmt.Errorf("part %d of packet %d: capture time %v, want %v", i, c.idx, got.Timestamp, pk.seg.ts)
		}
		payload := pk.seg.payload
		off := pk.dataSeq.Difference(p.Seq)
		// An empty part (a SYN's, a FIN's) stands where the stream is.
		if len(p.Bytes) > 0 && (off < 0 || off+len(p.Bytes) > len(payload)) {
			return fmt.Errorf("part %d of packet %d: bytes [%d, %d) of the packet, which carried %d", i, c.idx, off, off+len(p.Bytes), len(payload))
		}
		if p.Rewritten {
			tally.rewritten++
		} else if len(p.Bytes) > 0 && !bytes.Equal(p.Bytes, payload[off:off+len(p.Bytes)]) {
			return fmt.Errorf("part %d of packet %d: bytes differ from the packet's at offset %d", i, c.idx, off)
		}
		if len(p.Bytes) > 0 {
			at := len(cat) - len(p.Bytes)
			if ci := sg.CaptureInfo(at); !ci.Timestamp.Equal(pk.seg.ts) {
				return fmt.Errorf("part %d: CaptureInfo(%d) is %v, the part says %v", i, at, ci.Timestamp, pk.seg.ts)
			}
		} else {
			tally.empty++
		}
		if p.Skip > 0 {
			tally.skipped++
		}
	}
	if z := w.Part(w.NumParts()); z.Bytes != nil || z.Context != nil || w.Part(-1).Context != nil {
		return fmt.Errorf("a part out of range is not the zero Part")
	}
	if len(cat) != n || !bytes.Equal(cat, sg.Fetch(n)) {
		return fmt.Errorf("parts hold %d bytes that are not Fetch(%d)", len(cat), n)
	}
	if saved > 0 && skip != 0 {
		return fmt.Errorf("kept bytes handed over again across a skip of %d", skip)
	}
	if keptBytes != saved {
		return fmt.Errorf("kept parts hold %d bytes, Lengths says %d were saved", keptBytes, saved)
	}
	d := 0
	if dir == TCPDirServerToClient {
		d = 1
	}
	if k := kept[d]; saved > 0 && !bytes.Equal(cat[:saved], k[len(k)-saved:]) {
		return fmt.Errorf("kept parts are not the bytes KeepFrom asked for")
	}
	tally.deliveries++
	tally.parts += w.NumParts()
	if w.NumParts() > 1 {
		tally.multiPart++
	}
	return nil
}

// ptFace runs packets through one face of the package.
type ptFace struct {
	name     string
	assemble func(p testPacket, ac AssemblerContext)
	flush    func(t time.Time)
	flushAll func()
}

// ptFaces returns the makers of the drop-in Assembler and of a
// SafeAssembler for every overlap policy.
func ptFaces(t testing.TB) []func(StreamFactory) ptFace {
	makers := []func(StreamFactory) ptFace{func(f StreamFactory) ptFace {
		a := NewAssembler(NewStreamPool(f))
		return ptFace{
			name:     "dropin",
			assemble: func(p testPacket, ac AssemblerContext) { a.AssembleWithContext(p.netFlow, p.tcp, ac) },
			flush:    func(ts time.Time) { a.FlushWithOptions(FlushOptions{T: ts}) },
			flushAll: func() { a.FlushAll() },
		}
	}}
	for pol := OverlapPolicy(0); pol < numOverlapPolicies; pol++ {
		makers = append(makers, func(f StreamFactory) ptFace {
			sa, err := NewSafeAssembler(NewSafeStreamPool(f, 0), SafeAssemblerOptions{
				OverlapPolicy: pol, DisableBackgroundFlush: true, ConnectionTimeout: time.Hour,
			})
			require.NoError(t, err)
			return ptFace{
				name:     "safe/" + pol.String(),
				assemble: func(p testPacket, ac AssemblerContext) { _ = sa.AssembleWithContext(p.netFlow, p.tcp, ac) },
				flush:    func(ts time.Time) { sa.FlushWithOptions(FlushOptions{T: ts}) },
				flushAll: func() { require.NoError(t, sa.Close()) },
			}
		})
	}
	return makers
}

// ptContent is the byte at offset off of direction dir in copy version v:
// copies of the same bytes differ, so a part showing another packet's
// bytes is caught.
func ptContent(dir, off, v int) byte { return byte(off*7 + v*31 + dir*101) }

// ptDirection makes the data segments of one direction: total bytes in
// random pieces (some larger than a page), some sent again over random
// ranges with other content, in a shuffled order, the last with a FIN.
func ptDirection(r *rand.Rand, c segment, dataSeq uint32, total int, dir int) []segment {
	piece := func(from, to, v int) segment {
		s := c
		s.seq = dataSeq + uint32(from)
		s.ack = r.Uint32()
		s.hasAck = true
		s.psh = r.Intn(2) == 0
		s.payload = make([]byte, to-from)
		for i := range s.payload {
			s.payload[i] = ptContent(dir, from+i, v)
		}
		return s
	}
	var segs []segment
	for at := 0; at < total; {
		n := min(total-at, 1+r.Intn(2500))
		segs = append(segs, piece(at, at+n, 0))
		at += n
	}
	for v := 1; v <= r.Intn(4); v++ {
		from := r.Intn(total)
		segs = append(segs, piece(from, min(total, from+1+r.Intn(1500)), v))
	}
	if r.Intn(4) == 0 && len(segs) > 2 {
		segs = append(segs[:1], segs[2:]...) // a hole only a flush gets past
	}
	r.Shuffle(len(segs), func(i, j int) { segs[i], segs[j] = segs[j], segs[i] })
	if r.Intn(2) == 0 {
		segs[len(segs)-1].fin = true
	} else {
		fin := piece(total, total, 0)
		fin.fin = true
		segs = append(segs, fin)
	}
	return segs
}

// ptConnection makes a whole connection: handshake, then both directions'
// data segments interleaved.
func ptConnection(r *rand.Rand, port uint16, ts time.Time) []segment {
	c := segment{
		client: netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), port),
		server: netip.AddrPortFrom(netip.MustParseAddr("10.0.0.2"), 80),
	}
	isnC, isnS := r.Uint32(), r.Uint32()
	if r.Intn(4) == 0 {
		isnC = 0xFFFFFFFF - uint32(r.Intn(3000)) // the stream wraps 2^32
	}
	syn := c
	syn.seq, syn.syn = isnC, true
	synAck := c
	synAck.fromServer, synAck.seq, synAck.ack, synAck.syn, synAck.hasAck = true, isnS, isnC+1, true, true
	cs := ptDirection(r, c, isnC+1, 1+r.Intn(6000), 0)
	sc := c
	sc.fromServer = true
	ss := ptDirection(r, sc, isnS+1, 1+r.Intn(6000), 1)
	segs := []segment{syn, synAck}
	for len(cs)+len(ss) > 0 {
		if len(ss) == 0 || len(cs) > 0 && r.Intn(2) == 0 {
			segs, cs = append(segs, cs[0]), cs[1:]
		} else {
			segs, ss = append(segs, ss[0]), ss[1:]
		}
	}
	for i := range segs {
		segs[i].ts = ts.Add(time.Duration(i) * time.Millisecond)
	}
	return segs
}

// Property: on every face and under every overlap policy, the parts of
// each delivery, concatenated, are Fetch of the whole delivery; they
// follow each other in sequence order, kept parts first and equal to what
// KeepFrom asked for, the delivery's skip on the first part; and each part
// shows its own packet's context, capture time, acknowledgement number
// and flags, and that packet's bytes unless it says they were rewritten.
// The connections come in out of order, with overlapping copies that
// differ, holes that mid-stream flushes and the final flush skip, and
// random KeepFrom calls.
func TestPartsCoverDeliveries(t *testing.T) {
	t.Parallel()
	base := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	var total ptTally
	for seed := int64(1); seed <= 40; seed++ {
		r := rand.New(rand.NewSource(seed))
		var segs []segment
		for c := 0; c < 3; c++ {
			segs = append(segs, ptConnection(r, uint16(40000+c), base.Add(time.Duration(c)*time.Second))...)
		}
		pkts := ptMake(segs)
		flushAt := r.Intn(len(pkts))
		for _, mk := range ptFaces(t) {
			chk := &ptChecker{t: t, pkts: pkts, rng: rand.New(rand.NewSource(seed)), tally: &total}
			f := mk(chk)
			for i, p := range pkts {
				f.assemble(p.pkt, &ptCtx{ci: p.pkt.ci, idx: i})
				if i == flushAt {
					f.flush(p.seg.ts.Add(-500 * time.Millisecond))
				}
			}
			f.flushAll()
			if t.Failed() {
				t.Fatalf("seed %d, face %s", seed, f.name)
			}
		}
	}
	t.Logf("%+v", total)
	// The cases the property is about were reached.
	require.Positive(t, total.multiPart)
	require.Positive(t, total.kept)
	require.Positive(t, total.rewritten)
	require.Positive(t, total.skipped)
	require.Positive(t, total.empty)
}

// ptAllocStream measures, in each delivery, what walking its parts
// allocates, and keeps the last bytes of every delivery so that the next
// one has kept parts too.
type ptAllocStream struct {
	ptChecker
	worst      float64
	widest     int // most parts walked in one measured delivery
	keptWalked bool
}

func (s *ptAllocStream) New(gopacket.Flow, gopacket.Flow, *layers.TCP, AssemblerContext) Stream {
	return s
}

func (s *ptAllocStream) ReassembledSG(sg ScatterGather, _ AssemblerContext) {
	w := sg.(PartWalker)
	var sum int
	var last time.Time
	allocs := testing.AllocsPerRun(100, func() {
		for i := 0; i < w.NumParts(); i++ {
			p := w.Part(i)
			sum += len(p.Bytes) + int(p.Seq) + int(p.Ack) + int(p.Flags) + p.Skip
			if p.Kept {
				s.keptWalked = true
			}
			last = p.CaptureInfo().Timestamp
		}
	})
	_ = last
	s.worst = max(s.worst, allocs)
	s.widest = max(s.widest, w.NumParts())
	if n, _ := sg.Lengths(); n > 1 {
		sg.KeepFrom(n - 1)
	}
}

// Property: walking the parts of a delivery, reading every field and the
// capture info of each, allocates nothing, on deliveries of many parts
// (out-of-order fills of packets larger than a page) with kept parts.
// Not parallel: AllocsPerRun counts every goroutine's allocations.
func TestPartsWalkAllocatesNothing(t *testing.T) {
	base := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	c := segment{
		client: netip.MustParseAddrPort("10.0.0.1:40000"),
		server: netip.MustParseAddrPort("10.0.0.2:80"),
	}
	syn := c
	syn.seq, syn.syn = 1000, true
	segs := []segment{syn}
	// Data at 1001: pieces 1 to 5 arrive before piece 0, and 0 fills.
	const piece = 2500
	for _, k := range []int{1, 2, 3, 4, 5, 0} {
		s := c
		s.seq, s.ack, s.hasAck, s.psh = 1001+uint32(k*piece), uint32(7000+k), true, true
		s.payload = bytes.Repeat([]byte{byte(k)}, piece)
		segs = append(segs, s)
	}
	next := c
	next.seq, next.ack, next.hasAck = 1001+6*piece, 9999, true
	next.payload = []byte("more")
	segs = append(segs, next)
	for i := range segs {
		segs[i].ts = base.Add(time.Duration(i) * time.Millisecond)
	}
	pkts := ptMake(segs)
	s := &ptAllocStream{}
	a := NewAssembler(NewStreamPool(s))
	for i, p := range pkts {
		a.AssembleWithContext(p.pkt.netFlow, p.pkt.tcp, &ptCtx{ci: p.pkt.ci, idx: i})
	}
	a.FlushAll()
	require.GreaterOrEqual(t, s.widest, 10, "a delivery of many parts was walked")
	require.True(t, s.keptWalked, "a delivery with kept parts was walked")
	require.Zero(t, s.worst, "allocations per walk")
}

// Property: each flag of a TCP header sets its own bit of TCPFlags, the
// one named after it, and nothing else.
func TestFlagsOfEachFlag(t *testing.T) {
	t.Parallel()
	for name, set := range map[string]func(*layers.TCP){
		"FIN": func(t *layers.TCP) { t.FIN = true }, "SYN": func(t *layers.TCP) { t.SYN = true },
		"RST": func(t *layers.TCP) { t.RST = true }, "PSH": func(t *layers.TCP) { t.PSH = true },
		"ACK": func(t *layers.TCP) { t.ACK = true }, "URG": func(t *layers.TCP) { t.URG = true },
		"ECE": func(t *layers.TCP) { t.ECE = true }, "CWR": func(t *layers.TCP) { t.CWR = true },
	} {
		var tcp layers.TCP
		set(&tcp)
		require.Equal(t, name, flagsOf(&tcp).String())
	}
	all := layers.TCP{FIN: true, SYN: true, RST: true, PSH: true, ACK: true, URG: true, ECE: true, CWR: true}
	require.Equal(t, TCPFlags(0xff), flagsOf(&all))
}
