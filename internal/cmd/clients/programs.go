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
	}}
}
