package main

// reassemble.go: the only file that talks to a TCP reassembly engine.
//
// Everything else in the command sees the engine through flowEngine and
// reports flows through flowSink. The engine today is gopacket's own
// reassembly package; moving to github.com/safepacket/reassembly is a change
// of the import below (the API is the same) and of newFlowEngine, which would
// build a SafeStreamPool/SafeAssembler and return their Stats() in Stats().

import (
	"fmt"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/reassembly"
)

// engineName is reported in the summary.
const engineName = "github.com/google/gopacket/reassembly v1.1.19"

// How a direction of a flow ended.
const (
	endFIN     = "fin"     // a FIN closed it
	endRST     = "rst"     // an RST closed it
	endTimeout = "timeout" // idle longer than -timeout (capture time)
	endEOF     = "eof"     // still open at the end of the capture
)

// Directions, as indexes: 0 is the client (the sender of the flow's first
// packet) to the server, 1 the reverse.
const (
	dirC2S = 0
	dirS2C = 1
)

// engineConfig holds the limits given on the command line; 0 means none.
type engineConfig struct {
	MaxConns int // live connections
	MaxPages int // buffered out-of-order pages, all connections together
}

// flowEngine is the narrow surface the command needs from a reassembler.
// Errors are reported, never panics.
type flowEngine interface {
	// Assemble hands in one TCP segment with its capture information.
	Assemble(netFlow gopacket.Flow, tcp *layers.TCP, ci gopacket.CaptureInfo) error
	// FlushOlderThan skips over holes older than t and closes connections
	// idle since before t (capture time).
	FlushOlderThan(t time.Time) error
	// FlushAll delivers everything still buffered and closes every connection.
	FlushAll() error
	// Stats returns the numbers shown under stats.assembler and stats.pool.
	Stats() engineStats
}

// flowSink receives the flows an engine finds.
type flowSink interface {
	NewFlow(netFlow, tcpFlow gopacket.Flow, ts time.Time) flowHandle
}

// flowHandle receives the events of one flow, for direction dirC2S or dirS2C.
type flowHandle interface {
	Seen(dir int, ts time.Time)
	Data(dir int, b []byte)
	Gap(dir int, length int)
	Overlap(dir int, bytes, packets int)
	Retransmitted(dir int, bytes int)
	End(dir int, reason string)
	Complete()
}

// engineStats is what the summary shows of the engine. With the
// SafeAssembler, Assembler becomes a.Stats() and Pool becomes pool.Stats().
type engineStats struct {
	Engine    string `json:"engine"`
	Assembler any    `json:"assembler"`
	Pool      any    `json:"pool"`
}

// assemblerCounters are counted here around upstream's Assembler, which
// keeps no statistics of its own.
type assemblerCounters struct {
	PacketsProcessed  int64 `json:"packets_processed"`
	BytesProcessed    int64 `json:"bytes_processed"`
	BytesDelivered    int64 `json:"bytes_delivered"`
	Deliveries        int64 `json:"deliveries"`
	Chunks            int64 `json:"chunks"`
	Packets           int64 `json:"packets"`
	QueuedBytes       int64 `json:"queued_bytes"`
	QueuedPackets     int64 `json:"queued_packets"`
	OverlapBytes      int64 `json:"overlap_bytes"`
	OverlapPackets    int64 `json:"overlap_packets"`
	Retransmitted     int64 `json:"retransmitted_bytes"`
	Gaps              int64 `json:"gaps"`
	GapBytes          int64 `json:"gap_bytes"`
	UnknownGaps       int64 `json:"unknown_gaps"`
	Flushes           int64 `json:"flushes"`
	ConnectionsFlush  int64 `json:"connections_flushed"`
	ConnectionsClosed int64 `json:"connections_closed_by_flush"`
	ClosedAtEOF       int64 `json:"connections_closed_at_eof"`
	Errors            int64 `json:"errors"`
}

