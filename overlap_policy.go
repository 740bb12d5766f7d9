package reassembly

import (
	"fmt"
	"strings"
	"time"
)

// OverlapPolicy chooses which copy of a byte wins when segments of one
// direction overlap before the byte is delivered: the copy already buffered
// or the one just arrived. The operating-system policies reproduce how the
// receiving host's TCP stack resolves overlaps, after Novak and Sturges,
// "Target-Based TCP Stream Reassembly" (Sourcefire, 2007), as Snort 3 and
// Suricata implement them; an IDS that resolves overlaps as the target host
// does sees the bytes the host's application sees.
//
// A policy applies to bytes not yet delivered. Bytes already handed to the
// Stream cannot change: a later copy of them always loses, whatever the
// policy, and when it differs it is reported as a Conflict.
//
// Every policy is defined byte by byte. When a new segment N = [ns, ne)
// overlaps a buffered byte, the segment that supplied that byte, O = [os,
// oe) (its extent as it arrived, before any trimming), is compared with N,
// and the policy's rule says whether N's byte replaces it. A byte that N
// wins is from then on supplied by N. The rules:
//
//	rule      the new copy wins when
//	first     never
//	last      always
//	bsd       ns < os
//	linux     ns < os, or ns = os and ne > oe
//	old-linux ns < os, or ns = os and ne >= oe
//	solaris   ns <= os and ne >= oe, or ns > os and ne > oe
//
// and the policies:
//
//	policy              rule       Snort 3 name   Suricata name
//	OverlapDefault      last       -              -           (upstream gopacket)
//	OverlapFirst        first      first          (first)
//	OverlapLast         last       last           (last)
//	OverlapBSD          bsd        bsd            bsd, bsd-right
//	OverlapLinux        linux      linux          linux
//	OverlapOldLinux     old-linux  old_linux      old-linux
//	OverlapWindows      bsd        windows        windows
//	OverlapWindows2003  bsd        win_2003       windows2k3
//	OverlapVista        first      vista          vista
//	OverlapSolaris      solaris    solaris        solaris, old-solaris
//	OverlapHPUX11       solaris    hpux11         hpux11
//	OverlapHPUX10       linux      hpux10         hpux10 (bsd there)
//	OverlapIRIX         linux      irix           irix (bsd there)
//	OverlapMacOS        bsd        macos          macos
//
// The two engines agree on each rule for a pair of segments, with two
// exceptions. Suricata resolves irix and hpux10 with the bsd rule, not
// linux (the two differ only when the new segment starts with the buffered
// one and is longer); this package follows Snort 3, whose stream engine
// comes from the paper's publisher. Snort 3's solaris keeps the buffered copy of a segment
// retransmitted with the same start and length while the byte before it is
// missing; this package follows Suricata, which lets the new copy win, so
// that the rule depends on the two segments alone. With three or more
// overlapping segments the engines disagree with one another and with real
// stacks (Aubard et al., PYROLYSE, 2025); the byte-wise definition above is
// this package's.
type OverlapPolicy uint8

// The overlap policies. The zero value is OverlapDefault.
const (
	// OverlapDefault is upstream gopacket's behaviour and the default of
	// both faces: a buffered byte is replaced by every newer copy, as with
	// OverlapLast.
	OverlapDefault OverlapPolicy = iota
	// OverlapFirst keeps the first copy of every byte.
	OverlapFirst
	// OverlapLast keeps the last copy of every byte not yet delivered.
	OverlapLast
	// OverlapBSD is FreeBSD, NetBSD, OpenBSD, AIX: the new copy wins only
	// where it starts before the buffered segment.
	OverlapBSD
	// OverlapLinux is Linux 2.4 and later: as BSD, and the new copy also
	// wins over a buffered segment with the same start that it outlasts.
	OverlapLinux
	// OverlapOldLinux is Linux 2.2 and earlier: as Linux, and the new copy
	// also wins over a buffered segment with the same start and end.
	OverlapOldLinux
	// OverlapWindows is Windows 95 to XP: the BSD rule.
	OverlapWindows
	// OverlapWindows2003 is Windows Server 2003: the BSD rule.
	OverlapWindows2003
	// OverlapVista is Windows Vista: the first copy wins.
	OverlapVista
	// OverlapSolaris is Solaris 9 and later: the new copy wins where it
	// ends after the buffered segment, or covers it entirely.
	OverlapSolaris
	// OverlapHPUX11 is HP-UX 11: the Solaris rule.
	OverlapHPUX11
	// OverlapHPUX10 is HP-UX 10: the Linux rule (Snort 3's grouping).
	OverlapHPUX10
	// OverlapIRIX is IRIX: the Linux rule (Snort 3's grouping).
	OverlapIRIX
	// OverlapMacOS is Mac OS X: the BSD rule.
	OverlapMacOS

	numOverlapPolicies
)

