package main

// output.go: one file per flow direction, and summary.json.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/gopacket"

	"github.com/safepacket/reassembly/internal/capture"
)

// Bounds on what the output keeps in memory.
const (
	dirBufferSize  = 32 << 10 // bytes buffered per direction before writing (twice that costs more user CPU in cache misses, half more system CPU in writes)
	totalBuffered  = 12 << 20 // bytes pending over all directions before the fullest are written
	totalHeld      = 24 << 20 // buffer capacity held over all directions before the largest are given back
	maxGapsPerDir  = 1000     // gaps listed per direction; the rest are only counted
	maxErrorsKept  = 100      // decode errors listed in the summary
	summaryName    = "summary.json"
	flowFileSuffix = ".bin"
)

// gapRecord is a hole in a direction's byte stream: Offset is the number of
// bytes written before it, Length its size in sequence space.
type gapRecord struct {
	Offset int64 `json:"offset"`
	Length int64 `json:"length"`
}

// directionSummary describes one direction of a flow.
type directionSummary struct {
	Src            string      `json:"src"`
	SrcPort        uint16      `json:"sport"`
	Dst            string      `json:"dst"`
	DstPort        uint16      `json:"dport"`
	File           string      `json:"file,omitempty"`
	Bytes          int64       `json:"bytes"`
	Packets        int64       `json:"packets"`
	Gaps           []gapRecord `json:"gaps"`
	GapCount       int64       `json:"gap_count"`
	GapBytes       int64       `json:"gap_bytes"`
	GapsOmitted    int64       `json:"gaps_omitted,omitempty"`
	OverlapBytes   int64       `json:"overlap_bytes"`
	OverlapPackets int64       `json:"overlap_packets"`
	Retransmitted  int64       `json:"retransmitted_bytes"`
	End            string      `json:"end"`
}

// flowSummary describes one TCP connection as the engine saw it. The client
// is the sender of its first packet.
type flowSummary struct {
	ID         int              `json:"id"`
	FirstSeen  time.Time        `json:"first_seen"`
	LastSeen   time.Time        `json:"last_seen"`
	ClientToSv directionSummary `json:"client_to_server"`
	SvToClient directionSummary `json:"server_to_client"`
}

// flowRecord is a flow being written; it implements flowHandle.
type flowRecord struct {
	out     *output
	sum     flowSummary
	pending [2][]byte
	created [2]bool // file created (truncated) already
	file    [2]flowFile
	open    [2]bool // file open (file), between writes
	listed  [2]bool // in output.holders
	failed  [2]bool // a write failed: stop writing this direction
	done    bool
}

// packetError names a packet that could not be read or decoded.
type packetError struct {
	Packet int64  `json:"packet,omitempty"`
	Error  string `json:"error"`
}

// output owns the output directory.
type output struct {
	dir         string
	flows       []*flowRecord
	names       map[string]int // file base name -> streams named so far
	buffered    int            // bytes pending over all directions
	held        int            // capacity of the directions' buffers
	free        [][]byte       // buffers of dirBufferSize given back, for reuse
	holders     []holder       // the directions that hold a buffer, and some that did
	pruneAt     int            // length of holders at which it is pruned
	maxBuffered int            // totalBuffered, smaller in tests
	maxHeld     int            // totalHeld, smaller in tests
	files       int
	open        int // flow files open between writes
	maxOpen     int // most flow files open between writes
	written     int64
	writeErr    error
	writeFails  int64
}

func newOutput(dir string) (*output, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return &output{dir: dir, names: make(map[string]int), maxBuffered: totalBuffered, maxHeld: totalHeld,
		maxOpen: maxOpenFlowFiles()}, nil
}

// addrString renders an endpoint address as the corpus names it: IPv6
// canonical (RFC 5952), IPv4-mapped IPv6 kept as such.
func addrString(ep gopacket.Endpoint) string {
	if a, ok := netip.AddrFromSlice(ep.Raw()); ok {
		return a.String()
	}
	return ep.String()
}

func portOf(ep gopacket.Endpoint) uint16 {
	raw := ep.Raw()
	if len(raw) != 2 {
		return 0
	}
	return uint16(raw[0])<<8 | uint16(raw[1])
}

// NewFlow implements flowSink.
func (o *output) NewFlow(netFlow, tcpFlow gopacket.Flow, ts time.Time) flowHandle {
	src, dst := addrString(netFlow.Src()), addrString(netFlow.Dst())
	sport, dport := portOf(tcpFlow.Src()), portOf(tcpFlow.Dst())
	f := &flowRecord{out: o}
	f.sum = flowSummary{
		ID:         len(o.flows) + 1,
		FirstSeen:  ts,
		LastSeen:   ts,
		ClientToSv: directionSummary{Src: src, SrcPort: sport, Dst: dst, DstPort: dport, Gaps: []gapRecord{}},
		SvToClient: directionSummary{Src: dst, SrcPort: dport, Dst: src, DstPort: sport, Gaps: []gapRecord{}},
	}
	o.flows = append(o.flows, f)
	return f
}

