package tcpassembly

// uint32Span is the size of the TCP sequence space.
const uint32Span = 1 << 32

// Sequence is a TCP sequence number, kept in [0, 0xFFFFFFFF]; the wider
// type leaves room for the arithmetic that handles wrap-around.
type Sequence int64

// Difference returns how far t lies after s: positive when t comes after
// s, negative when before, 0 when equal; so Sequence(4).Difference(8) is 4.
// A sequence in the first quarter of the space counts as after one in the
// last quarter, which is how the numbers wrap.
func (s Sequence) Difference(t Sequence) int {
	const quarter = uint32Span / 4
	switch {
	case s > uint32Span-quarter && t < quarter:
		t += uint32Span
	case t > uint32Span-quarter && s < quarter:
		s += uint32Span
	}
	return int(t - s)
}

// Add returns s moved forward by t, wrapped into the sequence space.
func (s Sequence) Add(t int) Sequence {
	return (s + Sequence(t)) & (uint32Span - 1)
}