var overlapPolicyNames = [numOverlapPolicies]string{
	"default", "first", "last", "bsd", "linux", "old-linux", "windows",
	"windows2003", "vista", "solaris", "hpux11", "hpux10", "irix", "macos",
}

// overlapAliases are the other names of the policies in Snort 3's and
// Suricata's configurations.
var overlapAliases = map[string]OverlapPolicy{
	"":            OverlapDefault,
	"gopacket":    OverlapDefault,
	"bsd-right":   OverlapBSD,
	"bsd_right":   OverlapBSD,
	"old_linux":   OverlapOldLinux,
	"oldlinux":    OverlapOldLinux,
	"win_2003":    OverlapWindows2003,
	"win2003":     OverlapWindows2003,
	"windows2k3":  OverlapWindows2003,
	"old-solaris": OverlapSolaris,
	"old_solaris": OverlapSolaris,
	"hpux":        OverlapHPUX11,
	"hp-ux11":     OverlapHPUX11,
	"hp-ux10":     OverlapHPUX10,
	"mac":         OverlapMacOS,
}

// String returns the policy's name, as ParseOverlapPolicy accepts it.
func (p OverlapPolicy) String() string {
	if p < numOverlapPolicies {
		return overlapPolicyNames[p]
	}
	return fmt.Sprintf("OverlapPolicy(%d)", uint8(p))
}

// ParseOverlapPolicy returns the policy of a name: the names String
// returns, and the names Snort 3 and Suricata use in their configurations
// ("bsd-right", "old_linux", "win_2003", "windows2k3", "old-solaris",
// "hpux", ...). Case is ignored. An unknown name is an error wrapping
// ErrInvalidOptions.
func ParseOverlapPolicy(name string) (OverlapPolicy, error) {
	n := strings.ToLower(strings.TrimSpace(name))
	for i, s := range overlapPolicyNames {
		if n == s {
			return OverlapPolicy(i), nil
		}
	}
	if p, ok := overlapAliases[n]; ok {
		return p, nil
	}
	return OverlapDefault, fmt.Errorf("%w: unknown overlap policy %q", ErrInvalidOptions, name)
}

// overlapRule is the byte-wise rule a policy resolves overlaps with.
type overlapRule uint8

const (
	ruleLast overlapRule = iota // also the upstream default
	ruleFirst
	ruleBSD
	ruleLinux
	ruleOldLinux
	ruleSolaris
)

var policyRules = [numOverlapPolicies]overlapRule{
	OverlapDefault:     ruleLast,
	OverlapFirst:       ruleFirst,
	OverlapLast:        ruleLast,
	OverlapBSD:         ruleBSD,
	OverlapLinux:       ruleLinux,
	OverlapOldLinux:    ruleOldLinux,
	OverlapWindows:     ruleBSD,
	OverlapWindows2003: ruleBSD,
	OverlapVista:       ruleFirst,
	OverlapSolaris:     ruleSolaris,
	OverlapHPUX11:      ruleSolaris,
	OverlapHPUX10:      ruleLinux,
	OverlapIRIX:        ruleLinux,
	OverlapMacOS:       ruleBSD,
}

func (p OverlapPolicy) rule() overlapRule {
	if p < numOverlapPolicies {
		return policyRules[p]
	}
	return ruleLast
}

// newWins reports whether a new segment [ns, ne) replaces a buffered byte
// supplied by the segment [os, oe).
func (r overlapRule) newWins(ns, ne, os, oe int64) bool {
	switch r {
	case ruleFirst:
		return false
	case ruleBSD:
		return ns < os
	case ruleLinux:
		return ns < os || (ns == os && ne > oe)
	case ruleOldLinux:
		return ns < os || (ns == os && ne >= oe)
	case ruleSolaris:
		return (ns <= os && ne >= oe) || (ns > os && ne > oe)
	}
	return true
}

// evasion holds the Safe face's evasion-resistance settings; its zero
// value, the drop-in face's, changes nothing.
type evasion struct {
	active bool // any of the below is set: take the slower checks
	rule   overlapRule
	// policy is set when the rule is not upstream's: overlaps are resolved
	// byte by byte instead of the newer copy always winning.
	policy bool
	// detect compares overlapping bytes and counts conflicts; onConflict,
	// when set, receives them.
	detect     bool
	onConflict func(Conflict)
	window     int   // delivered bytes kept per direction for comparison
	depth      int64 // reassembly depth per direction, 0: none
	dropRST    bool  // payload on an RST never enters the stream
}

// span is a range [from, to) of stream offsets.
type span struct{ from, to int64 }

