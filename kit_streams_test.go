package reassembly

// The kit's trace half: packets described as segments (trSeg, either
// direction, any flags, any sequence numbers, capture times) built into
// decoded layers that both packages key connections by, one record (trRec)
// that our package's Streams (the kit's kitStream, contract checks always on)
// and upstream's (an adapter: upstream breaks the contract, which is what some
// tests show) write, so that one trace runs against each and their records
// compare; runners for
// the drop-in face (trOurs) and upstream (trUp); and the exactly-once check.

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	upstream "github.com/google/gopacket/reassembly"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ---------------------------------------------------------------------------
// Packets

var trBase = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

const (
	trClientPort = 40000
	trServerPort = 80
)

// trCtx is the AssemblerContext handed in with each packet; it satisfies the
// AssemblerContext of both packages.
type trCtx gopacket.CaptureInfo

func (c *trCtx) GetCaptureInfo() gopacket.CaptureInfo { return gopacket.CaptureInfo(*c) }

// trSeg describes one packet. All packets go client->server unless rev.
type trSeg struct {
	rev   bool   // server->client
	seq   uint32 // sequence number
	ack   uint32 // acknowledgment number (the A flag sets the ACK bit)
	flags string // any of S A F R P
	data  string
	at    time.Duration // capture time after trBase; 0: (index+1) ms
	port  uint16        // client port; 0: trClientPort
	host  byte          // client address 10.0.1.host; 0: 10.0.0.1
}

type trPacket struct {
	flow gopacket.Flow
	tcp  *layers.TCP
	ctx  *trCtx
}

// trMake builds one segment (segment.build: serialized and decoded, so
// that TransportFlow works on the layer, which upstream keys connections
// by).
func trMake(t testing.TB, s trSeg, ts time.Time) trPacket {
	t.Helper()
	cport := s.port
	if cport == 0 {
		cport = trClientPort
	}
	cli, _ := netip.AddrFromSlice(trClientIP(s.host))
	has := func(f rune) bool { return strings.ContainsRune(s.flags, f) }
	p := segment{
		client: netip.AddrPortFrom(cli, cport), server: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, 2}), trServerPort),
		fromServer: s.rev, seq: s.seq, ack: s.ack,
		syn: has('S'), hasAck: has('A'), fin: has('F'), rst: has('R'), psh: has('P'),
		payload: []byte(s.data), ts: ts,
	}.build().trPacket()
	require.Equal(t, s.data, string(p.tcp.Payload), "packet builder payload")
	return p
}

func trClientIP(host byte) net.IP {
	if host == 0 {
		return net.IP{10, 0, 0, 1}
	}
	return net.IP{10, 0, 1, host}
}

// trEndpoint is a client address (trClientIP(host)) and port.
type trEndpoint struct {
	host byte
	port uint16
}

// at places s on ep's connection.
func (ep trEndpoint) at(s trSeg) trSeg {
	s.host, s.port = ep.host, ep.port
	return s
}

// key is the key of ep's connection to the server.
func (ep trEndpoint) key() connKey {
	port := ep.port
	if port == 0 {
		port = trClientPort
	}
	k, _ := makeKey(gopacket.NewFlow(layers.EndpointIPv4, trClientIP(ep.host), net.IP{10, 0, 0, 2}),
		&layers.TCP{SrcPort: layers.TCPPort(port), DstPort: trServerPort})
	return k
}

// shardOf returns the shard of a key.
func (t *connTable) shardOf(k *connKey) *shard { return t.shard(t.hash(k)) }

// trShardMates returns n client endpoints whose connections fall in one
// shard of t, the first being port 10000 of the default host.
func trShardMates(t *connTable, n int) []trEndpoint {
	eps := []trEndpoint{{port: 10000}}
	first := eps[0].key()
	target := t.shardOf(&first)
	for port := uint16(10001); len(eps) < n && port < 65535; port++ {
		for host := 0; host < 256; host++ {
			ep := trEndpoint{host: byte(host), port: port}
			if k := ep.key(); t.shardOf(&k) == target {
				eps = append(eps, ep)
				break
			}
		}
	}
	return eps
}

func trBuild(t testing.TB, segs []trSeg) []trPacket {
	t.Helper()
	out := make([]trPacket, len(segs))
	for i, s := range segs {
		ts := trBase.Add(time.Duration(i+1) * time.Millisecond)
		if s.at != 0 {
			ts = trBase.Add(s.at)
		}
		out[i] = trMake(t, s, ts)
	}
	return out
}

