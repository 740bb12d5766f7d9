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
// again) and is given back when the direction ends, or when the buffers
// held reach totalHeld.

import "slices"

// freeBuffers is the most whole buffers kept for reuse (8 MB): enough for
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
