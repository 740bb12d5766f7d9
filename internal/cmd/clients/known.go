//go:build unix

package main

import (
	"regexp"
	"strings"
)

// knownDifference is an intended difference between upstream's build of a
// program and ours on one capture: upstream faults this module fixes, each
// with the reason MIGRATION.md gives. Every differing line must match a
// pattern of one of its reasons, so that a new kind of difference on the
// same capture still fails.
type knownDifference struct {
	program, run, capture string
	reasons               []reason
}

// reason is one upstream fault fixed on purpose, and the output lines it
// may change: lines any of its patterns match, and pairs of an upstream
// line ("- ") and ours ("+ ") that pair accepts as one changed line.
type reason struct {
	name  string
	lines []*regexp.Regexp
	pair  func(up, ours string) bool
}

func (k knownDifference) String() string {
	names := make([]string, len(k.reasons))
	for i, r := range k.reasons {
		names[i] = r.name
	}
	return strings.Join(names, "; ")
}

func (k knownDifference) matches(diff []string) bool {
	return len(k.unexplained(diff)) == 0
}

// unexplained returns the lines of diff no reason explains, after pairing
// each upstream line with one of ours where a reason's pair accepts them.
func (k knownDifference) unexplained(diff []string) []string {
	var ups, ours, rest []string
	for _, l := range diff {
		switch {
		case k.explains(l):
		case strings.HasPrefix(l, "- "):
			ups = append(ups, l)
		default:
			ours = append(ours, l)
		}
	}
	used := make([]bool, len(ours))
	for _, u := range ups {
		paired := false
		for j, o := range ours {
			if !used[j] && k.pairs(u[2:], o[2:]) {
				used[j], paired = true, true
				break
			}
		}
		if !paired {
			rest = append(rest, u)
		}
	}
	for j, o := range ours {
		if !used[j] {
			rest = append(rest, o)
		}
	}
	return rest
}

func (k knownDifference) pairs(up, ours string) bool {
	for _, r := range k.reasons {
		if r.pair != nil && r.pair(up, ours) {
			return true
		}
	}
	return false
}

func (k knownDifference) explains(line string) bool {
	for _, r := range k.reasons {
		for _, re := range r.lines {
			if re.MatchString(line) {
				return true
			}
		}
	}
	return false
}

func lookupKnown(program, run, capture string) (knownDifference, bool) {
	for _, k := range knownDifferences() {
		if k.program == program && k.run == run && k.capture == capture {
			return k, true
		}
	}
	return knownDifference{}, false
}

// lines compiles the patterns of a reason; each matches a whole diff line
// ("- " or "+ " and the program's line).
func lines(patterns ...string) []*regexp.Regexp {
	res := make([]*regexp.Regexp, len(patterns))
	for i, p := range patterns {
		res[i] = regexp.MustCompile(`^[-+] ` + p + `$`)
	}
	return res
}

// reassemblydump's lines, by what prints them.
const (
	rdDelivery = `\S+ \S+\((client->server|server->client)\): : SG reassembled packet with \d+ bytes \(start:(true|false),end:(true|false),skip:-?\d+,saved:\d+,nb:\d+,\d+,overlap:\d+,\d+\)`
	rdEmptySYN = `\S+ \S+\((client->server|server->client)\): : SG reassembled packet with 0 bytes \(start:true,end:false,skip:0,saved:0,nb:1,1,overlap:0,0\)`
	rdNew      = `\* NEW: \S+ \S+`
	rdClosed   = `\S+:\S+: Connection closed`
	rdRejected = `\S+:\S+: Packet rejected by (FSM \(state:\w+\)|OptionChecker: .*)`
	rdFlush    = `Forced flush: \d+ flushed, \d+ closed \(.*\)(PACKET #\d+)?`
	rdCounter  = ` (total packets|rejected FSM|rejected Options|conn rejected FSM|reassembled bytes|reassembled chunks|missed bytes|out-of-order packets|out-of-order bytes|biggest-chunk packets|biggest-chunk bytes|overlap packets|overlap bytes|FSM|OptionChecker):\s+\d+`
	rdErrors   = `Errors: \d+`
	rdFinal    = `Final flush: \d+ closed(pageCache: .*)?`
)

