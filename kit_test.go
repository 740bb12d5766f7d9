package reassembly

// The test kit: what every test of the package builds its traffic and its
// checks from. Packets and connections (both directions, flags, ISNs, capture
// times), the AssemblerContext they travel with, recording Streams that check
// the Stream contract as they go (one Stream live per connection, direction
// labels, bytes at the right offsets, exactly one ReassemblyComplete), the
// Safe face's setup (newKitSafe, newKitAssembler, kit*Opts), random traffic
// (kitTraffic, kitInterleave), the goroutine-leak guard, the conservation
// check of AssemblerStats (kitRequireConserved, kitSumStats), loop
// helpers, and the rig (kitRig: one connection per scenario on kitStreams
// that show skipped bytes as '?', for comparison with a model). kitStream
// is the package's one recording Stream: the rig's, newKitSafe's, and,
// with the comparison record on top, the trace kit's (trSeg, trConv,
// trRec, fault tables and the runners of all three faces:
// kit_streams_test.go). The screens' runs (idsSeg, idsRun, idsReplay)
// feed segments from the wire to a fresh Safe face. The attack kit, for
// floods of millions of packets, is kit_traffic_test.go.

import (
	"bytes"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math/rand"
	"net"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	upstream "github.com/google/gopacket/reassembly"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/safepacket/reassembly/internal/capture"
)

// kitT0 is the capture time the tests start from: well in the past, so that
// any comparison of capture time with the wall clock shows.
var kitT0 = time.Date(2021, 6, 1, 12, 0, 0, 0, time.UTC)

const (
	kitCISN       uint32 = 1000
	kitSISN       uint32 = 500000
	kitServerPort        = layers.TCPPort(80)
)

type kitCtx struct{ ci gopacket.CaptureInfo }

func (c *kitCtx) GetCaptureInfo() gopacket.CaptureInfo { return c.ci }

func kitAt(ts time.Time) AssemblerContext {
	return &kitCtx{ci: gopacket.CaptureInfo{Timestamp: ts}}
}

// kitConn is one TCP connection between a client 10.x.y.z:port and the
// server 192.168.0.1:80.
type kitConn struct {
	id       int
	cli, srv net.IP
	cport    layers.TCPPort
	isns     [2]uint32 // client's and server's ISN; zero: kitCISN, kitSISN
}

// withISNs returns c with other ISNs, such as ones just below 2^32 so that
// the streams cross the wrap.
func (c kitConn) withISNs(client, server uint32) kitConn {
	c.isns = [2]uint32{client, server}
	return c
}

func kitConnN(i int) kitConn {
	return kitConn{
		id:    i,
		cli:   net.IPv4(10, byte(i>>16), byte(i>>8), byte(i)).To4(),
		srv:   net.IPv4(192, 168, 0, 1).To4(),
		cport: layers.TCPPort(20000 + i%40000),
	}
}

func (c kitConn) flow(fromServer bool) gopacket.Flow {
	if fromServer {
		return gopacket.NewFlow(layers.EndpointIPv4, c.srv, c.cli)
	}
	return gopacket.NewFlow(layers.EndpointIPv4, c.cli, c.srv)
}

// key names the connection the same way whichever direction is seen first.
func (c kitConn) key() string {
	return kitKey(c.flow(false), gopacket.NewFlow(layers.EndpointTCPPort,
		[]byte{byte(c.cport >> 8), byte(c.cport)}, []byte{0, byte(kitServerPort)}))
}

func kitKey(netFlow, tcpFlow gopacket.Flow) string {
	a := netFlow.Src().String() + ":" + tcpFlow.Src().String()
	b := netFlow.Dst().String() + ":" + tcpFlow.Dst().String()
	if b < a {
		a, b = b, a
	}
	return a + "|" + b
}

// seqAt is the sequence number of byte off of a direction; SYNs use
// seqAt(dir, -1), the ISN.
func (c kitConn) seqAt(fromServer bool, off int) uint32 {
	isn := kitCISN
	if fromServer {
		isn = kitSISN
	}
	if c.isns != [2]uint32{} {
		isn = c.isns[kitBtoi(fromServer)]
	}
	return isn + 1 + uint32(off)
}

// segOff builds a segment carrying payload at byte off of its direction; a
// SYN is placed at the ISN.
func (c kitConn) segOff(fromServer bool, flags string, off int, payload []byte) *layers.TCP {
	if strings.Contains(flags, "S") {
		off = -1
	}
	return c.seg(fromServer, c.seqAt(fromServer, off), flags, payload)
}

// seg builds a TCP segment with the flags kitSetFlags reads.
func (c kitConn) seg(fromServer bool, seq uint32, flags string, payload []byte) *layers.TCP {
	t := &layers.TCP{Seq: seq, Window: 65535}
	if fromServer {
		t.SrcPort, t.DstPort = kitServerPort, c.cport
	} else {
		t.SrcPort, t.DstPort = c.cport, kitServerPort
	}
	kitSetFlags(t, flags)
	t.Payload = payload
	return t
}

// kitSetFlags sets the flags named in flags (any of S, A, F, R, P) on t.
func kitSetFlags(t *layers.TCP, flags string) {
	for _, f := range flags {
		switch f {
		case 'S':
			t.SYN = true
		case 'A':
			t.ACK = true
		case 'F':
			t.FIN = true
		case 'R':
			t.RST = true
		case 'P':
			t.PSH = true
		}
	}
}

