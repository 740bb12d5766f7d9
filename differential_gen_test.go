package reassembly

// Scenario generator for the differential test against upstream
// github.com/google/gopacket/reassembly.
//
// A scenario is a list of steps (packets and flush calls) plus the assembler
// options and the policy of the recording Stream. Everything is a pure
// function of (seed, index): the same pair always yields the same scenario, and
// the Stream policy decisions are keyed by step IDs that survive minimization.

import (
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// diffEpoch is capture time zero of every scenario.
var diffEpoch = time.Date(2024, time.March, 1, 12, 0, 0, 0, time.UTC)

// noTime stands for the zero time.Time in flush thresholds.
const noTime = time.Duration(math.MinInt64)

func atTime(d time.Duration) time.Time {
	if d == noTime {
		return time.Time{}
	}
	return diffEpoch.Add(d)
}

func fmtOffset(d time.Duration) string {
	if d == noTime {
		return "zero"
	}
	return "+" + d.String()
}

type stepKind uint8

const (
	stepPacket stepKind = iota
	stepFlushWithOptions
	stepFlushCloseOlderThan
	stepFlushAll
)

// step is one input to the assembler: a TCP packet, or a flush call.
type step struct {
	ID   int // stable identity: assigned at generation, kept by minimization
	Kind stepKind
	// packet fields
	Conn               int // index into scenario.Conns
	Dir                int // 0: client->server (initiator), 1: server->client
	SYN, ACK, FIN, RST bool
	Seq, Ack           uint32
	Payload            []byte
	TS                 time.Duration // capture time of a packet; "now" of a flush step
	// flush fields (noTime: zero time.Time)
	T, TC time.Duration
}

// connSpec is one TCP connection of a scenario.
type connSpec struct {
	Tuple      int // conns sharing a 4-tuple have the same Tuple (port reuse)
	ClientIP   [4]byte
	ServerIP   [4]byte
	ClientPort uint16
	ServerPort uint16
	ISN        [2]uint32 // per direction
}

type forceMode uint8

const (
	forceNever  forceMode = iota // never touch *start
	forceFirst                   // force start on the first Accept of each half
	forcePct                     // force start on ForcePct% of Accept calls
	forceAlways                  // always set *start
)

type completeMode uint8

const (
	completeTrue completeMode = iota
	completeFalse
	completeMixed // per stream, keyed by hash
)

// streamPolicy decides what the recording Stream does. Every decision is a
// deterministic function of the scenario and the callback's position.
type streamPolicy struct {
	Force       forceMode
	ForcePct    int
	RejectPct   int  // Accept returns false on this share of calls
	KeepFrom    bool // call sg.KeepFrom on some SGs
	KeepFromPct int
	Complete    completeMode
}

type feature uint32

const (
	featNoHandshake   feature = 1 << iota // some connection has no client SYN
	featSYNRetransmit                     // a SYN sent twice in one direction
	featSYNPayload                        // a SYN carrying payload
	featHighISN                           // a seq in the last quarter of the space
	featWrap                              // a half's seq space crosses 2^32
	featLoss                              // packets were dropped
	featRetransmit                        // exact retransmissions
	featOverlap                           // re-segmented (overlapping) retransmissions
	featConflict                          // retransmissions with different bytes
	featReorder                           // reordered packets
	featFIN                               // a FIN
	featFINWithData                       // a FIN with payload
	featRST                               // an RST
	featAckAfterClose                     // a final ACK after both FINs
	featBareAck                           // a packet without payload, SYN, FIN or RST
	featTupleReuse                        // two connections share a 4-tuple
	featFlush                             // FlushWithOptions / FlushCloseOlderThan steps
	featFlushAll                          // a FlushAll step
	featSmallLimits                       // MaxBufferedPages* set
	featForceStart                        // Accept may force start
	featReject                            // Accept may return false
	featKeepFrom                          // SGs may call KeepFrom
	featCompleteFalse                     // ReassemblyComplete may return false
	featLastFeature
)

var featureNames = []string{
	"no-handshake", "syn-retransmit", "syn-payload", "high-isn", "wrap", "loss",
	"retransmit", "overlap", "conflict", "reorder", "fin", "fin-with-data", "rst",
	"ack-after-close", "bare-ack", "tuple-reuse", "flush", "flush-all",
	"small-limits", "force-start", "reject", "keep-from", "complete-false",
}

func (f feature) String() string {
	var names []string
	for i, name := range featureNames {
		if f&(1<<i) != 0 {
			names = append(names, name)
		}
	}
	return strings.Join(names, ",")
}

// scenario is one randomized packet sequence with its settings.
type scenario struct {
	Seed            uint64 // master seed
	Index           int    // sequence number under that seed
	DataSeed        uint64 // payload bytes
	PolicySeed      uint64 // Stream policy decisions
	Conns           []connSpec
	Steps           []step
	MaxPagesPerConn int
	MaxPagesTotal   int
	Policy          streamPolicy
	GenFeatures     feature // what the generator meant to put in
	Clean           bool    // generated without upstream-fault triggers
}

// features returns what the generator put in plus what the steps show now
// (after minimization some of the former may be gone; the latter are exact).
func (s scenario) features() feature {
	f := s.GenFeatures &^ (featFIN | featFINWithData | featRST | featSYNPayload |
		featSYNRetransmit | featBareAck | featHighISN | featWrap | featFlush | featFlushAll)
	type half struct{ conn, dir int }
	high := map[half]bool{}
	low := map[half]bool{}
	syns := map[half]int{}
	for _, st := range s.Steps {
		switch st.Kind {
		case stepFlushWithOptions, stepFlushCloseOlderThan:
			f |= featFlush
			continue
		case stepFlushAll:
			f |= featFlushAll
			continue
		}
		h := half{st.Conn, st.Dir}
		if st.FIN {
			f |= featFIN
			if len(st.Payload) > 0 {
				f |= featFINWithData
			}
		}
		if st.RST {
			f |= featRST
		}
		if st.SYN {
			syns[h]++
			if syns[h] > 1 {
				f |= featSYNRetransmit
			}
			if len(st.Payload) > 0 {
				f |= featSYNPayload
			}
		}
		if !st.SYN && !st.FIN && !st.RST && len(st.Payload) == 0 {
			f |= featBareAck
		}
		end := uint64(st.Seq) + uint64(len(st.Payload)) + 1
		if st.Seq >= 0xC0000000 {
			f |= featHighISN
			high[h] = true
		}
		if st.Seq < 0x40000000 {
			low[h] = true
		}
		if end > 1<<32 {
			f |= featWrap
		}
	}
	for h := range high {
		if low[h] {
			f |= featWrap
		}
	}
	if s.MaxPagesPerConn > 0 || s.MaxPagesTotal > 0 {
		f |= featSmallLimits
	}
	return f
}

func (s scenario) has(f feature) bool { return s.features()&f != 0 }

func (s scenario) summary() string {
	return fmt.Sprintf("%d conns, %d steps, MaxBufferedPagesPerConnection=%d MaxBufferedPagesTotal=%d, policy=%+v, features=[%s]",
		len(s.Conns), len(s.Steps), s.MaxPagesPerConn, s.MaxPagesTotal, s.Policy, s.features())
}

// dump renders the scenario as a readable reproduction.
func (s scenario) dump() string {
	var b strings.Builder
	used := map[int]bool{}
	for _, st := range s.Steps {
		if st.Kind == stepPacket {
			used[st.Conn] = true
		}
	}
	for i, c := range s.Conns {
		if !used[i] {
			continue
		}
		fmt.Fprintf(&b, "  conn %d: %d.%d.%d.%d:%d -> %d.%d.%d.%d:%d  ISN c>s=%#08x s>c=%#08x (tuple %d)\n", i,
			c.ClientIP[0], c.ClientIP[1], c.ClientIP[2], c.ClientIP[3], c.ClientPort,
			c.ServerIP[0], c.ServerIP[1], c.ServerIP[2], c.ServerIP[3], c.ServerPort,
			c.ISN[0], c.ISN[1], c.Tuple)
	}
	for i, st := range s.Steps {
		fmt.Fprintf(&b, "  [%3d] %s\n", i, s.stepString(st))
	}
	return b.String()
}

func (s scenario) stepString(st step) string {
	switch st.Kind {
	case stepFlushWithOptions:
		return fmt.Sprintf("id=%-4d %-12s FlushWithOptions{T: %s, TC: %s}", st.ID, fmtOffset(st.TS), fmtOffset(st.T), fmtOffset(st.TC))
	case stepFlushCloseOlderThan:
		return fmt.Sprintf("id=%-4d %-12s FlushCloseOlderThan(%s)", st.ID, fmtOffset(st.TS), fmtOffset(st.T))
	case stepFlushAll:
		return fmt.Sprintf("id=%-4d %-12s FlushAll()", st.ID, fmtOffset(st.TS))
	}
	dir := "c>s"
	if st.Dir == 1 {
		dir = "s>c"
	}
	flags := ""
	for _, f := range []struct {
		on bool
		c  string
	}{{st.SYN, "S"}, {st.ACK, "A"}, {st.FIN, "F"}, {st.RST, "R"}} {
		if f.on {
			flags += f.c
		} else {
			flags += "."
		}
	}
	rel := int32(st.Seq - s.Conns[st.Conn].ISN[st.Dir] - 1)
	preview := st.Payload
	if len(preview) > 8 {
		preview = preview[:8]
	}
	return fmt.Sprintf("id=%-4d %-12s c%d %s %s seq=%#08x (rel %d) ack=%#08x len=%d %s",
		st.ID, fmtOffset(st.TS), st.Conn, dir, flags, st.Seq, rel, st.Ack, len(st.Payload), hex.EncodeToString(preview))
}

// splitmix64 finalizer, used for stateless deterministic decisions.
func mix64(x uint64) uint64 {
	x += 0x9E3779B97F4A7C15
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9
	x = (x ^ (x >> 27)) * 0x94D049BB133111EB
	return x ^ (x >> 31)
}

func hashOf(vals ...uint64) uint64 {
	h := uint64(0x243F6A8885A308D3)
	for _, v := range vals {
		h = mix64(h ^ v)
	}
	return h
}

// streamBytes returns the canonical bytes of a half-connection's stream at
// offset off, so that every retransmission carries the same bytes. Each
// stream is a PCG sequence seeded by (DataSeed, conn, dir), extended lazily.
func (g *generator) streamBytes(conn, dir, off, n int) []byte {
	k := [2]int{conn, dir}
	buf := g.streams[k]
	if len(buf) < off+n {
		src := g.sources[k]
		if src == nil {
			src = rand.NewPCG(g.scn.DataSeed, uint64(conn)<<1|uint64(dir))
			g.sources[k] = src
		}
		for len(buf) < off+n {
			v := src.Uint64()
			buf = append(buf, byte(v), byte(v>>8), byte(v>>16), byte(v>>24), byte(v>>32), byte(v>>40), byte(v>>48), byte(v>>56))
		}
		g.streams[k] = buf
	}
	return append([]byte(nil), buf[off:off+n]...)
}

type genParams struct {
	lossPct, retxPct, overlapPct, reorderPct, flushPct int
	conflict, edgeISNs                                 bool
	// clean scenarios avoid every trigger of a documented upstream fault
	// (MIGRATION.md), so that upstream and we must agree on them exactly.
	clean bool
}

type generator struct {
	r       *rand.Rand
	scn     *scenario
	p       genParams
	streams map[[2]int][]byte
	sources map[[2]int]*rand.PCG
}

func pick[T any](r *rand.Rand, vals ...T) T { return vals[r.IntN(len(vals))] }

// generateScenario builds scenario number index under seed.
func generateScenario(seed uint64, index int) *scenario {
	r := rand.New(rand.NewPCG(seed, uint64(index)))
	scn := &scenario{Seed: seed, Index: index, DataSeed: r.Uint64(), PolicySeed: r.Uint64()}
	g := &generator{r: r, scn: scn, streams: map[[2]int][]byte{}, sources: map[[2]int]*rand.PCG{}}
	g.p = genParams{
		lossPct:    pick(r, 0, 0, 0, 3, 10),
		retxPct:    pick(r, 0, 0, 5, 15),
		overlapPct: pick(r, 0, 0, 5, 15),
		reorderPct: pick(r, 0, 0, 5, 20),
		flushPct:   pick(r, 0, 0, 2, 8),
		conflict:   r.IntN(100) < 10,
		edgeISNs:   r.IntN(100) < 30,
		clean:      r.IntN(100) < 40,
	}
	if g.p.clean {
		// A lost segment puts the FIN after it out of order, which upstream
		// drops; anything else may vary.
		g.p.edgeISNs = false
		g.p.lossPct = 0
		scn.Clean = true
	}
	if g.p.conflict && g.p.retxPct == 0 && g.p.overlapPct == 0 {
		g.p.overlapPct = 10
	}
	g.pickOptions()
	g.pickPolicy()
	if g.p.clean {
		// A refused SYN leaves its direction unstarted, and KeepFrom under
		// page limits meets upstream's drifting page count.
		scn.Policy.RejectPct = 0
		scn.GenFeatures &^= featReject
		if scn.Policy.KeepFrom {
			scn.MaxPagesPerConn, scn.MaxPagesTotal = 0, 0
			scn.GenFeatures &^= featSmallLimits
		}
	}

	nConns := 1 + r.IntN(4)
	for i := 0; i < nConns; i++ {
		scn.Conns = append(scn.Conns, g.pickConn(i))
	}
	// One merge unit per 4-tuple: a reused tuple's connections follow each other.
	var units [][]step
	unitOf := map[int]int{}
	for i := range scn.Conns {
		steps := g.perturb(g.genConn(i))
		if u, ok := unitOf[scn.Conns[i].Tuple]; ok {
			units[u] = append(units[u], steps...)
			continue
		}
		unitOf[scn.Conns[i].Tuple] = len(units)
		units = append(units, steps)
	}
	g.schedule(g.merge(units))
	return scn
}

func (g *generator) pickOptions() {
	r := g.r
	if r.IntN(100) < 35 {
		g.scn.MaxPagesPerConn = 1 + r.IntN(6)
	}
	if r.IntN(100) < 25 {
		g.scn.MaxPagesTotal = 1 + r.IntN(12)
	}
}

func (g *generator) pickPolicy() {
	r := g.r
	p := &g.scn.Policy
	switch v := r.IntN(100); {
	case v < 40:
		p.Force = forceNever
	case v < 65:
		p.Force = forceFirst
	case v < 85:
		p.Force = forcePct
		p.ForcePct = 10 + r.IntN(50)
	default:
		p.Force = forceAlways
	}
	if p.Force != forceNever {
		g.scn.GenFeatures |= featForceStart
	}
	if r.IntN(100) < 10 {
		p.RejectPct = 2 + r.IntN(9)
		g.scn.GenFeatures |= featReject
	}
	if r.IntN(100) < 15 {
		p.KeepFrom = true
		p.KeepFromPct = 20 + r.IntN(60)
		g.scn.GenFeatures |= featKeepFrom
	}
	switch v := r.IntN(100); {
	case v < 70:
		p.Complete = completeTrue
	case v < 85:
		p.Complete = completeFalse
		g.scn.GenFeatures |= featCompleteFalse
	default:
		p.Complete = completeMixed
		g.scn.GenFeatures |= featCompleteFalse
	}
}

func (g *generator) pickISN() uint32 {
	r := g.r
	if g.p.clean {
		// Far from 2^32 and from Difference's quarter boundaries.
		return 0x40000000 + r.Uint32N(0x60000000)
	}
	if !g.p.edgeISNs {
		switch r.IntN(20) {
		case 0:
			return 0
		case 1:
			return 1
		}
		return r.Uint32()
	}
	switch r.IntN(10) {
	case 0:
		return 0xFFFFFFFF - uint32(r.IntN(32)) // wraps within the first bytes
	case 1:
		return 0xFFFFFFF0
	case 2, 3:
		return 0xFFFFFFFF - uint32(r.IntN(6000)) // wraps somewhere in the data
	case 4:
		return 0xBFFFFFFF - uint32(r.IntN(4000)) // Difference's quarter boundaries
	case 5:
		return 0x3FFFFFFF - uint32(r.IntN(4000))
	default:
		return r.Uint32()
	}
}

func (g *generator) pickConn(i int) connSpec {
	r := g.r
	if i > 0 && r.IntN(100) < 10 && !g.p.clean {
		c := g.scn.Conns[r.IntN(i)]
		c.ISN = [2]uint32{g.pickISN(), g.pickISN()}
		g.scn.GenFeatures |= featTupleReuse
		return c
	}
	return connSpec{
		Tuple:      i,
		ClientIP:   [4]byte{10, 0, 0, byte(1 + i)},
		ServerIP:   [4]byte{10, 0, 1, byte(1 + r.IntN(2))},
		ClientPort: uint16(40000 + 17*i + r.IntN(10)),
		ServerPort: pick(r, uint16(80), uint16(443)),
		ISN:        [2]uint32{g.pickISN(), g.pickISN()},
	}
}

func (g *generator) pickStreamLen() int {
	r := g.r
	switch v := r.IntN(100); {
	case v < 10:
		return 0
	case v < 40:
		return 1 + r.IntN(200)
	case v < 80:
		return 200 + r.IntN(3800)
	default:
		return 4000 + r.IntN(8000)
	}
}

func (g *generator) pickSegLen() int {
	r := g.r
	switch v := r.IntN(100); {
	case v < 35:
		return 1 + r.IntN(200)
	case v < 70:
		return 200 + r.IntN(1260)
	case v < 85:
		return 1460 + r.IntN(440)
	default:
		return 1900 + r.IntN(1101) // spans upstream's 1900-byte pages
	}
}

// genConn produces the packets of connection ci in sending order.
func (g *generator) genConn(ci int) []step {
	r, scn := g.r, g.scn
	c := scn.Conns[ci]
	var out []step
	var sent [2]int     // stream bytes sent per direction
	var finSent [2]bool // FIN consumed a sequence number
	total := [2]int{g.pickStreamLen(), g.pickStreamLen()}
	seqAt := func(d, off int) uint32 { return c.ISN[d] + 1 + uint32(off) }
	nextSeq := func(d int) uint32 {
		s := seqAt(d, sent[d])
		if finSent[d] {
			s++
		}
		return s
	}
	packet := func(d int) step {
		return step{Kind: stepPacket, Conn: ci, Dir: d, ACK: true, Seq: nextSeq(d), Ack: nextSeq(1 - d)}
	}
	bareAck := func(d int) { out = append(out, packet(d)) }

	// Handshake.
	syn := step{Kind: stepPacket, Conn: ci, Dir: 0, SYN: true, Seq: c.ISN[0]}
	synAck := step{Kind: stepPacket, Conn: ci, Dir: 1, SYN: true, ACK: true, Seq: c.ISN[1], Ack: c.ISN[0] + 1}
	var synRetx *step
	hs := r.IntN(100)
	if g.p.clean && hs >= 45 && hs < 92 {
		// Both SYNs seen once: a direction that never starts loses its FIN
		// upstream, and a SYN after the start is reported again.
		hs = 0
	}
	switch v := hs; {
	case v < 45: // full handshake
		out = append(out, syn, synAck)
		bareAck(0)
	case v < 60: // none: picked up mid-stream
		scn.GenFeatures |= featNoHandshake
	case v < 68: // SYN only
		out = append(out, syn)
	case v < 76: // SYN-ACK only
		out = append(out, synAck)
		scn.GenFeatures |= featNoHandshake
	case v < 92: // full handshake, SYN retransmitted later
		out = append(out, syn, synAck)
		bareAck(0)
		cp := syn
		synRetx = &cp
	default: // SYN with payload (TCP Fast Open style), maybe retransmitted with more
		k := 1 + r.IntN(50)
		total[0] = max(total[0], k+r.IntN(60))
		syn.Payload = g.streamBytes(ci, 0, 0, k)
		sent[0] = k
		synAck.Ack = seqAt(0, k)
		out = append(out, syn, synAck)
		bareAck(0)
		if r.IntN(2) == 0 && !g.p.clean {
			cp := syn
			cp.Payload = g.streamBytes(ci, 0, 0, min(total[0], k+r.IntN(20)))
			synRetx = &cp
		}
	}

	// Data rounds.
	turn := 0
	for sent[0] < total[0] || sent[1] < total[1] {
		d := turn
		if sent[d] >= total[d] || (sent[1-d] < total[1-d] && r.IntN(100) < 25) {
			d = 1 - d
		}
		for k := 1 + r.IntN(4); k > 0 && sent[d] < total[d]; k-- {
			n := min(g.pickSegLen(), total[d]-sent[d])
			p := packet(d)
			p.ACK = r.IntN(100) < 95
			p.Payload = g.streamBytes(ci, d, sent[d], n)
			out = append(out, p)
			sent[d] += n
		}
		if r.IntN(100) < 40 {
			bareAck(1 - d)
		}
		if synRetx != nil && r.IntN(3) == 0 {
			out = append(out, *synRetx)
			synRetx = nil
		}
		turn = 1 - d
	}
	if synRetx != nil {
		out = append(out, *synRetx)
	}

	// Closing.
	fin := func(d int) {
		// Piggyback the FIN on the last data segment of d when it is the last packet.
		if len(out) > 0 && r.IntN(100) < 35 {
			last := &out[len(out)-1]
			if last.Dir == d && len(last.Payload) > 0 && !last.SYN && !last.RST {
				last.FIN = true
				finSent[d] = true
				return
			}
		}
		p := packet(d)
		p.FIN = true
		out = append(out, p)
		finSent[d] = true
	}
	rst := func(d int) {
		p := packet(d)
		p.ACK = r.IntN(2) == 0
		p.RST = true
		if r.IntN(100) < 15 { // stale RST at the start of the stream
			p.Seq = seqAt(d, 0)
		}
		out = append(out, p)
	}
	closing := r.IntN(100)
	if g.p.clean && closing >= 72 {
		closing = r.IntN(72) // no RST
	}
	switch v := closing; {
	case v < 20: // no close: left to flushes
	case v < 60: // FIN both ways
		first := r.IntN(2)
		fin(first)
		if r.IntN(2) == 0 {
			bareAck(1 - first)
		}
		fin(1 - first)
		if r.IntN(100) < 70 && !g.p.clean {
			bareAck(first)
			scn.GenFeatures |= featAckAfterClose
		}
	case v < 72: // FIN one way
		fin(r.IntN(2))
	case v < 92: // RST, sometimes after a FIN
		if r.IntN(100) < 30 {
			fin(r.IntN(2))
		}
		rst(r.IntN(2))
	default: // FIN both ways, then RST
		first := r.IntN(2)
		fin(first)
		fin(1 - first)
		rst(r.IntN(2))
	}
	return out
}

// perturb applies loss, retransmission, overlapping re-segmentation and
// reordering to one connection's packets.
func (g *generator) perturb(in []step) []step {
	r, scn, p := g.r, g.scn, g.p
	inserts := make([][]step, len(in))
	// Clean scenarios keep copies before the connection's first FIN or
	// RST: a copy after the close starts a phantom connection, where the
	// documented differences come back.
	closeAt := len(in)
	if p.clean {
		for i, st := range in {
			if st.FIN || st.RST {
				closeAt = i
				break
			}
		}
	}
	schedule := func(i int, st step) {
		at := min(i+r.IntN(8), len(in)-1)
		if i < closeAt {
			at = min(at, closeAt-1)
		}
		inserts[at] = append(inserts[at], st)
	}
	conflict := func(st *step) {
		if !p.conflict || len(st.Payload) == 0 || r.IntN(2) == 0 {
			return
		}
		st.Payload = append([]byte(nil), st.Payload...)
		for k := 1 + r.IntN(3); k > 0; k-- {
			st.Payload[r.IntN(len(st.Payload))] ^= 0xFF
		}
		scn.GenFeatures |= featConflict
	}
	// In clean scenarios only data segments are lost, repeated or moved:
	// doing it to a SYN, FIN, RST or bare ACK reaches documented faults.
	touchable := func(st step) bool {
		return !p.clean || (len(st.Payload) > 0 && !st.SYN && !st.FIN && !st.RST)
	}
	for i, st := range in {
		if r.IntN(100) < p.retxPct && touchable(st) {
			cp := st
			conflict(&cp)
			schedule(i, cp)
			scn.GenFeatures |= featRetransmit
		}
		if len(st.Payload) > 0 && !st.SYN && r.IntN(100) < p.overlapPct && touchable(st) {
			c := scn.Conns[st.Conn]
			off := int(st.Seq - c.ISN[st.Dir] - 1)
			a := max(0, off-r.IntN(1500))
			b := min(off+len(st.Payload)+r.IntN(1500), a+3000)
			// never past the data this direction has sent by the end of in
			limit := 0
			for _, o := range in {
				if o.Conn == st.Conn && o.Dir == st.Dir && len(o.Payload) > 0 {
					limit = max(limit, int(o.Seq-c.ISN[st.Dir]-1)+len(o.Payload))
				}
			}
			b = min(b, limit)
			if b > a {
				ov := st
				ov.SYN, ov.RST, ov.FIN = false, false, st.FIN && b == off+len(st.Payload)
				ov.Seq = c.ISN[st.Dir] + 1 + uint32(a)
				ov.Payload = g.streamBytes(st.Conn, st.Dir, a, b-a)
				conflict(&ov)
				schedule(i, ov)
				scn.GenFeatures |= featOverlap
			}
		}
	}
	var out []step
	for i, st := range in {
		if r.IntN(100) < p.lossPct && touchable(st) {
			scn.GenFeatures |= featLoss
		} else {
			out = append(out, st)
		}
		out = append(out, inserts[i]...)
	}
	for i := 0; i+1 < len(out); i++ {
		if r.IntN(100) < p.reorderPct {
			w := min(2+r.IntN(3), len(out)-i)
			win := out[i : i+w]
			if p.clean && slices.ContainsFunc(win, func(st step) bool { return !touchable(st) && len(st.Payload)+kitBtoi(st.SYN || st.FIN || st.RST) > 0 }) {
				continue // a FIN or SYN out of order is a documented difference
			}
			r.Shuffle(len(win), func(a, b int) { win[a], win[b] = win[b], win[a] })
			i += w - 1
			scn.GenFeatures |= featReorder
		}
	}
	return out
}

// merge interleaves the units randomly, keeping each unit's order.
func (g *generator) merge(units [][]step) []step {
	var out []step
	for {
		remaining := 0
		for _, u := range units {
			remaining += len(u)
		}
		if remaining == 0 {
			return out
		}
		pos := g.r.IntN(remaining)
		for i := range units {
			if pos < len(units[i]) {
				k := min(1+g.r.IntN(3), len(units[i]))
				out = append(out, units[i][:k]...)
				units[i] = units[i][k:]
				break
			}
			pos -= len(units[i])
		}
	}
}

// schedule assigns capture timestamps and step IDs, and interleaves flushes.
func (g *generator) schedule(packets []step) {
	r, scn := g.r, g.scn
	now := time.Duration(r.IntN(1000)) * time.Millisecond
	lag := func() time.Duration {
		return pick(r, 0, time.Millisecond, 20*time.Millisecond, 200*time.Millisecond,
			time.Second, 5*time.Second, -time.Millisecond)
	}
	add := func(st step) {
		st.ID = len(scn.Steps)
		scn.Steps = append(scn.Steps, st)
	}
	for _, p := range packets {
		switch v := r.IntN(100); {
		case v < 5:
		case v < 75:
			now += time.Duration(r.IntN(20000)) * time.Microsecond
		case v < 95:
			now += 20*time.Millisecond + time.Duration(r.IntN(480))*time.Millisecond
		default:
			now += time.Second + time.Duration(r.IntN(9000))*time.Millisecond
		}
		p.TS = now
		add(p)
		flush := r.IntN(100) < g.p.flushPct
		if flush && g.p.clean {
			// Closing by flush lets the next bare ACK re-create the
			// connection upstream (rows 21/23): clean scenarios only push.
			add(step{Kind: stepFlushWithOptions, TS: now, T: now - lag(), TC: noTime})
		} else if flush {
			f := step{TS: now, T: now - lag(), TC: now - lag()}
			if r.IntN(2) == 0 {
				f.Kind = stepFlushCloseOlderThan
				f.TC = 0
			} else {
				f.Kind = stepFlushWithOptions
				if r.IntN(100) < 30 {
					f.TC = noTime
				}
				if r.IntN(100) < 10 {
					f.T = noTime
				}
			}
			add(f)
		}
	}
	switch v := r.IntN(100); {
	case v < 85:
		add(step{Kind: stepFlushAll, TS: now})
	case v < 93:
		add(step{Kind: stepFlushCloseOlderThan, TS: now, T: now + time.Hour})
	}
}
