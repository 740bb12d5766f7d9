package reassembly

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// This file is the io.Reader face of the package, what tcpreader gave users
// of the older tcpassembly package, without its two faults: tcpreader handed
// each delivery over on an unbuffered channel, so one reader that stopped
// reading stalled the whole assembler, and readers of connections that never
// ended stayed blocked for ever. Here every direction has a bounded buffer,
// the assembler never waits for a reader unless asked to (and then for a
// bounded time), and bytes a reader had no room for become a gap it is told
// about.

// DefaultReaderMaxBuffered is the buffer of each direction of a ReaderPair
// when ReaderOptions.MaxBuffered is zero: 1 MiB.
const DefaultReaderMaxBuffered = 1 << 20

// ErrGap is matched, with errors.Is, by the *GapError that ReaderStream.Read
// returns where bytes are missing from the stream.
var ErrGap = errors.New("reassembly: bytes missing from stream")

// GapError reports that bytes are missing from a ReaderStream at the point
// where Read returned it; the next Read returns the bytes after the gap.
// errors.Is(err, ErrGap) matches it, and errors.As gives its size.
type GapError struct {
	// Bytes is the number of bytes missing, or -1 when it is unknown
	// because the start of the direction (its SYN) was not captured.
	Bytes int64
	// Dropped is how many of the missing bytes the ReaderStream received
	// but dropped because its buffer was full (the reader fell behind);
	// the others never reached the assembler or were skipped by it.
	Dropped int64
}

// Error describes the gap.
func (e *GapError) Error() string {
	switch {
	case e.Bytes < 0:
		return "reassembly: bytes missing from stream: its start was not captured"
	case e.Dropped > 0:
		return fmt.Sprintf("reassembly: %d bytes missing from stream, %d of them dropped because the reader fell behind", e.Bytes, e.Dropped)
	default:
		return fmt.Sprintf("reassembly: %d bytes missing from stream", e.Bytes)
	}
}

// Is reports whether target is ErrGap.
func (e *GapError) Is(target error) bool { return target == ErrGap }

// ReaderOptions configure the ReaderStreams of a ReaderPair or ReaderFactory.
type ReaderOptions struct {
	// MaxBuffered caps the bytes one direction holds for its reader; zero
	// or less means DefaultReaderMaxBuffered. A pending gap counts 32
	// bytes toward the cap. When a delivery does not fit, the bytes that
	// do not fit are dropped and the reader is told of a gap where they
	// were (GapError.Dropped): a reader that falls behind loses its own
	// bytes, never holds up the assembler and the other connections.
	MaxBuffered int
	// BlockTimeout lets a delivery to a full buffer wait up to this long
	// for the reader to make room before bytes are dropped, trading the
	// assembler's pace for completeness, as when replaying a capture to
	// readers that keep up. While it waits the assembler holds up every
	// connection it serves; once a wait has expired, deliveries to that
	// reader no longer wait until it reads again, so a reader that stopped
	// reading costs one BlockTimeout, not one per packet. Zero, the
	// default, never waits.
	BlockTimeout time.Duration
	// ForceStart makes a direction whose SYN was not captured start at
	// its first packet, so connections already open when capture began
	// are read from there on (the reader first sees a GapError of unknown
	// size). Without it such a direction delivers nothing until a flush
	// or the pool's close skips to its buffered bytes.
	ForceStart bool
	// SplitReadsByTime makes Read return bytes of one capture time at a
	// time (one packet's, or consecutive packets' captured at the same
	// instant), so that ReadTimes gives the exact time of every byte read,
	// at the cost of a Read per packet.
	SplitReadsByTime bool
}

// readerStat indexes the counters of a ReaderStream.
type readerStat int

const (
	readerStatIn readerStat = iota
	readerStatRead
	readerStatDropped
	readerStatDiscarded
	readerStatGaps
	readerStatSkipped
	readerStatStalls
	numReaderStats
)

