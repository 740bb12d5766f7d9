package reassembly

// Tests of the Safe face (SafeAssembler): errors instead of panics,
// exactly-once completion on every path, recovered Stream panics, and byte
// conservation on random traffic. The helpers here (sfFactory, sfStream,
// sfConn) are shared with options_test.go, stream_pool_test.go and
// race_test.go.

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// ---------------------------------------------------------------------------
// Helpers

// sfT0 is the capture time the tests start from: well in the past, so that
// any comparison of capture time with the wall clock shows.
var sfT0 = time.Date(2021, 6, 1, 12, 0, 0, 0, time.UTC)

const (
	sfCISN       uint32 = 1000
	sfSISN       uint32 = 500000
	sfServerPort        = layers.TCPPort(80)
)

type sfCtx struct{ ci gopacket.CaptureInfo }

func (c *sfCtx) GetCaptureInfo() gopacket.CaptureInfo { return c.ci }

func sfAt(ts time.Time) AssemblerContext {
	return &sfCtx{ci: gopacket.CaptureInfo{Timestamp: ts}}
}

// sfConn is one TCP connection between a client 10.x.y.z:port and the
// server 192.168.0.1:80.
type sfConn struct {
	id       int
	cli, srv net.IP
	cport    layers.TCPPort
}

func sfConnN(i int) sfConn {
	return sfConn{
		id:    i,
		cli:   net.IPv4(10, byte(i>>16), byte(i>>8), byte(i)).To4(),
		srv:   net.IPv4(192, 168, 0, 1).To4(),
		cport: layers.TCPPort(20000 + i%40000),
	}
}

func (c sfConn) flow(fromServer bool) gopacket.Flow {
	if fromServer {
		return gopacket.NewFlow(layers.EndpointIPv4, c.srv, c.cli)
	}
	return gopacket.NewFlow(layers.EndpointIPv4, c.cli, c.srv)
}

// key names the connection the same way whichever direction is seen first.
func (c sfConn) key() string {
	return sfKey(c.flow(false), gopacket.NewFlow(layers.EndpointTCPPort,
		[]byte{byte(c.cport >> 8), byte(c.cport)}, []byte{0, byte(sfServerPort)}))
}

func sfKey(netFlow, tcpFlow gopacket.Flow) string {
	a := netFlow.Src().String() + ":" + tcpFlow.Src().String()
	b := netFlow.Dst().String() + ":" + tcpFlow.Dst().String()
	if b < a {
		a, b = b, a
	}
	return a + "|" + b
}

// seqAt is the sequence number of byte off of a direction; SYNs use
// seqAt(dir, -1), the ISN.
func (c sfConn) seqAt(fromServer bool, off int) uint32 {
	isn := sfCISN
	if fromServer {
		isn = sfSISN
	}
	return isn + 1 + uint32(off)
}

// seg builds a TCP segment; flags holds any of S, A, F, R.
func (c sfConn) seg(fromServer bool, seq uint32, flags string, payload []byte) *layers.TCP {
	t := &layers.TCP{Seq: seq, Window: 65535}
	if fromServer {
		t.SrcPort, t.DstPort = sfServerPort, c.cport
	} else {
		t.SrcPort, t.DstPort = c.cport, sfServerPort
	}
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
		}
	}
	t.Payload = payload
	return t
}

// send hands one segment to a: a segment with S starts at the ISN, others
// at byte off of the direction.
func (c sfConn) send(a *SafeAssembler, fromServer bool, flags string, off int, payload string, ts time.Time) error {
	if strings.Contains(flags, "S") {
		off = -1
	}
	var p []byte
	if payload != "" {
		p = []byte(payload)
	}
	return a.AssembleWithContext(c.flow(fromServer), c.seg(fromServer, c.seqAt(fromServer, off), flags, p), sfAt(ts))
}

// open sends the SYN and the SYN-ACK.
func (c sfConn) open(t *testing.T, a *SafeAssembler, ts time.Time) {
	t.Helper()
	require.NoError(t, c.send(a, false, "S", 0, "", ts))
	require.NoError(t, c.send(a, true, "SA", 0, "", ts))
}

// sfContent is the byte at offset off of direction dir (0 client, 1
// server) of the connection whose key hashes to seed: every copy of a byte,
// retransmitted or not, carries the same value.
func sfContent(seed uint32, dir, off int) byte {
	x := uint32(off)*2654435761 ^ seed ^ uint32(dir)*0x9E3779B9
	return byte(x>>24) ^ byte(x>>8)
}

func sfSeed(key string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(key))
	return h.Sum32()
}

// sfFactory creates sfStreams and checks, across all of them, that no two
// Streams of one connection are ever live at once.
type sfFactory struct {
	mu       sync.Mutex
	streams  []*sfStream
	byKey    map[string]*sfStream
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
	checkContent  bool                              // compare delivered bytes with sfContent
	keepFrom      func(r *rand.Rand, total int) int // KeepFrom offset, -1 for none
}

func newSFFactory() *sfFactory {
	return &sfFactory{byKey: map[string]*sfStream{}, live: map[string]int{}}
}

func (f *sfFactory) problem(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.problems) < 20 {
		f.problems = append(f.problems, fmt.Sprintf(format, args...))
	}
}

func (f *sfFactory) setGate(entered, barrier chan struct{}) {
	f.mu.Lock()
	f.entered, f.barrier = entered, barrier
	f.mu.Unlock()
}

func (f *sfFactory) maybePanic(where, key string) {
	if f.panicIn == where && (f.panicKey == "" || f.panicKey == key) && f.panicked.CompareAndSwap(false, true) {
		panic("test stream panics in " + where)
	}
}

func (f *sfFactory) New(netFlow, tcpFlow gopacket.Flow, tcp *layers.TCP, _ AssemblerContext) Stream {
	f.newCalls.Add(1)
	key := sfKey(netFlow, tcpFlow)
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
	s := &sfStream{f: f, key: key, seed: sfSeed(key), fromServer: tcp.SrcPort == sfServerPort,
		rng: rand.New(rand.NewSource(int64(sfSeed(key))))}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.live[key] > 0 {
		f.dupLive++
	}
	f.live[key]++
	f.streams = append(f.streams, s)
	f.byKey[key] = s
	return s
}

