package reassembly

import (
	"fmt"
	"log/slog"
	"time"
)

// Defaults that SafeAssemblerOptions.Validate fills in for zero fields.
const (
	DefaultMaxBufferedPagesTotal         = 50000
	DefaultMaxBufferedPagesPerConnection = 1000
	DefaultMaxBufferedBytesPerConnection = 4 << 20
	DefaultMaxGapsPerConnection          = 1000
	DefaultConnectionTimeout             = 2 * time.Minute
	DefaultFlushInterval                 = 10 * time.Second
)

// SafeAssemblerOptions configure a SafeAssembler. Zero fields take the
// defaults above, or, for the evasion-resistance options (OverlapPolicy,
// ConflictWindow, ReassemblyDepth), keep their zero meaning: upstream's
// overlap behaviour, no delivered bytes kept, no depth. Negative values
// are invalid.
type SafeAssemblerOptions struct {
	// MaxBufferedPagesTotal caps the pages (buffers of up to 1900 bytes)
	// buffered out of order by all the assemblers sharing the pool. At the
	// cap, a connection that buffers more skips its first hole instead.
	MaxBufferedPagesTotal int
	// MaxBufferedPagesPerConnection caps the pages buffered by one
	// direction of a connection, with the same degradation.
	MaxBufferedPagesPerConnection int
	// MaxBufferedBytesPerConnection caps the memory one direction of a
	// connection buffers, charged at its real cost (buffer capacity plus
	// bookkeeping), so that many tiny segments cannot exceed it.
	MaxBufferedBytesPerConnection int
	// MaxGapsPerConnection caps the holes one direction may wait on at
	// once, as quic-go's frame sorter does; bytes that would open one more
	// make the direction skip its first hole instead.
	MaxGapsPerConnection int
	// ConnectionTimeout closes connections idle that long: by capture time
	// as packets arrive, and by wall-clock time in the background flusher,
	// for live capture where traffic can stop altogether. Bytes buffered
	// that long are delivered, skipping the hole before them.
	ConnectionTimeout time.Duration
	// FlushInterval is how often the background flusher runs; it is also
	// how long an unused free page is kept before it is released.
	FlushInterval time.Duration
	// DisableBackgroundFlush turns the wall-clock flusher off, for replaying
	// captures where only capture time should count.
	DisableBackgroundFlush bool
	// Logger receives reports of recovered panics; nil means slog.Default().
	Logger *slog.Logger

	// OverlapPolicy chooses which copy of overlapping bytes not yet
	// delivered the Streams get: upstream's (the zero value, the newest
	// copy), the first, the last, or a target operating system's (see
	// OverlapPolicy). Bytes already delivered never change.
	OverlapPolicy OverlapPolicy
	// OnConflict, when set, receives every Conflict: bytes that arrived
	// again with different content than the copy buffered, or than the
	// copy delivered while it is within ConflictWindow. Conflicts are
	// counted in AssemblerStats whether it is set or not. It runs on the
	// assembling goroutine with the connection locked, as ReassembledSG
	// does (assemblers that share a handler call it concurrently); a panic
	// in it is recovered and closes the connection.
	OnConflict func(Conflict)
	// ConflictWindow is how many of the last delivered bytes each
	// direction keeps, so that a later copy of them that differs is
	// reported as a Conflict (Zeek's tcp_max_old_segments). 0, the
	// default, keeps none: only buffered bytes are compared. The memory is
	// bounded explicitly, apart from the page budget: at most this many
	// bytes per direction of every live connection, allocated as the
	// direction delivers and freed when it closes.
	ConflictWindow int
	// ReassemblyDepth stops each direction after that many bytes (stream
	// offsets from its first byte, holes included), as Suricata's
	// stream.reassembly.depth: the delivery that reaches it is cut there
	// and is the direction's last, marked by DepthReporter; from then on
	// the direction buffers nothing and its bytes are counted in
	// AssemblerStats.BytesBeyondDepth, while its FIN or RST still closes
	// it. A Stream that implements DepthOverrider sets its own, per
	// direction. 0, the default, is no depth.
	ReassemblyDepth int

	// IgnoreAcks turns off gaps declared by acknowledgements: by default,
	// when a peer acknowledges bytes past a hole the capture missed (the
	// host received them), the hole is skipped at once and the bytes after
	// it delivered, where upstream waits for a flush or, here, the timeout.
	IgnoreAcks bool
	// Midstream starts a direction whose SYN was not captured at its first
	// packet with data or FIN, as Suricata's stream.midstream does, for
	// connections already open when capture began; the first delivery
	// reports Skip -1 (what came before is unknown). A Stream's Accept
	// can still refuse by clearing start. Off by default: such a direction
	// delivers only when a flush, a limit or the timeout skips to its bytes.
	Midstream bool
}

// Validate fills in defaults and reports invalid values with an error that
// wraps ErrInvalidOptions and names the field.
func (o *SafeAssemblerOptions) Validate() error {
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"MaxBufferedPagesTotal", int64(o.MaxBufferedPagesTotal)},
		{"MaxBufferedPagesPerConnection", int64(o.MaxBufferedPagesPerConnection)},
		{"MaxBufferedBytesPerConnection", int64(o.MaxBufferedBytesPerConnection)},
		{"MaxGapsPerConnection", int64(o.MaxGapsPerConnection)},
		{"ConnectionTimeout", int64(o.ConnectionTimeout)},
		{"FlushInterval", int64(o.FlushInterval)},
		{"ConflictWindow", int64(o.ConflictWindow)},
		{"ReassemblyDepth", int64(o.ReassemblyDepth)},
	} {
		if f.v < 0 {
			return fmt.Errorf("%w: %s is negative (%d)", ErrInvalidOptions, f.name, f.v)
		}
	}
	if o.OverlapPolicy >= numOverlapPolicies {
		return fmt.Errorf("%w: OverlapPolicy %v is unknown", ErrInvalidOptions, o.OverlapPolicy)
	}
	if o.MaxBufferedPagesTotal == 0 {
		o.MaxBufferedPagesTotal = DefaultMaxBufferedPagesTotal
	}
	if o.MaxBufferedPagesPerConnection == 0 {
		o.MaxBufferedPagesPerConnection = min(DefaultMaxBufferedPagesPerConnection, o.MaxBufferedPagesTotal)
	}
	if o.MaxBufferedBytesPerConnection == 0 {
		o.MaxBufferedBytesPerConnection = DefaultMaxBufferedBytesPerConnection
	}
	if o.MaxGapsPerConnection == 0 {
		o.MaxGapsPerConnection = DefaultMaxGapsPerConnection
	}
	if o.ConnectionTimeout == 0 {
		o.ConnectionTimeout = DefaultConnectionTimeout
	}
	if o.FlushInterval == 0 {
		o.FlushInterval = min(DefaultFlushInterval, o.ConnectionTimeout)
	}
	if o.MaxBufferedPagesPerConnection > o.MaxBufferedPagesTotal {
		return fmt.Errorf("%w: MaxBufferedPagesPerConnection (%d) exceeds MaxBufferedPagesTotal (%d)",
			ErrInvalidOptions, o.MaxBufferedPagesPerConnection, o.MaxBufferedPagesTotal)
	}
	if o.FlushInterval > o.ConnectionTimeout {
		return fmt.Errorf("%w: FlushInterval (%v) exceeds ConnectionTimeout (%v)",
			ErrInvalidOptions, o.FlushInterval, o.ConnectionTimeout)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}
