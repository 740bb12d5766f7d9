// Command reassemble reassembles every TCP connection of a pcap or pcapng
// file and writes each direction's bytes to a file of its own, plus a JSON
// summary of every flow (bytes, gaps, overlaps, how each direction ended).
//
//	reassemble [flags] FILE
//
// Output files are named by the directional 4-tuple,
// <src>.<sport>-<dst>.<dport>.bin (IPv6 with ':' written as '_'), with a
// "~N" suffix for the N-th stream that reuses the same tuple, and the
// summary is summary.json, all in the directory given by -o.
//
// summary.json holds, per flow (client = sender of the first packet), for
// each direction: the tuple, the file, bytes written, every gap (offset in
// the written bytes and length in sequence space), overlap_bytes and
// overlap_packets as the engine reports them, retransmitted_bytes (payload
// that arrived for sequence space already delivered) and how the direction
// ended: fin, rst, timeout (idle longer than -timeout, in capture time) or
// eof (still open at the end of the capture). The top-level "stats" object
// counts packets, decoding, and the engine's assembler and pool numbers.
//
// The engine is github.com/safepacket/reassembly's SafeAssembler, with the
// limits given by -max-conns, -max-pages, -max-pages-per-conn and -timeout
// (capture time: replaying a file gives the same result at any speed).
//
// Packets that cannot be decoded down to TCP are skipped and counted
// (decode_errors in the summary lists the first ones), and so are segments
// the reassembler refuses (stats.engine_errors: connections beyond
// -max-conns, data for a connection already closed); neither changes the
// exit status. Exit status: 0 on success; 1 when the capture file is
// corrupt or truncated, or output could not be written (the output is
// still written, and the error names the packet number); 2 on usage errors,
// invalid limits, or when the capture cannot be opened.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"sort"
	"time"

	"github.com/google/gopacket/layers"

	"github.com/safepacket/reassembly"
	"github.com/safepacket/reassembly/internal/capture"
)

const (
	exitOK       = 0
	exitPartial  = 1
	exitUsage    = 2
	maxWarnLines = 10 // decode errors printed on stderr; the summary lists more

	// defaultTimeout closes connections idle for an hour of capture time, as
	// Suricata does for established TCP. The library's own default (two
	// minutes) suits live capture, where memory matters more than a stream
	// kept whole; here, replaying a file, the SafeAssembler closes idle
	// connections by capture time as the packets arrive, so a short timeout
	// would split every long-lived connection that pauses between bursts
	// (keepalive-driven protocols such as OpenFlow, interactive SSH, idle
	// HTTP keep-alive) into several streams ("~2" files) that Wireshark
	// sees as one (with two minutes, 8 directions of td-of13-ericsson.pcapng,
	// an OpenFlow session idle for minutes between messages, no longer match
	// the reference). An hour keeps those whole, while abandoned connections
	// of a long capture still end and free their memory.
	defaultTimeout = time.Hour
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// config is the parsed command line.
type config struct {
	file            string
	outDir          string
	maxConns        int
	maxPages        int
	maxPagesPerConn int
	timeout         time.Duration
	quiet           bool
	progress        int
}

const usageText = `usage: reassemble [flags] FILE

Reassembles every TCP connection of the pcap or pcapng FILE and writes the
bytes of each direction to OUTDIR/<src>.<sport>-<dst>.<dport>.bin ("~N" is
appended for the N-th stream reusing a tuple), plus OUTDIR/summary.json.

Packets that cannot be decoded are skipped and counted in the summary.
Segments the reassembler refuses (connection limit, data after a connection
closed) are counted under stats.engine_errors and do not change the status.
Exit status: 0 success, 1 corrupt or truncated capture or output errors
(output still written), 2 usage error or capture that cannot be opened.

flags:
`

func parseArgs(args []string, stderr io.Writer) (*config, int, bool) {
	cfg := &config{}
	fs := flag.NewFlagSet("reassemble", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.outDir, "o", "out", "output `directory`")
	fs.IntVar(&cfg.maxConns, "max-conns", 0, "most connections reassembled at once, 0 for no limit; a new connection beyond it evicts one (unanswered first, then the least recently seen), counted")
	fs.IntVar(&cfg.maxPages, "max-pages", 0, fmt.Sprintf("page budget: most out-of-order pages (1900 bytes each) buffered over all connections; past it, holes are skipped (0: the library default, %d)", reassembly.DefaultMaxBufferedPagesTotal))
	fs.IntVar(&cfg.maxPagesPerConn, "max-pages-per-conn", 0, fmt.Sprintf("most out-of-order pages buffered by one direction of a connection; past it, its first hole is skipped (0: the library default, %d, or -max-pages if lower)", reassembly.DefaultMaxBufferedPagesPerConnection))
	fs.DurationVar(&cfg.timeout, "timeout", defaultTimeout, "close connections idle this long in capture time, 0 to keep them until the end of the capture")
	fs.BoolVar(&cfg.quiet, "q", false, "quiet: no progress or totals, only errors")
	fs.IntVar(&cfg.progress, "progress", 100000, "print a progress line every `N` packets, 0 for none")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageText)
		fs.PrintDefaults()
	}
	// Flags may come after the file name too.
	var files []string
	rest := args
	for {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, exitOK, false
			}
			return nil, exitUsage, false
		}
		if fs.NArg() == 0 {
			break
		}
		files = append(files, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	fail := func(format string, a ...any) (*config, int, bool) {
		fmt.Fprintf(stderr, "reassemble: "+format+"\n", a...)
		fs.Usage()
		return nil, exitUsage, false
	}
	switch {
	case len(files) == 0:
		return fail("no capture file given")
	case len(files) > 1:
		return fail("one capture file expected, got %d", len(files))
	case cfg.outDir == "":
		return fail("-o must name a directory")
	case cfg.maxConns < 0:
		return fail("-max-conns must not be negative")
	case cfg.maxPages < 0:
		return fail("-max-pages must not be negative")
	case cfg.maxPagesPerConn < 0:
		return fail("-max-pages-per-conn must not be negative")
	case cfg.timeout < 0:
		return fail("-timeout must not be negative")
	case cfg.progress < 0:
		return fail("-progress must not be negative")
	}
	cfg.file = files[0]
	return cfg, exitOK, true
}

