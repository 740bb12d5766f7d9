package reassembly

// discardReason says why payload bytes were not delivered.
type discardReason int

const (
	discardRejected    discardReason = iota // Stream.Accept returned false
	discardClosed                           // the direction was closed
	discardBeforeStart                      // before the first byte of the direction
	discardAfterEnd                         // buffered when the direction closed
	discardRefused                          // the connection was refused by the pool
	numDiscardReasons
)

// counters are an engine's running totals. The engine's owner serializes
// every call, so plain integers do and cost nothing on the packet path.
type counters struct {
	packets          int64
	bytesIn          int64
	deliveredBytes   int64
	overlapBytes     int64 // copies of bytes already delivered
	overwrittenBytes int64 // buffered bytes replaced by a newer copy
	discarded        [numDiscardReasons]int64
	gaps             int64
	gapBytes         int64
	forcedFlushes    int64 // holes skipped because a buffer limit was hit
	forcedGapBytes   int64
	deliveries       int64
	completed        int64
	flushedHalves    int64
	closedByFlush    int64
	timedOut         int64
	panics           int64
	errors           int64
}

func (c *counters) discard(r discardReason, n int) {
	if n > 0 {
		c.discarded[r] += int64(n)
	}
}