func (f *sfFactory) stream(c sfConn) *sfStream {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.byKey[c.key()]
}

func (f *sfFactory) all() []*sfStream {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*sfStream(nil), f.streams...)
}

// requireSound checks what the factory saw: no problem reported from a
// callback, never two live Streams for one connection, and every Stream
// completed exactly once.
func (f *sfFactory) requireSound(t *testing.T) {
	t.Helper()
	f.mu.Lock()
	problems, dup := append([]string(nil), f.problems...), f.dupLive
	f.mu.Unlock()
	require.Empty(t, problems, "problems seen by Stream callbacks")
	require.Zero(t, dup, "New was called for a connection whose Stream was still live")
	for _, s := range f.all() {
		require.EqualValues(t, 1, s.completes.Load(), "ReassemblyComplete calls for %s", s.key)
	}
}

// sfPos follows the stream offset of one direction's deliveries.
type sfPos struct {
	delivered bool
	known     bool
	off       int
}

// sfStream records what the assembler hands it, by real direction (0 the
// client's bytes, 1 the server's).
type sfStream struct {
	f          *sfFactory
	key        string
	seed       uint32
	fromServer bool // the creating packet was the server's: TCPDirClientToServer is the server's direction
	rng        *rand.Rand

	mu        sync.Mutex
	accepted  [2]int
	data      [2][]byte
	gapBytes  [2]int
	ends      [2]int
	pos       [2]sfPos
	completes atomic.Int32
}

func (s *sfStream) realDir(d TCPFlowDirection) int {
	r := 0
	if d == TCPDirServerToClient {
		r = 1
	}
	if s.fromServer {
		r ^= 1
	}
	return r
}

func (s *sfStream) Accept(tcp *layers.TCP, _ gopacket.CaptureInfo, dir TCPFlowDirection, _ Sequence, _ *bool, _ AssemblerContext) bool {
	s.f.maybePanic("Stream.Accept", s.key)
	rd := s.realDir(dir)
	if want := sfBtoi(tcp.SrcPort == sfServerPort); rd != want {
		s.f.problem("%s: Accept got direction %v for a packet of real direction %d", s.key, dir, want)
	}
	s.mu.Lock()
	s.accepted[rd]++
	s.mu.Unlock()
	return !(s.f.rejectWindow1 && tcp.Window == 1 && !tcp.SYN)
}

func (s *sfStream) ReassembledSG(sg ScatterGather, _ AssemblerContext) {
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
	fresh := b[saved:]
	s.mu.Lock()
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
	}
	if skip > 0 {
		s.gapBytes[rd] += skip
		p.off += skip
	}
	if s.f.checkContent && p.known {
		for i, x := range fresh {
			if want := sfContent(s.seed, rd, p.off+i); x != want {
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
	s.mu.Unlock()

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

func (s *sfStream) ReassemblyComplete(_ AssemblerContext) bool {
	s.completes.Add(1)
	s.f.mu.Lock()
	s.f.live[s.key]--
	s.f.mu.Unlock()
	s.f.maybePanic("Stream.ReassemblyComplete", s.key)
	return true
}

func (s *sfStream) bytes(dir int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.data[dir])
}

func (s *sfStream) gap(dir int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gapBytes[dir]
}

func (s *sfStream) accepts() [2]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted
}

func sfBtoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// sfNoLeaks fails the test if goroutines started during it are still
// running once it and its cleanups are done.
func sfNoLeaks(t *testing.T) goleak.Option {
	t.Helper()
	ign := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ign) })
	return ign
}

func newSFAssembler(t *testing.T, pool *SafeStreamPool, opts SafeAssemblerOptions) *SafeAssembler {
	t.Helper()
	a, err := NewSafeAssembler(pool, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Close() })
	return a
}

// sfReplayOpts turns the wall-clock flusher off: only capture time counts.
func sfReplayOpts() SafeAssemblerOptions {
	return SafeAssemblerOptions{DisableBackgroundFlush: true}
}

// sfRequireConserved checks the conservation equation of AssemblerStats.
func sfRequireConserved(t *testing.T, st AssemblerStats) {
	t.Helper()
	require.Equal(t, st.BytesProcessed,
		st.BytesDelivered+st.BytesOverlap+st.BytesOverwritten+st.BytesDiscarded+st.PageCache.QueuedBytes,
		"conservation: %+v", st)
	require.Equal(t, st.BytesDiscarded,
		st.BytesRejected+st.BytesAfterClose+st.BytesBeforeStart+st.BytesAfterEnd+st.BytesBeyondDepth+st.BytesOnReset,
		"discards add up: %+v", st)
}

// sfLogBuffer is a bytes.Buffer safe for a logger and a test to share.
type sfLogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *sfLogBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *sfLogBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// ---------------------------------------------------------------------------
// Malformed input and use after Close

// Property: a nil TCP layer is reported as ErrNilPacket by all three
// Assemble methods (with or without a context), is counted in
// Stats().Errors, creates nothing and does not panic.
func TestSafeAssembleNilPacket(t *testing.T) {
	sfNoLeaks(t)
	f := newSFFactory()
	pool := NewSafeStreamPool(f, 0)
	a := newSFAssembler(t, pool, SafeAssemblerOptions{})
	c := sfConnN(1)

	require.ErrorIs(t, a.AssembleWithContext(c.flow(false), nil, sfAt(sfT0)), ErrNilPacket)
	require.ErrorIs(t, a.AssembleWithContext(c.flow(false), nil, nil), ErrNilPacket)
	require.ErrorIs(t, a.Assemble(c.flow(false), nil), ErrNilPacket)
	require.ErrorIs(t, a.AssembleWithTimestamp(c.flow(false), nil, sfT0), ErrNilPacket)

	require.EqualValues(t, 4, a.Stats().Errors)
	require.Zero(t, f.newCalls.Load())
	require.Zero(t, pool.Stats().ActiveConnections)
	require.NoError(t, a.Close())
}

