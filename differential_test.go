package reassembly

// Differential test: every registered driver is fed the same generated
// scenarios as the reference driver ("upstream", the original
// github.com/google/gopacket/reassembly), and the canonical logs of all
// callbacks are compared event by event and byte for byte.
//
// Environment:
//
//	DIFF_SEED=<n|0xhex>   master seed (default: random, printed)
//	DIFF_N=<n>            number of scenarios (default defaultDiffN)
//	DIFF_ONLY=<i>         run only scenario i of the seed
//	DIFF_VERBOSE=1        with DIFF_ONLY: log the scenario and both event logs
//	DIFF_MAX_FAIL=<n>     report (and minimize) at most n unexplained mismatches
//	                      (default 3; 0: all)
//	DIFF_STRICT_PANICS=1  a field where upstream panicked must also panic
//	DIFF_PERTURB=<name>   corrupt the candidate logs (harness self-test):
//	                      drop-byte | page-tail
//	DIFF_HANG=<duration>  per-run watchdog (default 10s)

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"reflect"
	"runtime"
	"runtime/debug"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const defaultDiffN = 2000

// ---------------------------------------------------------------------------
// Events

const panicMark = "panic!"

type kv struct{ K, V string }

func field(k string, v any) kv { return kv{k, fmt.Sprint(v)} }

// event is one observable callback or API result, in canonical form.
type event struct {
	Step   int    // index into scenario.Steps of the step being played
	Stream string // "c<conn>.<n>": n-th stream created for conn; "" for assembler results
	Kind   string // new, accept, sg, complete, flush, flush-close, flush-all, panic, input-mutated
	Fields []kv
	Data   []byte // sg: Fetch(available)
	Note   string // diagnostics, never compared
}

func (e event) String() string {
	var b strings.Builder
	stream := e.Stream
	if stream == "" {
		stream = "assembler"
	}
	fmt.Fprintf(&b, "step[%d] %s %s", e.Step, stream, e.Kind)
	for _, f := range e.Fields {
		fmt.Fprintf(&b, " %s=%s", f.K, f.V)
	}
	if e.Kind == "sg" {
		fmt.Fprintf(&b, " data(%d)=%s", len(e.Data), hexPreview(e.Data, 0, 16))
	}
	if e.Note != "" {
		fmt.Fprintf(&b, " (note: %s)", firstLine(e.Note))
	}
	return b.String()
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " ..."
	}
	return s
}

func hexPreview(b []byte, from, n int) string {
	from = max(0, min(from, len(b)))
	to := min(len(b), from+n)
	s := hex.EncodeToString(b[from:to])
	if from > 0 {
		s = "…" + s
	}
	if to < len(b) {
		s += "…"
	}
	return s
}

// ---------------------------------------------------------------------------
// Recorder: the library-agnostic half of a driver

// The kit.s kitCtx carries the CaptureInfo; its InterfaceIndex carries the
// step ID so that per-byte capture info identifies the packet exactly.

func fmtCI(ci gopacket.CaptureInfo) string {
	if ci.Timestamp.IsZero() && ci.Length == 0 && ci.InterfaceIndex == 0 {
		return "empty"
	}
	ts := "zero"
	if !ci.Timestamp.IsZero() {
		ts = fmtOffset(ci.Timestamp.Sub(diffEpoch))
	}
	return fmt.Sprintf("%s#%d/%d", ts, ci.InterfaceIndex, ci.Length)
}

// libOps is what a driver file provides: the calls into its library.
type libOps struct {
	assemble            kitFeed // the error is nil: neither is the Safe face
	flushWithOptions    func(t, tc time.Time) (flushed, closed int)
	flushCloseOlderThan func(t time.Time) (flushed, closed int)
	flushAll            func() (closed int)
}

type recorder struct {
	scn    *scenario
	cur    int // index of the step being played
	events []event
	serial map[int]int    // conn -> streams created
	connOf map[string]int // "netFlow|tcpFlow" -> conn
}

func newRecorder(scn *scenario) *recorder {
	r := &recorder{scn: scn, serial: map[int]int{}, connOf: map[string]int{}}
	for i := len(scn.Conns) - 1; i >= 0; i-- { // lowest index wins for a reused tuple
		for dir := 0; dir < 2; dir++ {
			nf, tf := flowsOf(scn.Conns[i], dir)
			r.connOf[nf.String()+"|"+tf.String()] = i
		}
	}
	return r
}

func flowsOf(c connSpec, dir int) (gopacket.Flow, gopacket.Flow) {
	src, dst := c.ClientIP, c.ServerIP
	sp, dp := []byte{byte(c.ClientPort >> 8), byte(c.ClientPort)}, []byte{byte(c.ServerPort >> 8), byte(c.ServerPort)}
	if dir == 1 {
		src, dst, sp, dp = dst, src, dp, sp
	}
	return gopacket.NewFlow(layers.EndpointIPv4, src[:], dst[:]), gopacket.NewFlow(layers.EndpointTCPPort, sp, dp)
}

