package main

// reassemble.go: the only file that talks to the TCP reassembly engine,
// github.com/safepacket/reassembly through its Safe face (SafeStreamPool and
// SafeAssembler).
//
// Everything else in the command sees the engine through flowEngine and
// reports flows through flowSink.

import (
	"errors"
	"fmt"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/safepacket/reassembly"
	"github.com/safepacket/reassembly/internal/stamp"
)

// engineName is reported in the summary.
const engineName = "github.com/safepacket/reassembly"

// How a direction of a flow ended.
const (
	endFIN     = "fin"     // a FIN closed it
	endRST     = "rst"     // an RST closed it (an RST closes both directions)
	endTimeout = "timeout" // idle longer than -timeout (capture time)
	endEOF     = "eof"     // still open at the end of the capture
)

// Directions, as indexes: 0 is the client (the sender of the flow's first
// packet) to the server, 1 the reverse.
const (
	dirC2S = 0
	dirS2C = 1
)

// noTimeout stands for "-timeout 0": the SafeAssembler always closes idle
// connections, so "never" is a century of capture time. It stays far enough
// from the int64 nanosecond range for the assembler's arithmetic on
// capture timestamps.
const noTimeout = 100 * 365 * 24 * time.Hour

// engineConfig holds the limits given on the command line; 0 means the
// library's default for the page limits, no cap for MaxConns and no timeout
// for Timeout.
type engineConfig struct {
	MaxConns        int           // live connections
	MaxPages        int           // buffered out-of-order pages, all connections together
	MaxPagesPerConn int           // buffered out-of-order pages, one direction of a connection
	Timeout         time.Duration // idle time (capture time) after which a connection is closed
}

// flowEngine is the narrow surface the command needs from a reassembler.
type flowEngine interface {
	// Assemble hands in one TCP segment with its capture information. An
	// error (connection refused at the limit, data for a closed
	// connection, ...) is counted in the engine's stats; the segment is
	// dropped and processing goes on.
	Assemble(netFlow gopacket.Flow, tcp *layers.TCP, ci gopacket.CaptureInfo) error
	// FlushOlderThan skips over holes older than t and closes connections
	// idle since before t (capture time).
	FlushOlderThan(t time.Time)
	// FlushAll delivers everything still buffered and closes every
	// connection.
	FlushAll()
	// Close releases the engine; FlushAll first, or the remaining
	// connections end with reason eof.
	Close()
	// Options returns the limits in effect, defaults filled in.
	Options() reassembly.SafeAssemblerOptions
	// Stats returns the numbers shown under stats.
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

// engineStats is what the summary shows of the engine: the library's own
// statistics, encoded as they are, and what the command counts around it.
type engineStats struct {
	Engine       string                    `json:"engine"`
	Assembler    reassembly.AssemblerStats `json:"assembler"`
	Pool         reassembly.PoolStats      `json:"pool"`
	FlowCounters flowCounters              `json:"flow_counters"`
	EngineErr    engineErrors              `json:"engine_errors"`
}

// flowCounters are counted by the command: the library does not know the
// peak, nor which flush closed what.
type flowCounters struct {
	PeakConnections int64 `json:"peak_connections"` // most flows open at once
	IdleFlushes     int64 `json:"idle_flushes"`     // -timeout flushes run by the command
	IdleFlushed     int64 `json:"idle_flushed"`     // directions those flushes pushed over a hole
	IdleClosed      int64 `json:"idle_closed"`      // directions those flushes closed
	ClosedAtEOF     int64 `json:"closed_at_eof"`    // connections still open at the end of the capture
	Retransmitted   int64 `json:"retransmitted_bytes"`
}

// engineErrors counts the errors AssembleWithContext returned, by kind.
// None of them stops the command.
type engineErrors struct {
	ConnectionLimit  int64 `json:"connection_limit"`  // packets of connections refused at -max-conns
	ConnectionClosed int64 `json:"connection_closed"` // payload for a direction already closed
	StreamPanic      int64 `json:"stream_panic"`      // a panic in the command's own callbacks
	Other            int64 `json:"other"`
}

// safeEngine drives a SafeAssembler over a SafeStreamPool.
type safeEngine struct {
	sink flowSink
	pool *reassembly.SafeStreamPool
	asm  *reassembly.SafeAssembler
	opts reassembly.SafeAssemblerOptions
	ctx  stamp.Context // the context of the packet being assembled
	// closing is the end reason of directions closed by the flush the
	// command is running; "" while a packet is being assembled.
	closing string
	active  int64
	flows   flowCounters
	errs    engineErrors
	closed  bool
}

func newFlowEngine(cfg engineConfig, sink flowSink) (flowEngine, error) {
	if cfg.MaxConns < 0 || cfg.MaxPages < 0 || cfg.MaxPagesPerConn < 0 || cfg.Timeout < 0 {
		return nil, fmt.Errorf("invalid engine limits: max-conns %d, max-pages %d, max-pages-per-conn %d, timeout %v",
			cfg.MaxConns, cfg.MaxPages, cfg.MaxPagesPerConn, cfg.Timeout)
	}
	e := &safeEngine{sink: sink}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = noTimeout
	}
	e.opts = reassembly.SafeAssemblerOptions{
		MaxBufferedPagesTotal:         cfg.MaxPages,
		MaxBufferedPagesPerConnection: cfg.MaxPagesPerConn,
		ConnectionTimeout:             timeout,
		// Replaying a file: time comes from the packets only. The
		// wall-clock flusher would close connections while the file is
		// still being read.
		DisableBackgroundFlush: true,
	}
	if err := e.opts.Validate(); err != nil {
		return nil, err
	}
	e.pool = reassembly.NewSafeStreamPool(e, cfg.MaxConns)
	asm, err := reassembly.NewSafeAssembler(e.pool, e.opts)
	if err != nil {
		return nil, err
	}
	e.asm = asm
	return e, nil
}