// Property: a nil AssemblerContext works like a zero CaptureInfo: the
// connection is created, its bytes delivered in order, and two FINs
// complete it once.
func TestSafeAssembleNilContext(t *testing.T) {
	sfNoLeaks(t)
	f := newSFFactory()
	pool := NewSafeStreamPool(f, 0)
	a := newSFAssembler(t, pool, SafeAssemblerOptions{})
	c := sfConnN(1)
	send := func(fromServer bool, flags string, off int, payload string) error {
		seq := c.seqAt(fromServer, off)
		if strings.Contains(flags, "S") {
			seq = c.seqAt(fromServer, -1)
		}
		return a.AssembleWithContext(c.flow(fromServer), c.seg(fromServer, seq, flags, []byte(payload)), nil)
	}
	require.NoError(t, send(false, "S", 0, ""))
	require.NoError(t, send(true, "SA", 0, ""))
	require.NoError(t, send(false, "A", 0, "hello"))
	require.NoError(t, send(true, "A", 0, "world"))
	require.NoError(t, send(false, "FA", 5, ""))
	require.NoError(t, send(true, "FA", 5, ""))

	s := f.stream(c)
	require.NotNil(t, s)
	require.Equal(t, "hello", s.bytes(0))
	require.Equal(t, "world", s.bytes(1))
	require.EqualValues(t, 1, s.completes.Load())
	require.NoError(t, a.Close())
	f.requireSound(t)
}

// Property: a TCP layer with no flags and no payload, with or without a
// Flow, and bare FIN/RST/ACK segments of unknown connections, are harmless:
// no error, no Stream, no panic. A zero-length SYN, even with a zero Flow,
// creates exactly one Stream.
func TestSafeAssembleZeroLength(t *testing.T) {
	sfNoLeaks(t)
	f := newSFFactory()
	pool := NewSafeStreamPool(f, 0)
	a := newSFAssembler(t, pool, sfReplayOpts())
	c := sfConnN(1)

	for _, tcp := range []*layers.TCP{
		{},
		{BaseLayer: layers.BaseLayer{Payload: []byte{}}},
		{ACK: true},
		{FIN: true},
		{RST: true},
		c.seg(false, 5, "A", nil),
		c.seg(false, 5, "R", nil),
		c.seg(true, 5, "FA", nil),
	} {
		require.NoError(t, a.AssembleWithContext(c.flow(false), tcp, sfAt(sfT0)))
		require.NoError(t, a.AssembleWithContext(gopacket.Flow{}, tcp, sfAt(sfT0)))
	}
	require.Zero(t, f.newCalls.Load(), "segments without SYN or payload must not create connections")
	require.Zero(t, pool.Stats().ActiveConnections)

	require.NoError(t, a.AssembleWithContext(gopacket.Flow{}, &layers.TCP{SYN: true}, nil))
	require.EqualValues(t, 1, f.newCalls.Load())
	require.EqualValues(t, 1, pool.Stats().ActiveConnections)
	st := a.Stats()
	require.Zero(t, st.BytesProcessed)
	sfRequireConserved(t, st)
	require.NoError(t, a.Close())
	f.requireSound(t)
}

// Property: sequence numbers wrap at 2^32: a direction whose ISN is just
// below the wrap gets its bytes in order, across the wrap, whatever the
// arrival order.
func TestSafeAssembleSequenceWrap(t *testing.T) {
	sfNoLeaks(t)
	f := newSFFactory()
	pool := NewSafeStreamPool(f, 0)
	a := newSFAssembler(t, pool, sfReplayOpts())
	c := sfConnN(1)
	isn := uint32(0xFFFFFFFA)
	send := func(seq uint32, flags, payload string) {
		t.Helper()
		require.NoError(t, a.AssembleWithContext(c.flow(false), c.seg(false, seq, flags, []byte(payload)), sfAt(sfT0)))
	}
	send(isn, "S", "")
	send(isn+1+8, "A", "89ab")   // crosses nothing, after the wrap
	send(isn+1+4, "A", "4567")   // crosses the wrap
	send(isn+1, "A", "0123")     // before the wrap, in order: releases all
	send(isn+1+12, "FA", "cdef") // FIN after the wrap
	require.NoError(t, c.send(a, true, "SA", 0, "", sfT0))
	require.NoError(t, c.send(a, true, "FA", 0, "", sfT0))

	s := f.stream(c)
	require.NotNil(t, s)
	require.Equal(t, "0123456789abcdef", s.bytes(0))
	require.Zero(t, s.gap(0))
	require.EqualValues(t, 1, s.completes.Load())
	f.requireSound(t)
}

// Property: after Close every Assemble method fails with
// ErrAssemblerClosed, flushes do nothing, Stats still answers, Close is
// idempotent and returns nil, and the background flusher goroutine that was
// running before Close is gone after it.
func TestSafeAssemblerUseAfterClose(t *testing.T) {
	ign := sfNoLeaks(t)
	f := newSFFactory()
	pool := NewSafeStreamPool(f, 0)
	a, err := NewSafeAssembler(pool, SafeAssemblerOptions{FlushInterval: 5 * time.Millisecond})
	require.NoError(t, err)
	c := sfConnN(1)
	c.open(t, a, sfT0)
	require.Error(t, goleak.Find(ign), "the background flusher should be running before Close")

	require.NoError(t, a.Close())
	require.NoError(t, goleak.Find(ign), "goroutines left after Close")
	require.EqualValues(t, 1, f.stream(c).completes.Load(), "the last assembler's Close completes the Stream")

	require.ErrorIs(t, c.send(a, false, "A", 0, "late", sfT0), ErrAssemblerClosed)
	require.ErrorIs(t, a.Assemble(c.flow(false), c.seg(false, 1, "A", []byte("x"))), ErrAssemblerClosed)
	require.ErrorIs(t, a.AssembleWithTimestamp(c.flow(false), c.seg(false, 1, "S", nil), sfT0), ErrAssemblerClosed)
	require.ErrorIs(t, a.AssembleWithContext(c.flow(false), c.seg(false, 1, "S", nil), nil), ErrAssemblerClosed)
	fl, cl := a.FlushWithOptions(FlushOptions{T: sfT0.Add(time.Hour), TC: sfT0.Add(time.Hour)})
	require.Zero(t, fl+cl)
	fl, cl = a.FlushCloseOlderThan(sfT0.Add(time.Hour))
	require.Zero(t, fl+cl)
	require.Zero(t, a.FlushAll())
	require.NoError(t, a.Close())
	require.NoError(t, a.Close())
	st := a.Stats()
	require.GreaterOrEqual(t, st.Errors, int64(4))
	require.EqualValues(t, 1, f.newCalls.Load(), "nothing is created after Close")
	f.requireSound(t)
}