// ReaderStats are the counters of a ReaderStream or, from
// ReaderFactory.Stats, the totals of all the ReaderStreams of a factory.
// Byte counts add up:
//
//	BytesIn = BytesRead + Buffered + BytesDropped + BytesDiscarded
type ReaderStats struct {
	Buffered       int64 // bytes waiting to be read now
	PeakBuffered   int64 // most bytes one ReaderStream held at once
	BytesIn        int64 // bytes the assembler delivered
	BytesRead      int64 // bytes returned by Read
	BytesDropped   int64 // bytes dropped because the buffer was full
	BytesDiscarded int64 // bytes discarded because the reader closed, or after the end
	Gaps           int64 // gaps recorded for the reader, each one GapError
	BytesSkipped   int64 // bytes the assembler skipped over (ScatterGather Skip)
	Stalls         int64 // BlockTimeout waits that expired
}

// readerTotals are the counters of all the ReaderStreams of a factory.
type readerTotals struct {
	c        [numReaderStats]atomic.Int64
	buffered atomic.Int64
	peak     atomic.Int64
}

// readerBlockSize is the size of the blocks a ReaderStream buffers bytes
// in. Blocks come from a pool shared by the factory's streams (or the
// pair's) and go back as soon as they are read, so an idle stream holds no
// memory.
const readerBlockSize = 4096

// gapMarkCost is what a pending gap counts toward MaxBuffered, so that
// alternating bytes and gaps cannot grow the bookkeeping past the cap.
const gapMarkCost = 32

// blockPool recycles the buffer blocks of the ReaderStreams of one
// ReaderFactory, or of one ReaderPair made on its own.
type blockPool struct{ p sync.Pool }

func (b *blockPool) get() *[readerBlockSize]byte {
	if x, ok := b.p.Get().(*[readerBlockSize]byte); ok {
		return x
	}
	return new([readerBlockSize]byte)
}

func (b *blockPool) put(x *[readerBlockSize]byte) { b.p.Put(x) }

// gapMark is a gap pending at stream offset at.
type gapMark struct {
	at  int64
	gap GapError
}

// ReaderStream is one direction of a TCP connection as an io.ReadCloser:
// Read returns the direction's reassembled bytes in order, as the
// assembler delivers them to the ReaderPair it belongs to. ReaderPairs
// make them; a ReaderFactory hands them out.
//
// Read blocks until bytes arrive, and returns:
//
//   - the bytes in order, never more than up to the next gap;
//   - a *GapError, matched by errors.Is(err, ErrGap), where bytes are
//     missing: skipped by the assembler over a hole, dropped because the
//     buffer was full, or before the first byte when the direction's SYN was
//     not captured. Reading goes on after it with the bytes after the gap;
//   - io.EOF once the direction has ended (FIN or RST), or the connection
//     was completed by a flush, a timeout or the pool's Close, and every
//     byte before the end was read.
//
// A ReaderStream buffers at most ReaderOptions.MaxBuffered bytes and
// never makes the assembler wait for the reader unless BlockTimeout is set.
// Close it to stop reading early: what it holds and what arrives later is
// discarded at no cost to the assembler. Its methods are safe for
// concurrent use.
//
// A reader blocked in Read returns when its connection ends. With a
// SafeAssembler that is guaranteed: connections time out after
// ConnectionTimeout, and SafeAssembler.Close and SafeStreamPool.Close
// complete every Stream. With an Assembler, call FlushCloseOlderThan
// periodically and FlushAll at the end, or Close the reader.
type ReaderStream struct {
	mu       sync.Mutex
	readable sync.Cond     // broadcast when bytes, a gap, the end or Close arrive
	space    chan struct{} // one token: the reader made room
	closedCh chan struct{} // closed by Close

	max  int
	wait time.Duration

	pool   *blockPool
	blocks []*[readerBlockSize]byte
	head   int   // read offset in blocks[0]
	tail   int   // write offset in the last block
	n      int   // bytes buffered
	rpos   int64 // stream offset of the next byte to read
	wpos   int64 // stream offset of the next byte to buffer

	gaps    []gapMark // pending gaps, from gapHead on, in offset order
	gapHead int

	times    []timeRun // capture times of the buffered bytes, from timeHead on
	timeHead int
	split    bool // SplitReadsByTime
	// readFirst and readLast are the capture times of the first and the
	// last byte the latest Read returned.
	readFirst, readLast time.Time

	begun        bool // a delivery was made
	unknownStart bool // the first delivery did not start the direction
	ended        bool // no more bytes will come
	closed       bool // the reader closed the stream
	stalled      bool // a BlockTimeout wait expired and the reader did not read since

	st   [numReaderStats]int64
	peak int64
	tot  *readerTotals
}

