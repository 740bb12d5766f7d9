// Package tcpreader provides ReaderStream, a tcpassembly.Stream that is
// also an io.Reader of the direction's bytes. It is a drop-in replacement
// for github.com/google/gopacket/tcpassembly/tcpreader, with one addition:
// NewBoundedReaderStream, whose Reassembled gives up on a reader that does
// not keep up instead of holding up the whole Assembler (google/gopacket
// issue 873).
//
// A ReaderStream is read in its own goroutine, as the Assembler hands it
// the bytes of each Reassembled call and waits until they are read:
//
//	type factory struct{}
//
//	func (factory) New(a, b gopacket.Flow) tcpassembly.Stream {
//		r := tcpreader.NewReaderStream()
//		go consume(&r) // read it to the end, e.g. tcpreader.DiscardBytesToEOF(&r)
//		return &r
//	}
//
// Every ReaderStream must be read until Read returns io.EOF (or be
// Closed), or the Assembler stops at its next delivery; the bounded kind
// stops for at most its MaxWait.
package tcpreader

import (
	"errors"
	"io"
	"sync"
	"time"

	"github.com/safepacket/reassembly/tcpassembly"
)

// DataLost is the error Read returns, when LossErrors is set, before the
// first bytes that follow a hole in the stream.
//
//lint:ignore ST1012 upstream's name, kept for code that compares with it
var DataLost = errors.New("lost data")

// ReaderStreamOptions change how a ReaderStream reads.
type ReaderStreamOptions struct {
	// LossErrors makes Read return DataLost, once, before the bytes that
	// follow missing ones (a skip, or bytes a bounded ReaderStream
	// dropped).
	LossErrors bool
}

// WaitOptions bound how long a ReaderStream holds up its Assembler.
type WaitOptions struct {
	// MaxWait is how long one Reassembled call waits for the reader to
	// take its bytes. Past it, the bytes not read yet are dropped (see
	// ReaderStream.Dropped), the reader sees a loss, and further calls
	// drop their bytes at once until the reader calls Read again. 0 (or
	// less) waits as long as it takes, as NewReaderStream does.
	MaxWait time.Duration
}

// ReaderStream is a tcpassembly.Stream whose bytes are read with Read.
// Make one with NewReaderStream or NewBoundedReaderStream and use it by
// pointer; its zero value has no data (Read returns io.EOF and Reassembled
// drops what it is given).
//
// The bytes of one Reassembled call are read before the call returns, so
// they stay valid while read; a bounded ReaderStream may drop them instead.
type ReaderStream struct {
	ReaderStreamOptions
	s *readerState
}

// readerState is what the Assembler's and the reader's goroutines share.
type readerState struct {
	mu sync.Mutex
	// pending is the batch being read; nil when there is none.
	pending []tcpassembly.Reassembly
	// complete: ReassemblyComplete was called; closed: so was Close.
	complete, closed bool
	// lossReported tells that the loss before pending[0] was reported.
	lossReported bool
	// lost tells that bytes were dropped since the reader last got some.
	lost bool
	// stalled tells that a wait timed out and the reader has not called
	// Read since: deliveries are dropped without waiting.
	stalled bool
	dropped int64

	maxWait time.Duration
	timer   *time.Timer
	wake    chan struct{} // to the reader: something changed
	taken   chan struct{} // to the Assembler: the batch was read
	done    chan struct{} // closed by ReassemblyComplete
}

// NewReaderStream returns a ReaderStream whose Reassembled waits, as long
// as it takes, until its bytes are read.
func NewReaderStream() ReaderStream {
	return NewBoundedReaderStream(WaitOptions{})
}

