package reassembly

import "sync/atomic"

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

// counters are an engine's running totals, atomic so that Stats can read
// them while packets are being processed.
type counters struct {
	packets          atomic.Int64
	bytesIn          atomic.Int64
	deliveredBytes   atomic.Int64
	overlapBytes     atomic.Int64 // copies of bytes already delivered
	overwrittenBytes atomic.Int64 // buffered bytes replaced by a newer copy
	discarded        [numDiscardReasons]atomic.Int64
	gaps             atomic.Int64
	gapBytes         atomic.Int64
	forcedFlushes    atomic.Int64
	deliveries       atomic.Int64
	completed        atomic.Int64
}

func (c *counters) discard(r discardReason, n int) {
	if n > 0 {
		c.discarded[r].Add(int64(n))
	}
}
