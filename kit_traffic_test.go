package reassembly

// The kit's traffic half. Packet builders: segment.build serializes a
// segment between any two addresses (IPv4 or IPv6, right checksum) and
// decodes it, as a capture loop hands it over; wireTCP is its wire form.
// The flood kit (atk*): what the attack tests (attack_*_test.go), their
// benchmarks and the pressure tests build floods of millions of packets
// from: packets made in one reused buffer, Streams that check bytes as
// they pass and keep none, the heap meter, the runners of the three
// implementations (newAtkImpl) and the benchmarks' figures (atkReport).
//
// Sizes: the tests run the full size where it takes a few seconds, and
// divide the counts by atkScale() otherwise: 10 under -short, 20 under
// -race (whose per-packet cost is about 10 times higher), so that each test
// stays within a few seconds on two cores. The benchmarks never scale.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"net"
	"net/netip"
	"runtime"
	"runtime/debug"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	upstream "github.com/google/gopacket/reassembly"
	"github.com/stretchr/testify/require"

	"github.com/safepacket/reassembly/internal/stamp"
)

// ---------------------------------------------------------------------------
// Packets

// testPacket is one generated packet, decoded the way a capture loop
// decodes: TransportFlow works on it, which upstream needs.
type testPacket struct {
	netFlow gopacket.Flow
	tcp     *layers.TCP
	ci      gopacket.CaptureInfo
}

// segment describes a TCP segment to build.
type segment struct {
	client, server     netip.AddrPort
	fromServer         bool
	seq, ack           uint32
	syn, fin, rst, psh bool
	hasAck             bool
	payload            []byte
	ts                 time.Time
}

// build serializes and decodes a segment so the TCP layer is what a real
// decoder would hand over.
func (s segment) build() testPacket {
	src, dst := s.client, s.server
	if s.fromServer {
		src, dst = dst, src
	}
	tcp := &layers.TCP{
		SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()),
		Seq: s.seq, Ack: s.ack, SYN: s.syn, FIN: s.fin, RST: s.rst, PSH: s.psh, ACK: s.hasAck,
		Window: 65535,
	}
	raw := wireTCP(tcp, src.Addr().AsSlice(), dst.Addr().AsSlice(), s.payload)
	decoded := &layers.TCP{}
	if err := decoded.DecodeFromBytes(raw, gopacket.NilDecodeFeedback); err != nil {
		panic(err)
	}
	ipLen := 20
	if src.Addr().Is6() {
		ipLen = 40
	}
	return testPacket{
		netFlow: atkFlow(src.Addr(), dst.Addr()),
		tcp:     decoded,
		// The lengths a capture of the IP packet would give.
		ci: gopacket.CaptureInfo{Timestamp: s.ts, CaptureLength: ipLen + len(raw), Length: ipLen + len(raw)},
	}
}

// flags are the TCPFlags s sets, found without flagsOf: what the parts of
// its bytes must show.
func (s segment) flags() TCPFlags {
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

// wireTCP returns t with payload as it is on the wire between addresses
// src and dst (both IPv4, or both IPv6): serialized by gopacket, the
// oracle of the checksum, with the data offset filled in and the checksum
// computed over the pseudo-header.
func wireTCP(t *layers.TCP, src, dst net.IP, payload []byte) []byte {
	var ip gopacket.NetworkLayer = &layers.IPv6{Version: 6, NextHeader: layers.IPProtocolTCP, SrcIP: src, DstIP: dst}
	if src.To4() != nil {
		ip = &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: src, DstIP: dst}
	}
	if err := t.SetNetworkLayerForChecksum(ip); err != nil {
		panic(err)
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{ComputeChecksums: true, FixLengths: true}
	if err := gopacket.SerializeLayers(buf, opts, t, gopacket.Payload(payload)); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// trPacket is p as the trace kit's runners (kit_streams_test.go) take it.
func (p testPacket) trPacket() trPacket {
	ctx := trCtx(p.ci)
	return trPacket{flow: p.netFlow, tcp: p.tcp, ctx: &ctx}
}

// kitDirOf is the index of an assembler's direction label: 0 for
// TCPDirClientToServer, 1 for TCPDirServerToClient.
func kitDirOf(d TCPFlowDirection) int {
	if d == TCPDirServerToClient {
		return 1
	}
	return 0
}

// kitFirstDiff is the index of the first byte where a and b differ, or the
// shorter one's length.
func kitFirstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// ---------------------------------------------------------------------------
// Floods

// atkRace tells whether the test binary was built with -race.
var atkRace = func() bool {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" {
				return s.Value == "true"
			}
		}
	}
	return false
}()

