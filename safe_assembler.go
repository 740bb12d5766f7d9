package reassembly

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// SafeAssembler is the hardened Assembler: validated options with limits on
// by default, errors instead of panics, Stream callbacks run under recover,
// connection timeouts, a background flusher for live capture, statistics,
// and Close.
//
// It is safe for concurrent use: calls are serialized by a mutex, so one
// SafeAssembler uses one core at a time. For parallelism give each goroutine
// its own SafeAssembler; they may share a SafeStreamPool.
type SafeAssembler struct {
	mu     sync.Mutex
	pool   *SafeStreamPool
	opts   SafeAssemblerOptions
	eng    engine
	cb     safeCallbacks
	closed bool

	clock     atomic.Int64 // coarse wall clock (ns), advanced by the flusher
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// NewSafeAssembler validates opts and returns an assembler using pool. The
// error wraps ErrInvalidOptions, or is ErrPoolClosed.
func NewSafeAssembler(pool *SafeStreamPool, opts SafeAssemblerOptions) (*SafeAssembler, error) {
	if pool == nil {
		return nil, fmt.Errorf("%w: nil pool", ErrInvalidOptions)
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if pool.t.closed.Load() {
		return nil, ErrPoolClosed
	}
	a := &SafeAssembler{pool: pool, opts: opts}
	a.cb = safeCallbacks{logger: opts.Logger, ctr: &a.eng.ctr}
	a.eng.init(&pool.t, &a.cb)
	a.eng.enter(nil) // joins the pool now, as NewAssembler does (sole.go)
	a.eng.room.limits = limits{
		maxPagesPerConn: opts.MaxBufferedPagesPerConnection,
		maxPagesTotal:   opts.MaxBufferedPagesTotal,
		strict:          true,
		maxBytesPerConn: int64(opts.MaxBufferedBytesPerConnection),
		maxGapsPerConn:  opts.MaxGapsPerConnection,
	}
	a.eng.screening = screening{active: true, dropRST: true, checkWindow: opts.CheckWindow}
	a.eng.checksums = checksums{policy: opts.ChecksumPolicy}
	a.eng.depth = depthRule{perDirection: int64(opts.ReassemblyDepth)}
	a.eng.conflicts = conflictWatch{detect: true, onConflict: opts.OnConflict, window: opts.ConflictWindow}
	a.eng.overlaps = overlaps{rule: opts.OverlapPolicy.rule(), policy: opts.OverlapPolicy.rule() != ruleLast}
	a.eng.life = lifecycle{
		idle:      opts.ConnectionTimeout,
		ackGaps:   !opts.IgnoreAcks,
		midstream: opts.Midstream,
	}
	a.eng.acked = ackedDelivery{on: opts.AckedDelivery, oneSided: opts.AckedDeliveryOneSided}
	a.eng.clock = &a.clock
	a.clock.Store(time.Now().UnixNano())
	pool.logger.CompareAndSwap(nil, opts.Logger)
	pool.assemblers.Add(1)
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	if !opts.DisableBackgroundFlush {
		a.wg.Add(1)
		go a.flusher(ctx)
	}
	return a, nil
}

// Assemble reassembles a packet stamped with the current time.
func (a *SafeAssembler) Assemble(netFlow gopacket.Flow, t *layers.TCP) error {
	ctx := captureContext{Timestamp: time.Now()}
	return a.AssembleWithContext(netFlow, t, &ctx)
}

// AssembleWithTimestamp reassembles a packet seen at ts.
func (a *SafeAssembler) AssembleWithTimestamp(netFlow gopacket.Flow, t *layers.TCP, ts time.Time) error {
	ctx := captureContext{Timestamp: ts}
	return a.AssembleWithContext(netFlow, t, &ctx)
}

// AssembleWithContext reassembles a packet whose capture metadata ac
// carries. It returns ErrNilPacket, ErrAssemblerClosed, ErrPoolClosed,
// ErrConnectionLimit, ErrNilStream, ErrConnectionClosed (data for a closed
// direction) or an error wrapping ErrStreamPanic; the packet is counted in
// Stats in every case, and it never panics.
func (a *SafeAssembler) AssembleWithContext(netFlow gopacket.Flow, t *layers.TCP, ac AssemblerContext) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if t == nil {
		a.eng.ctr.errors++
		return ErrNilPacket
	}
	if a.closed {
		a.eng.ctr.errors++
		return ErrAssemblerClosed
	}
	if a.pool.t.closed.Load() {
		a.eng.ctr.errors++
		return ErrPoolClosed
	}
	if ac == nil {
		ac = &captureContext{}
	}
	a.cb.err = nil
	a.eng.enter(&a.mu)
	err := a.eng.assemble(netFlow, t, ac)
	if err == nil {
		err = a.cb.err
	}
	if err == nil && a.eng.droppedClosed {
		err = ErrConnectionClosed
	}
	a.sweepByCaptureTime(a.eng.lastTS)
	if err != nil {
		a.eng.ctr.errors++
	}
	return err
}

// sweepByCaptureTime closes connections idle past ConnectionTimeout in
// capture time. One assembler of the pool does it per quarter timeout.
func (a *SafeAssembler) sweepByCaptureTime(now time.Time) {
	if now.IsZero() {
		return
	}
	ns := now.UnixNano()
	if a.pool.t.maxConns > 0 {
		a.eng.relieve(ns, a.opts.EmergencyTimeout)
	}
	next := a.pool.nextSweep.Load()
	if next == 0 {
		a.pool.nextSweep.CompareAndSwap(0, ns+int64(a.opts.ConnectionTimeout/4))
		return
	}
	if ns < next || !a.pool.nextSweep.CompareAndSwap(next, ns+int64(a.opts.ConnectionTimeout/4)) {
		return
	}
	cutoff := now.Add(-a.opts.ConnectionTimeout)
	_, closed := a.eng.flushWithOptions(FlushOptions{T: cutoff, TC: cutoff})
	a.eng.ctr.timedOut += int64(closed)
}

// FlushWithOptions is Assembler.FlushWithOptions; after Close it does
// nothing.
func (a *SafeAssembler) FlushWithOptions(opt FlushOptions) (flushed, closed int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return 0, 0
	}
	a.eng.enter(nil)
	return a.eng.flushWithOptions(opt)
}

