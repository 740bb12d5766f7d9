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
	// DefaultAckedDeliveryOneSided is 64 KiB, more than the largest
	// window a host can offer before any acknowledgement (a SYN's window
	// is never scaled, RFC 7323): a direction that sent more with nothing
	// acknowledged is one whose other side the capture does not see.
	DefaultAckedDeliveryOneSided = 64 << 10
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
	// EmergencyTimeout closes unanswered connections (whose other side
	// never sent a packet) idle that long in capture time while their
	// pool is in emergency mode, from its high-water mark until it is
	// back to its low-water mark (SafeStreamPoolOptions). 0 means a tenth
	// of ConnectionTimeout.
	EmergencyTimeout time.Duration

	// ChecksumPolicy verifies TCP checksums against the flow's IPv4 or
	// IPv6 addresses: ChecksumOff (the default: NIC offload makes wrong
	// checksums common in captures), ChecksumCount, or ChecksumDrop, which
	// keeps the segments the host would drop out of the streams. It costs
	// a pass over every payload (README.md, "Insertion attacks").
	ChecksumPolicy ChecksumPolicy
	// CheckWindow keeps out a segment whose data lies entirely beyond the
	// receive window the other side advertised (its last ACK plus its
	// window, scaled as both SYNs negotiated), which the host drops; its
	// bytes are counted in AssemblerStats.BytesOutOfWindow. It checks only
	// connections whose two SYNs were seen and whose receiver has sent an
	// ACK; data before the window (retransmissions) goes on as usual.
	//
	// It also follows the host on RSTs (RFC 9293 §3.10.7.4, RFC 5961
	// §3.2): an RST ends a connection only at the next byte its receiver
	// expects (the next byte of the stream, or the receiver's furthest
	// ACK when that is further); one outside the window
	// (ResetsOutOfWindow) or inside it but elsewhere (ResetsNotExact)
	// ends nothing, so that a forged RST cannot blind the sensor to what
	// follows. Whatever is sent on the 4-tuple after an RST that ended
	// the connection, but a SYN, is dropped for a minute of capture time
	// (BytesAfterReset): the host has no connection to take it.
	CheckWindow bool

	// AckedDelivery hands a Stream the bytes of a direction only once the
	// other side acknowledged them, as Suricata's IDS mode inspects only
	// ACKed data: bytes the host never accepted (a copy whose TTL was too
	// low to reach it, one with a checksum it dropped) cannot reach the
	// Stream before the copy it did accept replaces them. Until their
	// acknowledgement, copies of the same bytes are resolved by
	// OverlapPolicy as buffered bytes are (by default the newest wins,
	// which is what a sender retransmitting unacknowledged bytes sends)
	// and each that differs is a Conflict; once delivered, bytes are
	// fixed. A hole the acknowledgement passes is skipped as IgnoreAcks
	// describes, which AckedDelivery needs. Unacknowledged bytes are
	// still delivered, and counted by reason in AssemblerStats
	// (BytesUnacked*), when the connection ends (an RST, both FINs,
	// FlushAll, Close), when a limit, a flush or the timeout forces them,
	// and in directions whose other side never acknowledges anything (see
	// AckedDeliveryOneSided). Its cost: every segment takes the buffered
	// path, its bytes copied into the page budget until acknowledged (on
	// in-order traffic, well over the CPU per packet of the Safe face
	// without it: README.md, "Insertion attacks"), and deliveries come one
	// acknowledgement later (one packet's bytes each, as on arrival).
	AckedDelivery bool
	// AckedDeliveryOneSided is how many bytes a direction holds while the
	// other side has acknowledged nothing at all before it stops waiting
	// and delivers as without AckedDelivery (Suricata's async-oneside):
	// the capture misses the other side. A direction that fills its own
	// per-connection page or byte limit first, with nothing acknowledged,
	// falls back then. A FIN in such a direction
	// delivers what it holds at once. 0 means
	// DefaultAckedDeliveryOneSided; it matters only with AckedDelivery.
	AckedDeliveryOneSided int
}