func (r *recorder) emit(stream, kind string, data []byte, note string, fields ...kv) {
	r.events = append(r.events, event{Step: r.cur, Stream: stream, Kind: kind, Fields: fields, Data: data, Note: note})
}

// decide returns a deterministic number in [0,100) for a policy decision.
func (r *recorder) decide(vals ...uint64) int {
	return int(hashOf(append([]uint64{r.scn.PolicySeed}, vals...)...) % 100)
}

func strHash(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * 1099511628211
	}
	return h
}

func (r *recorder) stepID() uint64 { return uint64(r.scn.Steps[r.cur].ID) }

// protect runs f and turns a panic into a message.
func protect(f func()) (msg string, ok bool) {
	defer func() {
		if p := recover(); p != nil {
			msg, ok = fmt.Sprint(p), false
		}
	}()
	f()
	return "", true
}

// protectStack is protect with the panicking goroutine's stack after the
// message.
func protectStack(f func()) (msg string, ok bool) {
	defer func() {
		if p := recover(); p != nil {
			msg, ok = fmt.Sprint(p)+"\n"+string(debug.Stack()), false
		}
	}()
	f()
	return "", true
}

func (r *recorder) play(ops libOps) {
	for i := range r.scn.Steps {
		r.cur = i
		if msg, ok := protectStack(func() { r.playStep(r.scn.Steps[i], ops) }); !ok {
			// The library's state is unknown after a panic (locks may be held): stop.
			r.emit("", "panic", nil, msg)
			return
		}
	}
}

func (r *recorder) playStep(st step, ops libOps) {
	switch st.Kind {
	case stepPacket:
		c := r.scn.Conns[st.Conn]
		netFlow, _ := flowsOf(c, st.Dir)
		sp, dp := c.ClientPort, c.ServerPort
		if st.Dir == 1 {
			sp, dp = dp, sp
		}
		payload := append([]byte{}, st.Payload...)
		tcp := &layers.TCP{
			SrcPort: layers.TCPPort(sp), DstPort: layers.TCPPort(dp),
			Seq: st.Seq, Ack: st.Ack,
			SYN: st.SYN, ACK: st.ACK, FIN: st.FIN, RST: st.RST,
			Window: 65535, DataOffset: 5,
		}
		tcp.Payload = payload
		tcp.SetInternalPortsForTesting()
		ci := gopacket.CaptureInfo{
			Timestamp: atTime(st.TS), CaptureLength: 54 + len(payload), Length: 54 + len(payload),
			InterfaceIndex: st.ID,
		}
		_ = ops.assemble(netFlow, tcp, &kitCtx{ci: ci})
		if !bytes.Equal(payload, st.Payload) {
			r.emit("", "input-mutated", nil, "")
		}
	case stepFlushWithOptions:
		f, c := ops.flushWithOptions(atTime(st.T), atTime(st.TC))
		r.emit("", "flush", nil, "", field("flushed", f), field("closed", c))
	case stepFlushCloseOlderThan:
		f, c := ops.flushCloseOlderThan(atTime(st.T))
		r.emit("", "flush-close", nil, "", field("flushed", f), field("closed", c))
	case stepFlushAll:
		r.emit("", "flush-all", nil, "", field("closed", ops.flushAll()))
	}
}

func (r *recorder) connFor(netFlow, tcpFlow gopacket.Flow) int {
	if c, ok := r.connOf[netFlow.String()+"|"+tcpFlow.String()]; ok {
		return c
	}
	return -1
}

// Type constraints matching the exported API of a reassembly implementation.
type dirLike interface {
	~bool
	String() string
}

type seqLike interface{ ~int64 }

type acLike interface {
	GetCaptureInfo() gopacket.CaptureInfo
}

type sgLike[D dirLike, ST any] interface {
	Lengths() (int, int)
	Fetch(length int) []byte
	KeepFrom(offset int)
	CaptureInfo(offset int) gopacket.CaptureInfo
	Info() (D, bool, bool, int)
	Stats() ST
}

// recFactory implements <lib>.StreamFactory once instantiated with the
// library's types (STREAM = <lib>.Stream).
type recFactory[D dirLike, S seqLike, ST any, SG sgLike[D, ST], AC acLike, STREAM any] struct {
	rec *recorder
}

func (f *recFactory[D, S, ST, SG, AC, STREAM]) New(netFlow, tcpFlow gopacket.Flow, tcp *layers.TCP, ac AC) STREAM {
	rec := f.rec
	conn := rec.connFor(netFlow, tcpFlow)
	rec.serial[conn]++
	label := fmt.Sprintf("c%d.%d", conn, rec.serial[conn])
	pkt := "nil"
	if tcp != nil {
		pkt = fmt.Sprintf("seq=%d", tcp.Seq)
	}
	rec.emit(label, "new", nil, "", field("net", netFlow), field("tcp", tcpFlow), field("pkt", pkt), field("ac", fmtAC(ac)))
	s := &recStream[D, S, ST, SG, AC]{rec: rec, label: label}
	return any(s).(STREAM)
}

