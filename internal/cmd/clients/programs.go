package main

import "regexp"

// programs lists the real clients compared.
func programs() []program {
	const gopacket = "github.com/google/gopacket"
	return []program{{
		name:    "reassemblydump",
		module:  gopacket,
		version: "v1.1.19",
		dir:     "examples/reassemblydump",
		swap:    map[string]string{gopacket + "/reassembly": ourModule},
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
	}, {
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
	}}
}

// fqConnections prints one line per direction of every TCP connection fq
// reassembled: its endpoints, its flags and skipped bytes, and the md5 of
// its bytes.
const fqConnections = `(if type == "array" then .[] else . end) | .tcp_connections[]? |
	[.client.ip, .client.port, .server.ip, .server.port] as $c |
	(["client", .client], ["server", .server]) |
	$c + [.[0], .[1].has_start, .[1].has_end, .[1].skipped_bytes, (.[1].stream | tobytes | to_md5 | to_hex)] | tostring`