// atkScale is the factor the tests divide their counts by.
func atkScale() int {
	switch {
	case atkRace:
		return 20
	case testing.Short():
		return 10
	}
	return 1
}

// TCP header flags as on the wire.
const (
	atkFIN = 1 << iota
	atkSYN
	atkRST
	atkPSH
	atkACK
)

// atkGen builds packets in one reused buffer and decodes them into one
// reused TCP layer, so that generating millions of packets allocates
// nothing and the heap measured is the assembler's. Each packet is valid
// until the next is made; assemblers copy what they keep.
type atkGen struct {
	buf []byte
	tcp layers.TCP
	ctx kitCtx
}

func newAtkGen() *atkGen { return &atkGen{buf: make([]byte, 0, 20+4096)} }

// packet makes a packet from src to dst. The payload is written by fill
// (nil: none) into a buffer of n bytes.
func (g *atkGen) packet(src, dst netip.AddrPort, seq, ack uint32, flags byte, n int, fill func([]byte), ts time.Time) (gopacket.Flow, *layers.TCP, *kitCtx) {
	b := g.buf[:20+n]
	binary.BigEndian.PutUint16(b[0:], src.Port())
	binary.BigEndian.PutUint16(b[2:], dst.Port())
	binary.BigEndian.PutUint32(b[4:], seq)
	binary.BigEndian.PutUint32(b[8:], ack)
	b[12] = 5 << 4
	b[13] = flags
	binary.BigEndian.PutUint16(b[14:], 65535)
	b[16], b[17], b[18], b[19] = 0, 0, 0, 0
	if fill != nil {
		fill(b[20:])
	}
	if err := g.tcp.DecodeFromBytes(b, gopacket.NilDecodeFeedback); err != nil {
		panic(err)
	}
	g.ctx.ci = gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(b), Length: len(b)}
	return atkFlow(src.Addr(), dst.Addr()), &g.tcp, &g.ctx
}

func atkFlow(src, dst netip.Addr) gopacket.Flow {
	if src.Is4() {
		a, b := src.As4(), dst.As4()
		return gopacket.NewFlow(layers.EndpointIPv4, a[:], b[:])
	}
	a, b := src.As16(), dst.As16()
	return gopacket.NewFlow(layers.EndpointIPv6, a[:], b[:])
}

// atkByte is the byte at stream offset off of direction dir of checked
// connection id.
func atkByte(id uint32, dir int, off int64) byte {
	x := (uint64(off) + uint64(id)<<40 + uint64(dir)<<39) * 0x9E3779B97F4A7C15
	return byte(x >> 56)
}

func atkFill(id uint32, dir int, off int64) func([]byte) {
	return func(b []byte) {
		for i := range b {
			b[i] = atkByte(id, dir, off+int64(i))
		}
	}
}

// atkHeap measures the heap during a run, from a GC at its start: sample
// takes the peak of HeapInuse (garbage not yet collected included, as a
// process would see it), live the peak of HeapAlloc right after a GC (what
// the assembler holds).
type atkHeap struct {
	ms                  runtime.MemStats
	baseInuse           uint64
	baseAlloc           uint64
	peakInuse, peakLive uint64
}

func (h *atkHeap) start() {
	runtime.GC()
	runtime.ReadMemStats(&h.ms)
	h.baseInuse, h.baseAlloc = h.ms.HeapInuse, h.ms.HeapAlloc
	h.peakInuse, h.peakLive = 0, 0
}

func (h *atkHeap) sample() {
	runtime.ReadMemStats(&h.ms)
	if h.ms.HeapInuse > h.baseInuse {
		h.peakInuse = max(h.peakInuse, h.ms.HeapInuse-h.baseInuse)
	}
}