// The upstream faults that reassemblydump shows, named as in MIGRATION.md
// ("reassemblydump, swapped in").
var (
	startOnce = reason{
		name:  "start once: a retransmitted SYN (same ISN) gets no second empty start delivery, so fewer packets are counted (UPSTREAM-BUGS 27)",
		lines: lines(rdEmptySYN, ` total packets:\s+\d+`),
	}
	finKept = reason{
		name: "a FIN buffered behind data or a hole is kept: the delivery reaching it, also at a flush, reports end and closes the direction, and Accept's next sequence number counts the FIN (UPSTREAM-BUGS 26, 28)",
		lines: lines(rdDelivery, rdClosed, rdFlush,
			`\S+:\S+: Packet rejected by OptionChecker: Re-emitted packet \(diff:-?\d+,seq:\d+,rev-ack:\d+\)`),
	}
	rstCompletes = reason{
		name:  "an RST completes the connection: upstream went on with the other direction (UPSTREAM-BUGS 38)",
		lines: lines(rdDelivery, rdClosed, rdRejected, rdNew, rdCounter, rdErrors, rdFinal),
	}
	noBareACKStreams = reason{
		name:  "a packet without SYN or payload makes no Stream; upstream's Stream came from a bare ACK, which also named the client (UPSTREAM-BUGS 21, 23)",
		lines: lines(rdDelivery, rdNew, rdClosed, rdRejected, rdCounter, rdErrors, rdFinal),
	}
	reuseAfterEnd = reason{
		name:  "a SYN with a new ISN after a FIN or RST starts a new Stream (4-tuple reuse, google/gopacket#57, #604)",
		lines: lines(rdNew, rdEmptySYN, rdClosed, rdDelivery, rdRejected, rdCounter, rdErrors, rdFinal),
	}
	resumeRefused = reason{
		name:  "a SYN-ACK answering a SYN that an RST refused resumes the conversation in a new Stream (suricata-verify bug-3286): one more Stream made",
		lines: lines(rdNew, rdEmptySYN, rdClosed, rdRejected, ` conn rejected FSM:\s+\d+`, ` (FSM|rejected FSM):\s+\d+`, rdErrors, ` (out-of-order|overlap) (bytes|packets):\s+\d+`),
	}
)

// fq's lines (fqConnections): one per direction of a connection.
const fqLine = `\["[^"]*",("[^"]*"|\d+),"[^"]*",("[^"]*"|\d+),"(client|server)",(true|false),(true|false),\d+,"[0-9a-f]{32}"\]`

// fqFields splits an fq line into its fields.
func fqFields(l string) []string {
	return strings.Split(strings.Trim(l, "[]"), ",")
}

var (
	// fqFINKept: the same direction and bytes, has_end now true.
	fqFINKept = reason{
		name: finKept.name,
		pair: func(up, ours string) bool {
			u, o := fqFields(up), fqFields(ours)
			if len(u) != 9 || len(o) != 9 || u[6] != "false" || o[6] != "true" {
				return false
			}
			u[6] = "true"
			return strings.Join(u, ",") == strings.Join(o, ",")
		},
	}
	// fqNoPhantom: upstream's empty Streams made by bare ACKs.
	fqNoPhantom = reason{
		name:  noBareACKStreams.name,
		lines: lines(`\["[^"]*",("[^"]*"|\d+),"[^"]*",("[^"]*"|\d+),"(client|server)",false,false,0,"d41d8cd98f00b204e9800998ecf8427e"\]`),
	}
	// fqRoles: the client named from the first packet with a SYN or data,
	// the same bytes per direction.
	fqRoles = reason{
		name: noBareACKStreams.name,
		pair: func(up, ours string) bool {
			u, o := fqFields(up), fqFields(ours)
			return len(u) == 9 && len(o) == 9 && u[0] == o[2] && u[1] == o[3] && u[8] == o[8]
		},
	}
	// fqNewStream: one more connection (a SYN after the end, or a
	// conversation resumed after a refusing RST).
	fqNewStream = reason{
		name:  reuseAfterEnd.name + "; or " + resumeRefused.name,
		lines: []*regexp.Regexp{regexp.MustCompile(`^\+ ` + fqLine + `$`)},
	}
)