// NewBoundedReaderStream returns a ReaderStream whose Reassembled waits at
// most w.MaxWait for its bytes to be read, so that a reader that stopped
// reading cannot stop the Assembler and every other connection with it.
func NewBoundedReaderStream(w WaitOptions) ReaderStream {
	s := &readerState{
		maxWait: w.MaxWait,
		wake:    make(chan struct{}, 1),
		taken:   make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	return ReaderStream{s: s}
}

// signal wakes whoever waits on c; a signal already pending suffices.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Reassembled hands the reader the bytes of rs and returns when they are
// read, or, on a bounded ReaderStream, when MaxWait has passed (the rest is
// dropped). After Close or ReassemblyComplete it drops them at once.
func (r *ReaderStream) Reassembled(rs []tcpassembly.Reassembly) {
	s := r.s
	if s == nil {
		return
	}
	s.mu.Lock()
	switch {
	case s.complete || s.closed:
		s.mu.Unlock()
		return
	case s.stalled:
		s.drop(rs)
		s.mu.Unlock()
		return
	}
	s.pending = rs
	s.mu.Unlock()
	signal(s.wake)
	if s.maxWait <= 0 {
		<-s.taken
		return
	}
	if s.timer == nil {
		s.timer = time.NewTimer(s.maxWait)
	} else {
		s.timer.Reset(s.maxWait)
	}
	select {
	case <-s.taken:
		// Drain without blocking: whether a fired timer left a value in
		// C depends on the client's Go version (asynctimerchan).
		if !s.timer.Stop() {
			select {
			case <-s.timer.C:
			default:
			}
		}
		return
	case <-s.timer.C:
	}
	s.mu.Lock()
	if s.pending != nil {
		s.drop(s.pending)
		s.pending = nil
		s.stalled = true
	}
	s.mu.Unlock()
	// The reader may have finished the batch as the wait ran out.
	select {
	case <-s.taken:
	default:
	}
}

// drop counts the bytes of rs as dropped and the stream as having lost
// them; s.mu is held.
func (s *readerState) drop(rs []tcpassembly.Reassembly) {
	for _, x := range rs {
		if len(x.Bytes) > 0 {
			s.dropped += int64(len(x.Bytes))
			s.lost = true
		}
	}
}

// ReassemblyComplete ends the stream: once its bytes are read, Read
// returns io.EOF. Calls after the first do nothing.
func (r *ReaderStream) ReassemblyComplete() {
	s := r.s
	if s == nil {
		return
	}
	s.mu.Lock()
	if !s.complete {
		s.complete = true
		close(s.done)
	}
	s.mu.Unlock()
	signal(s.wake)
}

// Read reads the next bytes of the stream, waiting for them if need be:
// bytes of one Reassembly at a time, io.EOF at the end, and, with
// LossErrors, DataLost (and no bytes) before bytes that follow a hole.
func (r *ReaderStream) Read(p []byte) (int, error) {
	s := r.s
	if s == nil {
		return 0, io.EOF
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stalled = false
	for {
		for len(s.pending) > 0 && len(s.pending[0].Bytes) == 0 {
			s.pending = s.pending[1:]
			s.lossReported = false
		}
		if len(s.pending) > 0 {
			break
		}
		if s.pending != nil {
			s.pending = nil
			signal(s.taken)
		}
		if s.complete || s.closed {
			if s.lost && r.LossErrors && !s.closed {
				// Bytes were dropped after the last ones read.
				s.lost = false
				return 0, DataLost
			}
			return 0, io.EOF
		}
		// A reader waiting for bytes is not stalled, even if it was too
		// slow to wake for the last ones.
		s.stalled = false
		s.mu.Unlock()
		<-s.wake
		s.mu.Lock()
	}
	cur := &s.pending[0]
	if (cur.Skip != 0 || s.lost) && r.LossErrors && !s.lossReported {
		s.lossReported = true
		s.lost = false
		return 0, DataLost
	}
	s.lost = false
	n := copy(p, cur.Bytes)
	cur.Bytes = cur.Bytes[n:]
	if n == 0 {
		return 0, nil
	}
	// Let the Assembler go on as soon as the batch is read.
	if len(cur.Bytes) == 0 && s.restEmpty() {
		s.pending = nil
		s.lossReported = false
		signal(s.taken)
	}
	return n, nil
}

// restEmpty reports whether the pending Reassemblies after the first hold
// no bytes; s.mu is held.
func (s *readerState) restEmpty() bool {
	for _, x := range s.pending[1:] {
		if len(x.Bytes) > 0 {
			return false
		}
	}
	return true
}

// Close tells that the reader wants no more bytes: what is pending and
// what comes later is discarded, and Read returns io.EOF. Like upstream's,
// it returns when the stream is complete (ReassemblyComplete was called).
func (r *ReaderStream) Close() error {
	s := r.s
	if s == nil {
		return nil
	}
	s.mu.Lock()
	s.closed = true
	if s.pending != nil {
		s.pending = nil
		signal(s.taken)
	}
	s.mu.Unlock()
	<-s.done
	return nil
}

// Dropped returns the number of bytes a bounded ReaderStream dropped
// because its reader did not take them within MaxWait.
func (r *ReaderStream) Dropped() int64 {
	s := r.s
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}