func (h *atkHeap) live() {
	runtime.GC()
	runtime.ReadMemStats(&h.ms)
	if h.ms.HeapAlloc > h.baseAlloc {
		h.peakLive = max(h.peakLive, h.ms.HeapAlloc-h.baseAlloc)
	}
	if h.ms.HeapInuse > h.baseInuse {
		h.peakInuse = max(h.peakInuse, h.ms.HeapInuse-h.baseInuse)
	}
}

// tick samples the heap in a benchmark: after a GC, with b's timer
// stopped meanwhile, when full is set.
func (h *atkHeap) tick(b *testing.B, full bool) {
	if !full {
		h.sample()
		return
	}
	b.StopTimer()
	h.live()
	b.StartTimer()
}

// atkChecked is a Stream that checks every byte against atkByte, following
// Skip from the start its SYN gave.
type atkChecked struct {
	f         *atkFactory
	id        uint32
	next      [2]int64
	ended     [2]bool
	bytes     [2]int64 // bytes delivered from a known start
	gaps      int
	unstarted int // deliveries of an unknown start (reopen factories only)
	completes int
}

func (s *atkChecked) Accept(*layers.TCP, gopacket.CaptureInfo, TCPFlowDirection, Sequence, *bool, AssemblerContext) bool {
	return true
}

func (s *atkChecked) ReassembledSG(sg ScatterGather, _ AssemblerContext) {
	f := s.f
	if f.shared {
		f.mu.Lock()
		defer f.mu.Unlock()
	}
	dir, _, end, skip := sg.Info()
	d := kitDirOf(dir)
	switch {
	case s.completes > 0:
		f.failf("checked %d: delivery after ReassemblyComplete", s.id)
	case s.ended[d]:
		f.failf("checked %d dir %d: delivery after the end", s.id, d)
	case skip < 0 && !f.reopen:
		f.failf("checked %d dir %d: skip %d on a connection that began with a SYN", s.id, d, skip)
	}
	if skip < 0 {
		s.unstarted++
		return
	}
	if skip > 0 {
		s.gaps++
	}
	off := s.next[d] + int64(skip)
	n, _ := sg.Lengths()
	if !f.unchecked {
		for i, b := range sg.Fetch(n) {
			if want := atkByte(s.id, d, off+int64(i)); b != want {
				f.failf("checked %d dir %d: byte at offset %d is %#x, want %#x", s.id, d, off+int64(i), b, want)
				break
			}
		}
	}
	s.next[d] = off + int64(n)
	s.bytes[d] += int64(n)
	f.bytes += int64(n)
	s.ended[d] = s.ended[d] || end
}

func (s *atkChecked) ReassemblyComplete(AssemblerContext) bool {
	if s.f.shared {
		s.f.mu.Lock()
		defer s.f.mu.Unlock()
	}
	s.f.completes++
	if s.completes++; s.completes > 1 {
		s.f.failf("checked %d: ReassemblyComplete %d times", s.id, s.completes)
	}
	return true
}

// atkCounts is what the flood sinks count, all connections together.
type atkCounts struct {
	news, completes, deliveries, bytes, skips int64
}

// delivered counts a delivery of n bytes after a skip.
func (c *atkCounts) delivered(n, skip int) {
	c.deliveries++
	c.bytes += int64(n)
	if skip > 0 {
		c.skips++
	}
}

// atkSink is the one Stream of every unchecked (flood) connection: it
// counts, under mu when its factory is shared.
type atkSink struct {
	mu *sync.Mutex
	atkCounts
}

func (s *atkSink) Accept(*layers.TCP, gopacket.CaptureInfo, TCPFlowDirection, Sequence, *bool, AssemblerContext) bool {
	return true
}

func (s *atkSink) ReassembledSG(sg ScatterGather, _ AssemblerContext) {
	if s.mu != nil {
		s.mu.Lock()
		defer s.mu.Unlock()
	}
	_, _, _, skip := sg.Info()
	n, _ := sg.Lengths()
	s.delivered(n, skip)
}

