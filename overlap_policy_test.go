package reassembly

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// This file checks the overlap policies byte for byte against a reference
// model written here, independently of the engine: a byte array where each
// byte remembers the segment that supplied it, resolved by the target
// systems' policies as Novak & Sturges tabulate them (case by case, not by
// the engine's formulas).
// Every arrangement of two and of three segments (every combination of
// Allen's 13 interval relations) is fed in every arrival order, with a
// segment filling the hole before them arriving at every point of that
// order, at ISNs 0, 1, 2^32-1 and 2^32-11, for every policy. The bytes the
// Stream gets, the conflicts reported and the statistics are compared.

// opCase is how a new segment N lies against the buffered segment O whose
// byte it overlaps.
type opCase int

const (
	opSameStartShorter      opCase = iota // ns = os, ne < oe
	opSameStartSameEnd                    // ns = os, ne = oe
	opSameStartLonger                     // ns = os, ne > oe
	opBeforeEndsInside                    // ns < os, ne < oe
	opBeforeCovers                        // ns < os, ne >= oe
	opAfterEndsAfter                      // ns > os, ne > oe
	opAfterEndsInsideOrSame               // ns > os, ne <= oe
)

func opClassify(ns, ne, os, oe int) opCase {
	switch {
	case ns == os && ne < oe:
		return opSameStartShorter
	case ns == os && ne == oe:
		return opSameStartSameEnd
	case ns == os:
		return opSameStartLonger
	case ns < os && ne < oe:
		return opBeforeEndsInside
	case ns < os:
		return opBeforeCovers
	case ne > oe:
		return opAfterEndsAfter
	}
	return opAfterEndsInsideOrSame
}

// opNewWins is the matrix: for each policy, the cases where the new copy
// wins (Suricata's DoHandleDataOverlap cases, with Snort 3's grouping of
// irix and hpux10 with linux).
var opNewWins = map[OverlapPolicy][]opCase{
	OverlapDefault:     {opSameStartShorter, opSameStartSameEnd, opSameStartLonger, opBeforeEndsInside, opBeforeCovers, opAfterEndsAfter, opAfterEndsInsideOrSame},
	OverlapLast:        {opSameStartShorter, opSameStartSameEnd, opSameStartLonger, opBeforeEndsInside, opBeforeCovers, opAfterEndsAfter, opAfterEndsInsideOrSame},
	OverlapFirst:       {},
	OverlapVista:       {},
	OverlapBSD:         {opBeforeEndsInside, opBeforeCovers},
	OverlapWindows:     {opBeforeEndsInside, opBeforeCovers},
	OverlapWindows2003: {opBeforeEndsInside, opBeforeCovers},
	OverlapMacOS:       {opBeforeEndsInside, opBeforeCovers},
	OverlapLinux:       {opSameStartLonger, opBeforeEndsInside, opBeforeCovers},
	OverlapHPUX10:      {opSameStartLonger, opBeforeEndsInside, opBeforeCovers},
	OverlapIRIX:        {opSameStartLonger, opBeforeEndsInside, opBeforeCovers},
	OverlapOldLinux:    {opSameStartSameEnd, opSameStartLonger, opBeforeEndsInside, opBeforeCovers},
	OverlapSolaris:     {opSameStartSameEnd, opSameStartLonger, opBeforeCovers, opAfterEndsAfter},
	OverlapHPUX11:      {opSameStartSameEnd, opSameStartLonger, opBeforeCovers, opAfterEndsAfter},
}