// Assemble hands the packet to the engine in the engine's own reusable
// context (the one its tcpassembly face uses), which it copies only when
// it buffers the packet's bytes: no allocation per packet.
func (e *safeEngine) Assemble(netFlow gopacket.Flow, tcp *layers.TCP, ci gopacket.CaptureInfo) error {
	e.ctx.Info = ci
	e.ctx.Gen++
	err := e.asm.AssembleWithContext(netFlow, tcp, &e.ctx)
	switch {
	case err == nil:
	case errors.Is(err, reassembly.ErrConnectionLimit):
		e.errs.ConnectionLimit++
	case errors.Is(err, reassembly.ErrConnectionClosed):
		e.errs.ConnectionClosed++
	case errors.Is(err, reassembly.ErrStreamPanic):
		e.errs.StreamPanic++
	default:
		e.errs.Other++
	}
	return err
}

func (e *safeEngine) FlushOlderThan(t time.Time) {
	e.closing = endTimeout
	flushed, closed := e.asm.FlushCloseOlderThan(t)
	e.closing = ""
	e.flows.IdleFlushes++
	e.flows.IdleFlushed += int64(flushed)
	e.flows.IdleClosed += int64(closed)
}

func (e *safeEngine) FlushAll() {
	e.closing = endEOF
	e.flows.ClosedAtEOF += int64(e.asm.FlushAll())
	e.closing = ""
}

func (e *safeEngine) Close() {
	if e.closed {
		return
	}
	e.closed = true
	e.closing = endEOF
	e.asm.Close()
	e.pool.Close()
	e.closing = ""
}

func (e *safeEngine) Options() reassembly.SafeAssemblerOptions { return e.opts }

func (e *safeEngine) Stats() engineStats {
	return engineStats{
		Engine:       engineName,
		Assembler:    e.asm.Stats(),
		Pool:         e.pool.Stats(),
		FlowCounters: e.flows,
		EngineErr:    e.errs,
	}
}

// New implements reassembly.StreamFactory. The pool refuses connections
// beyond -max-conns before it gets here.
func (e *safeEngine) New(netFlow, tcpFlow gopacket.Flow, tcp *layers.TCP, ac reassembly.AssemblerContext) reassembly.Stream {
	e.active++
	e.flows.PeakConnections = max(e.flows.PeakConnections, e.active)
	var ts time.Time
	if ac != nil {
		ts = ac.GetCaptureInfo().Timestamp
	}
	return &engineStream{e: e, flow: e.sink.NewFlow(netFlow, tcpFlow, ts)}
}

// engineStream adapts one connection's callbacks to its flowHandle.
type engineStream struct {
	e      *safeEngine
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
	d := dirIndex(dir)
	if tcp.RST {
		s.sawRST[d] = true
	}
	s.flow.Seen(d, ci.Timestamp)
	// Payload for sequence space already delivered is dropped by the
	// engine (first copy wins): count it here, where every segment passes.
	if n := len(tcp.Payload); n > 0 && nextSeq >= 0 && !s.ended[d] {
		seq := reassembly.Sequence(tcp.Seq)
		if tcp.SYN {
			seq = seq.Add(1)
		}
		if behind := -nextSeq.Difference(seq); behind > 0 {
			old := min(behind, n)
			s.e.flows.Retransmitted += int64(old)
			s.flow.Retransmitted(d, old)
		}
	}
	*start = true
	return true
}

func (s *engineStream) ReassembledSG(sg reassembly.ScatterGather, ac reassembly.AssemblerContext) {
	dir, _, end, skip := sg.Info()
	d := dirIndex(dir)
	if skip > 0 {
		s.flow.Gap(d, skip)
	}
	if n, _ := sg.Lengths(); n > 0 {
		// A delivery of several packets' bytes is copied part by part
		// into the direction's buffer: Fetch would first join them into
		// a new slice.
		if parts, ok := sg.(reassembly.PartWalker); ok && parts.NumParts() > 1 {
			for i := range parts.NumParts() {
				s.flow.Data(d, parts.Part(i).Bytes)
			}
		} else {
			s.flow.Data(d, sg.Fetch(n))
		}
	}
	if ts := sg.Stats(); ts.OverlapBytes > 0 || ts.OverlapPackets > 0 {
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

// ReassemblyComplete ends the directions that no FIN or RST of their own
// closed: with the reason of the flush the command is running (timeout or
// eof); outside such a flush, with rst when the connection saw an RST (ours
// closes both directions on an RST), else timeout (the assembler closed it
// for being idle past -timeout in capture time).
func (s *engineStream) ReassemblyComplete(ac reassembly.AssemblerContext) bool {
	if s.done {
		return true
	}
	s.done = true
	reason := s.e.closing
	if reason == "" {
		reason = endTimeout
		if s.sawRST[0] || s.sawRST[1] {
			reason = endRST
		}
	}
	for d := range s.ended {
		if !s.ended[d] {
			s.ended[d] = true
			s.flow.End(d, reason)
		}
	}
	s.flow.Complete()
	s.e.active--
	return true
}