func (s *atkSink) ReassemblyComplete(AssemblerContext) bool {
	if s.mu != nil {
		s.mu.Lock()
		defer s.mu.Unlock()
	}
	s.completes++
	return true
}

// atkUpSink is upstream's Stream for every connection: it counts, and
// keeps the CRC of the client's bytes when doCRC is set.
type atkUpSink struct {
	atkCounts
	crc   uint32
	doCRC bool
}

func (s *atkUpSink) Accept(*layers.TCP, gopacket.CaptureInfo, upstream.TCPFlowDirection, upstream.Sequence, *bool, upstream.AssemblerContext) bool {
	return true
}

func (s *atkUpSink) ReassembledSG(sg upstream.ScatterGather, _ upstream.AssemblerContext) {
	dir, _, _, skip := sg.Info()
	n, _ := sg.Lengths()
	s.delivered(n, skip)
	if s.doCRC && dir == upstream.TCPDirClientToServer {
		s.crc = crc32.Update(s.crc, crc32.IEEETable, sg.Fetch(n))
	}
}

func (s *atkUpSink) ReassemblyComplete(upstream.AssemblerContext) bool {
	s.completes++
	return true
}

type atkUpFactory struct{ s *atkUpSink }

func (f atkUpFactory) New(gopacket.Flow, gopacket.Flow, *layers.TCP, upstream.AssemblerContext) upstream.Stream {
	f.s.news++
	return f.s
}

// atkFactory makes a checking Stream for connections with an endpoint in
// 10.0.0.0/8 (their id is the low 24 bits of that address) and hands the
// shared sink to the others.
type atkFactory struct {
	sinkAll bool // the benchmarks' setting: no connection is checked
	// shared: the Streams are called from several goroutines (assemblers
	// sharing a pool), so every callback takes mu.
	shared bool
	// reopen: a checked connection may be evicted and picked up again
	// mid-stream: a second Stream replaces the first in checked, and a
	// delivery of an unknown start (Skip -1) is counted, not a failure.
	reopen bool
	// unchecked: the bytes are counted, not checked (nor need they be
	// atkByte's).
	unchecked bool

	mu              sync.Mutex
	checked         map[uint32]*atkChecked // by id: the last Stream made for it
	made, completes int                    // checked Streams made and completed
	bytes           int64                  // bytes checked Streams got from a known start
	sink            atkSink
	err             error
}

func newAtkFactory() *atkFactory { return &atkFactory{checked: map[uint32]*atkChecked{}} }

// newSharedAtkFactory is an atkFactory for a pool shared by several
// assemblers; unless check is set, it lets connections reopen and does
// not check their bytes.
func newSharedAtkFactory(check bool) *atkFactory {
	f := newAtkFactory()
	f.shared, f.reopen, f.unchecked = true, !check, !check
	f.sink.mu = &f.mu
	return f
}

// failf records the first failure; with shared, mu must be held.
func (f *atkFactory) failf(format string, args ...any) {
	if f.err == nil {
		f.err = fmt.Errorf(format, args...)
	}
}

func (f *atkFactory) New(netFlow, _ gopacket.Flow, _ *layers.TCP, _ AssemblerContext) Stream {
	if f.shared {
		f.mu.Lock()
		defer f.mu.Unlock()
	}
	for _, ep := range [2]gopacket.Endpoint{netFlow.Src(), netFlow.Dst()} {
		if a := ep.Raw(); len(a) == 4 && a[0] == 10 && !f.sinkAll {
			id := uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
			if f.checked[id] != nil && !f.reopen {
				f.failf("checked %d: a second Stream", id)
			}
			s := &atkChecked{f: f, id: id}
			f.checked[id] = s
			f.made++
			return s
		}
	}
	f.sink.news++
	return &f.sink
}