// trBytes returns n deterministic printable bytes; different seeds give
// different patterns.
func trBytes(n int, seed int) string {
	const alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	for i := range b {
		b[i] = alpha[(i+seed*7)%len(alpha)]
	}
	return string(b)
}

// ---------------------------------------------------------------------------
// The comparison record: one per run, written by kitStream (ours) and by
// trUpStream (upstream).

// trSG is what both packages' ScatterGather offer with identical signatures.
type trSG interface {
	Lengths() (int, int)
	Fetch(int) []byte
	KeepFrom(int)
	CaptureInfo(int) gopacket.CaptureInfo
}

type trDelivery struct {
	dir           int // 0: client->server as labelled by the assembler, 1: server->client
	start, end    bool
	skip          int
	data          []byte // every byte of the delivery, kept ones included
	saved         int    // Lengths' second value
	afterComplete bool
}

type trStream struct {
	id               int
	netFlow, tcpFlow gopacket.Flow
	ports            [2]layers.TCPPort // the ports of the first packet
	accepts          int
	wrongPackets     int       // packets of another connection
	got              [2][]byte // new bytes per direction
	deliveries       []trDelivery
	completes        int
	nilCtx           int
	completeCI       []gopacket.CaptureInfo
}

// flipped tells whether the assembler's client->server label is the
// server's direction (the server's packet came first).
func (s *trStream) flipped() bool { return s.ports[0] == trServerPort }

// data returns what the client (c2s) or the server sent, by real direction.
func (s *trStream) data(fromServer bool) string {
	i := 0
	if fromServer != s.flipped() {
		i = 1
	}
	return string(s.got[i])
}

// dataDeliveries returns the deliveries of a direction that carry bytes or
// an end.
func (s *trStream) dataDeliveries(dir int) []trDelivery {
	var out []trDelivery
	for _, d := range s.deliveries {
		if d.dir == dir && (len(d.data) > 0 || d.end) {
			out = append(out, d)
		}
	}
	return out
}

type trRec struct {
	mu        sync.Mutex
	streams   []*trStream
	news      int
	nilStream bool // the factory returns nil
	keepOpen  bool // ReassemblyComplete returns false
	// refuseStart clears Accept's start: no direction starts without a SYN;
	// forceStart sets it: a direction starts at its first segment.
	refuseStart, forceStart bool
	// log is "new N" and "complete N" in the order they happened.
	log        []string
	beforeNew  func()
	onSG       func(st *trStream, sg trSG, d *trDelivery)
	sgAfterEnd int // deliveries after ReassemblyComplete, all streams
}

func (r *trRec) newStream(netFlow, tcpFlow gopacket.Flow, tcp *layers.TCP) *trStream {
	if r.beforeNew != nil {
		r.beforeNew()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.news++
	if r.nilStream {
		return nil
	}
	st := &trStream{id: len(r.streams), netFlow: netFlow, tcpFlow: tcpFlow, ports: [2]layers.TCPPort{tcp.SrcPort, tcp.DstPort}}
	r.streams = append(r.streams, st)
	r.log = append(r.log, fmt.Sprintf("new %d", st.id))
	return st
}

func (r *trRec) accept(st *trStream, tcp *layers.TCP, start *bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.refuseStart {
		*start = false
	}
	if r.forceStart {
		*start = true
	}
	st.accepts++
	if !(tcp.SrcPort == st.ports[0] && tcp.DstPort == st.ports[1]) && !(tcp.SrcPort == st.ports[1] && tcp.DstPort == st.ports[0]) {
		st.wrongPackets++
	}
	return true
}

func (r *trRec) deliver(st *trStream, dir int, start, end bool, skip int, sg trSG) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n, saved := sg.Lengths()
	d := trDelivery{dir: dir, start: start, end: end, skip: skip, saved: saved,
		data: slices.Clone(sg.Fetch(n)), afterComplete: st.completes > 0}
	if d.afterComplete {
		r.sgAfterEnd++
	}
	if saved <= len(d.data) {
		st.got[dir] = append(st.got[dir], d.data[saved:]...)
	}
	if r.onSG != nil {
		r.onSG(st, sg, &d)
	}
	st.deliveries = append(st.deliveries, d)
}

func (r *trRec) complete(st *trStream, nilCtx bool, ci gopacket.CaptureInfo) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	st.completes++
	r.log = append(r.log, fmt.Sprintf("complete %d", st.id))
	if nilCtx {
		st.nilCtx++
	}
	st.completeCI = append(st.completeCI, ci)
	return !r.keepOpen
}

func (r *trRec) stream(i int) *trStream {
	r.mu.Lock()
	defer r.mu.Unlock()
	if i >= len(r.streams) {
		return &trStream{id: -1}
	}
	return r.streams[i]
}