// ---------------------------------------------------------------------------
// Exactly one ReassemblyComplete, on every path

// Property: every Stream gets exactly one ReassemblyComplete, at the moment
// its path says it is over — FIN both ways, one RST, capture-time timeout,
// wall-clock timeout, FlushWithOptions, FlushCloseOlderThan, FlushAll, the
// last SafeAssembler's Close — and never again afterwards (later Close,
// FlushAll, pool Close).
func TestSafeCompleteExactlyOnce(t *testing.T) {
	sfNoLeaks(t)

	// finish closes everything and checks no second completion happened.
	finish := func(t *testing.T, f *sfFactory, pool *SafeStreamPool, as ...*SafeAssembler) {
		t.Helper()
		for _, a := range as {
			_ = a.FlushAll()
			require.NoError(t, a.Close())
			require.NoError(t, a.Close())
		}
		require.NoError(t, pool.Close())
		require.NoError(t, pool.Close())
		require.Zero(t, pool.Stats().ActiveConnections)
		f.requireSound(t)
	}

	t.Run("FIN both ways", func(t *testing.T) {
		f := newSFFactory()
		pool := NewSafeStreamPool(f, 0)
		a := newSFAssembler(t, pool, sfReplayOpts())
		c := sfConnN(1)
		c.open(t, a, sfT0)
		require.NoError(t, c.send(a, false, "A", 0, "GET /", sfT0))
		require.NoError(t, c.send(a, true, "A", 0, "200 OK", sfT0))
		require.NoError(t, c.send(a, false, "FA", 5, "", sfT0))
		s := f.stream(c)
		require.Zero(t, s.completes.Load(), "one FIN does not complete")
		require.NoError(t, c.send(a, true, "FA", 6, "", sfT0))
		require.EqualValues(t, 1, s.completes.Load())
		require.Equal(t, "GET /", s.bytes(0))
		require.Equal(t, "200 OK", s.bytes(1))
		require.Zero(t, pool.Stats().ActiveConnections)
		// The final ACK must not resurrect the connection.
		require.NoError(t, c.send(a, false, "A", 6, "", sfT0))
		require.EqualValues(t, 1, f.newCalls.Load())
		finish(t, f, pool, a)
	})

	t.Run("RST closes both directions", func(t *testing.T) {
		f := newSFFactory()
		pool := NewSafeStreamPool(f, 0)
		a := newSFAssembler(t, pool, sfReplayOpts())
		c := sfConnN(1)
		c.open(t, a, sfT0)
		require.NoError(t, c.send(a, false, "A", 0, "abc", sfT0))
		require.NoError(t, c.send(a, true, "A", 0, "xyz", sfT0))
		require.NoError(t, c.send(a, true, "A", 10, "later", sfT0)) // buffered after a 7-byte hole
		require.NoError(t, c.send(a, false, "R", 3, "", sfT0))
		s := f.stream(c)
		require.EqualValues(t, 1, s.completes.Load(), "one RST must complete the connection")
		require.Equal(t, "abc", s.bytes(0))
		require.Equal(t, "xyzlater", s.bytes(1), "the other direction's buffered bytes are flushed")
		require.Equal(t, 7, s.gap(1))
		require.Zero(t, pool.Stats().ActiveConnections)
		finish(t, f, pool, a)
	})

	t.Run("capture-time timeout", func(t *testing.T) {
		f := newSFFactory()
		pool := NewSafeStreamPool(f, 0)
		opts := sfReplayOpts()
		opts.ConnectionTimeout = time.Minute
		a := newSFAssembler(t, pool, opts)
		idle, busy := sfConnN(1), sfConnN(2)
		idle.open(t, a, sfT0)
		require.NoError(t, idle.send(a, false, "A", 0, "ab", sfT0))
		require.NoError(t, idle.send(a, false, "A", 5, "zz", sfT0)) // buffered after a hole
		busy.open(t, a, sfT0.Add(30*time.Second))
		require.NoError(t, busy.send(a, false, "A", 0, "1", sfT0.Add(40*time.Second)))
		require.Zero(t, f.stream(idle).completes.Load(), "idle for 40s of capture time < 1m")
		// 61s of capture time later: the sweep (every 15s) closes idle.
		require.NoError(t, busy.send(a, false, "A", 1, "2", sfT0.Add(61*time.Second)))
		require.EqualValues(t, 1, f.stream(idle).completes.Load(), "idle past ConnectionTimeout in capture time")
		require.Equal(t, "abzz", f.stream(idle).bytes(0), "buffered bytes are delivered at the timeout")
		require.Equal(t, 3, f.stream(idle).gap(0))
		require.Zero(t, f.stream(busy).completes.Load(), "busy saw a packet 0s ago")
		require.EqualValues(t, 2, a.Stats().ConnectionTimeouts, "both directions of idle timed out")
		finish(t, f, pool, a)
	})

	t.Run("wall-clock timeout", func(t *testing.T) {
		f := newSFFactory()
		pool := NewSafeStreamPool(f, 0)
		a := newSFAssembler(t, pool, SafeAssemblerOptions{
			FlushInterval: 20 * time.Millisecond, ConnectionTimeout: 50 * time.Millisecond,
		})
		c := sfConnN(1)
		now := time.Now()
		c.open(t, a, now)
		require.NoError(t, c.send(a, false, "A", 0, "ab", now))
		require.NoError(t, c.send(a, false, "A", 4, "cd", now))
		s := f.stream(c)
		require.Eventually(t, func() bool { return s.completes.Load() > 0 }, 5*time.Second, 5*time.Millisecond,
			"the background flusher closes a connection idle past ConnectionTimeout")
		require.Equal(t, "abcd", s.bytes(0))
		require.Equal(t, 2, s.gap(0))
		require.Positive(t, a.Stats().ConnectionTimeouts)
		require.Zero(t, pool.Stats().ActiveConnections)
		finish(t, f, pool, a)
	})

	t.Run("FlushWithOptions", func(t *testing.T) {
		f := newSFFactory()
		pool := NewSafeStreamPool(f, 0)
		a := newSFAssembler(t, pool, sfReplayOpts())
		c := sfConnN(1)
		c.open(t, a, sfT0)
		require.NoError(t, c.send(a, false, "A", 0, "ab", sfT0.Add(time.Second)))
		require.NoError(t, c.send(a, false, "A", 10, "zz", sfT0.Add(2*time.Second)))
		require.NoError(t, c.send(a, true, "A", 0, "x", sfT0.Add(3*time.Second)))
		fl, cl := a.FlushWithOptions(FlushOptions{T: sfT0.Add(2500 * time.Millisecond)})
		require.Equal(t, 1, fl)
		require.Zero(t, cl)
		s := f.stream(c)
		require.Equal(t, "abzz", s.bytes(0))
		require.Equal(t, 8, s.gap(0))
		require.Zero(t, s.completes.Load(), "a flush without TC closes nothing")
		fl, cl = a.FlushWithOptions(FlushOptions{T: sfT0.Add(time.Hour), TC: sfT0.Add(time.Hour)})
		require.Zero(t, fl)
		require.Equal(t, 2, cl)
		require.EqualValues(t, 1, s.completes.Load())
		finish(t, f, pool, a)
	})

	t.Run("FlushCloseOlderThan", func(t *testing.T) {
		f := newSFFactory()
		pool := NewSafeStreamPool(f, 0)
		a := newSFAssembler(t, pool, sfReplayOpts())
		old, young := sfConnN(1), sfConnN(2)
		old.open(t, a, sfT0)
		young.open(t, a, sfT0.Add(10*time.Second))
		_, cl := a.FlushCloseOlderThan(sfT0.Add(5 * time.Second))
		require.Equal(t, 2, cl)
		require.EqualValues(t, 1, f.stream(old).completes.Load())
		require.Zero(t, f.stream(young).completes.Load())
		require.EqualValues(t, 1, pool.Stats().ActiveConnections)
		finish(t, f, pool, a)
	})

	t.Run("FlushAll", func(t *testing.T) {
		f := newSFFactory()
		pool := NewSafeStreamPool(f, 0)
		a := newSFAssembler(t, pool, sfReplayOpts())
		c1, c2 := sfConnN(1), sfConnN(2)
		c1.open(t, a, sfT0)
		c2.open(t, a, sfT0)
		require.NoError(t, c1.send(a, true, "A", 3, "tail", sfT0))
		require.Equal(t, 2, a.FlushAll())
		require.EqualValues(t, 1, f.stream(c1).completes.Load())
		require.EqualValues(t, 1, f.stream(c2).completes.Load())
		require.Equal(t, "tail", f.stream(c1).bytes(1))
		require.Zero(t, pool.Stats().ActiveConnections)
		require.Zero(t, a.Stats().PageCache.QueuedBytes)
		finish(t, f, pool, a)
	})

	t.Run("last SafeAssembler Close", func(t *testing.T) {
		f := newSFFactory()
		pool := NewSafeStreamPool(f, 0)
		a1 := newSFAssembler(t, pool, SafeAssemblerOptions{})
		a2 := newSFAssembler(t, pool, SafeAssemblerOptions{})
		x, y := sfConnN(1), sfConnN(2)
		x.open(t, a1, sfT0)
		require.NoError(t, x.send(a1, false, "A", 4, "held", sfT0))
		y.open(t, a2, sfT0)
		require.NoError(t, a1.Close())
		require.Zero(t, f.stream(x).completes.Load(), "a2 is still open: a1's Close must not end the pool's connections")
		require.Zero(t, f.stream(y).completes.Load())
		require.NoError(t, x.send(a2, false, "A", 0, "0123", sfT0), "connections live on through the other assembler")
		require.NoError(t, a2.Close())
		require.EqualValues(t, 1, f.stream(x).completes.Load())
		require.EqualValues(t, 1, f.stream(y).completes.Load())
		require.Equal(t, "0123held", f.stream(x).bytes(0))
		require.NoError(t, a1.Close())
		finish(t, f, pool)
	})
}