// verifySent checks that every checked connection base+i got exactly the
// bytes sent[i] each way from a known start, without a hole, and
// completed once; one that sent nothing and has no Stream (its SYN was
// not sent yet) is passed over.
func (f *atkFactory) verifySent(t testing.TB, sent [][2]int64, base int) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	require.NoError(t, f.err)
	for i, want := range sent {
		id := uint32(base + i)
		s := f.checked[id]
		if s == nil && want == [2]int64{} {
			continue
		}
		require.NotNil(t, s, "checked connection %d has no Stream", id)
		require.Equal(t, want, s.bytes, "checked connection %d bytes", id)
		require.Zero(t, s.gaps+s.unstarted, "checked connection %d holes", id)
		require.Equal(t, 1, s.completes, "checked connection %d completions", id)
	}
}

// atkChecked addresses: client 10.x.y.z:50000 (id x.y.z), server
// 192.0.2.1:80. Flood clients come from 100.64.0.0/10.
var atkServer = netip.MustParseAddrPort("192.0.2.1:80")

func atkClient(id uint32) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(id >> 16), byte(id >> 8), byte(id)}), 50000)
}

func atkFloodClient(i int) netip.AddrPort {
	a := 100<<24 | 64<<16 | uint32(i)
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}), uint16(1024+i%60000))
}

// atkISN is the initial sequence number of a connection's direction.
func atkISN(id uint32, dir int) uint32 {
	return uint32((uint64(id)*2+uint64(dir)+1)*0x9E3779B97F4A7C15>>32) | 0xF0000000 // close to the wrap
}

// atkEstablished drives n checked connections: handshake, in-order data in
// both directions, FINs.
type atkEstablished struct {
	g   *atkGen
	n   int
	off [][2]int64
	ts  time.Time
}

func newAtkEstablished(g *atkGen, n int, ts time.Time) *atkEstablished {
	return &atkEstablished{g: g, n: n, off: make([][2]int64, n), ts: ts}
}

func (e *atkEstablished) handshake(f kitFeed, id uint32) error {
	c := atkClient(id)
	ci, si := atkISN(id, 0), atkISN(id, 1)
	if err := f(e.g.packet(c, atkServer, ci, 0, atkSYN, 0, nil, e.ts)); err != nil {
		return err
	}
	if err := f(e.g.packet(atkServer, c, si, ci+1, atkSYN|atkACK, 0, nil, e.ts)); err != nil {
		return err
	}
	return f(e.g.packet(c, atkServer, ci+1, si+1, atkACK, 0, nil, e.ts))
}

// data sends n bytes of direction dir of connection id, in order.
func (e *atkEstablished) data(f kitFeed, id uint32, dir, n int, flags byte) error {
	c := atkClient(id)
	src, dst := c, atkServer
	if dir == 1 {
		src, dst = dst, src
	}
	off := e.off[id][dir]
	seq := atkISN(id, dir) + 1 + uint32(off)
	ack := atkISN(id, 1-dir) + 1 + uint32(e.off[id][1-dir])
	e.off[id][dir] += int64(n)
	return f(e.g.packet(src, dst, seq, ack, flags|atkACK, n, atkFill(id, dir, off), e.ts))
}

func (e *atkEstablished) fin(f kitFeed, id uint32) error {
	for dir := 0; dir < 2; dir++ {
		if err := e.data(f, id, dir, 0, atkFIN); err != nil {
			return err
		}
	}
	return nil
}

// verify checks that every checked connection delivered exactly what was
// sent, without a hole, and completed once.
func (e *atkEstablished) verify(t testing.TB, f *atkFactory) {
	t.Helper()
	require.Len(t, f.checked, e.n, "checked connections with a Stream")
	f.verifySent(t, e.off, 0)
}

// atkImpl is one implementation set up for a scenario.
type atkImpl struct {
	feeder   kitFeed
	flushAll func()
	live     func() int64 // connections held, -1 when unknown
	// Our faces only (nil for upstream):
	safe     *SafeAssembler // the Safe face's, nil for the others
	ours     *Assembler     // the drop-in face's, nil for the others
	assemble func(gopacket.Flow, *layers.TCP, AssemblerContext) error
	stats    func() AssemblerStats
	table    *connTable
}