func trDir(serverToClient bool) int {
	if serverToClient {
		return 1
	}
	return 0
}

// Ours: the kit's recording Stream (kitStream), which checks the Stream
// contract as it goes, with this record on top.

// ours is a StreamFactory of our package whose Streams are kitStreams
// writing into r; the test fails at its end if one of them saw the Stream
// contract broken (every call is checked as it comes; whether each Stream
// completed is left to the test, as a run may end before its connections).
func (r *trRec) ours(t testing.TB) *kitFactory {
	f := newKitFactory()
	f.rec = r
	t.Cleanup(func() { f.requireNoProblems(t) })
	return f
}

// Upstream.

type trUpFactory struct{ r *trRec }

func (f trUpFactory) New(netFlow, tcpFlow gopacket.Flow, tcp *layers.TCP, _ upstream.AssemblerContext) upstream.Stream {
	st := f.r.newStream(netFlow, tcpFlow, tcp)
	if st == nil {
		return nil
	}
	return &trUpStream{r: f.r, st: st}
}

type trUpStream struct {
	r  *trRec
	st *trStream
}

func (s *trUpStream) Accept(tcp *layers.TCP, _ gopacket.CaptureInfo, _ upstream.TCPFlowDirection, _ upstream.Sequence, start *bool, _ upstream.AssemblerContext) bool {
	return s.r.accept(s.st, tcp, start)
}

func (s *trUpStream) ReassembledSG(sg upstream.ScatterGather, _ upstream.AssemblerContext) {
	dir, start, end, skip := sg.Info()
	s.r.deliver(s.st, trDir(dir == upstream.TCPDirServerToClient), start, end, skip, sg)
}

func (s *trUpStream) ReassemblyComplete(ac upstream.AssemblerContext) bool {
	var ci gopacket.CaptureInfo
	if ac != nil {
		ci = ac.GetCaptureInfo()
	}
	return s.r.complete(s.st, ac == nil, ci)
}

// ---------------------------------------------------------------------------
// Runners

// trFeed hands packets to one of our Assemblers and fails the test, naming
// the packet, if any call panics.
func trFeed(t testing.TB, a *Assembler, pkts []trPacket) {
	t.Helper()
	for i, p := range pkts {
		var pv any
		func() {
			defer func() { pv = recover() }()
			a.AssembleWithContext(p.flow, p.tcp, p.ctx)
		}()
		require.Nil(t, pv, "our Assembler panicked on packet %d", i)
	}
}

// trOurs runs packets through a fresh Assembler with opts.
func trOurs(t testing.TB, r *trRec, opts AssemblerOptions, pkts []trPacket) *Assembler {
	t.Helper()
	a := NewAssembler(NewStreamPool(r.ours(t)))
	a.AssemblerOptions = opts
	trFeed(t, a, pkts)
	return a
}

// trSafe runs packets through a fresh SafeAssembler with opts on a pool of
// its own (both closed when the test ends, if not before) and returns them
// with each packet's error.
func trSafe(t testing.TB, r *trRec, opts SafeAssemblerOptions, pkts []trPacket) (*SafeAssembler, *SafeStreamPool, []error) {
	t.Helper()
	pool := NewSafeStreamPool(r.ours(t), 0)
	a := newKitAssembler(t, pool, opts)
	t.Cleanup(func() { _ = pool.Close() })
	errs := make([]error, len(pkts))
	for i, p := range pkts {
		errs[i] = a.AssembleWithContext(p.flow, p.tcp, p.ctx)
	}
	return a, pool, errs
}

// trFeedUp hands packets to an upstream Assembler and returns the first
// panic, if any (later packets are not fed).
func trFeedUp(a *upstream.Assembler, pkts []trPacket) (pv any) {
	for _, p := range pkts {
		func() {
			defer func() {
				if v := recover(); v != nil {
					pv = v
				}
			}()
			a.AssembleWithContext(p.flow, p.tcp, p.ctx)
		}()
		if pv != nil {
			return pv
		}
	}
	return nil
}

func trUp(r *trRec, opts upstream.AssemblerOptions, pkts []trPacket) (*upstream.Assembler, any) {
	a := upstream.NewAssembler(upstream.NewStreamPool(trUpFactory{r}))
	a.AssemblerOptions = opts
	return a, trFeedUp(a, pkts)
}

// trRecover runs f and returns its panic value.
func trRecover(f func()) (pv any) {
	defer func() { pv = recover() }()
	f()
	return nil
}

