package main

// output_buffers.go: the buffers that hold a direction's bytes until they
// are written.
//
// A direction's buffer grows as append grows it while it is small, so
// that the 20k short directions of a capture of many connections cost
// what they hold, and is given back once written; a direction that needs
// more than a few kilobytes takes a whole buffer of dirBufferSize given
// back by an ended direction when there is one, and past a quarter of
// dirBufferSize makes one. A whole buffer stays with its direction between
// writes (a bulk transfer fills and writes the same buffer again and
// again) and is given back when the direction ends. When the bytes pending
// reach totalBuffered, the directions holding the most are written until
// half of it is left (relieve); when the buffers held reach totalHeld, the
// largest are given back until half of it is left. Writing the fullest
// first keeps writes large and files opened few times: a direction
// written early opens its file once more for its later bytes.

import (
	"slices"
	"sort"
)

// freeBuffers is the most whole buffers kept for reuse (4 MB): enough for
// the directions of a hundred bulk transfers ending while as many start.
const freeBuffers = 128

// smallBuffer is the most a direction holds in a buffer grown by append
// when a whole one is free.
const smallBuffer = 4 << 10

// grow returns a buffer holding buf's bytes with room for need bytes
// (need <= dirBufferSize).
func (o *output) grow(buf []byte, need int) []byte {
	var nb []byte
	switch {
	case need <= smallBuffer || need <= dirBufferSize/4 && len(o.free) == 0:
		nb = slices.Grow(buf, need-len(buf))
	case len(o.free) > 0:
		nb = append(o.free[len(o.free)-1], buf...)
		o.free[len(o.free)-1] = nil
		o.free = o.free[:len(o.free)-1]
	default:
		nb = append(make([]byte, 0, dirBufferSize), buf...)
	}
	o.held += cap(nb) - cap(buf)
	return nb
}

// release gives a direction's buffer back; its bytes were written.
func (o *output) release(buf []byte) {
	o.held -= cap(buf)
	if cap(buf) == dirBufferSize && len(o.free) < freeBuffers {
		o.free = append(o.free, buf[:0])
	}
}

// holder names a direction of a flow that holds a buffer, or did: the
// list is pruned when relieve runs, and when it doubled.
type holder struct {
	f *flowRecord
	d int
}

// relieve writes the directions holding the most bytes, or gives back the
// largest buffers, until the buffers are within half of their bounds.
func (o *output) relieve() {
	o.prune()
	kept := o.holders
	if o.held >= o.maxHeld {
		sort.SliceStable(kept, func(i, j int) bool { return cap(kept[i].f.pending[kept[i].d]) > cap(kept[j].f.pending[kept[j].d]) })
		for _, h := range kept {
			if o.held <= o.maxHeld/2 {
				break
			}
			h.f.release(h.d)
		}
	}
	if o.buffered >= o.maxBuffered {
		sort.SliceStable(kept, func(i, j int) bool { return len(kept[i].f.pending[kept[i].d]) > len(kept[j].f.pending[kept[j].d]) })
		for _, h := range kept {
			if o.buffered <= o.maxBuffered/2 {
				break
			}
			h.f.flush(h.d)
		}
	}
}

// hold lists a direction that takes a buffer.
func (o *output) hold(f *flowRecord, d int) {
	f.listed[d] = true
	o.holders = append(o.holders, holder{f, d})
	if len(o.holders) >= o.pruneAt {
		o.prune()
		o.pruneAt = max(1024, 2*len(o.holders))
	}
}

// prune drops the directions that hold no buffer any more.
func (o *output) prune() {
	kept := o.holders[:0]
	for _, h := range o.holders {
		if cap(h.f.pending[h.d]) > 0 {
			kept = append(kept, h)
		} else {
			h.f.listed[h.d] = false
		}
	}
	clear(o.holders[len(kept):])
	o.holders = kept
}