func fmtAC[AC acLike](ac AC) string {
	if any(ac) == nil {
		return "nil"
	}
	var ci gopacket.CaptureInfo
	if _, ok := protect(func() { ci = ac.GetCaptureInfo() }); !ok {
		return panicMark
	}
	return fmtCI(ci)
}

// recStream implements <lib>.Stream once instantiated with the library's types.
type recStream[D dirLike, S seqLike, ST any, SG sgLike[D, ST], AC acLike] struct {
	rec     *recorder
	label   string
	accepts [2]int
	sgs     int
}

func (s *recStream[D, S, ST, SG, AC]) Accept(tcp *layers.TCP, ci gopacket.CaptureInfo, dir D, nextSeq S, start *bool, ac AC) bool {
	rec, pol := s.rec, s.rec.scn.Policy
	d := 0
	if bool(dir) {
		d = 1
	}
	before := *start
	switch pol.Force {
	case forceFirst:
		if s.accepts[d] == 0 {
			*start = true
		}
	case forcePct:
		if rec.decide(rec.stepID(), 1) < pol.ForcePct {
			*start = true
		}
	case forceAlways:
		*start = true
	}
	s.accepts[d]++
	accept := pol.RejectPct == 0 || rec.decide(rec.stepID(), 2) >= pol.RejectPct
	rec.emit(s.label, "accept", nil, "",
		field("dir", dir.String()), field("nextSeq", int64(nextSeq)),
		field("start", fmt.Sprintf("%t->%t", before, *start)),
		field("ci", fmtCI(ci)), field("ac", fmtAC(ac)), field("return", accept))
	return accept
}

func (s *recStream[D, S, ST, SG, AC]) ReassembledSG(sg SG, ac AC) {
	rec, pol := s.rec, s.rec.scn.Policy
	s.sgs++
	var fields []kv
	var notes []string
	call := func(name string, f func() string) {
		var v string
		msg, ok := protect(func() { v = f() })
		if !ok {
			v = panicMark
			notes = append(notes, name+": "+msg)
		}
		fields = append(fields, kv{name, v})
	}
	call("info", func() string {
		dir, start, end, skip := sg.Info()
		return fmt.Sprintf("%s,start=%t,end=%t,skip=%d", dir.String(), start, end, skip)
	})
	avail, saved := 0, 0
	call("lengths", func() string {
		avail, saved = sg.Lengths()
		return fmt.Sprintf("%d,%d", avail, saved)
	})
	var data []byte
	call("fetch", func() string {
		data = append([]byte{}, sg.Fetch(avail)...)
		return strconv.Itoa(len(data))
	})
	call("stats", func() string { return fmt.Sprintf("%+v", sg.Stats()) })
	call("ci0", func() string { return fmtCI(sg.CaptureInfo(0)) })
	if avail > 1 {
		call("ciLast", func() string { return fmtCI(sg.CaptureInfo(avail - 1)) })
	}
	fields = append(fields, kv{"ac", fmtAC(ac)})
	if pol.KeepFrom && avail > 0 {
		key := []uint64{rec.stepID(), 3, strHash(s.label), uint64(s.sgs)}
		if rec.decide(key...) < pol.KeepFromPct {
			off := int(hashOf(append(key, rec.scn.PolicySeed)...) % uint64(avail+1))
			call("keepFrom", func() string { sg.KeepFrom(off); return strconv.Itoa(off) })
		}
	}
	rec.emit(s.label, "sg", data, strings.Join(notes, "; "), fields...)
}

func (s *recStream[D, S, ST, SG, AC]) ReassemblyComplete(ac AC) bool {
	rec, pol := s.rec, s.rec.scn.Policy
	ret := true
	switch pol.Complete {
	case completeFalse:
		ret = false
	case completeMixed:
		ret = rec.decide(4, strHash(s.label)) < 50
	}
	rec.emit(s.label, "complete", nil, "ac="+fmtAC(ac), field("return", ret))
	return ret
}

// ---------------------------------------------------------------------------
// Drivers

type driver struct {
	name    string // "upstream", "ours", ...
	pkgPath string
	build   func(rec *recorder) libOps
}

var drivers []*driver

// registerDriver is called from the init of differential_drivers_test.go.
// sample is any value of a named type of the driver's library (for its
// import path).
func registerDriver(name string, sample any, build func(rec *recorder) libOps) {
	drivers = append(drivers, &driver{name: name, pkgPath: reflect.TypeOf(sample).PkgPath(), build: build})
}

const referenceDriver = "upstream"