var (
	trUsedRE  = regexp.MustCompile(`used: (-?\d+)`)
	trFreeRE  = regexp.MustCompile(`free: (-?\d+)`)
	trConnsRE = regexp.MustCompile(`connections: (-?\d+)`)
)

// trDumpInt extracts one figure of an Assembler.Dump() string.
func trDumpInt(t testing.TB, re *regexp.Regexp, dump string) int {
	t.Helper()
	m := re.FindStringSubmatch(dump)
	require.NotNil(t, m, "Dump() %q lacks %s", dump, re)
	n, err := strconv.Atoi(m[1])
	require.NoError(t, err)
	return n
}

// trCompleteOnce checks the exactly-once and no-SG-after-complete
// invariants for every stream of a recorder.
func trCompleteOnce(t testing.TB, r *trRec) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, st := range r.streams {
		assert.Equal(t, 1, st.completes, "stream %d (%v %v): ReassemblyComplete calls", st.id, st.netFlow, st.tcpFlow)
		for i, d := range st.deliveries {
			assert.False(t, d.afterComplete, "stream %d: delivery %d came after ReassemblyComplete", st.id, i)
		}
	}
}

// trPages is the pages in use an Assembler's Dump reports (pool-wide).
func trPages(t testing.TB, a interface{ Dump() string }) int {
	t.Helper()
	return trDumpInt(t, trUsedRE, a.Dump())
}

// trConns is the live connections an Assembler's Dump reports.
func trConns(t testing.TB, a interface{ Dump() string }) int {
	t.Helper()
	return trDumpInt(t, trConnsRE, a.Dump())
}

// ---------------------------------------------------------------------------
// Fault tables

// trCase is one trace and what must come of it: on the drop-in face
// (ours) and, where up or upPanic is set, on upstream, the oracle that
// shows the fault the case's name points at (an UPSTREAM-BUGS row or an
// issue).
type trCase struct {
	name    string
	segs    []trSeg
	opts    AssemblerOptions // upstream gets the same page limits
	rec     func(*trRec)     // adjusts both recorders before the run
	ours    func(t *testing.T, r *trRec, a *Assembler)
	up      func(t *testing.T, r *trRec, a *upstream.Assembler) // runs only when upstream did not panic
	upPanic string                                              // upstream must panic with this in its message
}

// trRunCases runs each case as subtests name/ours and name/upstream.
func trRunCases(t *testing.T, cases []trCase) {
	t.Helper()
	for _, tc := range cases {
		newRec := func() *trRec {
			r := &trRec{}
			if tc.rec != nil {
				tc.rec(r)
			}
			return r
		}
		if tc.ours != nil {
			t.Run(tc.name+"/ours", func(t *testing.T) {
				r := newRec()
				tc.ours(t, r, trOurs(t, r, tc.opts, trBuild(t, tc.segs)))
			})
		}
		if tc.up == nil && tc.upPanic == "" {
			continue
		}
		t.Run(tc.name+"/upstream", func(t *testing.T) {
			r := newRec()
			a, pv := trUp(r, upstream.AssemblerOptions{MaxBufferedPagesTotal: tc.opts.MaxBufferedPagesTotal,
				MaxBufferedPagesPerConnection: tc.opts.MaxBufferedPagesPerConnection}, trBuild(t, tc.segs))
			if tc.upPanic != "" {
				require.NotNil(t, pv, "upstream was expected to panic (%s)", tc.name)
				assert.Contains(t, fmt.Sprint(pv), tc.upPanic)
				return
			}
			require.Nil(t, pv, "upstream panicked")
			tc.up(t, r, a)
		})
	}
}

// ---------------------------------------------------------------------------
// Conversations and the three faces

// trConv writes the packets of one conversation, in the order its hosts
// send them: sequence numbers follow from the ISNs (near 2^32 if need be),
// capture times advance 1ms a packet from at, and every packet acknowledges
// all the peer sent, lost or not.
type trConv struct {
	next [2]uint32     // per direction (0: client), the next sequence number
	at   time.Duration // capture time of the next packet, after trBase (never 0)
	segs []trSeg
}

func newTrConv(isnC, isnS uint32, at time.Duration) *trConv {
	return &trConv{next: [2]uint32{isnC, isnS}, at: at}
}

// emit sends a segment with flags (the ACK added but on the client's SYN)
// and data from direction dir at its next sequence number.
func (v *trConv) emit(dir int, flags, data string) *trConv {
	s := trSeg{rev: dir == 1, seq: v.next[dir], flags: flags, data: data, at: v.at}
	if !strings.Contains(flags, "S") || dir == 1 {
		s.ack, s.flags = v.next[1-dir], flags+"A"
	}
	v.segs = append(v.segs, s)
	v.next[dir] += uint32(len(data))
	if strings.ContainsAny(flags, "SF") {
		v.next[dir]++
	}
	v.at += time.Millisecond
	return v
}

