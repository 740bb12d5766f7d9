package reassembly

import "github.com/safepacket/reassembly/internal/stamp"

// stampCopy is the copy the engine made of a reused context (a
// stamp.Context of the tcpassembly face) for buffers that outlive its
// packet: one copy per packet, shared by every buffer that keeps it.
type stampCopy struct {
	from *stamp.Context
	gen  uint64
	ctx  *captureContext
}

// keptContext returns the context that a buffer keeping bytes of ac's
// packet past that packet holds: ac itself, as the user handed it in,
// unless ac is a stamp.Context, which its owner overwrites for the next
// packet and so is copied.
func (e *engine) keptContext(ac AssemblerContext) AssemblerContext {
	s, ok := ac.(*stamp.Context)
	if !ok {
		return ac
	}
	m := &e.stampCopy
	if m.ctx == nil || m.from != s || m.gen != s.Gen {
		c := captureContext(s.Info)
		m.from, m.gen, m.ctx = s, s.Gen, &c
	}
	return m.ctx
}
