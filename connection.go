package reassembly

import (
	"bytes"
	"math"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// connKey identifies a connection whatever the direction of the packet: the
// lower endpoint (by address, then port) comes first. One map lookup serves
// both directions, where upstream looked a 112-byte key up twice; the key
// is 48 bytes.
type connKey struct {
	lo, hi         [16]byte // addresses, as long as loLen and hiLen say
	typ            gopacket.EndpointType
	loPort, hiPort uint16
	loLen, hiLen   uint8
	// pad makes the key 48 bytes without implicit padding, so that it can
	// be hashed as bytes; it is always zero.
	pad [2]byte
}

// makeKey returns the connection key of a packet and whether the packet was
// sent by the key's lower endpoint.
func makeKey(netFlow gopacket.Flow, tcp *layers.TCP) (connKey, bool) {
	src, dst := netFlow.Endpoints()
	sr, dr := src.Raw(), dst.Raw()
	sp, dp := uint16(tcp.SrcPort), uint16(tcp.DstPort)
	c := bytes.Compare(sr, dr)
	fromLo := c < 0 || (c == 0 && sp <= dp)
	k := connKey{typ: src.EndpointType()}
	if !fromLo {
		sr, dr, sp, dp = dr, sr, dp, sp
	}
	k.loLen = uint8(copy(k.lo[:], sr))
	k.hiLen = uint8(copy(k.hi[:], dr))
	k.loPort, k.hiPort = sp, dp
	return k, fromLo
}

// flows rebuilds the network and transport flows of the direction that
// starts at the lower endpoint when fromLo is true.
func (k *connKey) flows(fromLo bool) (gopacket.Flow, gopacket.Flow) {
	src := gopacket.NewEndpoint(k.typ, k.lo[:k.loLen])
	dst := gopacket.NewEndpoint(k.typ, k.hi[:k.hiLen])
	sp, dp := k.loPort, k.hiPort
	if !fromLo {
		src, dst, sp, dp = dst, src, dp, sp
	}
	netFlow, _ := gopacket.FlowFromEndpoints(src, dst)
	tcpFlow, _ := gopacket.FlowFromEndpoints(layers.NewTCPPortEndpoint(layers.TCPPort(sp)), layers.NewTCPPortEndpoint(layers.TCPPort(dp)))
	return netFlow, tcpFlow
}

// halfConnection is the state of one direction of a connection. What an
// in-order packet reads and writes fills its first two cache lines, which
// the CPU fetches as a pair; the rest, used when buffering, at depth limits
// or rarely, follows.
type halfConnection struct {
	dir       TCPFlowDirection
	anchored  bool
	closed    bool
	delivered bool // a delivery was made: start can no longer be reported
	rstEnd    bool // the end at finPos came from an RST
	// hasOrigin is set once origin is known; depthDone once the direction
	// delivered its depth: from then on it buffers nothing.
	hasOrigin, depthDone bool
	// statsPending is set when a counter for the next ScatterGather's
	// Stats is not zero, so that deliveries in order do not read them.
	statsPending bool

	// nextSeq is the sequence number of the next byte to deliver, or
	// invalidSequence while the start of the direction is unknown; nextPos
	// is its offset in the stream. Offsets are 64-bit so that ordering stays
	// right across sequence wraps and streams longer than 4 GiB.
	nextSeq Sequence
	nextPos int64
	// anchorSeq and anchorPos map sequence numbers to offsets: a sequence
	// number within 2^31 of anchorSeq is at anchorPos plus the difference.
	anchorSeq Sequence
	anchorPos int64
	lastSeen  time.Time

	// finPos is the offset just past the last byte before a FIN or RST,
	// or -1: reaching it closes the direction even when the FIN arrived
	// out of order without data.
	finPos int64
	queue  segmentTree // out-of-order bytes, offsets above nextPos
	// oldestQueued is at most the capture time (nanos) of every chunk in
	// queue, math.MaxInt64 when it is empty. Flushes read it without the
	// connection's lock to skip connections that cannot be due.
	oldestQueued atomic.Int64
	kept         *chunk // bytes kept by KeepFrom, in order

	// depth is the reassembly depth in bytes, 0 for none; it is only set
	// when the engine has a depth or the Stream overrides it.
	depth int64
	// origin is the offset of the direction's first byte, once hasOrigin
	// is set: stream offsets reported to users count from it.
	origin int64
	// win keeps delivered bytes for conflict detection (Safe face, with a
	// ConflictWindow), made on the first delivery.
	win *deliveredWindow
	// Counters reported in the next ScatterGather's Stats.
	queuedBytes, queuedPackets, overlapBytes, overlapPackets int

	keptN   int   // chunks in kept
	pages   int   // chunks held by queue and kept
	cost    int64 // memory charged for them
	runs    int   // runs of adjacent queued chunks: the holes waiting to fill
	created time.Time
	// pickedUp is set when the direction started mid-stream, without a
	// SYN, by the Safe face's Midstream option.
	pickedUp bool
	// hasNewSYN tells that newSYN is the sequence number of a SYN with a
	// new ISN seen while the conversation was open: the 4-tuple is reused
	// only once the peer answers it (lifecycle.go). resumed tells that
	// the direction was started where a remembered SYN left it, so that its
	// first delivery reports start. All fit in padding.
	hasNewSYN bool
	resumed   bool
	newSYN    uint32
	// ackedHoleAt is nextPos when the peer first acknowledged past the
	// hole there, or -1: a second acknowledgement declares the gap.
	ackedHoleAt int64
}

// countQueued counts a packet's bytes going into the queue.
func (h *halfConnection) countQueued(bytes int) {
	h.queuedPackets++
	h.queuedBytes += bytes
	h.statsPending = true
}

// countOverlap counts bytes, from packets new copies of them, that overlap
// bytes already delivered or buffered.
func (h *halfConnection) countOverlap(packets, bytes int) {
	h.overlapPackets += packets
	h.overlapBytes += bytes
	h.statsPending = true
}

// takeStats returns the pending counters and zeroes them.
func (h *halfConnection) takeStats() TCPAssemblyStats {
	if !h.statsPending {
		return TCPAssemblyStats{}
	}
	st := TCPAssemblyStats{
		QueuedBytes: h.queuedBytes, QueuedPackets: h.queuedPackets,
		OverlapBytes: h.overlapBytes, OverlapPackets: h.overlapPackets,
	}
	h.queuedBytes, h.queuedPackets, h.overlapBytes, h.overlapPackets = 0, 0, 0, 0
	h.statsPending = false
	return st
}

func (h *halfConnection) reset(dir TCPFlowDirection, ts time.Time, queued *atomic.Int64) {
	*h = halfConnection{
		dir:         dir,
		nextSeq:     invalidSequence,
		created:     ts,
		lastSeen:    ts,
		finPos:      -1,
		queue:       segmentTree{rng: uint64(ts.UnixNano()), pooled: queued},
		anchorPos:   1 << 40,
		ackedHoleAt: -1,
	}
	h.oldestQueued.Store(math.MaxInt64)
}

// posOf returns the stream offset of seq.
func (h *halfConnection) posOf(seq Sequence) int64 {
	if !h.anchored {
		h.anchorSeq, h.anchored = seq, true
	}
	return h.anchorPos + int64(h.anchorSeq.Difference(seq))
}

// setNext moves the delivery point, and the anchor with it so that offsets
// stay exact however far the stream goes.
func (h *halfConnection) setNext(seq Sequence, pos int64) {
	h.nextSeq, h.nextPos = seq, pos
	h.anchorSeq, h.anchorPos, h.anchored = seq, pos, true
}

func (h *halfConnection) started() bool { return h.nextSeq != invalidSequence }

// begin starts an empty direction at seq, its first byte.
func (h *halfConnection) begin(seq Sequence) int64 {
	pos := h.posOf(seq)
	h.setNext(seq, pos)
	h.origin, h.hasOrigin = pos, true
	return pos
}

// connection holds both directions of a TCP connection and its Stream.
// What every packet reads comes first: the lock, the key and the
// generation in the first cache line, the flags, the Stream and the hints
// in the second, then the two directions.
type connection struct {
	mu  sync.Mutex
	key connKey
	// gen changes whenever the connection leaves its pool, so that a
	// goroutine holding a stale pointer notices after locking mu.
	gen uint64
	// seenNs is lastSeen() in nanos. lastSeenNs is the same for flushes,
	// which read it without mu, as a hint: in an uncapped pool it follows
	// only by steps of seenHintStep, since an atomic store per packet cost
	// packets in order a twentieth of their time, and it is never later
	// than seenNs, so that a flush it makes visit a connection errs on
	// the side of the visit. A capped pool's eviction compares it exactly.
	seenNs int64

	removed bool
	// c2sFromLo tells whether TCPDirClientToServer is the direction sent
	// by the key's lower endpoint.
	c2sFromLo bool
	completed bool // ReassemblyComplete was called
	poisoned  bool // a Stream callback panicked: close at once
	// steadyOK tells that the Stream is a stamp.SteadyAccepter (drop-in
	// face only: the Safe one recovers every call), and steady, per
	// direction (halves' index), that its Accept has become steady, so
	// that packets skip the call. They fill what would be padding.
	steadyOK bool
	steady   [2]bool
	// resetEnded is set when an RST ended the connection and the assembler
	// follows the host on RSTs (CheckWindow): its grave then takes
	// whatever follows for data after the RST (graveyard.go).
	resetEnded bool
	stream     Stream
	lastSeenNs atomic.Int64
	// wallLast is the coarse wall-clock time (ns) at which the last packet
	// was handed in, for the Safe face's background flusher; 0 when unused.
	wallLast int64
	// depthOv is the Stream when it chooses its own reassembly depth.
	depthOv DepthOverrider

	halves [2]halfConnection
	hash   uint64 // of key, by connTable.hash: used when it joins and leaves the pool
	// endCtx is the context handed to ReassemblyComplete when no packet
	// ends the connection: it lives here so that completing allocates
	// nothing, and is valid during that call only (MIGRATION.md).
	endCtx captureContext
	// lru links the connection into its shard's eviction list.
	lru lruNode
	// handOff is set while the engine evicting the connection keeps its
	// slot of the pool's cap for the newcomer it evicts for: unlink then
	// leaves the reservation in place (pressure.go);
	// cold, so kept out of the hot lines above.
	handOff bool
	// finSeen is, per direction (halves' index), the capture time of the
	// packet that set its finPos; kept out of halfConnection, whose size
	// is whole cache lines.
	finSeen [2]time.Time
	// windows are, per direction (halves' index), the receive windows
	// they advertised (Safe face, CheckWindow): cold, so kept out of the
	// halves' cache lines, as finSeen.
	windows [2]receiveWindow
	// acks are, per direction (halves' index), what the other side
	// acknowledged of it (Safe face, AckedDelivery): cold, as windows.
	acks [2]ackState
}

// side returns the index of half in c.halves, which also indexes every
// per-direction array of c (finSeen, windows, acks, steady).
func (c *connection) side(half *halfConnection) int {
	if half == &c.halves[1] {
		return 1
	}
	return 0
}

// other returns the direction opposite half.
func (c *connection) other(half *halfConnection) *halfConnection {
	return &c.halves[1-c.side(half)]
}

// finSeenOf returns where the capture time of half's FIN is kept.
func (c *connection) finSeenOf(half *halfConnection) *time.Time {
	return &c.finSeen[c.side(half)]
}

func (c *connection) reset(k connKey, h uint64, fromLo bool, ts time.Time, queued *atomic.Int64) {
	c.key, c.hash = k, h
	c.removed = false
	c.c2sFromLo = fromLo
	c.stream = nil
	c.completed = false
	c.poisoned = false
	c.resetEnded = false
	c.wallLast = 0
	c.depthOv = nil
	c.windows = [2]receiveWindow{}
	c.acks = [2]ackState{}
	c.steadyOK, c.steady = false, [2]bool{}
	c.halves[0].reset(TCPDirClientToServer, ts, queued)
	c.halves[1].reset(TCPDirServerToClient, ts, queued)
	c.seenNs = nanos(ts)
	c.lastSeenNs.Store(c.seenNs)
}

// seenHintStep is how far lastSeenNs may lag seenNs in an uncapped pool.
const seenHintStep = int64(time.Millisecond)

// noteSeen records ns, later than seenNs, as the connection's last packet
// time; exact tells that lastSeenNs must follow exactly (capped pools),
// solo that the engine owns the pool (sole.go).
func (c *connection) noteSeen(ns int64, exact, solo bool) {
	c.seenNs = ns
	switch {
	case exact && solo:
		// While an engine owns its pool, no other goroutine reads the
		// hint: any other engine's call first ends the sole use under the
		// owner's lock, which orders this store before its reads. A plain
		// store, then: the atomic one (an XCHG) cost the Safe face's
		// packets in order a tenth of their time.
		*(*int64)(unsafe.Pointer(&c.lastSeenNs)) = ns
	case exact || uint64(ns)-uint64(c.lastSeenNs.Load()) >= uint64(seenHintStep):
		c.lastSeenNs.Store(ns)
	}
}

// nanos returns t in Unix nanoseconds, clamped to the int64 range, so that
// it orders times as Before does (ties aside) however odd the capture's
// timestamps.
func nanos(t time.Time) int64 {
	switch s := t.Unix(); {
	case s < math.MinInt64/1_000_000_000:
		return math.MinInt64
	case s > math.MaxInt64/1_000_000_000-1:
		return math.MaxInt64
	}
	return t.UnixNano()
}

// noteQueued lowers the half's oldestQueued hint to ts.
func (h *halfConnection) noteQueued(ts time.Time) {
	if ns := nanos(ts); ns < h.oldestQueued.Load() {
		h.oldestQueued.Store(ns)
	}
}

// clearQueuedHint resets the hint once the queue is empty.
func (h *halfConnection) clearQueuedHint() {
	if h.queue.empty() && h.oldestQueued.Load() != math.MaxInt64 {
		h.oldestQueued.Store(math.MaxInt64)
	}
}

// half returns the direction a packet belongs to, and the other one.
func (c *connection) half(fromLo bool) (*halfConnection, *halfConnection) {
	if fromLo == c.c2sFromLo {
		return &c.halves[0], &c.halves[1]
	}
	return &c.halves[1], &c.halves[0]
}

func (c *connection) lastSeen() time.Time {
	a, b := c.halves[0].lastSeen, c.halves[1].lastSeen
	if a.Before(b) {
		return b
	}
	return a
}

// popMin takes the first queued chunk c out, keeping runs right: c starts
// a run, and the chunk after it starts one once c is gone.
func (h *halfConnection) popMin(c *chunk) {
	h.queue.remove(c)
	h.runs--
	if n := h.queue.min(); n != nil && n.pos == c.end() {
		h.runs++
	}
}

// maxFreeConns bounds the connection objects an engine keeps for reuse
// (about 12 MiB; upstream keeps every object it ever made); those not
// needed for a whole trim period are released (trim), so a burst of
// connections does not pin its memory afterwards.
const maxFreeConns = 16384

// connFreeList recycles connection objects within one engine. An
// assembler mostly reuses the objects it retired itself, still in its own
// core's cache, where a list shared by the pool would hand them to
// whichever core asks next.
type connFreeList struct {
	free []*connection
	// minFree is the fewest free objects since the last trim: that many
	// were not needed.
	minFree int
}

// get returns an unused connection object, locked unless solo. A recycled
// object may still be locked for a moment by a goroutine that holds a
// stale pointer; such an object is left to the garbage collector. (A sole
// owner's objects were never locked.)
func (l *connFreeList) get(solo bool) *connection {
	for len(l.free) > 0 {
		c := l.free[len(l.free)-1]
		l.free[len(l.free)-1] = nil
		l.free = l.free[:len(l.free)-1]
		l.minFree = min(l.minFree, len(l.free))
		if solo || c.mu.TryLock() {
			return c
		}
	}
	c := &connection{}
	if !solo {
		c.mu.Lock()
	}
	return c
}

// put keeps a connection that left its pool for reuse.
func (l *connFreeList) put(c *connection) {
	if len(l.free) < maxFreeConns {
		l.free = append(l.free, c)
	}
}

// trim releases the objects that went unused since the previous call.
func (l *connFreeList) trim() {
	if n := l.minFree; n > 0 {
		k := len(l.free) - n
		clear(l.free[k:])
		l.free = l.free[:k]
	}
	l.minFree = len(l.free)
}