// handshake sends SYN, SYN-ACK, ACK.
func (v *trConv) handshake() *trConv { return v.emit(0, "S", "").emit(1, "S", "").emit(0, "", "") }

func (v *trConv) send(dir int, data string) *trConv { return v.emit(dir, "P", data) }

// lose skips n bytes the capture misses.
func (v *trConv) lose(dir, n int) *trConv {
	v.next[dir] += uint32(n)
	return v
}

func (v *trConv) ack(dir int) *trConv { return v.emit(dir, "", "") }

func (v *trConv) fin(dir int) *trConv { return v.emit(dir, "F", "") }

// close sends FIN both ways and the last ACK.
func (v *trConv) close() *trConv { return v.fin(0).fin(1).ack(0) }

// trJoin is the segments of several traces, one after the other.
func trJoin(parts ...[]trSeg) []trSeg {
	var out []trSeg
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// trDirRec is what one direction of a Stream received, read off its record.
type trDirRec struct {
	data  string
	skips []int // the Skips other than 0, in order
	ends  int
}

// trConnRec is one Stream's record, as it stood when the run ended.
type trConnRec struct {
	dirs      [2]trDirRec
	completes int
	starts    [2]int // deliveries reporting start, per direction
}

func trConnOf(st *trStream) *trConnRec {
	c := &trConnRec{completes: st.completes}
	for _, d := range st.deliveries {
		if d.skip != 0 {
			c.dirs[d.dir].skips = append(c.dirs[d.dir].skips, d.skip)
		}
		if d.end {
			c.dirs[d.dir].ends++
		}
		if d.start {
			c.starts[d.dir]++
		}
	}
	for i := range c.dirs {
		c.dirs[i].data = string(st.got[i])
	}
	return c
}

// trFace is a way to run packets: a library and its options. New faces
// join trFaceUp, trFaceDropIn and trFaceSafe here.
type trFace struct {
	name        string
	upstream    bool
	safe        bool
	ackGaps     bool                 // drop-in face: SetSkipAckedHoles
	opts        SafeAssemblerOptions // Safe face
	refuseStart bool                 // the Streams clear Accept's start
	keepOpen    bool                 // ReassemblyComplete returns false
}

var (
	trFaceUp     = trFace{name: "upstream", upstream: true}
	trFaceDropIn = trFace{name: "drop-in"}
	trFaceSafe   = trFace{name: "safe", safe: true}
)

// trResult is what a run left: the Streams, the event log, and the Safe
// face's counters (zero for the others).
type trResult struct {
	conns []*trConnRec
	log   []string
	stats AssemblerStats
}

// conn returns Stream i, failing the test when there is none.
func (r *trResult) conn(t *testing.T, i int) *trConnRec {
	t.Helper()
	require.Greater(t, len(r.conns), i, "Stream %d was never made; log %v", i, r.log)
	return r.conns[i]
}

// run feeds segs to a new assembler of the face, then FlushAll when flush
// is set.
func (f trFace) run(t *testing.T, segs []trSeg, flush bool) *trResult {
	t.Helper()
	res := &trResult{}
	rec := &trRec{refuseStart: f.refuseStart, keepOpen: f.keepOpen}
	pkts := trBuild(t, segs)
	// What a run leaves is read before any Close, whose flush is not the
	// run's.
	var flushAll func() int
	switch {
	case f.upstream:
		a, pv := trUp(rec, upstream.AssemblerOptions{}, pkts)
		require.Nil(t, pv, "upstream panicked")
		flushAll = a.FlushAll
	case !f.safe:
		a := NewAssembler(NewStreamPool(rec.ours(t)))
		a.SetSkipAckedHoles(f.ackGaps)
		trFeed(t, a, pkts)
		flushAll = a.FlushAll
	default:
		opts := f.opts
		opts.DisableBackgroundFlush = true
		if opts.ConnectionTimeout == 0 {
			opts.ConnectionTimeout = time.Hour
		}
		a, pool, _ := trSafe(t, rec, opts, pkts)
		flushAll = a.FlushAll
		defer func() {
			res.stats = a.Stats()
			require.NoError(t, a.Close())
			require.NoError(t, pool.Close())
		}()
	}
	if flush {
		flushAll()
	}
	for _, st := range rec.streams {
		res.conns = append(res.conns, trConnOf(st))
	}
	res.log = append([]string(nil), rec.log...)
	return res
}