func (f *flowRecord) dir(d int) *directionSummary {
	if d == dirC2S {
		return &f.sum.ClientToSv
	}
	return &f.sum.SvToClient
}

// flowBaseName is the file name of a direction without suffix:
// <src>.<sport>-<dst>.<dport>, with ':' of IPv6 addresses replaced by '_'.
func flowBaseName(ds *directionSummary) string {
	return strings.ReplaceAll(ds.Src, ":", "_") + "." + strconv.Itoa(int(ds.SrcPort)) + "-" +
		strings.ReplaceAll(ds.Dst, ":", "_") + "." + strconv.Itoa(int(ds.DstPort))
}

func (f *flowRecord) Seen(d int, ts time.Time) {
	f.dir(d).Packets++
	if ts.After(f.sum.LastSeen) {
		f.sum.LastSeen = ts
	}
}

// Data appends bytes to a direction. The file is named when its first byte
// arrives: the N-th stream that has bytes for the same directional 4-tuple
// gets "~N" (N >= 2). Upstream removes a connection before a new one with
// the same 4-tuple can start, so names follow the order of the streams.
func (f *flowRecord) Data(d int, b []byte) {
	if len(b) == 0 {
		return
	}
	ds := f.dir(d)
	if ds.File == "" {
		base := flowBaseName(ds)
		n := f.out.names[base] + 1
		f.out.names[base] = n
		if n > 1 {
			ds.File = base + "~" + strconv.Itoa(n) + flowFileSuffix
		} else {
			ds.File = base + flowFileSuffix
		}
		f.out.files++
	}
	ds.Bytes += int64(len(b))
	p := f.pending[d]
	if len(p)+len(b) > dirBufferSize {
		f.flush(d)
		if len(b) >= dirBufferSize {
			f.write(d, b)
			return
		}
		p = f.pending[d]
	}
	if len(p)+len(b) > cap(p) {
		p = f.out.grow(p, len(p)+len(b))
	}
	f.pending[d] = append(p, b...)
	if !f.listed[d] {
		f.out.hold(f, d)
	}
	f.out.buffered += len(b)
	if len(f.pending[d]) == dirBufferSize {
		f.flush(d)
	}
	if f.out.held >= f.out.maxHeld || f.out.buffered >= f.out.maxBuffered {
		f.out.relieve()
	}
}

func (f *flowRecord) Gap(d int, length int) {
	ds := f.dir(d)
	ds.GapCount++
	ds.GapBytes += int64(length)
	if len(ds.Gaps) < maxGapsPerDir {
		ds.Gaps = append(ds.Gaps, gapRecord{Offset: ds.Bytes, Length: int64(length)})
	} else {
		ds.GapsOmitted++
	}
}

func (f *flowRecord) Overlap(d int, bytes, packets int) {
	ds := f.dir(d)
	ds.OverlapBytes += int64(bytes)
	ds.OverlapPackets += int64(packets)
}

func (f *flowRecord) Retransmitted(d int, bytes int) {
	f.dir(d).Retransmitted += int64(bytes)
}

func (f *flowRecord) End(d int, reason string) {
	ds := f.dir(d)
	if ds.End == "" {
		ds.End = reason
	}
	f.release(d)
	f.closeFile(d)
}

func (f *flowRecord) Complete() {
	f.done = true
	for d := range 2 {
		f.release(d)
		f.closeFile(d)
	}
}

// flush writes a direction's pending bytes. A whole buffer stays with the
// direction for its next bytes; a small one is given back.
func (f *flowRecord) flush(d int) {
	buf := f.pending[d]
	if len(buf) == 0 {
		return
	}
	f.out.buffered -= len(buf)
	f.write(d, buf)
	if cap(buf) == dirBufferSize {
		f.pending[d] = buf[:0]
	} else {
		f.out.release(buf)
		f.pending[d] = nil
	}
}

// release writes a direction's pending bytes and gives its buffer back.
func (f *flowRecord) release(d int) {
	f.flush(d)
	f.out.release(f.pending[d])
	f.pending[d] = nil
}

// write appends b to a direction's file. The file is created (and
// truncated, should an older run have left one) on the first write, then
// appended to. It stays open for the next write while fewer than maxOpen
// files are (a file written while they are all taken is closed again), so
// that the number of flows is not limited by file descriptors; it is
// closed when its direction ends.
func (f *flowRecord) write(d int, b []byte) {
	if f.failed[d] {
		return
	}
	path := filepath.Join(f.out.dir, f.dir(d).File)
	if !f.open[d] {
		flags := os.O_WRONLY | os.O_APPEND
		if !f.created[d] {
			flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
		}
		fh, err := openFlowFile(path, flags)
		f.created[d] = true
		if err != nil {
			f.writeFailed(d, err)
			return
		}
		f.file[d], f.open[d] = fh, true
		f.out.open++
	}
	if err := f.file[d].write(path, b); err != nil {
		// Failed first, so that the close reports no second error.
		f.writeFailed(d, err)
		f.closeFile(d)
		return
	}
	f.out.written += int64(len(b))
	if f.out.open > f.out.maxOpen {
		f.closeFile(d)
	}
}