// Property: capture time and wall-clock time are never compared: with the
// background flusher on and capture timestamps years in the past, a
// connection is not closed while its ConnectionTimeout of wall-clock time
// has not passed, however old its capture timestamps are.
func TestSafeOldCaptureTimesNotComparedWithWallClock(t *testing.T) {
	sfNoLeaks(t)
	f := newSFFactory()
	pool := NewSafeStreamPool(f, 0)
	a := newSFAssembler(t, pool, SafeAssemblerOptions{
		FlushInterval: 5 * time.Millisecond, ConnectionTimeout: time.Hour,
	})
	c := sfConnN(1)
	old := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	c.open(t, a, old)
	require.NoError(t, c.send(a, false, "A", 0, "data", old))
	time.Sleep(50 * time.Millisecond) // ten flusher rounds
	require.Zero(t, f.stream(c).completes.Load())
	require.NoError(t, a.Close())
	require.EqualValues(t, 1, f.stream(c).completes.Load())
	f.requireSound(t)
}

// Property: FlushWithOptions and FlushCloseOlderThan are visible in Stats:
// ConnectionsFlush counts the directions a flush pushed over a hole and
// ConnectionsClosed the directions it closed, matching what the calls
// returned.
func TestSafeFlushCountedInStats(t *testing.T) {
	sfNoLeaks(t)
	f := newSFFactory()
	pool := NewSafeStreamPool(f, 0)
	a := newSFAssembler(t, pool, sfReplayOpts())
	c := sfConnN(1)
	c.open(t, a, sfT0)
	require.NoError(t, c.send(a, false, "A", 10, "zz", sfT0))
	fl, cl := a.FlushWithOptions(FlushOptions{T: sfT0.Add(time.Second)})
	require.Equal(t, 1, fl)
	fl2, cl2 := a.FlushCloseOlderThan(sfT0.Add(time.Second))
	require.Equal(t, 2, cl+cl2)
	st := a.Stats()
	assert.EqualValues(t, fl+fl2, st.ConnectionsFlush, "Stats().ConnectionsFlush")
	assert.EqualValues(t, cl+cl2, st.ConnectionsClosed, "Stats().ConnectionsClosed")
	require.NoError(t, a.Close())
	f.requireSound(t)
}