func opAllPolicies() []OverlapPolicy {
	var ps []OverlapPolicy
	for p := range opNewWins {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps
}

// opSeg is a segment of the model: its extent in stream offsets (0 is the
// first byte after the SYN) and its bytes.
type opSeg struct {
	from, to int
	data     []byte
}

// opModel is the reference: a byte array where each byte knows the segment
// that supplied it; bytes below next are delivered.
type opModel struct {
	policy    OverlapPolicy
	window    int // delivered bytes compared, from the newest
	data      []byte
	owner     []int // index into segs, -1: empty
	segs      []opSeg
	next      int
	conflicts []kitConflict
}

func newOPModel(p OverlapPolicy, window, size int) *opModel {
	m := &opModel{policy: p, window: window, data: make([]byte, size), owner: make([]int, size)}
	for i := range m.owner {
		m.owner[i] = -1
	}
	return m
}

func (m *opModel) newWins(n, o opSeg) bool {
	return slices.Contains(opNewWins[m.policy], opClassify(n.from, n.to, o.from, o.to))
}

func (m *opModel) arrive(s opSeg) {
	k := len(m.segs)
	m.segs = append(m.segs, s)
	// Conflicts with delivered bytes still in the window.
	if lo, hi := max(s.from, m.next-m.window), min(s.to, m.next); lo < hi {
		if old, nw := m.data[lo:hi], s.data[lo-s.from:hi-s.from]; !bytes.Equal(old, nw) {
			m.conflicts = append(m.conflicts, kitConflict{int64(lo), true, string(old), string(nw)})
		}
	}
	// Conflicts with each run of buffered bytes.
	for p := max(s.from, m.next); p < s.to; {
		if m.owner[p] < 0 {
			p++
			continue
		}
		q := p
		for q < s.to && m.owner[q] >= 0 {
			q++
		}
		if old, nw := m.data[p:q], s.data[p-s.from:q-s.from]; !bytes.Equal(old, nw) {
			m.conflicts = append(m.conflicts, kitConflict{int64(p), false, string(old), string(nw)})
		}
		p = q
	}
	// Resolution, byte by byte, of the bytes not delivered.
	for p := max(s.from, m.next); p < s.to; p++ {
		if o := m.owner[p]; o < 0 || m.newWins(s, m.segs[o]) {
			m.data[p], m.owner[p] = s.data[p-s.from], k
		}
	}
	for m.next < len(m.owner) && m.owner[m.next] >= 0 {
		m.next++
	}
}

// output is what a Stream sees once everything is flushed: the bytes in
// order, each skipped byte as '?'.
func (m *opModel) output() string {
	end := 0
	for p, o := range m.owner {
		if o >= 0 {
			end = p + 1
		}
	}
	var b strings.Builder
	for p := range end {
		if m.owner[p] < 0 {
			b.WriteByte('?')
		} else {
			b.WriteByte(m.data[p])
		}
	}
	return b.String()
}

// opInterval is a segment of an arrangement, in units.
type opInterval struct{ from, to int }

// opArrangements returns every arrangement of n intervals, up to the order
// of their endpoints: each labelled set of n intervals whose endpoints,
// ranked, differ.
func opArrangements(n int) [][]opInterval {
	var all [][]opInterval
	seen := map[string]bool{}
	var ivs []opInterval
	for s := range 2 * n {
		for e := s + 1; e <= 2*n; e++ {
			ivs = append(ivs, opInterval{s, e})
		}
	}
	cur := make([]opInterval, n)
	var rec func(i int)
	rec = func(i int) {
		if i == n {
			// Rank the endpoints, so that equivalent layouts are one.
			var pts []int
			for _, iv := range cur {
				pts = append(pts, iv.from, iv.to)
			}
			slices.Sort(pts)
			pts = slices.Compact(pts)
			canon := make([]opInterval, n)
			for k, iv := range cur {
				canon[k] = opInterval{slices.Index(pts, iv.from), slices.Index(pts, iv.to)}
			}
			key := fmt.Sprint(canon)
			if !seen[key] {
				seen[key] = true
				all = append(all, canon)
			}
			return
		}
		for _, iv := range ivs {
			cur[i] = iv
			rec(i + 1)
		}
	}
	rec(0)
	return all
}

// opAllen names the relation of a to b among Allen's 13.
func opAllen(a, b opInterval) string {
	switch {
	case a.to < b.from:
		return "before"
	case a.to == b.from:
		return "meets"
	case b.to < a.from:
		return "after"
	case b.to == a.from:
		return "met-by"
	case a == b:
		return "equals"
	case a.from == b.from && a.to < b.to:
		return "starts"
	case a.from == b.from:
		return "started-by"
	case a.to == b.to && a.from > b.from:
		return "finishes"
	case a.to == b.to:
		return "finished-by"
	case a.from > b.from && a.to < b.to:
		return "during"
	case a.from < b.from && a.to > b.to:
		return "contains"
	case a.from < b.from:
		return "overlaps"
	}
	return "overlapped-by"
}

// Property: the arrangements the exhaustive test feeds cover every one of
// Allen's 13 relations between two segments, each once, and the 409
// arrangements of three, with every pair of relations among them.
func TestOverlapArrangementsCoverAllen(t *testing.T) {
	t.Parallel()
	pairs := opArrangements(2)
	require.Len(t, pairs, 13, "Allen's 13 relations")
	rels := map[string]bool{}
	for _, a := range pairs {
		rels[opAllen(a[0], a[1])] = true
	}
	require.Len(t, rels, 13)
	triples := opArrangements(3)
	require.Len(t, triples, 409, "the 409 consistent arrangements of three intervals")
	combos := map[[2]string]bool{}
	for _, a := range triples {
		combos[[2]string{opAllen(a[0], a[1]), opAllen(a[1], a[2])}] = true
	}
	require.Len(t, combos, 13*13, "every pair of relations")
}

// opUnit and opHole size the scenarios: intervals are opUnit bytes per
// unit and start after a hole of opHole bytes that a filler segment fills.
const (
	opUnit = 2
	opHole = 2
)

// opScenario runs one arrangement: its segments arrive in order, with the
// filler inserted at position filler, and everything is flushed at the
// end. It returns what the model expects and what the Stream got.
func opScenario(h *kitRig, m *opModel, isn uint32, arr []opInterval, filler int) (want, got string) {
	c := h.conn(isn)
	c.send("S", 0, nil)
	var segs []opSeg
	for k, iv := range arr {
		s := opSeg{from: opHole + iv.from*opUnit, to: opHole + iv.to*opUnit}
		for p := s.from; p < s.to; p++ {
			s.data = append(s.data, byte('a'+k)-byte(p%2)*('a'-'A'))
		}
		segs = append(segs, s)
	}
	fill := opSeg{from: 0, to: opHole, data: bytes.Repeat([]byte{'_'}, opHole)}
	segs = slices.Insert(segs, filler, fill)
	for _, s := range segs {
		m.arrive(s)
		c.send("", s.from, s.data)
	}
	h.a.FlushAll()
	st := c.stream()
	if st == nil {
		return m.output(), "<no stream>"
	}
	return m.output(), string(st.shown[0])
}

// Property: for every policy, every arrangement of two and three segments
// in every arrival order delivers exactly what the reference model says.
func TestOverlapPoliciesExhaustive(t *testing.T) {
	t.Parallel()
	arrs := append(opArrangements(2), opArrangements(3)...)
	for _, p := range opAllPolicies() {
		t.Run(p.String(), func(t *testing.T) {
			t.Parallel()
			for _, window := range []int{1 << 20, 0} {
				h := newKitRig(t, SafeAssemblerOptions{OverlapPolicy: p, ConflictWindow: window})
				runs, conflicts, conflictBytes := 0, int64(0), int64(0)
				for _, isn := range kitISNs {
					if window == 0 && isn != kitISNs[3] {
						continue
					}
					for _, arr := range arrs {
						for filler := 0; filler <= len(arr); filler++ {
							m := newOPModel(p, window, opHole+2*len(arr)*opUnit)
							want, got := opScenario(h, m, isn, arr, filler)
							if want != got || !slices.Equal(m.conflicts, h.got) {
								t.Fatalf("policy %v, window %d, ISN %d, arrangement %v, filler at %d:\n bytes     want %q\n           got  %q\n conflicts want %v\n           got  %v",
									p, window, isn, arr, filler, want, got, m.conflicts, h.got)
							}
							runs++
							for _, c := range m.conflicts {
								conflicts++
								conflictBytes += int64(len(c.new))
							}
						}
					}
				}
				st := h.a.Stats()
				require.Equal(t, conflicts, st.OverlapConflicts, "OverlapConflicts")
				require.Equal(t, conflictBytes, st.ConflictBytes, "ConflictBytes")
				kitRequireConserved(t, st)
				require.Zero(t, st.PageCache.QueuedBytes)
				if window != 0 {
					require.Equal(t, 4*(13*3+409*4), runs)
				}
			}
		})
	}
}

// Property: with segments larger than a page (so that buffered segments
// span several chunks), random extents and random arrival orders, every
// policy still gives the model's bytes and conflicts, across the sequence
// wrap.
func TestOverlapPoliciesRandomLarge(t *testing.T) {
	t.Parallel()
	rounds := 300
	if testing.Short() {
		rounds = 50
	}
	for _, p := range opAllPolicies() {
		t.Run(p.String(), func(t *testing.T) {
			t.Parallel()
			r := rand.New(rand.NewPCG(uint64(p), 7))
			h := newKitRig(t, SafeAssemblerOptions{OverlapPolicy: p, ConflictWindow: 3000})
			for round := range rounds {
				h.f.mu.Lock()
				h.f.keepFrom = nil
				if round%2 == 1 {
					h.f.keepFrom = kitKeepLast // KeepFrom on every delivery
				}
				h.f.mu.Unlock()
				isn := kitISNs[round%len(kitISNs)] - uint32(r.IntN(5000))
				size := 2000 + r.IntN(8000)
				m := newOPModel(p, 3000, size)
				c := h.conn(isn)
				c.send("S", 0, nil)
				var sent []opSeg
				for k := range 3 + r.IntN(6) {
					from := r.IntN(size - 1)
					to := min(size, from+1+r.IntN(4500))
					s := opSeg{from: from, to: to}
					for q := from; q < to; q++ {
						b := byte('a' + k)
						if r.IntN(4) == 0 {
							b = byte('a' + (q % 7)) // sometimes the same bytes as another copy
						}
						s.data = append(s.data, b)
					}
					m.arrive(s)
					c.send("", s.from, s.data)
					sent = append(sent, s)
				}
				h.a.FlushAll()
				want, got := m.output(), string(c.stream().shown[0])
				if want != got || !slices.Equal(m.conflicts, h.got) {
					var desc []string
					for _, s := range sent {
						desc = append(desc, fmt.Sprintf("[%d,%d)", s.from, s.to))
					}
					t.Fatalf("policy %v, ISN %d, segments %v:\n bytes equal %v (want %d, got %d bytes)\n conflicts want %v\n           got  %v",
						p, isn, desc, want == got, len(want), len(got), m.conflicts, h.got)
				}
			}
			st := h.a.Stats()
			kitRequireConserved(t, st)
		})
	}
}

// Property: a policy that keeps buffered bytes splits a new segment into
// many pieces; the Safe face's limits still hold, as the pieces are
// counted before they are buffered, and the bytes still add up.
func TestOverlapPolicyWithinLimits(t *testing.T) {
	t.Parallel()
	for _, p := range []OverlapPolicy{OverlapFirst, OverlapBSD, OverlapSolaris, OverlapDefault} {
		r := rand.New(rand.NewPCG(uint64(p), 99))
		const pages = 24
		h := newKitRig(t, SafeAssemblerOptions{
			OverlapPolicy:                 p,
			MaxBufferedPagesTotal:         pages,
			MaxBufferedPagesPerConnection: pages,
			MaxBufferedBytesPerConnection: 6000,
		})
		for round := range 200 {
			c := h.conn(uint32(round) * 7919)
			c.send("S", 0, nil)
			// Single bytes every other offset, then segments across them.
			for off := 10; off < 60; off += 2 {
				c.send("", off, []byte{'o'})
			}
			for range 20 {
				from := r.IntN(200)
				n := 1 + r.IntN(120)
				c.send("", from, bytes.Repeat([]byte{'n'}, n))
				st := h.a.Stats()
				require.LessOrEqual(t, st.PageCache.PagesInUse, int64(pages))
				require.LessOrEqual(t, st.PageCache.PagesPeak, int64(pages))
			}
			h.a.FlushAll()
		}
		st := h.a.Stats()
		require.Positive(t, st.ForcedSkips, "the limits were reached")
		kitRequireConserved(t, st)
	}
}

// Property: ParseOverlapPolicy reads every policy's String and the names
// Snort 3 and Suricata configurations use; an unknown name or value is
// invalid, also in the options.
func TestParseOverlapPolicy(t *testing.T) {
	t.Parallel()
	for _, p := range opAllPolicies() {
		got, err := ParseOverlapPolicy(p.String())
		require.NoError(t, err)
		require.Equal(t, p, got)
	}
	for name, want := range map[string]OverlapPolicy{
		"BSD": OverlapBSD, "bsd-right": OverlapBSD, "old_linux": OverlapOldLinux,
		"win_2003": OverlapWindows2003, "windows2k3": OverlapWindows2003,
		"old-solaris": OverlapSolaris, "hpux": OverlapHPUX11, " Vista ": OverlapVista,
		"": OverlapDefault,
	} {
		got, err := ParseOverlapPolicy(name)
		require.NoError(t, err, name)
		require.Equal(t, want, got, name)
	}
	_, err := ParseOverlapPolicy("plan9")
	require.True(t, errors.Is(err, ErrInvalidOptions))
	require.Equal(t, "OverlapPolicy(200)", OverlapPolicy(200).String())

	o := SafeAssemblerOptions{OverlapPolicy: 200}
	err = o.Validate()
	require.ErrorIs(t, err, ErrInvalidOptions)
	require.Contains(t, err.Error(), "OverlapPolicy")
}
