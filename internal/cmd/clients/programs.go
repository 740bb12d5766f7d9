//go:build unix

package main

import (
	"regexp"
	"time"
)

// The upstream modules whose examples are compared, and their versions:
// google/gopacket's last release, and the oldest fork release this
// module's fork flavour supports.
const (
	google, googleVersion = "github.com/google/gopacket", "v1.1.19"
	fork, forkVersion     = "github.com/gopacket/gopacket", "v1.2.0"
)

// programs lists the real clients compared: gopacket's examples that read
// capture files, from both gopacket modules (statsassembly reads only a
// live interface, so it is left out), and fq.
func programs() []program {
	return []program{
		reassemblydump("reassemblydump", google, googleVersion, ourModule, ""),
		reassemblydump("reassemblydump-fork", fork, forkVersion, ourModule+"/gopacket/reassembly", "reassemblydump"),
		httpassembly("httpassembly", google, googleVersion, ourModule, ""),
		httpassembly("httpassembly-fork", fork, forkVersion, ourModule+"/gopacket", "httpassembly"),
		fq(),
	}
}

// reassemblydump is gopacket's examples/reassemblydump, built on
// reassembly: its statistics, and every delivery with -debug.
func reassemblydump(name, module, version, ours, known string) program {
	return program{
		name:    name,
		module:  module,
		version: version,
		dir:     "examples/reassemblydump",
		swap:    map[string]string{module + "/reassembly": ours},
		known:   known,
		masks: []mask{{
			re:   regexp.MustCompile(`pageCache: .*`),
			repl: "pageCache: (internal)",
			reason: "-debug prints Assembler.Dump, whose page figures are internal: upstream " +
				"allocates pages 1024 at a time, this module one at a time",
		}},
		runs: []programRun{
			{name: "stats", args: func(c string) []string { return []string{"-r", c, "-quiet"} }},
			{name: "deliveries", args: func(c string) []string {
				return []string{"-r", c, "-nohttp", "-debug", "-allowmissinginit", "-ignorefsmerr", "-nooptcheck"}
			}},
		},
	}
}

// httpassembly is gopacket's examples/httpassembly, built on tcpassembly
// and tcpreader: every HTTP request it parses from port 80 (its default
// filter).
func httpassembly(name, module, version, ours, known string) program {
	return program{
		name:    name,
		module:  module,
		version: version,
		dir:     "examples/httpassembly",
		swap: map[string]string{
			module + "/tcpassembly":           ours + "/tcpassembly",
			module + "/tcpassembly/tcpreader": ours + "/tcpassembly/tcpreader",
		},
		known:  known,
		stderr: true,
		// It returns at the end of the file without waiting for its
		// readers, so a run may miss the last requests' lines: the file
		// comes through a pipe that ends a quarter of a second after its
		// last byte.
		linger: 250 * time.Millisecond,
		masks: []mask{{
			re:     regexp.MustCompile(`^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d `),
			reason: "the log package's timestamps",
		}, {
			re:     regexp.MustCompile(`Reading from pcap dump ".*"`),
			repl:   "Reading from pcap dump",
			reason: "the name of the pipe the capture comes through",
		}, {
			re:     regexp.MustCompile(`0x[0-9a-f]{6,}`),
			repl:   "0x(pointer)",
			reason: "the printed request holds pointers",
		}},
		runs: []programRun{{name: "requests", args: func(c string) []string { return []string{"-r", c} }}},
	}
}

// fq is the newest fq release the proxy serves.
func fq() program {
	return program{
		// The newest fq release the proxy serves (v0.10.0, on
		// github.com/gopacket/gopacket v1.2.0): its flowsdecoder reassembles
		// the TCP of pcap and pcapng files.
		name:    "fq",
		module:  "github.com/wader/fq",
		version: "v0.10.0",
		dir:     ".",
		whole:   true,
		swap:    map[string]string{"github.com/gopacket/gopacket/reassembly": ourModule + "/gopacket/reassembly"},
		// fq's tests of the formats that read captures.
		tests: []string{"-run", "TestFormats/(pcap|inet|tls|rtmp|dns|all)/", "./format/"},
		runs: []programRun{{name: "connections", args: func(c string) []string {
			return []string{"-r", fqConnections, c}
		}}},
	}
}

// fqConnections prints one line per direction of every TCP connection fq
// reassembled: its endpoints, its flags and skipped bytes, and the md5 of
// its bytes.
const fqConnections = `(if type == "array" then .[] else . end) | .tcp_connections[]? |
	[.client.ip, .client.port, .server.ip, .server.port] as $c |
	(["client", .client], ["server", .server]) |
	$c + [.[0], .[1].has_start, .[1].has_end, .[1].skipped_bytes, (.[1].stream | tobytes | to_md5 | to_hex)] | tostring`