// ---------------------------------------------------------------------------
// Panicking Streams

// Property: a panic in StreamFactory.New, Stream.Accept,
// Stream.ReassembledSG or Stream.ReassemblyComplete never escapes: the call
// returns an error wrapping ErrStreamPanic, Stats().PanicsRecovered counts
// it, the logger reports it, the connection is closed at once (its Stream,
// if any, completed exactly once, and it leaves the pool), and the
// assembler keeps working for other connections.
func TestSafeStreamPanicRecovered(t *testing.T) {
	sfNoLeaks(t)
	for _, where := range []string{"StreamFactory.New", "Stream.Accept", "Stream.ReassembledSG", "Stream.ReassemblyComplete"} {
		t.Run(where, func(t *testing.T) {
			var logs sfLogBuffer
			f := newSFFactory()
			bad, good := sfConnN(1), sfConnN(2)
			f.panicIn, f.panicKey = where, bad.key()
			pool := NewSafeStreamPool(f, 0)
			opts := sfReplayOpts()
			opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			a := newSFAssembler(t, pool, opts)

			// Drive bad until its callback panics.
			steps := []struct {
				fromServer bool
				flags      string
				off        int
				payload    string
			}{
				{false, "S", 0, ""}, {true, "SA", 0, ""},
				{false, "A", 0, "req"}, {true, "A", 0, "resp"},
				{false, "FA", 3, ""}, {true, "FA", 4, ""},
			}
			var err error
			for _, st := range steps {
				var perr error
				require.NotPanics(t, func() { perr = bad.send(a, st.fromServer, st.flags, st.off, st.payload, sfT0) })
				if perr != nil {
					err = perr
					break
				}
			}
			require.True(t, f.panicked.Load(), "the callback was never reached")
			require.ErrorIs(t, err, ErrStreamPanic)
			require.EqualValues(t, 1, a.Stats().PanicsRecovered)
			require.Contains(t, logs.String(), where, "the recovered panic is logged")
			assert.Zero(t, pool.Stats().ActiveConnections, "the panicking connection is closed at once")
			if s := f.stream(bad); s != nil {
				assert.EqualValues(t, 1, s.completes.Load(), "the panicking Stream is completed once, at once")
			} else {
				require.Equal(t, "StreamFactory.New", where)
			}

			// The assembler keeps working for other connections.
			good.open(t, a, sfT0)
			require.NoError(t, good.send(a, false, "A", 0, "ping", sfT0))
			require.NoError(t, good.send(a, true, "A", 0, "pong", sfT0))
			require.NoError(t, good.send(a, false, "FA", 4, "", sfT0))
			require.NoError(t, good.send(a, true, "FA", 4, "", sfT0))
			gs := f.stream(good)
			require.Equal(t, "ping", gs.bytes(0))
			require.Equal(t, "pong", gs.bytes(1))
			require.EqualValues(t, 1, gs.completes.Load())

			require.NoError(t, a.Close())
			require.NoError(t, pool.Close())
			f.requireSound(t)
			sfRequireConserved(t, a.Stats())
		})
	}
}

// ---------------------------------------------------------------------------
// Page budget

// Property: the page budget holds even for a segment larger than a page:
// with MaxBufferedPagesTotal 2, an out-of-order segment of three pages
// never makes PagesInUse (hence PagesPeak) exceed 2; the hole is skipped
// and reported instead.
func TestSafePageBudgetLargeSegment(t *testing.T) {
	sfNoLeaks(t)
	f := newSFFactory()
	pool := NewSafeStreamPool(f, 0)
	opts := sfReplayOpts()
	opts.MaxBufferedPagesTotal, opts.MaxBufferedPagesPerConnection = 2, 2
	a := newSFAssembler(t, pool, opts)
	c := sfConnN(1)
	c.open(t, a, sfT0)
	big := strings.Repeat("x", 5000)
	require.NoError(t, c.send(a, false, "A", 100, big, sfT0))
	st := a.Stats()
	sfRequireConserved(t, st)
	require.Equal(t, big, f.stream(c).bytes(0), "the forced skip delivers the segment")
	require.Equal(t, 100, f.stream(c).gap(0))
	require.EqualValues(t, 1, st.ForcedSkips)
	assert.LessOrEqual(t, st.PageCache.PagesPeak, int64(2), "PagesPeak exceeds MaxBufferedPagesTotal")
	require.NoError(t, a.Close())
	f.requireSound(t)
}

// Property: a forced skip is a hole skipped and reported to a Stream
// (ForcedSkips <= Gaps), and once a packet has been handled the pool is
// back within its budget (PagesInUse <= MaxBufferedPagesTotal), even when
// the forced delivery of the first hole does not free enough pages.
func TestSafePageBudgetRestoredAfterForcedSkip(t *testing.T) {
	sfNoLeaks(t)
	f := newSFFactory()
	pool := NewSafeStreamPool(f, 0)
	opts := sfReplayOpts()
	opts.MaxBufferedPagesTotal, opts.MaxBufferedPagesPerConnection = 2, 2
	a := newSFAssembler(t, pool, opts)
	x, y := sfConnN(1), sfConnN(2)
	x.open(t, a, sfT0)
	require.NoError(t, x.send(a, false, "A", 100, "x", sfT0))                       // one page
	require.NoError(t, x.send(a, false, "A", 200, strings.Repeat("y", 5000), sfT0)) // three pages, after another hole
	st := a.Stats()
	sfRequireConserved(t, st)
	assert.LessOrEqual(t, st.PageCache.PagesInUse, int64(2), "pages in use after the packet was handled")

	// An out-of-order FIN without data on a connection that buffers nothing.
	y.open(t, a, sfT0)
	require.NoError(t, y.send(a, false, "FA", 10, "", sfT0))
	st = a.Stats()
	assert.Equal(t, f.gaps.Load(), st.Gaps)
	assert.LessOrEqual(t, st.ForcedSkips, st.Gaps, "ForcedSkips counts a skip that no Stream saw")
	require.NoError(t, a.Close())
	f.requireSound(t)
}