// Validate fills in defaults and reports invalid values with an error that
// wraps ErrInvalidOptions and names the field.
func (o *SafeAssemblerOptions) Validate() error {
	if err := rejectNegative([]optionValue{
		{"MaxBufferedPagesTotal", int64(o.MaxBufferedPagesTotal)},
		{"MaxBufferedPagesPerConnection", int64(o.MaxBufferedPagesPerConnection)},
		{"MaxBufferedBytesPerConnection", int64(o.MaxBufferedBytesPerConnection)},
		{"MaxGapsPerConnection", int64(o.MaxGapsPerConnection)},
		{"ConnectionTimeout", int64(o.ConnectionTimeout)},
		{"FlushInterval", int64(o.FlushInterval)},
		{"ConflictWindow", int64(o.ConflictWindow)},
		{"ReassemblyDepth", int64(o.ReassemblyDepth)},
		{"EmergencyTimeout", int64(o.EmergencyTimeout)},
		{"AckedDeliveryOneSided", int64(o.AckedDeliveryOneSided)},
	}); err != nil {
		return err
	}
	if o.AckedDelivery && o.IgnoreAcks {
		return fmt.Errorf("%w: AckedDelivery needs acknowledgements, which IgnoreAcks ignores", ErrInvalidOptions)
	}
	if o.AckedDeliveryOneSided == 0 {
		o.AckedDeliveryOneSided = DefaultAckedDeliveryOneSided
	}
	if o.ChecksumPolicy < 0 || o.ChecksumPolicy >= numChecksumPolicies {
		return fmt.Errorf("%w: ChecksumPolicy %v is unknown", ErrInvalidOptions, o.ChecksumPolicy)
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
	if o.EmergencyTimeout == 0 {
		o.EmergencyTimeout = max(o.ConnectionTimeout/emergencyDivisor, 1)
	}
	if o.EmergencyTimeout > o.ConnectionTimeout {
		return exceeds("EmergencyTimeout", o.EmergencyTimeout, "ConnectionTimeout", o.ConnectionTimeout)
	}
	if o.MaxBufferedPagesPerConnection > o.MaxBufferedPagesTotal {
		return exceeds("MaxBufferedPagesPerConnection", o.MaxBufferedPagesPerConnection, "MaxBufferedPagesTotal", o.MaxBufferedPagesTotal)
	}
	if o.FlushInterval > o.ConnectionTimeout {
		return exceeds("FlushInterval", o.FlushInterval, "ConnectionTimeout", o.ConnectionTimeout)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}

// SafeStreamPoolOptions configure a SafeStreamPool made by
// NewSafeStreamPoolWithOptions: its cap and what happens near and at it.
// Zero fields take the defaults; negative values are invalid.
type SafeStreamPoolOptions struct {
	// MaxConnections caps the live connections; 0 is no cap, and then
	// the other fields must be zero.
	MaxConnections int
	// RefuseAtLimit refuses a new connection at the cap with
	// ErrConnectionLimit, leaving the pool as it is. By default it evicts
	// one instead: a connection whose other side never sent a packet (or
	// that completed), the oldest first, else the least recently seen;
	// the victim's buffered bytes are delivered, with the holes before
	// them skipped, and its Stream completed, as on a timeout, by the
	// assembler that needed the slot, on its goroutine (as a flush by
	// another assembler of the pool would). Victims are told apart by
	// capture time: assemblers sharing a pool must see the same clock.
	RefuseAtLimit bool
	// HighWaterMark is the number of live connections at which the pool
	// enters emergency mode, where unanswered connections close after
	// SafeAssemblerOptions.EmergencyTimeout; 0 means 90% of the cap.
	HighWaterMark int
	// LowWaterMark is the number of live connections at which the pool
	// leaves emergency mode; 0 means 70% of the cap (at most
	// HighWaterMark).
	LowWaterMark int
}

// Validate fills in defaults and reports invalid values with an error that
// wraps ErrInvalidOptions and names the field.
func (o *SafeStreamPoolOptions) Validate() error {
	if err := rejectNegative([]optionValue{
		{"MaxConnections", int64(o.MaxConnections)},
		{"HighWaterMark", int64(o.HighWaterMark)},
		{"LowWaterMark", int64(o.LowWaterMark)},
	}); err != nil {
		return err
	}
	if o.MaxConnections == 0 {
		if o.HighWaterMark != 0 || o.LowWaterMark != 0 || o.RefuseAtLimit {
			return fmt.Errorf("%w: HighWaterMark, LowWaterMark and RefuseAtLimit need MaxConnections", ErrInvalidOptions)
		}
		return nil
	}
	high, low := waterMarks(int64(o.MaxConnections), int64(o.HighWaterMark), int64(o.LowWaterMark))
	o.HighWaterMark, o.LowWaterMark = int(high), int(low)
	if o.HighWaterMark > o.MaxConnections {
		return exceeds("HighWaterMark", o.HighWaterMark, "MaxConnections", o.MaxConnections)
	}
	if o.LowWaterMark > o.HighWaterMark {
		return exceeds("LowWaterMark", o.LowWaterMark, "HighWaterMark", o.HighWaterMark)
	}
	return nil
}

// optionValue is an option's name and value, as validation reports it.
type optionValue struct {
	name string
	v    int64
}

// rejectNegative returns an error naming the first option that is negative.
func rejectNegative(opts []optionValue) error {
	for _, o := range opts {
		if o.v < 0 {
			return fmt.Errorf("%w: %s is negative (%d)", ErrInvalidOptions, o.name, o.v)
		}
	}
	return nil
}

// exceeds is the error for option a, of value av, above option b.
func exceeds(a string, av any, b string, bv any) error {
	return fmt.Errorf("%w: %s (%v) exceeds %s (%v)", ErrInvalidOptions, a, av, b, bv)
}