// wire returns t as a decoder hands it over from the wire, Contents
// holding its header, options included, and a right checksum for c's
// addresses in the direction fromServer tells (wireTCP), then decoded.
func (c kitConn) wire(fromServer bool, t *layers.TCP) *layers.TCP {
	src, dst := c.cli, c.srv
	if fromServer {
		src, dst = dst, src
	}
	raw := wireTCP(t, src, dst, t.Payload)
	out := &layers.TCP{}
	if err := out.DecodeFromBytes(raw, gopacket.NilDecodeFeedback); err != nil {
		panic(err)
	}
	return out
}

// send hands one segment to a: a segment with S starts at the ISN, others
// at byte off of the direction.
func (c kitConn) send(a *SafeAssembler, fromServer bool, flags string, off int, payload string, ts time.Time) error {
	var p []byte
	if payload != "" {
		p = []byte(payload)
	}
	return a.AssembleWithContext(c.flow(fromServer), c.segOff(fromServer, flags, off, p), kitAt(ts))
}

// open sends the SYN and the SYN-ACK.
func (c kitConn) open(t *testing.T, a *SafeAssembler, ts time.Time) {
	t.Helper()
	require.NoError(t, c.send(a, false, "S", 0, "", ts))
	require.NoError(t, c.send(a, true, "SA", 0, "", ts))
}

// kitContent is the byte at offset off of direction dir (0 client, 1
// server) of the connection whose key hashes to seed: every copy of a byte,
// retransmitted or not, carries the same value.
func kitContent(seed uint32, dir, off int) byte {
	x := uint32(off)*2654435761 ^ seed ^ uint32(dir)*0x9E3779B9
	return byte(x>>24) ^ byte(x>>8)
}

func kitSeed(key string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(key))
	return h.Sum32()
}

// kitFactory creates kitStreams and checks, across all of them, that no two
// Streams of one connection are ever live at once.
type kitFactory struct {
	mu       sync.Mutex
	streams  []*kitStream
	byKey    map[string]*kitStream
	live     map[string]int
	dupLive  int
	problems []string

	// gate, when set, makes New signal entered and wait for barrier.
	entered chan struct{}
	barrier chan struct{}

	newCalls     atomic.Int64
	firstBytes   atomic.Int64
	deliveries   atomic.Int64
	gaps         atomic.Int64
	gapBytes     atomic.Int64
	unknownSkips atomic.Int64

	// Behaviour, set before traffic starts.
	nilFor        string // New returns nil for this key
	panicIn       string // callback that panics, once: "StreamFactory.New", "Stream.Accept", ...
	panicKey      string // only for this connection ("" any)
	panicked      atomic.Bool
	rejectWindow1 bool                              // Accept refuses non-SYN segments with Window 1
	checkContent  bool                              // compare delivered bytes with kitContent
	keepFrom      func(r *rand.Rand, total int) int // KeepFrom offset, -1 for none
	depth         func(TCPFlowDirection) int        // when set, the Streams are DepthOverriders
	// show keeps the rig's view of each Stream: its bytes with a '?' for
	// each skipped one (shown) and a line per delivery (sgs).
	show bool

	// rec, when set, is the comparison record on top of the checks: each
	// Stream also writes every call into it (trRec, the record upstream's
	// Streams write too), and it decides New's nil, Accept's start and
	// ReassemblyComplete's answer.
	rec *trRec
}

func newKitFactory() *kitFactory {
	return &kitFactory{byKey: map[string]*kitStream{}, live: map[string]int{}}
}

func (f *kitFactory) problem(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.problems) < 20 {
		f.problems = append(f.problems, fmt.Sprintf(format, args...))
	}
}

func (f *kitFactory) setGate(entered, barrier chan struct{}) {
	f.mu.Lock()
	f.entered, f.barrier = entered, barrier
	f.mu.Unlock()
}

func (f *kitFactory) maybePanic(where, key string) {
	if f.panicIn == where && (f.panicKey == "" || f.panicKey == key) && f.panicked.CompareAndSwap(false, true) {
		panic("test stream panics in " + where)
	}
}

