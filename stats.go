package reassembly

// discardReason says why payload bytes were not delivered.
type discardReason int

const (
	discardRejected    discardReason = iota // Stream.Accept returned false
	discardClosed                           // the direction was closed
	discardBeforeStart                      // before the first byte of the direction
	discardAfterEnd                         // buffered when the direction closed
	discardRefused                          // the connection was refused by the pool
	discardDepth                            // past the direction's reassembly depth
	discardRST                              // carried by an RST (Safe face)
	discardChecksum                         // a wrong TCP checksum (ChecksumDrop)
	discardWindow                           // beyond the receiver's window (CheckWindow)
	discardAfterReset                       // sent after an RST ended the connection (CheckWindow)
	numDiscardReasons
)

// counters are an engine's running totals. The engine's owner serializes
// every call, so plain integers do and cost nothing on the packet path.
type counters struct {
	packets            int64
	bytesIn            int64
	deliveredBytes     int64
	overlapBytes       int64 // copies of bytes already delivered
	overwrittenBytes   int64 // buffered copies that lost an overlap
	discarded          [numDiscardReasons]int64
	conflicts          int64 // overlaps whose bytes differed from those held
	conflictBytes      int64
	depthReached       int64 // directions that reached their reassembly depth
	gaps               int64
	gapBytes           int64
	forcedFlushes      int64 // holes skipped because a buffer limit was hit
	forcedGapBytes     int64
	deliveries         int64
	completed          int64
	flushedHalves      int64
	closedByFlush      int64
	timedOut           int64
	reused             int64 // connections ended by a SYN reusing their 4-tuple
	ackedGaps          int64 // holes skipped because the peer acknowledged past them
	ackedGapBytes      int64
	panics             int64
	keptDropped        int64 // bytes kept by KeepFrom let go at a limit
	errors             int64
	checksumBad        int64                  // segments whose checksum was wrong
	checksumUnverified int64                  // segments whose checksum could not be verified
	outOfWindow        int64                  // segments beyond the receiver's window
	resetsOutOfWindow  int64                  // RSTs outside the receiver's window, ignored
	resetsNotExact     int64                  // RSTs inside it but not at its next byte, ignored
	evicted            [numEvictReasons]int64 // connections evicted under pressure
	// Acknowledged delivery (acked_delivery.go): bytes delivered once
	// acknowledged, or before, by reason; directions that stopped waiting.
	ackedBytes        int64
	unacked           [numUnackedReasons]int64
	oneSidedFallbacks int64
}

func (c *counters) discard(r discardReason, n int) {
	if n > 0 {
		c.discarded[r] += int64(n)
	}
}