// newAtkImpl makes impl ("safe", "ours" or "upstream") with the Safe face's
// options opts and connection cap maxConns; ours and upstream get the
// page limits of opts when limited is set, else none (their default). Our
// faces' Streams come from f (nil: a sink for every connection), upstream's
// are a sink.
func newAtkImpl(impl string, f StreamFactory, opts SafeAssemblerOptions, maxConns int, limited bool) atkImpl {
	if f == nil {
		f = &atkFactory{sinkAll: true}
	}
	switch impl {
	case "safe":
		pool := NewSafeStreamPool(f, maxConns)
		a, err := NewSafeAssembler(pool, opts)
		if err != nil {
			panic(err)
		}
		return atkImpl{safe: a, feeder: kitFeedSafe(a), flushAll: func() { a.Close(); pool.Close() },
			live: func() int64 { return pool.Stats().ActiveConnections }, assemble: a.AssembleWithContext, stats: a.Stats, table: &pool.t}
	case "ours":
		pool := NewStreamPool(f)
		a := NewAssembler(pool)
		if limited {
			a.MaxBufferedPagesTotal = opts.MaxBufferedPagesTotal
			a.MaxBufferedPagesPerConnection = opts.MaxBufferedPagesPerConnection
		}
		assemble := func(fl gopacket.Flow, tcp *layers.TCP, ac AssemblerContext) error {
			a.AssembleWithContext(fl, tcp, ac)
			return nil
		}
		return atkImpl{ours: a, feeder: kitFeedDropIn(a), flushAll: func() { a.FlushAll() },
			live: func() int64 { return int64(pool.t.size()) }, assemble: assemble,
			stats: func() AssemblerStats { return a.eng.ctr.snapshot(&pool.t.budget) }, table: &pool.t}
	case "upstream":
		a := upstream.NewAssembler(upstream.NewStreamPool(atkUpFactory{&atkUpSink{}}))
		if limited {
			a.MaxBufferedPagesTotal = opts.MaxBufferedPagesTotal
			a.MaxBufferedPagesPerConnection = opts.MaxBufferedPagesPerConnection
		}
		return atkImpl{feeder: kitFeedUp(a), flushAll: func() { a.FlushAll() }, live: func() int64 { return -1 }}
	}
	panic("unknown impl " + impl)
}

// atkPattern is the byte generator of long streams: the byte at offset o
// is atkPattern[o % len]; the length is prime, so that the pattern never
// lines up with segment or sequence-space boundaries.
var atkPattern = func() []byte {
	const n = atkPatternLen
	p := make([]byte, 2*n)
	for i := 0; i < n; i++ {
		x := uint64(i) * 0x9E3779B97F4A7C15
		p[i] = byte(x >> 56)
	}
	copy(p[n:], p[:n])
	return p
}()

const atkPatternLen = 65521

func atkPatternAt(off int64, b []byte) {
	for len(b) > 0 {
		i := int(off % atkPatternLen)
		n := copy(b, atkPattern[i:i+min(len(b), atkPatternLen)])
		b, off = b[n:], off+int64(n)
	}
}

// atkLongStream sends total bytes client to server after a handshake, in
// seg-byte segments, each pair swapped when swap is set, then FINs. It
// returns the CRC-32 of the bytes sent.
func atkLongStream(f kitFeed, isn uint32, total int64, seg int, swap bool) uint32 {
	g := newAtkGen()
	ts := time.Unix(1_700_000_000, 0)
	c := atkClient(0)
	srvISN := uint32(1)
	_ = f(g.packet(c, atkServer, isn, 0, atkSYN, 0, nil, ts))
	_ = f(g.packet(atkServer, c, srvISN, isn+1, atkSYN|atkACK, 0, nil, ts))
	var sum uint32
	send := func(off int64, n int) {
		_ = f(g.packet(c, atkServer, isn+1+uint32(off), srvISN+1, atkACK,
			n, func(b []byte) { atkPatternAt(off, b) }, ts))
	}
	buf := make([]byte, 2*seg)
	for off := int64(0); off < total; {
		n := int(min(int64(seg), total-off))
		n2 := int(min(int64(seg), total-off-int64(n)))
		if swap && n2 > 0 {
			send(off+int64(n), n2)
			send(off, n)
		} else {
			send(off, n)
			n2 = 0
		}
		atkPatternAt(off, buf[:n+n2])
		sum = crc32.Update(sum, crc32.IEEETable, buf[:n+n2])
		off += int64(n + n2)
		ts = ts.Add(time.Microsecond)
	}
	_ = f(g.packet(c, atkServer, isn+1+uint32(total), srvISN+1, atkACK|atkFIN, 0, nil, ts))
	_ = f(g.packet(atkServer, c, srvISN+1, isn+2+uint32(total), atkACK|atkFIN, 0, nil, ts))
	return sum
}