func (f *kitFactory) New(netFlow, tcpFlow gopacket.Flow, tcp *layers.TCP, _ AssemblerContext) Stream {
	f.newCalls.Add(1)
	key := kitKey(netFlow, tcpFlow)
	f.mu.Lock()
	entered, barrier := f.entered, f.barrier
	f.mu.Unlock()
	if entered != nil {
		entered <- struct{}{}
		<-barrier
	}
	f.maybePanic("StreamFactory.New", key)
	if key == f.nilFor {
		return nil
	}
	s := &kitStream{f: f, key: key, seed: kitSeed(key), fromServer: tcp.SrcPort == kitServerPort,
		ports: [2]layers.TCPPort{tcp.SrcPort, tcp.DstPort}, rng: rand.New(rand.NewSource(int64(kitSeed(key))))}
	if f.rec != nil {
		if s.st = f.rec.newStream(netFlow, tcpFlow, tcp); s.st == nil {
			return nil
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.live[key] > 0 {
		f.dupLive++
	}
	f.live[key]++
	f.streams = append(f.streams, s)
	f.byKey[key] = s
	if f.depth != nil {
		return kitDepthStream{s}
	}
	return s
}

// kitKeepLast is a kitFactory.keepFrom that keeps the last byte of every
// delivery.
func kitKeepLast(_ *rand.Rand, n int) int {
	if n > 0 {
		return n - 1
	}
	return -1
}

// kitDepthStream is a kitStream that chooses its reassembly depth.
type kitDepthStream struct{ *kitStream }

func (s kitDepthStream) ReassemblyDepth(dir TCPFlowDirection) int { return s.f.depth(dir) }

func (f *kitFactory) stream(c kitConn) *kitStream {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.byKey[c.key()]
}

func (f *kitFactory) all() []*kitStream {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*kitStream(nil), f.streams...)
}

// requireSound checks what the factory saw: no problem reported from a
// callback, never two live Streams for one connection, and every Stream
// completed exactly once.
func (f *kitFactory) requireSound(t *testing.T) {
	t.Helper()
	f.requireNoProblems(t)
	for _, s := range f.all() {
		require.EqualValues(t, 1, s.completes.Load(), "ReassemblyComplete calls for %s", s.key)
	}
}

// requireNoProblems is requireSound but for the completions: what a run
// that ends before every connection does can be checked by.
func (f *kitFactory) requireNoProblems(t testing.TB) {
	t.Helper()
	f.mu.Lock()
	problems, dup := append([]string(nil), f.problems...), f.dupLive
	f.mu.Unlock()
	require.Empty(t, problems, "problems seen by Stream callbacks")
	require.Zero(t, dup, "New was called for a connection whose Stream was still live")
}

// kitPos follows the stream offset of one direction's deliveries.
type kitPos struct {
	delivered bool
	known     bool
	off       int
}

// kitStream is the package's one recording Stream. It checks the Stream
// contract as it goes (direction labels, Lengths and Fetch, Skip values,
// content at the right offsets when asked, one ReassemblyComplete at the
// most, no data after it and no Accept after one that returned true), records what the assembler hands
// it by real direction (0 the client's bytes, 1 the server's), and, under a
// trRec, writes the comparison record on top (st).
type kitStream struct {
	f          *kitFactory
	key        string
	seed       uint32
	fromServer bool              // the creating packet was the server's: TCPDirClientToServer is the server's direction
	ports      [2]layers.TCPPort // the creating packet's source and destination ports
	rng        *rand.Rand
	st         *trStream // the comparison record, when f.rec is set

	mu        sync.Mutex
	accepted  [2]int
	data      [2][]byte
	gapBytes  [2]int
	ends      [2]int
	pos       [2]kitPos
	depthHits int       // deliveries that reported DepthReached
	shown     [2][]byte // with show: the bytes, '?' for each skipped one
	sgs       []string  // with show: direction, end, depth, skip, bytes of each delivery
	labelled  bool      // Accept was called
	done      bool      // ReassemblyComplete was called
	closed    bool      // and returned true (a kept connection's Stream still sees Accept)
	completes atomic.Int32
}

func (s *kitStream) realDir(d TCPFlowDirection) int {
	r := 0
	if d == TCPDirServerToClient {
		r = 1
	}
	if s.fromServer {
		r ^= 1
	}
	return r
}

func (s *kitStream) Accept(tcp *layers.TCP, _ gopacket.CaptureInfo, dir TCPFlowDirection, _ Sequence, start *bool, _ AssemblerContext) bool {
	s.f.maybePanic("Stream.Accept", s.key)
	rd := s.realDir(dir)
	s.mu.Lock()
	// TCPDirClientToServer is the direction of the first packet seen (told
	// apart by port where the two ports differ): the one that made the
	// Stream, but under a trRec, whose traces include a SYN remembered
	// before its connection was made, whatever the first Accept says.
	if s.st != nil && !s.labelled && (dir == TCPDirClientToServer) != (tcp.SrcPort == s.ports[0]) {
		s.ports[0], s.ports[1] = s.ports[1], s.ports[0]
	}
	s.labelled = true
	if s.ports[0] != s.ports[1] && (dir == TCPDirClientToServer) != (tcp.SrcPort == s.ports[0]) {
		s.f.problem("%s: Accept got direction %v for a packet from port %d (client->server is port %d's)", s.key, dir, tcp.SrcPort, s.ports[0])
	}
	if s.closed {
		s.f.problem("%s: Accept after ReassemblyComplete returned true", s.key)
	}
	s.accepted[rd]++
	s.mu.Unlock()
	if s.st != nil {
		s.f.rec.accept(s.st, tcp, start)
	}
	return !(s.f.rejectWindow1 && tcp.Window == 1 && !tcp.SYN)
}

func (s *kitStream) ReassembledSG(sg ScatterGather, _ AssemblerContext) {
	dir, start, end, skip := sg.Info()
	total, saved := sg.Lengths()
	rd := s.realDir(dir)
	if saved < 0 || saved > total {
		s.f.problem("%s: Lengths() = %d, %d", s.key, total, saved)
		return
	}
	b := sg.Fetch(total)
	if len(b) != total {
		s.f.problem("%s: Fetch(%d) returned %d bytes", s.key, total, len(b))
		return
	}
	if saved > 0 && skip > 0 {
		s.f.problem("%s: %d kept bytes before a skip of %d", s.key, saved, skip)
	}
	fresh := b[saved:]
	s.mu.Lock()
	if s.done {
		s.f.problem("%s dir %d: ReassembledSG after ReassemblyComplete", s.key, rd)
	}
	p := &s.pos[rd]
	switch {
	case skip < -1:
		s.f.problem("%s dir %d: Skip %d (negative, not -1)", s.key, rd, skip)
		p.known = false
	case skip == -1 && p.known:
		s.f.problem("%s dir %d: Skip -1 (start unknown) after a known start", s.key, rd)
		p.known = false
	case skip < 0:
		p.known = false
	case start && !p.delivered:
		p.known, p.off = true, 0
	case start:
		s.f.problem("%s dir %d: start after the direction's first delivery", s.key, rd)
	}
	if skip > 0 {
		s.gapBytes[rd] += skip
		p.off += skip
	}
	if s.f.checkContent && p.known {
		for i, x := range fresh {
			if want := kitContent(s.seed, rd, p.off+i); x != want {
				s.f.problem("%s dir %d: byte at offset %d is %#x, want %#x", s.key, rd, p.off+i, x, want)
				p.known = false
				break
			}
		}
	}
	p.off += len(fresh)
	p.delivered = true
	s.data[rd] = append(s.data[rd], fresh...)
	if end {
		s.ends[rd]++
	}
	depth := false
	if d, ok := sg.(DepthReporter); ok && d.DepthReached() {
		s.depthHits++
		depth = true
	}
	if s.f.show {
		if skip > 0 {
			s.shown[rd] = append(s.shown[rd], bytes.Repeat([]byte{'?'}, skip)...)
		}
		s.shown[rd] = append(s.shown[rd], fresh...)
		s.sgs = append(s.sgs, fmt.Sprintf("%v end=%v depth=%v skip=%d %q", dir, end, depth, skip, b))
	}
	s.mu.Unlock()
	if s.st != nil {
		s.f.rec.deliver(s.st, trDir(dir == TCPDirServerToClient), start, end, skip, sg)
	}

	s.f.firstBytes.Add(int64(len(fresh)))
	s.f.deliveries.Add(1)
	switch {
	case skip > 0:
		s.f.gaps.Add(1)
		s.f.gapBytes.Add(int64(skip))
	case skip < 0:
		s.f.unknownSkips.Add(1)
	}
	if s.f.keepFrom != nil {
		s.mu.Lock()
		k := s.f.keepFrom(s.rng, total)
		s.mu.Unlock()
		if k >= 0 {
			sg.KeepFrom(k)
		}
	}
	s.f.maybePanic("Stream.ReassembledSG", s.key)
}

func (s *kitStream) ReassemblyComplete(ac AssemblerContext) bool {
	s.completes.Add(1)
	done := true
	if s.st != nil {
		var ci gopacket.CaptureInfo
		if ac != nil {
			ci = ac.GetCaptureInfo()
		}
		done = s.f.rec.complete(s.st, ac == nil, ci)
	}
	s.mu.Lock()
	if s.done {
		s.f.problem("%s: ReassemblyComplete called again", s.key)
	}
	s.done, s.closed = true, done
	s.mu.Unlock()
	s.f.mu.Lock()
	s.f.live[s.key]--
	s.f.mu.Unlock()
	s.f.maybePanic("Stream.ReassemblyComplete", s.key)
	return done
}

func (s *kitStream) bytes(dir int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.data[dir])
}