// planOverlap fills e.spans with the ranges of [from, to) where the bytes
// of the new segment seg are to go: the holes of the queue, and the
// buffered bytes the policy lets the new copy replace. Adjacent ranges are
// merged, so a segment that wins everywhere gives one range.
func (e *engine) planOverlap(half *halfConnection, seg span, from, to int64) []span {
	e.spans = e.spans[:0]
	q := &half.queue
	p := from
	c := q.floor(from)
	if c == nil || c.end() <= from {
		c = q.after(from)
	}
	for ; c != nil && c.pos < to; c = q.after(c.pos) {
		if c.pos > p {
			e.addSpan(p, c.pos)
		}
		lo, hi := max(p, c.pos), min(to, c.end())
		if e.ev.rule.newWins(seg.from, seg.to, c.segStart, c.segEnd) {
			e.addSpan(lo, hi)
		}
		p = hi
	}
	e.addSpan(p, to)
	return e.spans
}

func (e *engine) addSpan(from, to int64) {
	if from >= to {
		return
	}
	if n := len(e.spans); n > 0 && e.spans[n-1].to == from {
		e.spans[n-1].to = to
		return
	}
	e.spans = append(e.spans, span{from, to})
}

// need returns what buffering data, at offset pos, costs half, in pages and
// bytes: under a policy, only the ranges the new bytes win are buffered,
// but they may be many.
func (e *engine) need(half *halfConnection, data []byte, pos int64) (pages int, cost int64) {
	if !e.ev.policy {
		return pagesFor(len(data)), costFor(len(data))
	}
	for _, s := range e.planOverlap(half, e.cur.extent, pos, pos+int64(len(data))) {
		n := int(s.to - s.from)
		pages += pagesFor(n)
		cost += costFor(n)
	}
	return pages, cost
}

// enqueuePolicy buffers the bytes of data, which starts at offset at and
// sequence number seq, resolving their overlaps with the buffered bytes by
// the policy's rule; seg is the extent of the segment as it arrived.
func (e *engine) enqueuePolicy(half *halfConnection, data []byte, seq Sequence, at int64, seg span, ac AssemblerContext, ts time.Time) {
	to := at + int64(len(data))
	spans := e.planOverlap(half, seg, at, to)
	before := half.queue.runStartsIn(at, to)
	won := 0
	for i, s := range spans {
		e.trimQueued(half, s.from, s.to)
		off, n := int(s.from-at), int(s.to-s.from)
		e.insertChunks(half, data[off:off+n], seq.Add(off), s.from, ac, e.cur.meta, ts, i == 0, seg.from, seg.to)
		won += n
	}
	half.runs += half.queue.runStartsIn(at, to) - before
	half.countQueued(len(data))
	e.lostOverlap(half, len(data)-won)
}

// lostOverlap counts new bytes that lost to buffered ones.
func (e *engine) lostOverlap(half *halfConnection, n int) {
	if n > 0 {
		half.countOverlap(1, n)
		e.ctr.overwrittenBytes += int64(n)
	}
}

// resolveInOrder handles a packet whose bytes, payload at offset pos (the
// next to deliver), overlap buffered bytes that the policy keeps: it puts
// into the delivery, in order and without copying, the packet's bytes
// where they win and the buffered chunks where those win. It returns false,
// and does nothing, when the packet wins everywhere.
func (e *engine) resolveInOrder(half *halfConnection, payload []byte, seq Sequence, pos int64, ac AssemblerContext) bool {
	to := pos + int64(len(payload))
	spans := e.planOverlap(half, e.cur.extent, pos, to)
	if len(spans) == 1 && spans[0] == (span{pos, to}) {
		return false
	}
	before := half.queue.runStartsIn(pos, to)
	won := 0
	for _, s := range spans {
		e.trimQueued(half, s.from, s.to)
		won += int(s.to - s.from)
	}
	half.runs += half.queue.runStartsIn(pos, to) - before
	e.lostOverlap(half, len(payload)-won)
	sg := &e.sg
	packet := true
	for p, i := pos, 0; p < to; {
		if i < len(spans) && spans[i].from == p {
			s := spans[i]
			off := int(s.from - pos)
			part := livePart(payload[off:off+int(s.to-s.from)], seq.Add(off), p, ac, e.cur.meta)
			part.packet = packet
			sg.add(part)
			packet = false
			p = s.to
			i++
			continue
		}
		// A buffered chunk wins here; it starts at p, the first byte not
		// yet in the delivery.
		c := half.queue.min()
		if c == nil || c.pos != p {
			break // cannot happen: every byte of [pos, to) is held
		}
		half.popMin(c)
		sg.add(chunkPart(c, false))
		p = c.end()
	}
	return true
}
