package reassembly

import (
	"fmt"
	"strings"
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