// run is the command; it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	cfg, code, ok := parseArgs(args, stderr)
	if !ok {
		return code
	}
	fh, err := os.Open(cfg.file)
	if err != nil {
		fmt.Fprintf(stderr, "reassemble: %v\n", err)
		return exitUsage
	}
	defer fh.Close()
	var size int64
	if st, err := fh.Stat(); err == nil && st.Mode().IsRegular() {
		size = st.Size()
	}
	// A regular file is mapped and its records read in place (see
	// mappedFile); a pipe or anything that cannot be mapped is read. So is
	// a compressed file: the offsets the reader is done with are those of
	// the decompressed stream, which cannot release the mapping's pages, so
	// the whole file would stay in memory.
	var cr *capture.Reader
	mapped := mapFile(fh, size)
	if mapped != nil {
		cr, err = capture.OpenBytes(mapped.data)
		if err == nil && cr.Compressed() {
			mapped.close()
			mapped, cr = nil, nil
			_, err = fh.Seek(0, io.SeekStart)
		}
	}
	if mapped != nil {
		defer mapped.close()
		// A mapped file cut short by someone else while it is read faults
		// on its missing pages. While the capture reader reads a record
		// that is a panic it recovers and reports as the capture's error;
		// a fault later, in decoding or reassembling the frame, still ends
		// the process.
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	} else if err == nil {
		cr, err = capture.Open(fh, fh, size)
	}
	if err != nil {
		fmt.Fprintf(stderr, "reassemble: %s: %v\n", cfg.file, err)
		return exitUsage
	}
	out, err := newOutput(cfg.outDir)
	if err != nil {
		fmt.Fprintf(stderr, "reassemble: output directory: %v\n", err)
		return exitUsage
	}
	eng, err := newFlowEngine(engineConfig{MaxConns: cfg.maxConns, MaxPages: cfg.maxPages,
		MaxPagesPerConn: cfg.maxPagesPerConn, Timeout: cfg.timeout}, out)
	if err != nil {
		fmt.Fprintf(stderr, "reassemble: %v\n", err)
		return exitUsage
	}
	p := &processor{cfg: cfg, capture: cr, mapped: mapped, dec: capture.NewDecoder(), eng: eng, out: out, stderr: stderr}
	p.run()

	opts := eng.Options()
	s := &summary{
		Capture: captureSummary{File: cfg.file, Format: cr.Format(), LinkTypes: p.linkTypeNames()},
		Options: optionsSummary{MaxConns: cfg.maxConns, MaxPages: opts.MaxBufferedPagesTotal,
			MaxPagesPerConn: opts.MaxBufferedPagesPerConnection, Timeout: cfg.timeout.String()},
		Errors: p.errors, DecodeErrors: p.decodeErrs,
	}
	s.Stats.Packets = p.packets
	s.Stats.Errors = p.errorCount
	s.Stats.CapturedBytes = p.bytes
	s.Stats.FirstPacket, s.Stats.LastPacket = p.first, p.last
	s.Stats.DecodeStats = p.dec.Stats()
	s.Stats.engineStats = eng.Stats()
	if out.writeErr != nil {
		p.fail(0, fmt.Errorf("writing flow files (%d failed): %w", out.writeFails, out.writeErr))
		s.Errors = p.errors
	}
	if err := out.writeSummary(s); err != nil {
		fmt.Fprintf(stderr, "reassemble: %v\n", err)
		return exitPartial
	}
	if !cfg.quiet {
		fmt.Fprintf(stdout, "%s: %d packets, %d TCP segments, %d flows, %d files, %d bytes written to %s\n",
			cfg.file, p.packets, p.dec.Stats().TCPSegments, len(out.flows), out.files, out.written, cfg.outDir)
		if n := p.dec.Stats().Undecodable; n > 0 {
			fmt.Fprintf(stdout, "%d packets could not be decoded (see decode_errors in %s)\n", n, summaryName)
		}
	}
	if p.errorCount > 0 {
		return exitPartial
	}
	return exitOK
}