// knownDifferences lists the intended differences, by capture.
func knownDifferences() []knownDifference {
	rd := func(run, capture string, rs ...reason) knownDifference {
		return knownDifference{program: "reassemblydump", run: run, capture: capture, reasons: rs}
	}
	fq := func(capture string, rs ...reason) knownDifference {
		return knownDifference{program: "fq", run: "connections", capture: capture, reasons: rs}
	}
	return []knownDifference{
		rd("stats", "pf-dropbox.pcap", startOnce),
		rd("stats", "sv-syn-retransmit-ts.pcap", startOnce),
		rd("stats", "sv-rst-unacked-10.pcap", startOnce),
		rd("stats", "zk-ssh.pcap", startOnce),
		rd("stats", "sv-bug-5437-02.pcap", noBareACKStreams, reuseAfterEnd),
		rd("stats", "sv-mqtt-midstream-split.pcap", noBareACKStreams),
		rd("stats", "tf-test5-lines-randomized.pcap", noBareACKStreams),
		rd("stats", "sv-urgent11.pcap", rstCompletes, reuseAfterEnd),
		rd("stats", "sv-bug-3286-03-windows-evasion.pcap", resumeRefused),

		rd("deliveries", "pf-dropbox.pcap", startOnce, finKept),
		rd("deliveries", "sv-syn-retransmit-ts.pcap", startOnce),
		rd("deliveries", "sv-rst-unacked-10.pcap", startOnce),
		rd("deliveries", "sv-split-handshake.pcap", startOnce),
		rd("deliveries", "zk-ssh.pcap", startOnce, finKept),
		rd("deliveries", "zk-tcp-ctu-64702-888.pcap", startOnce, finKept),
		rd("deliveries", "sv-http-pipeline-files-with-gap.pcap", finKept),
		rd("deliveries", "sv-midstream.pcap", finKept),
		rd("deliveries", "zk-http-zero-length-bodies-drops.pcap", finKept),
		rd("deliveries", "tf-bug3.pcap", finKept),
		rd("deliveries", "sv-mqtt-midstream-split.pcap", finKept, noBareACKStreams),
		rd("deliveries", "tf-test5-lines-randomized.pcap", noBareACKStreams, finKept),
		rd("deliveries", "sv-bug-5437-02.pcap", noBareACKStreams, reuseAfterEnd),
		rd("deliveries", "sv-smtp-bug-5989.pcap", rstCompletes),
		rd("deliveries", "sv-urgent11.pcap", rstCompletes, reuseAfterEnd),
		rd("deliveries", "sv-bug-3286-03-windows-evasion.pcap", resumeRefused, rstCompletes),

		fq("sv-bug-3286-03-windows-evasion.pcap", fqNewStream),
		fq("sv-bug-5437-02.pcap", fqNoPhantom),
		fq("sv-midstream.pcap", fqFINKept),
		fq("sv-mqtt-midstream-split.pcap", fqFINKept),
		fq("sv-urgent11.pcap", fqNewStream),
		fq("tf-test5-lines-randomized.pcap", fqRoles),
		fq("zk-ssh.pcap", fqFINKept),
		fq("zk-tcp-ctu-64702-888.pcap", fqFINKept),
	}
}