func splitDrivers() (ref *driver, cands []*driver) {
	for _, d := range drivers {
		if d.name == referenceDriver && ref == nil {
			ref = d
		} else {
			cands = append(cands, d)
		}
	}
	return ref, cands
}

type runResult struct {
	events []event
	hung   bool
}

var hangTimeout = 10 * time.Second

// run plays scn through d and returns the canonical log.
func (d *driver) run(scn *scenario) runResult {
	rec := newRecorder(scn)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if msg, ok := protectStack(func() { rec.play(d.build(rec)) }); !ok {
			rec.emit("", "panic", nil, msg)
		}
	}()
	timer := time.NewTimer(hangTimeout)
	defer timer.Stop()
	select {
	case <-done:
		return runResult{events: canonical(rec.events)}
	case <-timer.C:
		return runResult{hung: true} // the goroutine is leaked; rec is not touched
	}
}

// canonical orders the events of one step by stream: upstream flushes
// connections in map order, which carries no meaning. Within one stream (and
// for assembler results, which go last) the order is kept.
func canonical(evs []event) []event {
	sort.SliceStable(evs, func(i, j int) bool {
		a, b := evs[i], evs[j]
		if a.Step != b.Step {
			return a.Step < b.Step
		}
		return streamRank(a.Stream) < streamRank(b.Stream)
	})
	return evs
}

func streamRank(s string) string {
	if s == "" {
		return "~"
	}
	return s
}

// ---------------------------------------------------------------------------
// Comparison

type compareOpts struct {
	strictPanics bool // reference panicMark fields must match exactly
}

func fieldsMatch(ref, cand []kv, o compareOpts) bool {
	if len(ref) != len(cand) {
		return false
	}
	for i := range ref {
		if ref[i].K != cand[i].K {
			return false
		}
		if ref[i].V != cand[i].V && (o.strictPanics || ref[i].V != panicMark) {
			return false
		}
	}
	return true
}

func eventsMatch(ref, cand event, o compareOpts) bool {
	return ref.Step == cand.Step && ref.Stream == cand.Stream && ref.Kind == cand.Kind &&
		bytes.Equal(ref.Data, cand.Data) && fieldsMatch(ref.Fields, cand.Fields, o)
}

// refPanicAt returns the index of the reference's top-level panic, or -1.
func refPanicAt(ref []event) int {
	if n := len(ref); n > 0 && ref[n-1].Kind == "panic" {
		return n - 1
	}
	return -1
}

// firstMismatch returns the index of the first differing event, or -1. When
// the reference panicked at top level, only the events before the panic are
// compared (upstream's state is undefined afterwards).
func firstMismatch(ref, cand []event, o compareOpts) int {
	limit := len(ref)
	if p := refPanicAt(ref); p >= 0 {
		limit = p
	}
	for i := 0; i < limit; i++ {
		if i >= len(cand) || !eventsMatch(ref[i], cand[i], o) {
			return i
		}
	}
	if refPanicAt(ref) < 0 && len(cand) != len(ref) {
		return limit
	}
	return -1
}

func describeMismatch(scn *scenario, refName, candName string, ref, cand []event, idx int) string {
	var b strings.Builder
	if idx < 0 {
		return "no difference\n"
	}
	at := func(evs []event, i int) string {
		if i < len(evs) {
			return evs[i].String()
		}
		return "<no event: log ends>"
	}
	fmt.Fprintf(&b, "first difference at event %d of %d (%s) / %d (%s)\n", idx, len(ref), refName, len(cand), candName)
	for i := max(0, idx-4); i < idx; i++ {
		fmt.Fprintf(&b, "    %s\n", ref[i].String())
	}
	fmt.Fprintf(&b, "  - %-9s %s\n", refName+":", at(ref, idx))
	fmt.Fprintf(&b, "  + %-9s %s\n", candName+":", at(cand, idx))
	if idx < len(ref) && idx < len(cand) {
		r, c := ref[idx], cand[idx]
		if r.Kind == c.Kind && len(r.Fields) == len(c.Fields) {
			for i := range r.Fields {
				if r.Fields[i] != c.Fields[i] {
					fmt.Fprintf(&b, "    field %s: %s=%q %s=%q\n", r.Fields[i].K, refName, r.Fields[i].V, candName, c.Fields[i].V)
				}
			}
		}
		if r.Kind == c.Kind && !bytes.Equal(r.Data, c.Data) {
			off := kitFirstDiff(r.Data, c.Data)
			fmt.Fprintf(&b, "    data: len %d vs %d, first differing byte at offset %d\n", len(r.Data), len(c.Data), off)
			fmt.Fprintf(&b, "      %s: %s\n      %s: %s\n", refName, hexPreview(r.Data, off-8, 32), candName, hexPreview(c.Data, off-8, 32))
		}
		for _, e := range []event{r, c} {
			if e.Note != "" {
				fmt.Fprintf(&b, "    note: %s\n", e.Note)
			}
		}
	}
	for i := idx + 1; i < idx+3; i++ {
		if i < len(ref) || i < len(cand) {
			fmt.Fprintf(&b, "    next %s: %s\n    next %s: %s\n", refName, at(ref, i), candName, at(cand, i))
		}
	}
	if idx < len(ref) && ref[idx].Step < len(scn.Steps) {
		fmt.Fprintf(&b, "  during step %d: %s\n", ref[idx].Step, scn.stepString(scn.Steps[ref[idx].Step]))
	} else if idx < len(cand) && cand[idx].Step < len(scn.Steps) {
		fmt.Fprintf(&b, "  during step %d: %s\n", cand[idx].Step, scn.stepString(scn.Steps[cand[idx].Step]))
	}
	return b.String()
}