func newReaderStream(opts ReaderOptions, tot *readerTotals, pool *blockPool) *ReaderStream {
	r := &ReaderStream{
		pool:     pool,
		space:    make(chan struct{}, 1),
		closedCh: make(chan struct{}),
		max:      opts.MaxBuffered,
		wait:     max(opts.BlockTimeout, 0),
		split:    opts.SplitReadsByTime,
		tot:      tot,
	}
	if r.max <= 0 {
		r.max = DefaultReaderMaxBuffered
	}
	r.readable.L = &r.mu
	return r
}

func (r *ReaderStream) count(s readerStat, n int64) {
	r.st[s] += n
	if r.tot != nil {
		r.tot.c[s].Add(n)
	}
}

// setBuffered accounts for a change of d bytes in the buffer.
func (r *ReaderStream) setBuffered(d int) {
	r.n += d
	if n := int64(r.n); n > r.peak {
		r.peak = n
	}
	if r.tot != nil {
		r.tot.buffered.Add(int64(d))
		for p := r.tot.peak.Load(); r.peak > p && !r.tot.peak.CompareAndSwap(p, r.peak); p = r.tot.peak.Load() {
		}
	}
}

// room returns how many more bytes fit in the buffer.
func (r *ReaderStream) room() int {
	return r.max - r.n - (len(r.gaps)-r.gapHead)*gapMarkCost
}

// push copies as much of data, captured at ts, as fits into the buffer and
// returns how much it copied.
func (r *ReaderStream) push(data []byte, ts time.Time) int {
	data = data[:max(0, min(len(data), r.room()))]
	total := len(data)
	if total > 0 {
		r.markTime(ts)
	}
	for len(data) > 0 {
		if len(r.blocks) == 0 || r.tail == readerBlockSize {
			r.blocks = append(r.blocks, r.pool.get())
			r.tail = 0
		}
		k := copy(r.blocks[len(r.blocks)-1][r.tail:], data)
		r.tail += k
		data = data[k:]
	}
	r.wpos += int64(total)
	r.setBuffered(total)
	return total
}

// pop moves buffered bytes into p and returns how many it moved; drained
// blocks go back to the pool at once.
func (r *ReaderStream) pop(p []byte) int {
	total := 0
	for len(p) > 0 && r.n > 0 {
		b := r.blocks[0]
		end := readerBlockSize
		if len(r.blocks) == 1 {
			end = r.tail
		}
		k := copy(p, b[r.head:end])
		r.head += k
		p = p[k:]
		total += k
		r.setBuffered(-k)
		if r.head == end {
			r.dropFirstBlock()
		}
	}
	r.rpos += int64(total)
	return total
}

func (r *ReaderStream) dropFirstBlock() {
	r.pool.put(r.blocks[0])
	copy(r.blocks, r.blocks[1:])
	r.blocks[len(r.blocks)-1] = nil
	r.blocks = r.blocks[:len(r.blocks)-1]
	r.head = 0
	if len(r.blocks) == 0 {
		r.tail = 0
	}
}

// discardAll empties the buffer, counting its bytes as discarded.
func (r *ReaderStream) discardAll() {
	r.count(readerStatDiscarded, int64(r.n))
	r.setBuffered(-r.n)
	for len(r.blocks) > 0 {
		r.dropFirstBlock()
	}
	r.rpos = r.wpos
	r.gaps, r.gapHead = nil, 0
	r.forgetTimes()
}