func (s *kitStream) gap(dir int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gapBytes[dir]
}

func (s *kitStream) accepts() [2]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted
}

func kitBtoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// kitNoLeaks fails the test if goroutines started during it are still
// running once it and its cleanups are done.
func kitNoLeaks(t *testing.T) goleak.Option {
	t.Helper()
	ign := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ign) })
	return ign
}

func newKitAssembler(t testing.TB, pool *SafeStreamPool, opts SafeAssemblerOptions) *SafeAssembler {
	t.Helper()
	a, err := NewSafeAssembler(pool, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Close() })
	return a
}

// kitReplayOpts turns the wall-clock flusher off: only capture time counts.
func kitReplayOpts() SafeAssemblerOptions {
	return SafeAssemblerOptions{DisableBackgroundFlush: true}
}

// kitRequireConserved checks the conservation equation of AssemblerStats,
// and that the delivered bytes AckedDelivery counts as acknowledged or not
// are some of those delivered (all of them for an assembler with the
// option: requireAckedCounted); where (a format and its arguments), when
// given, says at which point.
func kitRequireConserved(t *testing.T, st AssemblerStats, where ...any) {
	t.Helper()
	if err := kitConservation(st); err != nil {
		at := ""
		if len(where) > 0 {
			at = fmt.Sprintf(where[0].(string), where[1:]...) + ": "
		}
		require.Fail(t, at+err.Error(), "%+v", st)
	}
}