// perturbations corrupt candidate logs, to check that the harness notices.
var perturbations = map[string]func([]event) []event{
	// drop the middle byte of the first SG that carries data
	"drop-byte": func(evs []event) []event {
		for i := range evs {
			if evs[i].Kind == "sg" && len(evs[i].Data) > 0 {
				d := evs[i].Data
				m := len(d) / 2
				evs[i].Data = append(d[:m:m], d[m+1:]...)
				break
			}
		}
		return evs
	},
	// lose the last byte of every SG longer than one upstream page
	"page-tail": func(evs []event) []event {
		for i := range evs {
			if evs[i].Kind == "sg" && len(evs[i].Data) > 1900 {
				evs[i].Data = evs[i].Data[:len(evs[i].Data)-1]
			}
		}
		return evs
	},
}

type pairRun struct {
	ref, cand runResult
	idx       int // first mismatch, -1 if none
}

func (p pairRun) differs() bool { return p.ref.hung || p.cand.hung || p.idx >= 0 }

// signature characterizes the first mismatch (event kinds, differing fields,
// data), so that minimization keeps the same difference instead of drifting
// to another one.
func (p pairRun) signature() string {
	if p.ref.hung || p.cand.hung {
		return fmt.Sprintf("hung %t/%t", p.ref.hung, p.cand.hung)
	}
	if p.idx < 0 {
		return ""
	}
	kind := func(evs []event) string {
		if p.idx < len(evs) {
			return evs[p.idx].Kind
		}
		return "<end>"
	}
	sig := kind(p.ref.events) + "/" + kind(p.cand.events)
	if p.idx < len(p.ref.events) && p.idx < len(p.cand.events) {
		r, c := p.ref.events[p.idx], p.cand.events[p.idx]
		if r.Kind == c.Kind && len(r.Fields) == len(c.Fields) {
			for i := range r.Fields {
				if r.Fields[i] != c.Fields[i] {
					sig += " " + r.Fields[i].K
				}
			}
		}
		if r.Kind == c.Kind && !bytes.Equal(r.Data, c.Data) {
			sig += " data"
		}
	}
	return sig
}

func runPair(ref, cand *driver, scn *scenario, perturb func([]event) []event, o compareOpts) pairRun {
	p := pairRun{ref: ref.run(scn), cand: cand.run(scn), idx: -1}
	if p.ref.hung || p.cand.hung {
		return p
	}
	if perturb != nil {
		p.cand.events = perturb(p.cand.events)
	}
	p.idx = firstMismatch(p.ref.events, p.cand.events, o)
	return p
}

// minimize removes steps while the pair still differs in the same way (same
// signature; complement-only delta debugging), within a budget of runs and time.
func minimize(scn *scenario, ref, cand *driver, perturb func([]event) []event, o compareOpts, maxRuns int, maxTime time.Duration) (*scenario, int) {
	deadline := time.Now().Add(maxTime)
	want := runPair(ref, cand, scn, perturb, o).signature()
	cur := *scn
	runs := 0
	n := 2
	for len(cur.Steps) >= 2 && runs < maxRuns && time.Now().Before(deadline) {
		chunk := (len(cur.Steps) + n - 1) / n
		reduced := false
		for start := 0; start < len(cur.Steps) && runs < maxRuns && time.Now().Before(deadline); start += chunk {
			try := cur
			try.Steps = slices.Concat(cur.Steps[:start], cur.Steps[min(start+chunk, len(cur.Steps)):])
			runs++
			if p := runPair(ref, cand, &try, perturb, o); p.differs() && p.signature() == want {
				cur = try
				n = max(n-1, 2)
				reduced = true
				break
			}
		}
		if !reduced {
			if n >= len(cur.Steps) {
				break
			}
			n = min(2*n, len(cur.Steps))
		}
	}
	return &cur, runs
}

// ---------------------------------------------------------------------------
// Configuration

type diffConfig struct {
	seed    uint64
	n       int
	only    int // -1: all
	maxFail int
	verbose bool
	opts    compareOpts
	perturb string
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	require.NoError(t, err, "%s", name)
	return n
}