// processor runs the packets of one capture through decoder and engine.
type processor struct {
	cfg        *config
	capture    *capture.Reader
	mapped     *mappedFile // the capture file, when mapped and not compressed
	dec        *capture.Decoder
	eng        flowEngine
	out        *output
	stderr     io.Writer
	packets    int64
	bytes      int64
	first      time.Time
	last       time.Time // latest capture time seen
	lastFlush  time.Time
	links      [256]int64 // packets per link type (gopacket's LinkType is a byte)
	errors     []packetError
	errorCount int64
	decodeErrs []packetError
	warned     int
	engWarned  int
}

// fail records an error that makes the exit status 1 and prints it; past
// maxErrorsKept errors they are only counted.
func (p *processor) fail(packet int64, err error) {
	p.errorCount++
	if len(p.errors) < maxErrorsKept {
		p.errors = append(p.errors, packetError{Packet: packet, Error: err.Error()})
	}
	if p.errorCount <= maxWarnLines {
		fmt.Fprintf(p.stderr, "reassemble: %s: %v\n", p.cfg.file, err)
	}
}

func (p *processor) run() {
	flushEvery := p.cfg.timeout / 4
	if flushEvery < time.Second {
		flushEvery = time.Second
	}
	for {
		data, ci, link, err := p.capture.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				p.fail(p.packets+1, err)
			}
			break
		}
		p.mapped.release(p.capture.Consumed())
		p.packets++
		p.bytes += int64(len(data))
		p.links[link]++
		ts := ci.Timestamp
		if p.first.IsZero() {
			p.first = ts
		}
		if ts.After(p.last) {
			p.last = ts
		}
		// Close idle connections before this packet can refresh them. The
		// SafeAssembler also closes them by capture time, but only after
		// the packet that arrives: a connection that resumes after being
		// idle longer than -timeout would be taken for the old one.
		if p.cfg.timeout > 0 && p.last.Sub(p.lastFlush) >= flushEvery {
			if !p.lastFlush.IsZero() {
				p.eng.FlushOlderThan(p.last.Add(-p.cfg.timeout))
			}
			p.lastFlush = p.last
		}
		seg, err := p.dec.Decode(data, link, ts)
		if err != nil {
			p.decodeError(err)
		} else if seg != nil {
			if err := p.eng.Assemble(seg.NetFlow, seg.TCP, ci); err != nil {
				p.engineError(err)
			}
		}
		if !p.cfg.quiet && p.cfg.progress > 0 && p.packets%int64(p.cfg.progress) == 0 {
			fmt.Fprintf(p.stderr, "reassemble: %d packets, %d MB, %d flows, capture time %s\n",
				p.packets, p.bytes>>20, len(p.out.flows), p.last.UTC().Format(time.RFC3339))
		}
	}
	p.eng.FlushAll()
	p.eng.Close()
	p.out.finish()
}

// engineError reports a segment the reassembler refused. Refusals are
// counted by the engine (stats.engine_errors) and never change the exit
// status; only the unexpected kinds are printed, the first few of them.
func (p *processor) engineError(err error) {
	if errors.Is(err, reassembly.ErrConnectionLimit) || errors.Is(err, reassembly.ErrConnectionClosed) {
		return
	}
	if !p.cfg.quiet && p.engWarned < maxWarnLines {
		p.engWarned++
		fmt.Fprintf(p.stderr, "reassemble: %s: packet %d: %v\n", p.cfg.file, p.packets, err)
	}
}

// decodeError counts a packet that could not be decoded; the first few are
// printed, more are listed in the summary.
func (p *processor) decodeError(err error) {
	if len(p.decodeErrs) < maxErrorsKept {
		p.decodeErrs = append(p.decodeErrs, packetError{Packet: p.packets, Error: err.Error()})
	}
	if !p.cfg.quiet && p.warned < maxWarnLines {
		p.warned++
		fmt.Fprintf(p.stderr, "reassemble: %s: packet %d skipped: %v\n", p.cfg.file, p.packets, err)
		if p.warned == maxWarnLines {
			fmt.Fprintf(p.stderr, "reassemble: further undecodable packets are only counted\n")
		}
	}
}

func (p *processor) linkTypeNames() []string {
	var names []string
	for lt, n := range p.links {
		if n > 0 {
			names = append(names, fmt.Sprintf("%d (%s)", lt, capture.LinkTypeName(layers.LinkType(lt))))
		}
	}
	if len(names) == 0 {
		lt := p.capture.LinkType()
		names = append(names, fmt.Sprintf("%d (%s)", lt, capture.LinkTypeName(lt)))
	}
	sort.Strings(names)
	return names
}