// AssemblerStats is a snapshot of a SafeAssembler's counters. Byte counts
// are payload bytes, and make conservation checkable: for the assemblers of
// one pool, taken together,
//
//	BytesProcessed = BytesDelivered + BytesOverlap + BytesOverwritten +
//	                 BytesDiscarded + PageCache.QueuedBytes
//
// where PageCache is the pool's (after SafeStreamPool.Close, add
// PoolStats.Closing to the sum). Holes skipped never arrived, so they are
// counted apart, in GapBytes.
type AssemblerStats struct {
	PacketsProcessed int64 // packets handed in
	BytesProcessed   int64 // payload bytes handed in
	Errors           int64 // calls that returned an error

	BytesDelivered   int64 // bytes handed to Streams, each once
	BytesOverlap     int64 // retransmitted copies of bytes already delivered
	BytesOverwritten int64 // copies of buffered bytes that lost an overlap (see OverlapPolicy)
	BytesDiscarded   int64 // bytes dropped, the sum of the nine below
	BytesRejected    int64 // in packets that Stream.Accept refused
	BytesAfterClose  int64 // in packets for a closed direction or refused connection
	BytesBeforeStart int64 // buffered before the start of their direction
	BytesAfterEnd    int64 // buffered when their direction ended
	BytesBeyondDepth int64 // past their direction's ReassemblyDepth
	BytesOnReset     int64 // carried by RST segments, never part of the stream
	BytesBadChecksum int64 // in segments dropped for a wrong checksum (ChecksumDrop)
	BytesOutOfWindow int64 // in segments beyond the receiver's window (CheckWindow)
	BytesAfterReset  int64 // in segments sent after an RST the host accepted ended their connection (CheckWindow)

	// BadChecksums counts segments whose TCP checksum was wrong, with a
	// ChecksumPolicy other than ChecksumOff; UnverifiedChecksums those
	// whose checksum could not be verified (a layers.TCP built rather than
	// decoded, a capture cut short, a flow neither IPv4 nor IPv6), which
	// go on as if right.
	BadChecksums        int64
	UnverifiedChecksums int64
	// OutOfWindow counts segments with data entirely beyond the window
	// their receiver advertised, kept out by CheckWindow.
	OutOfWindow int64
	// ResetsOutOfWindow counts RSTs outside the window of their receiver
	// (before the next byte it expects, or at or past the window's right
	// edge), and ResetsNotExact RSTs inside it but not at that next byte:
	// with CheckWindow, both end nothing, as a host following RFC 9293
	// §3.10.7.4 (RFC 5961 §3.2) drops the first and answers the second
	// with a challenge ACK.
	ResetsOutOfWindow int64
	ResetsNotExact    int64

	OverlapConflicts int64 // overlaps whose bytes differed from those held, each reported to OnConflict
	ConflictBytes    int64 // bytes in those overlaps
	DepthReached     int64 // directions that reached their reassembly depth

	Gaps           int64 // holes skipped, each reported to a Stream as Skip
	GapBytes       int64 // bytes in those holes
	ForcedSkips    int64 // holes skipped because a buffer limit was reached
	ForcedGapBytes int64 // bytes in those holes
	// AckedGaps counts holes skipped as soon as the peer acknowledged
	// bytes past them (the capture missed bytes the host received);
	// AckedGapBytes the bytes in those holes.
	AckedGaps     int64
	AckedGapBytes int64

	Deliveries         int64 // ReassembledSG calls
	StreamsCompleted   int64 // ReassemblyComplete calls
	ConnectionsFlush   int64 // directions a flush pushed over a hole
	ConnectionsClosed  int64 // directions a flush closed
	ConnectionTimeouts int64 // directions closed for being idle past ConnectionTimeout
	ConnectionsReused  int64 // connections completed because a SYN opened a new conversation on their 4-tuple
	PanicsRecovered    int64 // panics of Stream or StreamFactory code recovered
	// KeptBytesDropped counts bytes a Stream asked to keep with KeepFrom
	// that the Safe face's limits did not leave room for; they had been
	// delivered already.
	KeptBytesDropped int64

	// With AckedDelivery, every delivered byte is counted once in
	// BytesDeliveredAcked or BytesDeliveredUnacked, so that their sum is
	// BytesDelivered (the pool's Close, PoolStats.Closing, counts only
	// BytesDelivered). BytesDeliveredUnacked is the sum of the four
	// reasons below it.
	BytesDeliveredAcked   int64 // delivered once the other side acknowledged them
	BytesDeliveredUnacked int64 // delivered before any acknowledgement of them
	BytesUnackedAtEnd     int64 // at the connection's end: an RST, both FINs, FlushAll or Close
	BytesUnackedAtLimit   int64 // forced by a buffer limit, or the connection's eviction
	BytesUnackedByFlush   int64 // forced by a flush or a connection timeout
	BytesUnackedOneSided  int64 // in a direction whose other side never acknowledged anything
	// OneSidedFallbacks counts directions that stopped waiting for
	// acknowledgements after holding AckedDeliveryOneSided bytes while the
	// other side had acknowledged nothing (a one-sided capture).
	OneSidedFallbacks int64

	PageCache PageCacheStats // the pool's page budget

	// Connections this assembler evicted under pressure, each completed
	// once as a timeout completes it (see SafeStreamPoolOptions).
	EvictedUnanswered int64 // at the cap: never heard from the other side
	EvictedIdle       int64 // at the cap: answered, the least recently seen
	EmergencyTimeouts int64 // unanswered and idle past EmergencyTimeout in emergency mode
}