// gap records bytes missing at the write position (bytes < 0: unknown),
// merging with a gap already pending there.
func (r *ReaderStream) gap(bytes, dropped int64) {
	if k := len(r.gaps); k > r.gapHead && r.gaps[k-1].at == r.wpos {
		g := &r.gaps[k-1].gap
		if g.Bytes < 0 || bytes < 0 {
			g.Bytes = -1
		} else {
			g.Bytes += bytes
		}
		g.Dropped += dropped
		return
	}
	if r.gapHead > 0 && r.gapHead >= len(r.gaps)/2 {
		r.gaps = r.gaps[:copy(r.gaps, r.gaps[r.gapHead:])]
		r.gapHead = 0
	}
	r.gaps = append(r.gaps, gapMark{at: r.wpos, gap: GapError{Bytes: bytes, Dropped: dropped}})
	r.count(readerStatGaps, 1)
}

// deliver buffers the bytes of one delivery, parts holds them with their
// capture times. It is called by the assembler, one delivery at a time per
// direction.
func (r *ReaderStream) deliver(parts PartWalker, start bool, skip int, end bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	defer r.readable.Broadcast()
	if !r.begun {
		r.begun, r.unknownStart = true, !start
	}
	n := 0
	for i := 0; i < parts.NumParts(); i++ {
		n += len(parts.Part(i).Bytes)
	}
	r.count(readerStatIn, int64(n))
	if r.closed || r.ended {
		r.count(readerStatDiscarded, int64(n))
		return
	}
	if r.unknownStart && (n > 0 || skip != 0) {
		r.unknownStart = false
		r.gap(-1, 0)
	}
	if skip > 0 {
		r.count(readerStatSkipped, int64(skip))
		r.gap(int64(skip), 0)
	} else if skip < 0 {
		r.gap(-1, 0)
	}
	var timer *time.Timer
	left := n // bytes not buffered yet
	for i := 0; i < parts.NumParts() && left > 0; i++ {
		p := parts.Part(i)
		data := p.Bytes
		if len(data) == 0 {
			continue
		}
		ts := p.CaptureInfo().Timestamp
		for len(data) > 0 {
			k := r.push(data, ts)
			data = data[k:]
			left -= k
			if k > 0 {
				r.readable.Broadcast()
			}
			if len(data) == 0 || !r.waitForRoom(&timer) {
				break
			}
			if r.closed {
				r.count(readerStatDiscarded, int64(left))
				data, left = nil, 0
			}
		}
		if len(data) > 0 {
			break // no room: the rest of the delivery is dropped
		}
	}
	if timer != nil {
		timer.Stop()
	}
	if left > 0 {
		r.count(readerStatDropped, int64(left))
		r.gap(int64(left), int64(left))
	}
	if end {
		r.ended = true
	}
}

// waitForRoom waits, within BlockTimeout of the first wait of the
// delivery, for the reader to read or close. It returns false when the
// delivery must not wait; r.mu is held on entry and on return.
func (r *ReaderStream) waitForRoom(timer **time.Timer) bool {
	if r.wait <= 0 || r.stalled || r.closed {
		return false
	}
	// r.mu was held since the room was measured: a token now is stale.
	select {
	case <-r.space:
	default:
	}
	if *timer == nil {
		*timer = time.NewTimer(r.wait)
	}
	r.mu.Unlock()
	ok := true
	select {
	case <-r.space:
	case <-r.closedCh:
	case <-(*timer).C:
		ok = false
	}
	r.mu.Lock()
	if !ok {
		r.stalled = true
		r.count(readerStatStalls, 1)
	}
	return ok
}

// finish ends the stream: Read returns io.EOF once the buffer is drained.
func (r *ReaderStream) finish() {
	r.mu.Lock()
	r.ended = true
	r.mu.Unlock()
	r.readable.Broadcast()
}

