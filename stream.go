package reassembly

import (
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// Stream receives the reassembled bytes of one TCP connection; users
// implement it and hand out instances through a StreamFactory.
//
// For each connection the assembler calls, in order: StreamFactory.New once,
// Accept for every packet, ReassembledSG zero or more times with bytes in
// sequence order, and ReassemblyComplete once when both directions are done.
type Stream interface {
	// Accept tells whether the packet should be reassembled; setting *start
	// to true makes the packet's sequence number the start of its direction
	// when no SYN has been seen.
	Accept(tcp *layers.TCP, ci gopacket.CaptureInfo, dir TCPFlowDirection, nextSeq Sequence, start *bool, ac AssemblerContext) bool

	// ReassembledSG hands over the next bytes of one direction. The
	// ScatterGather and the bytes it returns are reused after the call
	// returns: copy what you keep, or ask for it again with KeepFrom.
	ReassembledSG(sg ScatterGather, ac AssemblerContext)

	// ReassemblyComplete reports that no more data will come, because both
	// directions closed (FIN or RST) or were flushed. Returning true removes
	// the connection from its pool; false keeps it so that later packets
	// still reach Accept.
	ReassemblyComplete(ac AssemblerContext) bool
}

// StreamFactory creates a Stream for each new connection.
type StreamFactory interface {
	// New returns the Stream for the connection whose first packet is tcp.
	New(netFlow, tcpFlow gopacket.Flow, tcp *layers.TCP, ac AssemblerContext) Stream
}

// AssemblerContext carries a packet's metadata through the assembler to the
// Stream callbacks.
type AssemblerContext interface {
	// GetCaptureInfo returns the capture metadata of the packet.
	GetCaptureInfo() gopacket.CaptureInfo
}

// ScatterGather gives a Stream the reassembled bytes of one delivery,
// possibly spread over several buffers, with their metadata.
type ScatterGather interface {
	// Lengths returns the number of bytes available, and how many of them
	// were kept from the previous delivery by KeepFrom.
	Lengths() (int, int)
	// Fetch returns the first length bytes; it copies only when they span
	// several buffers.
	Fetch(length int) []byte
	// KeepFrom asks that the bytes from offset on be delivered again,
	// ahead of the next bytes of this direction.
	KeepFrom(offset int)
	// CaptureInfo returns the capture metadata of the packet that carried
	// the byte at offset, or the zero value for an offset out of range.
	CaptureInfo(offset int) gopacket.CaptureInfo
	// Info returns the direction, whether the bytes start the direction
	// (SYN seen), whether they end it (FIN or RST), and how many bytes were
	// skipped before them (-1 when the start is unknown).
	Info() (direction TCPFlowDirection, start bool, end bool, skip int)
	// Stats returns figures about this delivery and its half-connection.
	Stats() TCPAssemblyStats
}

// TCPAssemblyStats describes one ScatterGather and what its half-connection
// did since the previous delivery.
type TCPAssemblyStats struct {
	// Chunks and Packets count the buffers and the packets in this delivery.
	Chunks  int
	Packets int
	// QueuedBytes and QueuedPackets count what was buffered out of order,
	// and OverlapBytes and OverlapPackets what was discarded as overlap,
	// since the previous delivery of the same direction.
	QueuedBytes    int
	QueuedPackets  int
	OverlapBytes   int
	OverlapPackets int
}