type poolCounters struct {
	ActiveConnections   int64 `json:"active_connections"`
	PeakConnections     int64 `json:"peak_connections"`
	TotalCreated        int64 `json:"total_created"`
	Completed           int64 `json:"completed"`
	RejectedConnections int64 `json:"rejected_connections"`
}

// upstreamEngine drives gopacket's reassembly.Assembler.
type upstreamEngine struct {
	sink     flowSink
	maxConns int
	pool     *reassembly.StreamPool
	asm      *reassembly.Assembler
	closing  string // end reason for directions closed by the running flush
	broken   error  // set when a flush panicked: the engine's locks may be held
	asmStats assemblerCounters
	poolSt   poolCounters
}

func newFlowEngine(cfg engineConfig, sink flowSink) (flowEngine, error) {
	if cfg.MaxConns < 0 || cfg.MaxPages < 0 {
		return nil, fmt.Errorf("invalid engine limits: max-conns %d, max-pages %d", cfg.MaxConns, cfg.MaxPages)
	}
	e := &upstreamEngine{sink: sink, maxConns: cfg.MaxConns}
	e.pool = reassembly.NewStreamPool(e)
	e.asm = reassembly.NewAssembler(e.pool)
	e.asm.MaxBufferedPagesTotal = cfg.MaxPages
	return e, nil
}

// captureContext carries the packet's CaptureInfo to the engine.
type captureContext gopacket.CaptureInfo

func (c *captureContext) GetCaptureInfo() gopacket.CaptureInfo { return gopacket.CaptureInfo(*c) }

func (e *upstreamEngine) Assemble(netFlow gopacket.Flow, tcp *layers.TCP, ci gopacket.CaptureInfo) (err error) {
	if e.broken != nil {
		return e.broken
	}
	defer func() {
		if p := recover(); p != nil {
			e.asmStats.Errors++
			err = fmt.Errorf("reassembly engine panicked: %v", p)
		}
	}()
	e.asmStats.PacketsProcessed++
	e.asmStats.BytesProcessed += int64(len(tcp.Payload))
	ctx := captureContext(ci)
	e.asm.AssembleWithContext(netFlow, tcp, &ctx)
	return nil
}

func (e *upstreamEngine) FlushOlderThan(t time.Time) error {
	return e.flush(endTimeout, func() {
		flushed, closed := e.asm.FlushCloseOlderThan(t)
		e.asmStats.ConnectionsFlush += int64(flushed)
		e.asmStats.ConnectionsClosed += int64(closed)
	})
}

func (e *upstreamEngine) FlushAll() error {
	return e.flush(endEOF, func() {
		e.asmStats.ClosedAtEOF += int64(e.asm.FlushAll())
	})
}

func (e *upstreamEngine) flush(reason string, f func()) (err error) {
	if e.broken != nil {
		return e.broken
	}
	defer func() {
		e.closing = ""
		if p := recover(); p != nil {
			e.asmStats.Errors++
			// Upstream's flush holds connection locks without defer: after a
			// panic the engine must not be used again.
			e.broken = fmt.Errorf("reassembly engine panicked during flush: %v", p)
			err = e.broken
		}
	}()
	e.asmStats.Flushes++
	e.closing = reason
	f()
	return nil
}

func (e *upstreamEngine) Stats() engineStats {
	a := e.asmStats
	p := e.poolSt
	return engineStats{Engine: engineName, Assembler: &a, Pool: &p}
}

// New implements reassembly.StreamFactory.
func (e *upstreamEngine) New(netFlow, tcpFlow gopacket.Flow, tcp *layers.TCP, ac reassembly.AssemblerContext) reassembly.Stream {
	if e.maxConns > 0 && e.poolSt.ActiveConnections >= int64(e.maxConns) {
		e.poolSt.RejectedConnections++
		return &engineStream{e: e}
	}
	e.poolSt.TotalCreated++
	e.poolSt.ActiveConnections++
	if e.poolSt.ActiveConnections > e.poolSt.PeakConnections {
		e.poolSt.PeakConnections = e.poolSt.ActiveConnections
	}
	var ts time.Time
	if ac != nil {
		ts = ac.GetCaptureInfo().Timestamp
	}
	return &engineStream{e: e, flow: e.sink.NewFlow(netFlow, tcpFlow, ts)}
}