// Read reads the next bytes of the direction, blocking until some arrive.
// It returns a *GapError (errors.Is(err, ErrGap)) where bytes are missing,
// after the bytes before the gap and before those after it, and io.EOF
// after the end of the direction; after Close it returns io.EOF.
func (r *ReaderStream) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		if r.closed {
			r.readTimes(0, 0)
			return 0, io.EOF
		}
		if r.gapHead < len(r.gaps) && r.gaps[r.gapHead].at == r.rpos {
			r.readTimes(0, 0)
			g := r.gaps[r.gapHead].gap
			r.gaps[r.gapHead] = gapMark{}
			r.gapHead++
			if r.gapHead == len(r.gaps) {
				r.gaps, r.gapHead = r.gaps[:0], 0
			}
			r.signalSpace()
			return 0, &g
		}
		if r.n > 0 {
			if len(p) == 0 {
				r.readTimes(0, 0)
				return 0, nil
			}
			limit := r.n
			if r.gapHead < len(r.gaps) {
				limit = min(limit, int(r.gaps[r.gapHead].at-r.rpos))
			}
			if r.split && r.timeHead < len(r.times) {
				limit = min(limit, int(r.runEnd(r.timeHead)-r.rpos))
			}
			from := r.rpos
			k := r.pop(p[:min(len(p), limit)])
			r.readTimes(from, r.rpos)
			r.count(readerStatRead, int64(k))
			r.signalSpace()
			return k, nil
		}
		if r.ended {
			r.readTimes(0, 0)
			return 0, io.EOF
		}
		if len(p) == 0 {
			r.readTimes(0, 0)
			return 0, nil
		}
		r.readable.Wait()
	}
}

// signalSpace tells a delivery waiting under BlockTimeout that the reader
// made room.
func (r *ReaderStream) signalSpace() {
	r.stalled = false
	select {
	case r.space <- struct{}{}:
	default:
	}
}

// Close stops reading: the bytes buffered and those delivered later are
// discarded (counted in BytesDiscarded), a Read blocked in another
// goroutine returns io.EOF, and a delivery waiting for room returns at
// once. It never blocks the assembler, is idempotent and returns nil.
func (r *ReaderStream) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	r.discardAll()
	close(r.closedCh)
	r.readable.Broadcast()
	return nil
}

// Stats returns the stream's counters.
func (r *ReaderStream) Stats() ReaderStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := readerStatsOf(func(i readerStat) int64 { return r.st[i] })
	s.Buffered = int64(r.n)
	s.PeakBuffered = r.peak
	return s
}

func readerStatsOf(get func(readerStat) int64) ReaderStats {
	return ReaderStats{
		BytesIn:        get(readerStatIn),
		BytesRead:      get(readerStatRead),
		BytesDropped:   get(readerStatDropped),
		BytesDiscarded: get(readerStatDiscarded),
		Gaps:           get(readerStatGaps),
		BytesSkipped:   get(readerStatSkipped),
		Stalls:         get(readerStatStalls),
	}
}

// ReaderPair is a Stream that presents the two directions of its
// connection as ReaderStreams: Client reads what the client sent
// (TCPDirClientToServer), Server what the server sent. Read each one that
// matters in its own goroutine, and Close the other, or its bytes are
// buffered up to the cap and then dropped.
//
// To check packets before they are reassembled (with TCPSimpleFSM, say),
// embed a *ReaderPair in your own Stream and override Accept.
type ReaderPair struct {
	// NetFlow and TCPFlow are the flows of the client-to-server direction.
	NetFlow, TCPFlow gopacket.Flow
	// Client reads the bytes the client sent.
	Client *ReaderStream
	// Server reads the bytes the server sent.
	Server *ReaderStream

	forceStart bool
}

var _ Stream = (*ReaderPair)(nil)

// NewReaderPair returns a ReaderPair for the connection whose
// client-to-server flows are netFlow and tcpFlow, as StreamFactory.New
// receives them.
func NewReaderPair(netFlow, tcpFlow gopacket.Flow, opts ReaderOptions) *ReaderPair {
	return newReaderPair(netFlow, tcpFlow, opts, nil, new(blockPool))
}