// Property: PagesPeak, like PagesInUse, stays within
// MaxBufferedPagesTotal when the budget is filled exactly, one page at a
// time.
func TestSafePagesPeakWithinBudget(t *testing.T) {
	sfNoLeaks(t)
	f := newSFFactory()
	pool := NewSafeStreamPool(f, 0)
	opts := sfReplayOpts()
	opts.MaxBufferedPagesTotal, opts.MaxBufferedPagesPerConnection = 2, 2
	a := newSFAssembler(t, pool, opts)
	c := sfConnN(1)
	c.open(t, a, sfT0)
	for _, off := range []int{10, 20, 30, 40} {
		require.NoError(t, c.send(a, false, "A", off, "p", sfT0))
		st := a.Stats()
		require.LessOrEqual(t, st.PageCache.PagesInUse, int64(2))
		require.LessOrEqual(t, st.PageCache.PagesPeak, int64(2), "PagesPeak after the page at %d", off)
	}
	require.NoError(t, a.Close())
	f.requireSound(t)
}

// Property: bytes buffered for a direction are never lost from the page
// budget: when making room for a segment pushes the direction over its FIN
// (closing it), the segment is not queued on the closed direction; after
// Close no page is in use and nothing is queued. (Regression: PagesInUse
// and QueuedBytes stayed at 1 page / 5 bytes for ever.)
func TestSafeNoPagesLeakedWhenMakingRoomClosesDirection(t *testing.T) {
	sfNoLeaks(t)
	f := newSFFactory()
	pool := NewSafeStreamPool(f, 0)
	opts := sfReplayOpts()
	opts.MaxBufferedPagesTotal, opts.MaxBufferedPagesPerConnection = 100, 2
	a := newSFAssembler(t, pool, opts)
	c := sfConnN(1)
	c.open(t, a, sfT0)
	require.NoError(t, c.send(a, false, "FA", 10, "", sfT0))     // FIN ahead, out of order
	require.NoError(t, c.send(a, false, "A", 5, "fghij", sfT0))  // page 1, ends at the FIN
	require.NoError(t, c.send(a, false, "A", 20, "uvwxy", sfT0)) // page 2, past the FIN
	_ = c.send(a, false, "A", 30, "UVWXY", sfT0)                 // no room: pushing reaches the FIN
	require.NoError(t, c.send(a, true, "FA", 0, "", sfT0))
	require.NoError(t, a.Close())
	st := a.Stats()
	sfRequireConserved(t, st)
	require.Equal(t, "fghij", f.stream(c).bytes(0))
	assert.Zero(t, st.PageCache.QueuedBytes, "bytes left queued after Close")
	assert.Zero(t, st.PageCache.PagesInUse, "pages left in use after Close")
	f.requireSound(t)
}

// sfPayload is n bytes of direction dir of c from offset off, as
// sfContent has them.
func sfPayload(c sfConn, dir, off, n int) string {
	seed := sfSeed(c.key())
	b := make([]byte, n)
	for i := range b {
		b[i] = sfContent(seed, dir, off+i)
	}
	return string(b)
}

// Property: when room has to be made for an out-of-order segment by
// skipping the first hole, and that skip makes the segment in order (or
// partly delivered already), its bytes are delivered at once and exactly
// once: never queued at or below the delivery point, never re-delivered
// with a negative Skip, and the forced skip is the one reported.
func TestSafeMakeRoomThenSegmentInOrder(t *testing.T) {
	sfNoLeaks(t)
	f := newSFFactory()
	f.checkContent = true
	pool := NewSafeStreamPool(f, 0)
	opts := sfReplayOpts()
	opts.MaxBufferedPagesTotal, opts.MaxBufferedPagesPerConnection = 100, 2
	a := newSFAssembler(t, pool, opts)
	c := sfConnN(1)
	c.open(t, a, sfT0)
	require.NoError(t, c.send(a, false, "A", 10, sfPayload(c, 0, 10, 10), sfT0)) // [10,20)
	require.NoError(t, c.send(a, false, "A", 40, sfPayload(c, 0, 40, 10), sfT0)) // [40,50)
	// No room: [10,20) is pushed out over its hole; [15,35) then follows
	// the delivery point directly.
	require.NoError(t, c.send(a, false, "A", 15, sfPayload(c, 0, 15, 20), sfT0))
	s := f.stream(c)
	assert.Equal(t, sfPayload(c, 0, 10, 25), s.bytes(0), "bytes [10,35) are deliverable after the packet")
	st := a.Stats()
	sfRequireConserved(t, st)
	assert.Equal(t, st.Gaps, st.ForcedSkips)
	require.NoError(t, a.Close())
	require.Equal(t, f.firstBytes.Load(), a.Stats().BytesDelivered)
	assert.Equal(t, 35, len(s.bytes(0)), "each byte delivered once")
	assert.Equal(t, 15, s.gap(0), "holes [0,10) and [35,40)")
	f.requireSound(t)
}

// ---------------------------------------------------------------------------
// Conservation on random traffic

// sfPkt is one generated packet.
type sfPkt struct {
	c          sfConn
	fromServer bool
	tcp        *layers.TCP
}

