// Command tracegen writes the synthetic captures of issue 15 (package
// internal/tracegen), deterministic from -seed:
//
//	go run ./internal/cmd/tracegen -shape bulk -o bulk.pcap   # ~500k packets, 128 × 5 bulk connections
//	go run ./internal/cmd/tracegen -shape http -o http.pcap   # 10k HTTP-like connections
//
// The files are large (520 MB for bulk): write them to a temporary
// directory, never into the repository.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/safepacket/reassembly/internal/tracegen"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tracegen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	shape := fs.String("shape", "bulk", "bulk or http")
	out := fs.String("o", "", "output pcap `file`")
	seed := fs.Int64("seed", 15, "random seed")
	conns := fs.Int("conns", 0, "connections (bulk: at once), 0 for the issue's")
	rounds := fs.Int("rounds", 0, "bulk: rounds of -conns connections, 0 for the issue's")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *out == "" {
		fmt.Fprintln(stderr, "tracegen: -o is required")
		return 2
	}
	fh, err := os.Create(*out)
	if err != nil {
		fmt.Fprintf(stderr, "tracegen: %v\n", err)
		return 1
	}
	var c *tracegen.Capture
	switch *shape {
	case "bulk":
		b := tracegen.BulkIssue15()
		b.Seed = *seed
		if *conns > 0 {
			b.Conns = *conns
		}
		if *rounds > 0 {
			b.Rounds = *rounds
		}
		c, err = tracegen.WriteBulk(fh, b)
	case "http":
		h := tracegen.HTTPIssue15()
		h.Seed = *seed
		if *conns > 0 {
			h.Conns = *conns
		}
		c, err = tracegen.WriteHTTP(fh, h)
	default:
		fh.Close()
		fmt.Fprintf(stderr, "tracegen: unknown shape %q\n", *shape)
		return 2
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		fmt.Fprintf(stderr, "tracegen: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: %d packets\n", *out, c.Packets)
	return 0
}