func newReaderPair(netFlow, tcpFlow gopacket.Flow, opts ReaderOptions, tot *readerTotals, pool *blockPool) *ReaderPair {
	return &ReaderPair{
		NetFlow:    netFlow,
		TCPFlow:    tcpFlow,
		Client:     newReaderStream(opts, tot, pool),
		Server:     newReaderStream(opts, tot, pool),
		forceStart: opts.ForceStart,
	}
}

// Reader returns the ReaderStream of direction dir.
func (p *ReaderPair) Reader(dir TCPFlowDirection) *ReaderStream {
	if dir == TCPDirServerToClient {
		return p.Server
	}
	return p.Client
}

// Accept accepts every packet; with ReaderOptions.ForceStart it starts a
// direction whose SYN was not seen at its first packet.
func (p *ReaderPair) Accept(_ *layers.TCP, _ gopacket.CaptureInfo, _ TCPFlowDirection, _ Sequence, start *bool, _ AssemblerContext) bool {
	if p.forceStart && start != nil {
		*start = true
	}
	return true
}

// ReassembledSG copies the delivered bytes into the buffer of their
// direction's ReaderStream, recording a gap before them when bytes were
// skipped, and ends that ReaderStream at the end of its direction.
func (p *ReaderPair) ReassembledSG(sg ScatterGather, ac AssemblerContext) {
	dir, start, end, skip := sg.Info()
	parts, ok := sg.(PartWalker)
	if !ok {
		// Not the assembler's: its bytes as one part, at ac's time.
		one := &onePart{ac: ac}
		if n, _ := sg.Lengths(); n > 0 {
			one.data = sg.Fetch(n)
		}
		parts = one
	}
	p.Reader(dir).deliver(parts, start, skip, end)
}

// onePart is a PartWalker of a ScatterGather that is none: all its bytes as
// one part with the delivery's context.
type onePart struct {
	data []byte
	ac   AssemblerContext
}

func (o *onePart) NumParts() int { return 1 }

func (o *onePart) Part(i int) Part {
	if i != 0 {
		return Part{}
	}
	return Part{Bytes: o.data, Context: o.ac}
}

// ReassemblyComplete ends both ReaderStreams (their readers get io.EOF
// once they drained them) and returns true, removing the connection from
// its pool.
func (p *ReaderPair) ReassemblyComplete(_ AssemblerContext) bool {
	p.Client.finish()
	p.Server.finish()
	return true
}

// Close closes both ReaderStreams; it returns nil.
func (p *ReaderPair) Close() error {
	p.Client.Close()
	p.Server.Close()
	return nil
}

// ReaderFactory is a StreamFactory whose Streams are ReaderPairs: it is what
// tcpreader.ReaderStream was to tcpassembly users. Set OnConnection to start
// the goroutines that read each new connection. Use it through a pointer;
// its methods are safe for concurrent use.
type ReaderFactory struct {
	// Options configure every ReaderStream the factory makes.
	Options ReaderOptions
	// OnConnection receives each new connection. It runs inside the
	// assembler, so it must not block: start a goroutine to read, and
	// Close the direction you do not read. When nil, both directions are
	// closed and their bytes discarded.
	OnConnection func(p *ReaderPair)

	tot    readerTotals
	blocks blockPool
}

var _ StreamFactory = (*ReaderFactory)(nil)

// New returns a ReaderPair for the new connection after handing it to
// OnConnection.
func (f *ReaderFactory) New(netFlow, tcpFlow gopacket.Flow, _ *layers.TCP, _ AssemblerContext) Stream {
	p := newReaderPair(netFlow, tcpFlow, f.Options, &f.tot, &f.blocks)
	if f.OnConnection != nil {
		f.OnConnection(p)
	} else {
		p.Close()
	}
	return p
}

// Stats returns the totals of every ReaderStream the factory made;
// PeakBuffered is the most that any one of them held at once.
func (f *ReaderFactory) Stats() ReaderStats {
	s := readerStatsOf(func(i readerStat) int64 { return f.tot.c[i].Load() })
	s.Buffered = f.tot.buffered.Load()
	s.PeakBuffered = f.tot.peak.Load()
	return s
}