// FlushCloseOlderThan is FlushWithOptions with T and TC both t.
func (a *SafeAssembler) FlushCloseOlderThan(t time.Time) (flushed, closed int) {
	return a.FlushWithOptions(FlushOptions{T: t, TC: t})
}

// FlushAll delivers everything buffered in the pool, closes every
// connection, and returns how many the pool held.
func (a *SafeAssembler) FlushAll() (closed int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return 0
	}
	a.eng.enter(nil)
	return a.eng.flushAll()
}

// Stats returns the assembler's counters. The snapshot is taken between
// packets, so its figures are consistent with one another.
func (a *SafeAssembler) Stats() AssemblerStats {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.eng.ctr.snapshot(&a.pool.t.budget)
}

// Close stops the background flusher and waits for it; the last open
// assembler of the pool then flushes and completes every connection. Later
// calls fail with ErrAssemblerClosed. Close is idempotent and returns nil.
func (a *SafeAssembler) Close() error {
	a.closeOnce.Do(func() {
		a.cancel()
		a.wg.Wait()
		a.mu.Lock()
		defer a.mu.Unlock()
		a.closed = true
		if a.pool.assemblers.Add(-1) == 0 {
			a.eng.enter(nil)
			a.eng.flushAll()
		}
		a.eng.pc.drop()
	})
	return nil
}

// flusher is the background goroutine: it advances the coarse clock and
// closes connections that received no packet for ConnectionTimeout of wall
// time, and releases idle free pages.
func (a *SafeAssembler) flusher(ctx context.Context) {
	defer a.wg.Done()
	tick := time.NewTicker(a.opts.FlushInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			a.clock.Store(now.UnixNano())
			a.sweepByWallClock(now)
		}
	}
}

func (a *SafeAssembler) sweepByWallClock(now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return
	}
	a.eng.enter(nil)
	// The clock a packet records lags by up to one interval: allow for it.
	cutoff := now.Add(-a.opts.ConnectionTimeout - a.opts.FlushInterval).UnixNano()
	a.eng.ctr.timedOut += int64(a.eng.expireIdle(cutoff))
	a.eng.pc.trim()
	a.eng.free.trim()
	a.eng.table.trimIndexes()
}

// safeCallbacks runs Stream and StreamFactory code under recover. A panic
// is counted, logged, returned as an error wrapping ErrStreamPanic, and
// poisons the connection, which the engine then closes.
type safeCallbacks struct {
	logger *slog.Logger
	ctr    *counters
	err    error
}

func (s *safeCallbacks) recovered(c *connection, where string, r any) {
	s.ctr.panics++
	if c != nil {
		c.poisoned = true
	}
	err := fmt.Errorf("%w: %s: %v", ErrStreamPanic, where, r)
	if s.err == nil {
		s.err = err
	}
	if s.logger != nil {
		s.logger.Error("reassembly: recovered panic in stream callback", "callback", where, "panic", fmt.Sprint(r))
	}
}

func (s *safeCallbacks) newStream(c *connection, f StreamFactory, tcp *layers.TCP, ac AssemblerContext) (st Stream, err error) {
	defer func() {
		if r := recover(); r != nil {
			s.recovered(nil, "StreamFactory.New", r)
			st, err = nil, s.err
		}
	}()
	netFlow, tcpFlow := c.key.flows(c.c2sFromLo)
	return f.New(netFlow, tcpFlow, tcp, ac), nil
}

// accept calls the Stream's Accept with *ci, the packet's CaptureInfo
// (see callbacks).
func (s *safeCallbacks) accept(c *connection, tcp *layers.TCP, ci *gopacket.CaptureInfo, dir TCPFlowDirection, next Sequence, start *bool, ac AssemblerContext) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			s.recovered(c, "Stream.Accept", r)
			ok = false
		}
	}()
	return c.stream.Accept(tcp, *ci, dir, next, start, ac)
}

func (s *safeCallbacks) reassembled(c *connection, sg *scatterGather, ac AssemblerContext) {
	defer func() {
		if r := recover(); r != nil {
			s.recovered(c, "Stream.ReassembledSG", r)
		}
	}()
	c.stream.ReassembledSG(sg, ac)
}

func (s *safeCallbacks) complete(c *connection, ac AssemblerContext) (remove bool) {
	defer func() {
		if r := recover(); r != nil {
			s.recovered(c, "Stream.ReassemblyComplete", r)
			remove = true
		}
	}()
	return c.stream.ReassemblyComplete(ac)
}