// sfTraffic generates nConns connections of random traffic: both
// directions cut into random segments (some larger than a page), with
// duplicates, overlapping retransmissions, losses, segments the Stream
// rejects (Window 1), bare ACKs, FIN or RST or neither, SYN retransmissions,
// then locally reordered and interleaved. Each connection starts with the
// client's SYN and the server's SYN-ACK. Every copy of a byte carries
// sfContent.
func sfTraffic(r *rand.Rand, firstID, nConns int) []sfPkt {
	perConn := make([][]sfPkt, nConns)
	for i := range perConn {
		c := sfConnN(firstID + i)
		seed := sfSeed(c.key())
		var body []sfPkt
		mk := func(fromServer bool, off, n int, flags string) sfPkt {
			d := sfBtoi(fromServer)
			var p []byte
			if n > 0 {
				p = make([]byte, n)
				for k := range p {
					p[k] = sfContent(seed, d, off+k)
				}
			}
			return sfPkt{c, fromServer, c.seg(fromServer, c.seqAt(fromServer, off), flags, p)}
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
				body = append(body, sfPkt{c, fromServer, c.seg(fromServer, c.seqAt(fromServer, -1), flags, nil)})
			}
		}
		// Local reordering: each packet may swap with one up to 5 later.
		for k := range body {
			if j := k + r.Intn(5); j < len(body) {
				body[k], body[j] = body[j], body[k]
			}
		}
		syn := []sfPkt{
			{c, false, c.seg(false, c.seqAt(false, -1), "S", nil)},
			{c, true, c.seg(true, c.seqAt(true, -1), "SA", nil)},
		}
		perConn[i] = append(syn, body...)
	}
	return sfInterleave(r, perConn)
}

// sfInterleave merges lists at random, keeping the order within each.
func sfInterleave(r *rand.Rand, lists [][]sfPkt) []sfPkt {
	lists = append([][]sfPkt(nil), lists...)
	var out []sfPkt
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

// Property (conservation): on random traffic through one SafeAssembler —
// reordering, duplicates, overlaps, losses, rejected segments, FIN, RST,
// KeepFrom, forced skips at small page limits, capture-time timeouts —
// after every packet
//
//	BytesProcessed == BytesDelivered + BytesOverlap + BytesOverwritten +
//	                  BytesDiscarded + PageCache.QueuedBytes
//
// and the bytes the Streams saw for the first time add up to
// BytesDelivered; the Streams' skips add up to Gaps and GapBytes, forced
// skips are among them; every delivered byte is the right byte for its
// offset; every Stream completes exactly once; after Close nothing is
// queued and no page is in use.
func TestSafeConservationRandomTraffic(t *testing.T) {
	sfNoLeaks(t)
	var total AssemblerStats
	for seed := int64(1); seed <= 24; seed++ {
		r := rand.New(rand.NewSource(seed))
		f := newSFFactory()
		f.rejectWindow1 = true
		f.checkContent = true
		f.keepFrom = func(r *rand.Rand, n int) int {
			if n > 0 && r.Intn(5) == 0 {
				return r.Intn(n)
			}
			return -1
		}
		pool := NewSafeStreamPool(f, 0)
		opts := sfReplayOpts()
		opts.MaxBufferedPagesTotal, opts.MaxBufferedPagesPerConnection = 10, 4
		opts.ConnectionTimeout = time.Hour
		if seed%2 == 0 {
			opts.ConnectionTimeout = 40 * time.Millisecond // packets are 1ms apart in capture time
		}
		a, err := NewSafeAssembler(pool, opts)
		require.NoError(t, err)

		pkts := sfTraffic(r, 1, 6)
		for i, p := range pkts {
			ts := sfT0.Add(time.Duration(i) * time.Millisecond)
			err := a.AssembleWithContext(p.c.flow(p.fromServer), p.tcp, sfAt(ts))
			if err != nil {
				require.ErrorIs(t, err, ErrConnectionClosed, "seed %d packet %d", seed, i)
			}
			st := a.Stats()
			require.Equal(t, st.BytesProcessed,
				st.BytesDelivered+st.BytesOverlap+st.BytesOverwritten+st.BytesDiscarded+st.PageCache.QueuedBytes,
				"seed %d packet %d: conservation: %+v", seed, i, st)
			require.Equal(t, f.firstBytes.Load(), st.BytesDelivered, "seed %d packet %d: bytes seen by Streams", seed, i)
		}
		require.NoError(t, a.Close())
		st := a.Stats()
		sfRequireConserved(t, st)
		assert.Zero(t, st.PageCache.QueuedBytes, "seed %d: bytes queued after Close", seed)
		assert.Zero(t, st.PageCache.PagesInUse, "seed %d: pages in use after Close", seed)
		require.Equal(t, f.firstBytes.Load(), st.BytesDelivered, "seed %d", seed)
		require.Equal(t, f.deliveries.Load(), st.Deliveries, "seed %d", seed)
		require.Equal(t, f.gaps.Load(), st.Gaps, "seed %d: Gaps vs skips seen", seed)
		require.Equal(t, f.gapBytes.Load(), st.GapBytes, "seed %d: GapBytes vs skips seen", seed)
		require.LessOrEqual(t, st.ForcedGapBytes, st.GapBytes, "seed %d", seed)
		assert.LessOrEqual(t, st.ForcedSkips, st.Gaps+f.unknownSkips.Load(), "seed %d: forced skips not reported to a Stream", seed)
		require.EqualValues(t, len(f.all()), st.StreamsCompleted, "seed %d", seed)
		require.EqualValues(t, len(f.all()), pool.Stats().TotalCreated, "seed %d", seed)
		require.Zero(t, pool.Stats().ActiveConnections, "seed %d", seed)
		f.requireSound(t)

		total.ForcedSkips += st.ForcedSkips
		total.BytesOverlap += st.BytesOverlap
		total.BytesOverwritten += st.BytesOverwritten
		total.BytesRejected += st.BytesRejected
		total.BytesAfterClose += st.BytesAfterClose
		total.ConnectionTimeouts += st.ConnectionTimeouts
		total.Gaps += st.Gaps
	}
	// The generator really exercises every term of the equation.
	for name, v := range map[string]int64{
		"ForcedSkips": total.ForcedSkips, "BytesOverlap": total.BytesOverlap,
		"BytesOverwritten": total.BytesOverwritten, "BytesRejected": total.BytesRejected,
		"BytesAfterClose": total.BytesAfterClose, "ConnectionTimeouts": total.ConnectionTimeouts,
		"Gaps": total.Gaps,
	} {
		require.Positive(t, v, "random traffic never exercised %s", name)
	}
}