func loadDiffConfig(t *testing.T) diffConfig {
	c := diffConfig{seed: rand.Uint64(), n: defaultDiffN, only: -1, maxFail: 3}
	if v := os.Getenv("DIFF_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 0, 64)
		require.NoError(t, err, "DIFF_SEED")
		c.seed = s
	}
	c.n = envInt(t, "DIFF_N", c.n)
	c.only = envInt(t, "DIFF_ONLY", c.only)
	c.maxFail = envInt(t, "DIFF_MAX_FAIL", c.maxFail)
	if c.maxFail <= 0 {
		c.maxFail = math.MaxInt
	}
	c.verbose = os.Getenv("DIFF_VERBOSE") != ""
	c.opts.strictPanics = os.Getenv("DIFF_STRICT_PANICS") != ""
	c.perturb = os.Getenv("DIFF_PERTURB")
	if c.perturb != "" {
		require.Contains(t, perturbations, c.perturb, "DIFF_PERTURB")
	}
	if v := os.Getenv("DIFF_HANG"); v != "" {
		d, err := time.ParseDuration(v)
		require.NoError(t, err, "DIFF_HANG")
		hangTimeout = d
	}
	return c
}

// ---------------------------------------------------------------------------
// Tests

type diffTally struct {
	scenarios, events, sgs, bytes, skips, refPanics, fieldPanics, completes int
	known                                                                   map[string]int
}

func (tl *diffTally) merge(o diffTally) {
	tl.scenarios += o.scenarios
	tl.events += o.events
	tl.sgs += o.sgs
	tl.bytes += o.bytes
	tl.skips += o.skips
	tl.refPanics += o.refPanics
	tl.fieldPanics += o.fieldPanics
	tl.completes += o.completes
}

func (tl *diffTally) add(evs []event) {
	tl.events += len(evs)
	for _, e := range evs {
		switch e.Kind {
		case "sg":
			tl.sgs++
			tl.bytes += len(e.Data)
			if len(e.Fields) > 0 && !strings.HasSuffix(e.Fields[0].V, "skip=0") && !strings.HasSuffix(e.Fields[0].V, "skip=-1") {
				tl.skips++
			}
			for _, f := range e.Fields {
				if f.V == panicMark {
					tl.fieldPanics++
				}
			}
		case "complete":
			tl.completes++
		case "panic":
			tl.refPanics++
		}
	}
}