// kitConservation returns the first of the stats' accounting equations
// that st breaks, or nil: every byte processed is delivered, a copy,
// discarded or queued; the discards and the unacknowledged deliveries
// are the sums of their reasons; acknowledged or not, the bytes counted
// were delivered. The fuzz harness checks it after every call.
func kitConservation(st AssemblerStats) error {
	if sum := st.BytesDelivered + st.BytesOverlap + st.BytesOverwritten + st.BytesDiscarded + st.PageCache.QueuedBytes; sum != st.BytesProcessed {
		return fmt.Errorf("conservation: processed %d != delivered %d + overlap %d + overwritten %d + discarded %d + queued %d (= %d)",
			st.BytesProcessed, st.BytesDelivered, st.BytesOverlap, st.BytesOverwritten, st.BytesDiscarded, st.PageCache.QueuedBytes, sum)
	}
	if d := st.BytesRejected + st.BytesAfterClose + st.BytesBeforeStart + st.BytesAfterEnd + st.BytesBeyondDepth + st.BytesOnReset +
		st.BytesBadChecksum + st.BytesOutOfWindow + st.BytesAfterReset; d != st.BytesDiscarded {
		return fmt.Errorf("discards add up: BytesDiscarded %d, its reasons %d", st.BytesDiscarded, d)
	}
	if u := st.BytesUnackedAtEnd + st.BytesUnackedAtLimit + st.BytesUnackedByFlush + st.BytesUnackedOneSided; u != st.BytesDeliveredUnacked {
		return fmt.Errorf("unacknowledged deliveries add up: BytesDeliveredUnacked %d, its reasons %d", st.BytesDeliveredUnacked, u)
	}
	if st.BytesDeliveredAcked+st.BytesDeliveredUnacked > st.BytesDelivered {
		return fmt.Errorf("acknowledged %d or not %d, the bytes were delivered (%d)", st.BytesDeliveredAcked, st.BytesDeliveredUnacked, st.BytesDelivered)
	}
	return nil
}

// kitLogBuffer is a bytes.Buffer safe for a logger and a test to share.
type kitLogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *kitLogBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *kitLogBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newKitSafe is the Safe face as most tests want it: a fresh kitFactory
// (set adjusts it before any traffic), a pool over it with no connection
// cap, and an assembler with opts that is closed when the test ends.
func newKitSafe(t *testing.T, opts SafeAssemblerOptions, set ...func(*kitFactory)) (*kitFactory, *SafeStreamPool, *SafeAssembler) {
	t.Helper()
	f := newKitFactory()
	for _, s := range set {
		s(f)
	}
	pool := NewSafeStreamPool(f, 0)
	return f, pool, newKitAssembler(t, pool, opts)
}

// kitPagesOpts is kitReplayOpts with a page budget: total pages for the
// pool, perConn for one connection.
func kitPagesOpts(total, perConn int) SafeAssemblerOptions {
	opts := kitReplayOpts()
	opts.MaxBufferedPagesTotal, opts.MaxBufferedPagesPerConnection = total, perConn
	return opts
}

// kitCloseSound closes a and checks what the factory saw (requireSound).
func kitCloseSound(t *testing.T, f *kitFactory, a *SafeAssembler) {
	t.Helper()
	require.NoError(t, a.Close())
	f.requireSound(t)
}

// kitQuietOpts is kitReplayOpts with a logger that discards: for tests
// whose Streams panic on purpose.
func kitQuietOpts() SafeAssemblerOptions {
	opts := kitReplayOpts()
	opts.Logger = kitQuietLogger()
	return opts
}

// kitQuietLogger discards what it is given.
func kitQuietLogger() *slog.Logger { return kitLogger(io.Discard) }

// kitLogger logs text into w (a kitLogBuffer where a logger and the test
// share it across goroutines).
func kitLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// kitSumStats adds up the counters of several assemblers (every int64 field);
// the page cache is the pool's, taken from the last.
func kitSumStats(all []AssemblerStats) (s AssemblerStats) {
	sum := reflect.ValueOf(&s).Elem()
	for _, a := range all {
		v := reflect.ValueOf(a)
		for i := range v.NumField() {
			if f := v.Field(i); f.Kind() == reflect.Int64 {
				sum.Field(i).SetInt(sum.Field(i).Int() + f.Int())
			}
		}
		s.PageCache = a.PageCache
	}
	return s
}

// kitPayload is n bytes of direction dir of c from offset off, as
// kitContent has them.
func kitPayload(c kitConn, dir, off, n int) string {
	seed := kitSeed(c.key())
	b := make([]byte, n)
	for i := range b {
		b[i] = kitContent(seed, dir, off+i)
	}
	return string(b)
}

// kitUntil calls body with from, from+1, ... until stop is closed.
func kitUntil(stop <-chan struct{}, from int, body func(i int)) {
	for i := from; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		body(i)
	}
}

// kitClosed reports whether c is closed, for require.Eventually.
func kitClosed(c <-chan struct{}) func() bool {
	return func() bool {
		select {
		case <-c:
			return true
		default:
			return false
		}
	}
}

// kitPkt is one generated packet.
type kitPkt struct {
	c          kitConn
	fromServer bool
	tcp        *layers.TCP
}