func (c *counters) snapshot(pc *SafePageCache) AssemblerStats {
	s := AssemblerStats{
		PacketsProcessed:     c.packets,
		BytesProcessed:       c.bytesIn,
		Errors:               c.errors,
		BytesDelivered:       c.deliveredBytes,
		BytesOverlap:         c.overlapBytes,
		BytesOverwritten:     c.overwrittenBytes,
		BytesRejected:        c.discarded[discardRejected],
		BytesAfterClose:      c.discarded[discardClosed] + c.discarded[discardRefused],
		BytesBeforeStart:     c.discarded[discardBeforeStart],
		BytesAfterEnd:        c.discarded[discardAfterEnd],
		BytesBeyondDepth:     c.discarded[discardDepth],
		BytesOnReset:         c.discarded[discardRST],
		BytesBadChecksum:     c.discarded[discardChecksum],
		BytesOutOfWindow:     c.discarded[discardWindow],
		BytesAfterReset:      c.discarded[discardAfterReset],
		BadChecksums:         c.checksumBad,
		UnverifiedChecksums:  c.checksumUnverified,
		OutOfWindow:          c.outOfWindow,
		ResetsOutOfWindow:    c.resetsOutOfWindow,
		ResetsNotExact:       c.resetsNotExact,
		OverlapConflicts:     c.conflicts,
		ConflictBytes:        c.conflictBytes,
		DepthReached:         c.depthReached,
		Gaps:                 c.gaps,
		GapBytes:             c.gapBytes,
		ForcedSkips:          c.forcedFlushes,
		ForcedGapBytes:       c.forcedGapBytes,
		AckedGaps:            c.ackedGaps,
		AckedGapBytes:        c.ackedGapBytes,
		Deliveries:           c.deliveries,
		StreamsCompleted:     c.completed,
		ConnectionsFlush:     c.flushedHalves,
		ConnectionsClosed:    c.closedByFlush,
		ConnectionTimeouts:   c.timedOut,
		ConnectionsReused:    c.reused,
		PanicsRecovered:      c.panics,
		KeptBytesDropped:     c.keptDropped,
		BytesDeliveredAcked:  c.ackedBytes,
		BytesUnackedAtEnd:    c.unacked[unackedAtEnd],
		BytesUnackedAtLimit:  c.unacked[unackedLimit],
		BytesUnackedByFlush:  c.unacked[unackedFlush],
		BytesUnackedOneSided: c.unacked[unackedOneSided],
		OneSidedFallbacks:    c.oneSidedFallbacks,
		PageCache:            pc.Stats(),
		EvictedUnanswered:    c.evicted[evictUnanswered],
		EvictedIdle:          c.evicted[evictIdle],
		EmergencyTimeouts:    c.evicted[evictEmergency],
	}
	s.BytesDiscarded = s.BytesRejected + s.BytesAfterClose + s.BytesBeforeStart + s.BytesAfterEnd +
		s.BytesBeyondDepth + s.BytesOnReset + s.BytesBadChecksum + s.BytesOutOfWindow +
		s.BytesAfterReset
	s.BytesDeliveredUnacked = s.BytesUnackedAtEnd + s.BytesUnackedAtLimit + s.BytesUnackedByFlush + s.BytesUnackedOneSided
	return s
}

// PoolStats is a snapshot of a SafeStreamPool's counters.
type PoolStats struct {
	ActiveConnections  int64 // connections in the pool now
	TotalCreated       int64 // connections created, each with one Stream
	ConnectionsRefused int64 // packets refused because their new connection would pass the cap
	// ConnectionsDeclined counts packets whose new connection the
	// StreamFactory declined by returning a nil Stream.
	ConnectionsDeclined int64
	ConnectionsRemoved  int64 // connections that left the pool
	RecentlyClosed      int64 // completed connections remembered so late copies of their packets are dropped
	MaxConnections      int64 // the cap, 0 when there is none
	PoolClosed          bool  // Close was called
	PanicsRecovered     int64 // panics recovered while Close completed Streams
	PageCache           PageCacheStats
	// Closing counts what Close delivered and dropped when it flushed the
	// pool's connections; add it to the assemblers' stats for conservation.
	Closing AssemblerStats

	// Pressure (see SafeStreamPoolOptions): the evictions of all the
	// pool's assemblers, by reason, and the emergency mode.
	EvictedUnanswered int64 // at the cap: never heard from the other side
	EvictedIdle       int64 // at the cap: answered, the least recently seen
	EmergencyTimeouts int64 // unanswered and idle past EmergencyTimeout in emergency mode
	Emergency         bool  // in emergency mode: reached HighWaterMark, not yet back to LowWaterMark
	Emergencies       int64 // times the pool entered emergency mode
	HighWaterMark     int64 // live connections that start emergency mode, 0 without a cap
	LowWaterMark      int64 // live connections that end it
}