// atkCRCStream checks a client-to-server stream as it arrives against the
// bytes pattern writes (nil: atkPatternAt), and keeps its CRC.
type atkCRCStream struct {
	pattern func(off int64, b []byte)
	// check, when set, is asked about every delivery, whose data starts at
	// stream offset off; its first error fails verify.
	check     func(sg ScatterGather, off int64, data []byte) error
	err       error
	afterEnd  int // deliveries after the end
	off       int64
	crc       uint32
	gaps      int
	ends      int
	bad       int64 // offset of the first wrong byte + 1
	completes int
	scratch   []byte
}

type atkCRCFactory struct{ s *atkCRCStream }

func (f atkCRCFactory) New(gopacket.Flow, gopacket.Flow, *layers.TCP, AssemblerContext) Stream {
	return f.s
}

func (s *atkCRCStream) Accept(*layers.TCP, gopacket.CaptureInfo, TCPFlowDirection, Sequence, *bool, AssemblerContext) bool {
	return true
}

func (s *atkCRCStream) ReassembledSG(sg ScatterGather, _ AssemblerContext) {
	dir, _, end, skip := sg.Info()
	if dir != TCPDirClientToServer {
		return
	}
	if skip != 0 {
		s.gaps++
	}
	if s.ends > 0 {
		s.afterEnd++
	}
	n, _ := sg.Lengths()
	data := sg.Fetch(n)
	if s.check != nil && s.err == nil {
		s.err = s.check(sg, s.off, data)
	}
	if s.bad == 0 {
		if cap(s.scratch) < n {
			s.scratch = make([]byte, n)
		}
		want := s.scratch[:n]
		if s.pattern != nil {
			s.pattern(s.off, want)
		} else {
			atkPatternAt(s.off, want)
		}
		if string(want) != string(data) {
			i := kitFirstDiff(want, data)
			s.bad = s.off + int64(i) + 1
		}
	}
	s.crc = crc32.Update(s.crc, crc32.IEEETable, data)
	s.off += int64(n)
	if end {
		s.ends++
	}
}

func (s *atkCRCStream) ReassemblyComplete(AssemblerContext) bool {
	s.completes++
	return true
}

func (s *atkCRCStream) verify(t testing.TB, total int64, crc uint32) {
	t.Helper()
	require.NoError(t, s.err)
	require.Zero(t, s.bad, "1 + the offset of the first byte that differs from the pattern's")
	require.True(t, s.off == total && s.gaps == 0 && s.ends == 1 && s.afterEnd == 0 && s.completes == 1 && s.crc == crc,
		"delivered %d of %d bytes, %d holes, %d ends, %d deliveries after the end, %d completions, crc %#x want %#x",
		s.off, total, s.gaps, s.ends, s.afterEnd, s.completes, s.crc, crc)
}

// atkFigures are one run's measurements.
type atkFigures struct {
	peakMB, liveMB, nsPkt float64
}

// atkReport reports a run's figures and keeps them for the comparison.
func atkReport(b *testing.B, got map[string]atkFigures, key string, heap *atkHeap, pkts int64) {
	f := atkFigures{
		peakMB: float64(heap.peakInuse) / 1e6,
		liveMB: float64(heap.peakLive) / 1e6,
		nsPkt:  float64(b.Elapsed().Nanoseconds()) / float64(int64(b.N)*pkts),
	}
	got[key] = f
	b.ReportMetric(f.peakMB, "peak-heap-MB")
	b.ReportMetric(f.liveMB, "live-heap-MB")
	b.ReportMetric(f.nsPkt, "ns/pkt")
}