// kitTraffic generates nConns connections of random traffic: both
// directions cut into random segments (some larger than a page), with
// duplicates, overlapping retransmissions, losses, segments the Stream
// rejects (Window 1), bare ACKs, FIN or RST or neither, SYN retransmissions,
// then locally reordered and interleaved. Each connection starts with the
// client's SYN and the server's SYN-ACK. Every copy of a byte carries
// kitContent.
func kitTraffic(r *rand.Rand, firstID, nConns int) []kitPkt {
	perConn := make([][]kitPkt, nConns)
	for i := range perConn {
		c := kitConnN(firstID + i)
		seed := kitSeed(c.key())
		var body []kitPkt
		mk := func(fromServer bool, off, n int, flags string) kitPkt {
			d := kitBtoi(fromServer)
			var p []byte
			if n > 0 {
				p = make([]byte, n)
				for k := range p {
					p[k] = kitContent(seed, d, off+k)
				}
			}
			return kitPkt{c, fromServer, c.seg(fromServer, c.seqAt(fromServer, off), flags, p)}
		}
		for _, fromServer := range []bool{false, true} {
			n := r.Intn(6000)
			for off := 0; off < n; {
				l := 1 + r.Intn(1400)
				if r.Intn(10) == 0 {
					l = 1 + r.Intn(4000)
				}
				l = min(l, n-off)
				if r.Intn(20) != 0 { // 5% loss
					p := mk(fromServer, off, l, "A")
					if r.Intn(20) == 0 {
						p.tcp.Window = 1 // rejected by Accept
					}
					body = append(body, p)
				}
				if r.Intn(10) == 0 { // duplicate
					body = append(body, mk(fromServer, off, l, "A"))
				}
				if r.Intn(8) == 0 && n > 0 { // overlapping retransmission
					o := r.Intn(n)
					body = append(body, mk(fromServer, o, 1+r.Intn(min(3000, n-o)), "A"))
				}
				if r.Intn(10) == 0 {
					body = append(body, mk(fromServer, off, 0, "A"))
				}
				off += l
			}
			switch x := r.Intn(10); {
			case x < 6:
				body = append(body, mk(fromServer, n, 0, "FA"))
			case x < 7:
				body = append(body, mk(fromServer, r.Intn(n+1), 0, "R"))
			}
			if r.Intn(10) == 0 {
				flags := "S"
				if fromServer {
					flags = "SA"
				}
				body = append(body, kitPkt{c, fromServer, c.seg(fromServer, c.seqAt(fromServer, -1), flags, nil)})
			}
		}
		// Local reordering: each packet may swap with one up to 5 later.
		for k := range body {
			if j := k + r.Intn(5); j < len(body) {
				body[k], body[j] = body[j], body[k]
			}
		}
		syn := []kitPkt{
			{c, false, c.seg(false, c.seqAt(false, -1), "S", nil)},
			{c, true, c.seg(true, c.seqAt(true, -1), "SA", nil)},
		}
		perConn[i] = append(syn, body...)
	}
	return kitInterleave(r, perConn)
}

// kitInterleave merges lists at random, keeping the order within each.
func kitInterleave(r *rand.Rand, lists [][]kitPkt) []kitPkt {
	lists = append([][]kitPkt(nil), lists...)
	var out []kitPkt
	for {
		live := 0
		for _, p := range lists {
			if len(p) > 0 {
				live++
			}
		}
		if live == 0 {
			return out
		}
		k := r.Intn(len(lists))
		for len(lists[k]) == 0 {
			k = (k + 1) % len(lists)
		}
		out = append(out, lists[k][0])
		lists[k] = lists[k][1:]
	}
}

// ---------------------------------------------------------------------------
// The rig: one SafeAssembler on which scenarios run one connection each,
// with a Stream that shows skipped bytes as '?' and logs each delivery, so
// that what it got compares byte for byte with a model (the overlap
// policies', depth's, conflicts').

// kitISNs are the client ISNs the rig's scenarios run at: both sides of 0
// and of the wrap.
var kitISNs = []uint32{0, 1, 1<<32 - 1, 1<<32 - 11}

// kitConflict is a conflict as the model expects it.
type kitConflict struct {
	offset    int64
	delivered bool
	old, new  string
}

func (c kitConflict) String() string {
	return fmt.Sprintf("{@%d delivered=%v old=%q new=%q}", c.offset, c.delivered, c.old, c.new)
}

// kitRig is one SafeAssembler on which scenarios run one connection
// each, on a fresh client port and address.
type kitRig struct {
	t   testing.TB
	f   *kitFactory
	a   *SafeAssembler
	n   int
	ts  time.Time
	got []kitConflict
}

func newKitRig(t testing.TB, opts SafeAssemblerOptions) *kitRig {
	return newKitRigRaw(t, opts, true)
}

// newKitRigRaw is newKitRig; with record set and no OnConflict in
// opts, the conflicts are recorded in got.
func newKitRigRaw(t testing.TB, opts SafeAssemblerOptions, record bool) *kitRig {
	f := newKitFactory()
	f.show = true
	t.Cleanup(func() { f.requireNoProblems(t) })
	h := &kitRig{t: t, f: f, ts: time.Unix(1_700_000_000, 0)}
	opts.DisableBackgroundFlush = true
	if opts.OnConflict == nil && record {
		opts.OnConflict = func(c Conflict) {
			h.got = append(h.got, kitConflict{c.Offset, c.Delivered, string(c.Old), string(c.New)})
		}
	}
	a, err := NewSafeAssembler(NewSafeStreamPool(h.f, 0), opts)
	require.NoError(t, err)
	h.a = a
	t.Cleanup(func() { a.Close() })
	return h
}