// closeFile closes a direction's file if it is open.
func (f *flowRecord) closeFile(d int) {
	if !f.open[d] {
		return
	}
	f.open[d] = false
	f.out.open--
	if err := f.file[d].close(filepath.Join(f.out.dir, f.dir(d).File)); err != nil && !f.failed[d] {
		f.writeFailed(d, err)
	}
}

// writeFailed stops writing a direction after err.
func (f *flowRecord) writeFailed(d int, err error) {
	f.failed[d] = true
	f.out.writeFails++
	if f.out.writeErr == nil {
		f.out.writeErr = err
	}
}

// finish writes what is still buffered; flows the engine never completed
// (it failed) end with reason "eof".
func (o *output) finish() {
	for _, f := range o.flows {
		if !f.done {
			for d := range 2 {
				if f.dir(d).End == "" {
					f.dir(d).End = endEOF
				}
			}
		}
		for d := range 2 {
			f.release(d)
			f.closeFile(d)
		}
	}
}

// summary is the content of summary.json. writeSummary streams the flows
// from the flow records; Flows is filled when a summary is read back.
type summary struct {
	Capture      captureSummary `json:"capture"`
	Options      optionsSummary `json:"options"`
	Errors       []packetError  `json:"errors"`
	DecodeErrors []packetError  `json:"decode_errors"`
	Flows        []flowSummary  `json:"flows"`
	Stats        summaryStats   `json:"stats"`
}

type captureSummary struct {
	File      string   `json:"file"`
	Format    string   `json:"format"`
	LinkTypes []string `json:"link_types"`
}

// optionsSummary holds the limits in effect: the page limits with the
// library's defaults filled in.
type optionsSummary struct {
	MaxConns        int    `json:"max_conns"`
	MaxPages        int    `json:"max_pages"`
	MaxPagesPerConn int    `json:"max_pages_per_conn"`
	Timeout         string `json:"timeout"`
}

// summaryStats is the top-level "stats" object.
type summaryStats struct {
	Packets       int64     `json:"packets"`
	CapturedBytes int64     `json:"captured_bytes"`
	FirstPacket   time.Time `json:"first_packet"`
	LastPacket    time.Time `json:"last_packet"`
	Errors        int64     `json:"errors"`
	capture.DecodeStats
	Flows         int   `json:"flows"`
	Files         int   `json:"files"`
	BytesWritten  int64 `json:"bytes_written"`
	WriteFailures int64 `json:"write_failures"`
	engineStats
}

// writeSummary writes summary.json into the output directory. The flows
// are encoded one by one, so a capture with millions of flows does not need
// its whole summary in memory twice.
func (o *output) writeSummary(s *summary) error {
	s.Stats.Flows = len(o.flows)
	s.Stats.Files = o.files
	s.Stats.BytesWritten = o.written
	s.Stats.WriteFailures = o.writeFails
	if s.Errors == nil {
		s.Errors = []packetError{}
	}
	if s.DecodeErrors == nil {
		s.DecodeErrors = []packetError{}
	}
	path := filepath.Join(o.dir, summaryName)
	fh, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(fh, 1<<16)
	err = encodeSummary(w, s, o.flows)
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// encodeSummary writes the JSON object: everything but the flows first (as
// summary's fields would), then the flows array element by element.
func encodeSummary(w *bufio.Writer, s *summary, flows []*flowRecord) error {
	head := []struct {
		key string
		val any
	}{
		{"capture", s.Capture},
		{"options", s.Options},
		{"errors", s.Errors},
		{"decode_errors", s.DecodeErrors},
		{"stats", s.Stats},
	}
	w.WriteString("{\n")
	for _, h := range head {
		b, err := json.MarshalIndent(h.val, "  ", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "  %q: ", h.key)
		w.Write(b)
		w.WriteString(",\n")
	}
	w.WriteString("  \"flows\": [")
	var b []byte
	for i, f := range flows {
		var err error
		if b, err = appendFlowJSON(b[:0], &f.sum); err != nil {
			return err
		}
		if i > 0 {
			w.WriteString(",")
		}
		w.WriteString(flowIndent)
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	if len(flows) > 0 {
		w.WriteString("\n  ")
	}
	_, err := w.WriteString("]\n}\n")
	return err
}

// fdMargin is how many descriptors below the process's limit the output
// keeps free for everything else (the capture, the summary, the runtime).
const fdMargin = 256

// maxOpenFor is how many flow files may stay open under a limit of limit
// descriptors: the limit less fdMargin, at most 2^20 and never below 0.
func maxOpenFor(limit uint64) int {
	if limit <= fdMargin {
		return 0
	}
	return int(min(limit, 1<<20) - fdMargin)
}