// engineStream adapts one connection's callbacks to its flowHandle. A stream
// without a flow belongs to a connection refused by -max-conns: it accepts
// nothing.
type engineStream struct {
	e      *upstreamEngine
	flow   flowHandle
	sawRST [2]bool
	ended  [2]bool
	done   bool
}

func dirIndex(d reassembly.TCPFlowDirection) int {
	if d == reassembly.TCPDirClientToServer {
		return dirC2S
	}
	return dirS2C
}

// Accept takes every segment and forces the start of a direction at its
// first segment, so connections picked up midstream are reassembled.
func (s *engineStream) Accept(tcp *layers.TCP, ci gopacket.CaptureInfo, dir reassembly.TCPFlowDirection, nextSeq reassembly.Sequence, start *bool, ac reassembly.AssemblerContext) bool {
	if s.flow == nil || s.done {
		return false
	}
	d := dirIndex(dir)
	if tcp.RST {
		s.sawRST[d] = true
	}
	s.flow.Seen(d, ci.Timestamp)
	// Payload for sequence space already delivered will be dropped by the
	// engine: count it here, where every segment passes (upstream reports
	// its own overlap numbers only along with a later delivery).
	if n := len(tcp.Payload); n > 0 && nextSeq >= 0 && !s.ended[d] {
		seq := reassembly.Sequence(tcp.Seq)
		if tcp.SYN {
			seq = seq.Add(1)
		}
		if behind := -nextSeq.Difference(seq); behind > 0 {
			old := min(behind, n)
			s.e.asmStats.Retransmitted += int64(old)
			s.flow.Retransmitted(d, old)
		}
	}
	*start = true
	return true
}

func (s *engineStream) ReassembledSG(sg reassembly.ScatterGather, ac reassembly.AssemblerContext) {
	if s.flow == nil {
		return
	}
	dir, _, end, skip := sg.Info()
	d := dirIndex(dir)
	st := &s.e.asmStats
	switch {
	case skip > 0:
		st.Gaps++
		st.GapBytes += int64(skip)
		s.flow.Gap(d, skip)
	case skip < 0:
		// Upstream reports -1 when it had no start for the direction; with
		// the start forced in Accept this does not happen.
		st.UnknownGaps++
	}
	if n, _ := sg.Lengths(); n > 0 {
		b := sg.Fetch(n)
		st.BytesDelivered += int64(len(b))
		s.flow.Data(d, b)
	}
	ts := sg.Stats()
	st.Deliveries++
	st.Chunks += int64(ts.Chunks)
	st.Packets += int64(ts.Packets)
	st.QueuedBytes += int64(ts.QueuedBytes)
	st.QueuedPackets += int64(ts.QueuedPackets)
	st.OverlapBytes += int64(ts.OverlapBytes)
	st.OverlapPackets += int64(ts.OverlapPackets)
	if ts.OverlapBytes > 0 || ts.OverlapPackets > 0 {
		s.flow.Overlap(d, ts.OverlapBytes, ts.OverlapPackets)
	}
	if end && !s.ended[d] {
		s.ended[d] = true
		if s.sawRST[d] {
			s.flow.End(d, endRST)
		} else {
			s.flow.End(d, endFIN)
		}
	}
}

// ReassemblyComplete closes the directions that no FIN/RST closed, with the
// reason of the flush that got here, and lets the pool drop the connection.
func (s *engineStream) ReassemblyComplete(ac reassembly.AssemblerContext) bool {
	if s.flow == nil || s.done {
		return true
	}
	s.done = true
	reason := s.e.closing
	if reason == "" {
		reason = endEOF
	}
	for d := range s.ended {
		if !s.ended[d] {
			s.ended[d] = true
			s.flow.End(d, reason)
		}
	}
	s.flow.Complete()
	s.e.poolSt.ActiveConnections--
	s.e.poolSt.Completed++
	return true
}
