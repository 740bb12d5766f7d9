package main

// output_buffers.go: the buffers that hold a direction's bytes until they
// are written.
//
// A direction's buffer grows as append grows it while it is small, so
// that the 20k short directions of a capture of many connections cost
// what they hold; past a quarter of dirBufferSize it becomes a whole
// buffer of dirBufferSize, taken from those given back by ended directions
// when there are some. A buffer stays with its direction between writes
// (a bulk transfer fills and writes the same buffer again and again) and
// is given back when the direction ends or all are written to bound the
// memory held (totalBuffered).

// freeBuffers is the most whole buffers kept for reuse (4 MB).
const freeBuffers = 64

// grow returns a buffer holding buf's bytes with room for need bytes
// (need <= dirBufferSize).
func (o *output) grow(buf []byte, need int) []byte {
	var nb []byte
	switch {
	case need <= dirBufferSize/4:
		nb = append(buf[:cap(buf)], make([]byte, need-cap(buf))...)[:len(buf)]
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
