package reassembly

import "time"

// This file keeps the capture times of the bytes a ReaderStream buffers, so
// that a reader learns when the bytes it just read were captured.

// timeRun says that the buffered bytes from offset at up to the next run
// were captured at one time, first == last (one packet, or consecutive
// packets captured at the same time), or, past the cap on runs, from first
// to last (several packets merged).
type timeRun struct {
	at          int64
	first, last time.Time
}

// timeRunsPer is the buffer bytes per capture-time run a ReaderStream keeps
// apart: runs cost memory apart from MaxBuffered (56 bytes each), so a
// stream of tiny packets must not grow them without bound.
const timeRunsPer = 512

// minTimeRuns is the number of runs kept apart even in a small buffer.
const minTimeRuns = 16

// markTime records that the bytes about to be buffered at the write
// position were captured at ts.
func (r *ReaderStream) markTime(ts time.Time) {
	if k := len(r.times); k > r.timeHead {
		last := &r.times[k-1]
		if last.first.Equal(ts) && last.last.Equal(ts) {
			return // the same time: the run goes on
		}
		if k-r.timeHead >= max(minTimeRuns, r.max/timeRunsPer) {
			// Merged: the run spans the earliest to the latest time.
			if ts.Before(last.first) {
				last.first = ts
			}
			if ts.After(last.last) {
				last.last = ts
			}
			return
		}
	}
	if r.timeHead > 0 && r.timeHead >= len(r.times)/2 {
		r.times = r.times[:copy(r.times, r.times[r.timeHead:])]
		r.timeHead = 0
	}
	r.times = append(r.times, timeRun{at: r.wpos, first: ts, last: ts})
}

// runEnd returns the offset where run i ends.
func (r *ReaderStream) runEnd(i int) int64 {
	if i+1 < len(r.times) {
		return r.times[i+1].at
	}
	return r.wpos
}

// readTimes records the capture times of the bytes [from, to) just read,
// and forgets the runs read to their end.
func (r *ReaderStream) readTimes(from, to int64) {
	r.readFirst, r.readLast = time.Time{}, time.Time{}
	if from >= to {
		return
	}
	// Runs read to their end are gone: the first run holds from.
	i := r.timeHead
	if i < len(r.times) {
		r.readFirst = r.times[i].first
	}
	for i < len(r.times) && r.runEnd(i) < to {
		i++
	}
	if i < len(r.times) {
		r.readLast = r.times[i].last
	}
	for r.timeHead < len(r.times) && r.runEnd(r.timeHead) <= to {
		r.times[r.timeHead] = timeRun{}
		r.timeHead++
	}
	if r.timeHead == len(r.times) {
		r.times, r.timeHead = r.times[:0], 0
	}
}

// forgetTimes drops every run, with the bytes they described.
func (r *ReaderStream) forgetTimes() {
	r.times, r.timeHead = nil, 0
}

// ReadTimes returns the capture times of the first and of the last byte
// returned by the latest Read, or zero times when it returned no bytes
// (a gap, the end, or an empty buffer p). It tells who sent what when:
// see the example.
//
// Times are exact, packet by packet, while at most MaxBuffered/512 (at
// least 16) packets of distinct capture times wait to be read; beyond
// that, the times of the packets that arrive are merged, and a Read that
// returns some of their bytes gets the earliest and the latest of them.
// With several goroutines reading, the latest Read is any goroutine's.
func (r *ReaderStream) ReadTimes() (first, last time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.readFirst, r.readLast
}