func TestDifferentialAgainstUpstream(t *testing.T) {
	ref, cands := splitDrivers()
	require.NotNil(t, ref, "no %q driver registered", referenceDriver)
	if len(cands) == 0 {
		t.Skip("no candidate driver registered")
	}
	cfg := loadDiffConfig(t)
	// Every upstream Assembler allocates a 1024-page cache (~2 MB): collect less often.
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	t.Logf("DIFF_SEED=%#x DIFF_N=%d; reference %s (%s); candidates %s", cfg.seed, cfg.n, ref.name, ref.pkgPath, driverNames(cands))
	first, last := 0, cfg.n
	if cfg.only >= 0 {
		first, last = cfg.only, cfg.only+1
	}
	// Run all scenarios on GOMAXPROCS workers, then report in index order.
	type outcome struct {
		scn      *scenario // nil when the logs matched (not kept)
		cand     *driver
		p        pairRun
		truthErr error // our output contradicts what the sender sent
	}
	keepAll := cfg.verbose && cfg.only >= 0
	results := make([][]outcome, last-first)
	workers := runtime.GOMAXPROCS(0)
	tallies := make([]diffTally, workers)
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := int(next.Add(1)) - 1
				if k >= len(results) {
					return
				}
				scn := generateScenario(cfg.seed, first+k)
				for _, cand := range cands {
					p := runPair(ref, cand, scn, perturbations[cfg.perturb], cfg.opts)
					tallies[w].scenarios++
					tallies[w].add(p.ref.events)
					o := outcome{cand: cand, p: p}
					if !p.cand.hung {
						o.truthErr = checkTruth(scn, p.cand.events)
					}
					if p.differs() || keepAll || o.truthErr != nil {
						o.scn = scn
					} else {
						o.p.ref.events, o.p.cand.events = nil, nil
					}
					results[k] = append(results[k], o)
				}
			}
		}()
	}
	wg.Wait()
	tally := diffTally{known: map[string]int{}}
	for _, tl := range tallies {
		tally.merge(tl)
	}
	failures := 0
	for k := 0; k < len(results); k++ {
		i := first + k
		for _, o := range results[k] {
			scn, cand, p := o.scn, o.cand, o.p
			if keepAll {
				t.Logf("scenario %d: %s\n%s", i, scn.summary(), scn.dump())
				for _, r := range []struct {
					name string
					evs  []event
				}{{ref.name, p.ref.events}, {cand.name, p.cand.events}} {
					var b strings.Builder
					for k, e := range r.evs {
						fmt.Fprintf(&b, "  %3d %s\n", k, e.String())
					}
					t.Logf("%s log:\n%s", r.name, b.String())
				}
			}
			if o.truthErr != nil {
				failures++
				assert.Failf(t, "wrong bytes", "%s is wrong on its own terms: %v\n  seed=%#x scenario=%d\n  rerun: DIFF_SEED=%#x DIFF_ONLY=%d DIFF_VERBOSE=1 go test -run TestDifferentialAgainstUpstream .\n  scenario: %s\n%s",
					cand.name, o.truthErr, cfg.seed, i, cfg.seed, i, scn.summary(), scn.dump())
				if failures > cfg.maxFail {
					break
				}
			}
			if !p.differs() {
				continue
			}
			if reason, proven := explainDifferenceExact(scn, p.ref.events); reason != "" && (proven || !scn.Clean) {
				tally.known[reason]++
				continue
			}
			failures++
			if failures > cfg.maxFail {
				continue
			}
			header := fmt.Sprintf("differential mismatch %s vs %s: seed=%#x scenario=%d\n  rerun: DIFF_SEED=%#x DIFF_ONLY=%d DIFF_VERBOSE=1 go test -run TestDifferentialAgainstUpstream .\n  scenario: %s\n",
				ref.name, cand.name, cfg.seed, i, cfg.seed, i, scn.summary())
			if p.ref.hung || p.cand.hung {
				assert.Failf(t, "driver hung", "%sref hung=%t cand hung=%t after %s\n  steps:\n%s", header, p.ref.hung, p.cand.hung, hangTimeout, scn.dump())
				continue
			}
			report := describeMismatch(scn, ref.name, cand.name, p.ref.events, p.cand.events, p.idx)
			small, runs := minimize(scn, ref, cand, perturbations[cfg.perturb], cfg.opts, 400, 20*time.Second)
			mp := runPair(ref, cand, small, perturbations[cfg.perturb], cfg.opts)
			minReport := describeMismatch(small, ref.name, cand.name, mp.ref.events, mp.cand.events, mp.idx)
			assert.Failf(t, "differential mismatch", "%s%s\n  minimized (%d -> %d steps, %d runs): %s\n%s%s",
				header, report, len(scn.Steps), len(small.Steps), runs, small.summary(), small.dump(), minReport)
		}
	}
	if failures > cfg.maxFail {
		t.Logf("%d unexplained mismatches; reported the first %d (DIFF_MAX_FAIL)", failures, cfg.maxFail)
	}
	t.Logf("compared %d scenario runs: %d events, %d SGs (%d with skip), %d bytes, %d completes; upstream panics: %d top-level, %d in SG fields",
		tally.scenarios, tally.events, tally.sgs, tally.skips, tally.bytes, tally.completes, tally.refPanics, tally.fieldPanics)
	excused := 0
	for reason, n := range tally.known {
		t.Logf("known difference (%d scenarios): %s", n, reason)
		excused += n
	}
	// The test has power only if most scenarios are compared event for
	// event: a generator drifting towards documented faults would excuse
	// everything and pass without checking anything.
	if cfg.only < 0 && tally.scenarios >= 200 {
		exact := tally.scenarios - excused - failures
		t.Logf("identical logs in %d of %d scenario runs (%.0f%%)", exact, tally.scenarios, 100*float64(exact)/float64(tally.scenarios))
		assert.GreaterOrEqual(t, 100*exact, 40*tally.scenarios, "too few scenarios compared exactly")
	}
}

func driverNames(ds []*driver) string {
	var names []string
	for _, d := range ds {
		names = append(names, d.name+" ("+d.pkgPath+")")
	}
	return strings.Join(names, ", ")
}