// kitRigConn is the connection of one scenario.
type kitRigConn struct {
	h       *kitRig
	netFlow gopacket.Flow
	sport   uint16
	isn     uint32
}

func (h *kitRig) conn(isn uint32) *kitRigConn {
	h.n++
	ip := []byte{10, byte(h.n >> 16), byte(h.n >> 8), byte(h.n)}
	c := &kitRigConn{h: h, netFlow: gopacket.NewFlow(layers.EndpointIPv4, ip, []byte{10, 255, 255, 1}), sport: uint16(1024 + h.n%60000), isn: isn}
	h.got = nil
	return c
}

// kitRigServerISN is the server's initial sequence number in every scenario.
const kitRigServerISN = 1<<32 - 100

// send hands in a client packet; off is the stream offset of its first
// byte (ignored for a SYN, which takes the ISN).
func (c *kitRigConn) send(flags string, off int, payload []byte) {
	if err := c.packet(false, flags, off, payload); err != nil && !errors.Is(err, ErrConnectionClosed) {
		c.h.t.Fatalf("assemble: %v", err)
	}
}

// packet hands in a packet of the client, or of the server, and returns
// the assembler's error.
func (c *kitRigConn) packet(server bool, flags string, off int, payload []byte) error {
	isn, sport, dport, netFlow := c.isn, layers.TCPPort(c.sport), layers.TCPPort(80), c.netFlow
	if server {
		isn, sport, dport, netFlow = kitRigServerISN, 80, sport, c.netFlow.Reverse()
	}
	tcp := &layers.TCP{SrcPort: sport, DstPort: dport, Seq: isn + 1 + uint32(off), Ack: 1}
	kitSetFlags(tcp, flags)
	tcp.ACK = !tcp.SYN || server // every packet acknowledges but the client's SYN
	if tcp.SYN {
		tcp.Seq = isn
	}
	tcp.Payload = payload
	c.h.ts = c.h.ts.Add(time.Millisecond)
	return c.h.a.AssembleWithTimestamp(netFlow, tcp, c.h.ts)
}

func (c *kitRigConn) stream() *kitStream {
	c.h.f.mu.Lock()
	defer c.h.f.mu.Unlock()
	return c.h.f.byKey[kitKey(c.netFlow, gopacket.NewFlow(layers.EndpointTCPPort,
		[]byte{byte(c.sport >> 8), byte(c.sport)}, []byte{0, byte(kitServerPort)}))]
}

// ---------------------------------------------------------------------------
// Scripts

// kitFeed hands one packet to an assembler of some face: the Safe face's
// error, nil for the others.
type kitFeed func(gopacket.Flow, *layers.TCP, AssemblerContext) error

func kitFeedSafe(a *SafeAssembler) kitFeed { return a.AssembleWithContext }

func kitFeedDropIn(a *Assembler) kitFeed {
	return func(fl gopacket.Flow, tcp *layers.TCP, ac AssemblerContext) error {
		a.AssembleWithContext(fl, tcp, ac)
		return nil
	}
}

func kitFeedUp(a *upstream.Assembler) kitFeed {
	return func(fl gopacket.Flow, tcp *layers.TCP, ac AssemblerContext) error {
		a.AssembleWithContext(fl, tcp, ac)
		return nil
	}
}

// kitFeeder hands packets of kitConns to an assembler of either face, each
// step of capture time after the last (step 0: all at ts), and requires
// the Safe face to take each without error.
type kitFeeder struct {
	t    testing.TB
	feed kitFeed
	ts   time.Time
	step time.Duration
}

func newKitFeeder(t testing.TB, a *SafeAssembler, ts time.Time, step time.Duration) *kitFeeder {
	return &kitFeeder{t: t, feed: kitFeedSafe(a), ts: ts, step: step}
}

// newKitDropInFeeder is newKitFeeder for the drop-in face.
func newKitDropInFeeder(t testing.TB, a *Assembler, ts time.Time, step time.Duration) *kitFeeder {
	return &kitFeeder{t: t, feed: kitFeedDropIn(a), ts: ts, step: step}
}

func (f *kitFeeder) send(c kitConn, fromServer bool, flags string, off int, payload []byte) {
	f.t.Helper()
	f.ts = f.ts.Add(f.step)
	require.NoError(f.t, f.feed(c.flow(fromServer), c.segOff(fromServer, flags, off, payload), kitAt(f.ts)))
}

// open sends the SYN and the SYN-ACK.
func (f *kitFeeder) open(c kitConn) {
	f.t.Helper()
	f.send(c, false, "S", 0, nil)
	f.send(c, true, "SA", 0, nil)
}

// stream sends data as segments of at most seg bytes from offset off, and
// returns the offset after them.
func (f *kitFeeder) stream(c kitConn, fromServer bool, off int, data []byte, seg int) int {
	f.t.Helper()
	for len(data) > 0 {
		n := min(seg, len(data))
		f.send(c, fromServer, "A", off, data[:n])
		off += n
		data = data[n:]
	}
	return off
}