// atkKeys names the sub-benchmarks of impls, upstream's last.
func atkKeys(prefix string, impls ...string) []string {
	keys := make([]string, len(impls))
	for i, impl := range impls {
		keys[i] = prefix + impl
	}
	return keys
}

// atkCompare logs each implementation's figures beside upstream's; it runs
// in the last leaf, upstream's (a parent benchmark's log shows only with
// -v), and does nothing in the others.
func atkCompare(b *testing.B, got map[string]atkFigures, keys []string, key string) {
	up := keys[len(keys)-1]
	u, ok := got[up]
	if !ok || key != up {
		return
	}
	for _, k := range keys {
		f, ok := got[k]
		if !ok || k == up {
			continue
		}
		b.Logf("%-28s peak heap %9.1f MB (upstream %9.1f, %6.1fx less), live %9.1f MB (upstream %9.1f, %6.1fx less), %7.0f ns/pkt (upstream %7.0f)",
			k, f.peakMB, u.peakMB, u.peakMB/f.peakMB, f.liveMB, u.liveMB, u.liveMB/f.liveMB, f.nsPkt, u.nsPkt)
	}
}

// kitCheckParts returns what is wrong with the parts walk of sg, in what
// every delivery must show: the parts are Fetch of the whole delivery, in
// order, each where the previous one ends in sequence space, the kept
// ones first and holding exactly the bytes Lengths says were saved, the
// delivery's skip on the first part and on no other, no kept bytes across
// a skip, and the zero Part out of range. each, when set, is asked about
// every part, at its offset in the delivery, for what its packet must
// show.
func kitCheckParts(sg ScatterGather, each func(i, at int, p Part) error) error {
	w, ok := sg.(PartWalker)
	if !ok {
		return fmt.Errorf("the ScatterGather %T is no PartWalker", sg)
	}
	n, saved := sg.Lengths()
	_, _, _, skip := sg.Info()
	data := sg.Fetch(n)
	at, kept := 0, 0
	var next Sequence
	for i := 0; i < w.NumParts(); i++ {
		p := w.Part(i)
		wantSkip := 0
		if i == 0 {
			wantSkip = skip
		}
		switch {
		case at+len(p.Bytes) > len(data) || !bytes.Equal(p.Bytes, data[at:at+len(p.Bytes)]):
			return fmt.Errorf("part %d is not bytes [%d, %d) of Fetch(%d)", i, at, at+len(p.Bytes), n)
		case p.Kept != (at < saved):
			return fmt.Errorf("part %d at %d: kept %v, with %d bytes saved", i, at, p.Kept, saved)
		case p.Skip != wantSkip:
			return fmt.Errorf("part %d: Skip %d, want %d (delivery skip %d)", i, p.Skip, wantSkip, skip)
		case i > 0 && p.Seq != next:
			return fmt.Errorf("part %d: Seq %d, want %d where part %d ends", i, p.Seq, next, i-1)
		}
		if r, ok := sg.(stamp.PartReader); ok {
			// The tcpassembly face reads parts this way: it must agree.
			if b, sk, seen := r.PartSeen(i); len(b) != len(p.Bytes) || len(b) > 0 && &b[0] != &p.Bytes[0] ||
				sk != p.Skip || !seen.Equal(p.CaptureInfo().Timestamp) {
				return fmt.Errorf("part %d: PartSeen gives %d bytes, skip %d, seen %v; Part %d bytes, skip %d, seen %v",
					i, len(b), sk, seen, len(p.Bytes), p.Skip, p.CaptureInfo().Timestamp)
			}
		}
		if each != nil {
			if err := each(i, at, p); err != nil {
				return err
			}
		}
		if p.Kept {
			kept += len(p.Bytes)
		}
		at += len(p.Bytes)
		next = p.Seq.Add(len(p.Bytes))
	}
	if z := w.Part(w.NumParts()); z.Bytes != nil || z.Context != nil || w.Part(-1).Context != nil {
		return fmt.Errorf("a part out of range is not the zero Part")
	}
	if at != n || kept != saved || saved > 0 && skip != 0 {
		return fmt.Errorf("parts hold %d of %d bytes, %d kept of %d saved, skip %d", at, n, kept, saved, skip)
	}
	return nil
}