// TestDifferentialHarnessSelfCheck checks the harness itself against the
// reference only: determinism, feature coverage of the generator, detection
// of a corrupted log, and minimization.
func TestDifferentialHarnessSelfCheck(t *testing.T) {
	ref, _ := splitDrivers()
	require.NotNil(t, ref)
	const seed = 0x5eed
	o := compareOpts{}

	t.Run("generator-deterministic-and-covering", func(t *testing.T) {
		var seen feature
		for i := 0; i < 600; i++ {
			a, b := generateScenario(seed, i), generateScenario(seed, i)
			require.Equal(t, a, b, "scenario %d not deterministic", i)
			seen |= a.features()
		}
		for f := feature(1); f < featLastFeature; f <<= 1 {
			assert.NotZero(t, seen&f, "generator never produced %s", f)
		}
	})

	t.Run("reference-deterministic", func(t *testing.T) {
		for i := 0; i < 200; i++ {
			scn := generateScenario(seed, i)
			if p := runPair(ref, ref, scn, nil, o); p.differs() {
				require.Failf(t, "reference differs from itself", "scenario %d (hung %t/%t):\n%s", i, p.ref.hung, p.cand.hung,
					describeMismatch(scn, "run1", "run2", p.ref.events, p.cand.events, p.idx))
			}
		}
	})

	t.Run("detects-dropped-byte", func(t *testing.T) {
		for i := 0; ; i++ {
			require.Less(t, i, 100, "no scenario with SG data")
			scn := generateScenario(seed, i)
			p := runPair(ref, ref, scn, perturbations["drop-byte"], o)
			want := slices.IndexFunc(p.ref.events, func(e event) bool { return e.Kind == "sg" && len(e.Data) > 0 })
			if want < 0 || (refPanicAt(p.ref.events) >= 0 && want > refPanicAt(p.ref.events)) {
				continue
			}
			require.Equal(t, want, p.idx, "mismatch not reported at the corrupted SG")
			report := describeMismatch(scn, "upstream", "corrupted", p.ref.events, p.cand.events, p.idx)
			assert.Contains(t, report, "first differing byte at offset")
			t.Logf("scenario %d:\n%s", i, report)
			return
		}
	})

	t.Run("detects-changed-field", func(t *testing.T) {
		scn := generateScenario(seed, 1)
		p := runPair(ref, ref, scn, func(evs []event) []event {
			for i := range evs {
				if evs[i].Kind == "accept" {
					evs[i].Fields[1].V += "1"
					break
				}
			}
			return evs
		}, o)
		require.GreaterOrEqual(t, p.idx, 0)
		assert.Equal(t, "accept", p.ref.events[p.idx].Kind)
	})

	t.Run("comparison-rules", func(t *testing.T) {
		sg := func(ci string, data string) event {
			return event{Step: 3, Stream: "c0.1", Kind: "sg", Fields: []kv{{"ciLast", ci}}, Data: []byte(data)}
		}
		ref := []event{sg(panicMark, "abc"), {Step: 4, Kind: "flush-all", Fields: []kv{{"closed", "1"}}}}
		cand := []event{sg("+1s#3/57", "abc"), {Step: 4, Kind: "flush-all", Fields: []kv{{"closed", "1"}}}}
		assert.Equal(t, -1, firstMismatch(ref, cand, compareOpts{}), "a field where upstream panicked matches anything")
		assert.Equal(t, 0, firstMismatch(ref, cand, compareOpts{strictPanics: true}))
		assert.Equal(t, 0, firstMismatch(ref, []event{sg("+1s#3/57", "abd"), cand[1]}, compareOpts{}))
		assert.Equal(t, 1, firstMismatch(ref, cand[:1], compareOpts{}), "missing event")
		assert.Equal(t, 2, firstMismatch(ref, append(cand, cand[1]), compareOpts{}), "extra event")
		stream := cand[0]
		stream.Stream = "c0.2"
		assert.Equal(t, 0, firstMismatch(ref, []event{stream, cand[1]}, compareOpts{}), "other stream")
		note := cand[0]
		note.Note = "not compared"
		assert.Equal(t, -1, firstMismatch(ref, []event{note, cand[1]}, compareOpts{}))
		// Upstream panicked at top level: only the prefix is compared.
		refPanic := []event{ref[0], {Step: 4, Kind: "panic", Note: "boom"}}
		assert.Equal(t, -1, firstMismatch(refPanic, append(cand, cand[1], cand[1]), compareOpts{}))
		assert.Equal(t, 0, firstMismatch(refPanic, []event{sg("x", "ab")}, compareOpts{}))
		// Canonical order: streams sorted within a step, assembler results last.
		evs := canonical([]event{
			{Step: 1, Stream: "c2.1", Kind: "a"}, {Step: 1, Stream: "", Kind: "flush"},
			{Step: 1, Stream: "c0.1", Kind: "b"}, {Step: 1, Stream: "c2.1", Kind: "c"}, {Step: 0, Stream: "c9.1", Kind: "d"},
		})
		var kinds []string
		for _, e := range evs {
			kinds = append(kinds, e.Kind)
		}
		assert.Equal(t, []string{"d", "b", "a", "c", "flush"}, kinds)
	})

	t.Run("minimizes", func(t *testing.T) {
		for i := 0; ; i++ {
			require.Less(t, i, 300, "no scenario with an SG over one page")
			scn := generateScenario(seed, i)
			p := runPair(ref, ref, scn, perturbations["page-tail"], o)
			if !p.differs() || len(scn.Steps) < 10 {
				continue
			}
			small, runs := minimize(scn, ref, ref, perturbations["page-tail"], o, 400, 30*time.Second)
			mp := runPair(ref, ref, small, perturbations["page-tail"], o)
			require.True(t, mp.differs(), "minimized scenario lost the difference")
			assert.Less(t, len(small.Steps), len(scn.Steps))
			t.Logf("scenario %d minimized from %d to %d steps in %d runs:\n%s%s", i, len(scn.Steps), len(small.Steps), runs,
				small.dump(), describeMismatch(small, "upstream", "corrupted", mp.ref.events, mp.cand.events, mp.idx))
			return
		}
	})
}