// play sends a script of c's packets, one a line: "DIR FLAGS [OFF
// [PAYLOAD]]", DIR '>' for the client's and '<' for the server's, FLAGS as
// kitConn.seg has them, OFF the byte offset in the direction (a SYN takes
// the ISN), PAYLOAD the rest of the line. ">S", "<SA", ">A 0 GET /",
// "<FA 6" is a handshake, a request and the server's FIN.
func (f *kitFeeder) play(c kitConn, script ...string) {
	f.t.Helper()
	for _, line := range script {
		fromServer, flags, off, payload := kitParseLine(f.t, line)
		f.send(c, fromServer, flags, off, payload)
	}
}

func kitParseLine(t testing.TB, line string) (fromServer bool, flags string, off int, payload []byte) {
	t.Helper()
	require.True(t, len(line) > 1 && (line[0] == '>' || line[0] == '<'), "script line %q", line)
	parts := strings.SplitN(line[1:], " ", 3)
	if len(parts) > 1 {
		var err error
		off, err = strconv.Atoi(parts[1])
		require.NoError(t, err, "script line %q", line)
	}
	if len(parts) > 2 {
		payload = []byte(parts[2])
	}
	return line[0] == '<', parts[0], off, payload
}

// play is kitFeeder.play with every packet at ts.
func (c kitConn) play(t testing.TB, a *SafeAssembler, ts time.Time, script ...string) {
	t.Helper()
	newKitFeeder(t, a, ts, 0).play(c, script...)
}

// kitGot is what a kitStream got: each direction's bytes and skipped bytes
// (0 the client's) and its ReassemblyComplete calls; one comparison checks
// them all.
type kitGot struct {
	data      [2]string
	gaps      [2]int
	completes int32
}

func (s *kitStream) got() kitGot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return kitGot{data: [2]string{string(s.data[0]), string(s.data[1])}, gaps: s.gapBytes, completes: s.completes.Load()}
}

// ---------------------------------------------------------------------------
// The screens' runs: segments from the wire (idsSeg, corrupt, wsOpt,
// idsHandshake) fed to a fresh Safe face, as a crafted trace (idsRun, every
// screen on with idsOptions) or a capture (idsReplay), as the checksum,
// window, evasion and acknowledged-delivery tests run them.

// idsSeg builds a segment of c from the wire, acknowledging ack with
// window win (the A flag is set when ack is not zero).
func idsSeg(c kitConn, fromServer bool, flags string, off int, payload string, ack uint32, win uint16, opts ...layers.TCPOption) *layers.TCP {
	if ack != 0 {
		flags += "A"
	}
	t := c.segOff(fromServer, flags, off, []byte(payload))
	t.Ack, t.Window, t.Options = ack, win, opts
	return c.wire(fromServer, t)
}

// corrupt returns t with a wrong checksum.
func corrupt(t *layers.TCP) *layers.TCP {
	t.Contents[16] ^= 0xFF
	return t
}

// wsOpt is a window scale option of shift.
func wsOpt(shift byte) layers.TCPOption {
	return layers.TCPOption{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{shift}}
}

// idsRun feeds pkts, each sent by the server when its flag in fromServer
// is set, to a fresh Safe face with opts, and returns the client's bytes
// as delivered, those of each Stream of c's 4-tuple after the first
// following a "|", and the statistics, conservation checked. A packet
// may only be refused as one for a closed connection.
func idsRun(t *testing.T, c kitConn, opts SafeAssemblerOptions, pkts []*layers.TCP) (string, AssemblerStats, *SafeStreamPool) {
	t.Helper()
	f, pool, a := newKitSafe(t, opts)
	ts := kitT0
	for _, p := range pkts {
		ts = ts.Add(1e6)
		fromServer := p.SrcPort == kitServerPort
		if err := a.AssembleWithContext(c.flow(fromServer), p, kitAt(ts)); err != nil {
			require.ErrorIs(t, err, ErrConnectionClosed)
		}
	}
	a.FlushAll()
	st := a.Stats()
	kitRequireConserved(t, st)
	var got []string
	for _, s := range f.all() {
		if s.key == c.key() {
			got = append(got, s.bytes(0))
		}
	}
	kitCloseSound(t, f, a)
	return strings.Join(got, "|"), st, pool
}

// idsReplay replays a capture into a fresh Safe face with opts and returns
// each connection's bytes, both directions, by key, and the statistics.
func idsReplay(t *testing.T, path string, opts SafeAssemblerOptions) (map[string][2]string, AssemblerStats) {
	t.Helper()
	opts.DisableBackgroundFlush, opts.Logger = true, kitQuietLogger()
	f, _, a := newKitSafe(t, opts)
	_, err := capture.ReadFile(path, func(_ int64, seg *capture.Segment, ci gopacket.CaptureInfo) error {
		_ = a.AssembleWithContext(seg.NetFlow, seg.TCP, &kitCtx{ci: ci}) // errors are counted
		return nil
	})
	require.NoError(t, err)
	a.FlushAll()
	st := a.Stats()
	kitRequireConserved(t, st)
	out := map[string][2]string{}
	for _, s := range f.all() {
		b := out[s.key]
		b[0] += s.bytes(0)
		b[1] += s.bytes(1)
		out[s.key] = b
	}
	return out, st
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

// idsOptions are the IDS options: the host's view on every screen.
func idsOptions() SafeAssemblerOptions {
	opts := kitReplayOpts()
	opts.ChecksumPolicy, opts.CheckWindow = ChecksumDrop, true
	return opts
}
