package reassembly

import (
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
)

// Property: what an in-order packet reads and writes of a direction's state
// lies within its first two cache lines, and both directions start a cache
// line, as connection.go lays them out for speed.
func TestHalfConnectionHotFieldsInTwoLines(t *testing.T) {
	var h halfConnection
	hot := []struct {
		name      string
		off, size uintptr
	}{
		{"statsPending", unsafe.Offsetof(h.statsPending), unsafe.Sizeof(h.statsPending)},
		{"nextSeq", unsafe.Offsetof(h.nextSeq), unsafe.Sizeof(h.nextSeq)},
		{"nextPos", unsafe.Offsetof(h.nextPos), unsafe.Sizeof(h.nextPos)},
		{"anchorSeq", unsafe.Offsetof(h.anchorSeq), unsafe.Sizeof(h.anchorSeq)},
		{"anchorPos", unsafe.Offsetof(h.anchorPos), unsafe.Sizeof(h.anchorPos)},
		{"lastSeen", unsafe.Offsetof(h.lastSeen), unsafe.Sizeof(h.lastSeen)},
		{"finPos", unsafe.Offsetof(h.finPos), unsafe.Sizeof(h.finPos)},
		{"queue", unsafe.Offsetof(h.queue), unsafe.Sizeof(h.queue)},
		{"oldestQueued", unsafe.Offsetof(h.oldestQueued), unsafe.Sizeof(h.oldestQueued)},
		{"kept", unsafe.Offsetof(h.kept), unsafe.Sizeof(h.kept)},
	}
	for _, f := range hot {
		assert.LessOrEqual(t, int(f.off+f.size), 128, "%s ends past the second cache line", f.name)
	}
	assert.Zero(t, unsafe.Sizeof(h)%64, "halfConnection is not a whole number of cache lines")
	var c connection
	assert.Zero(t, unsafe.Offsetof(c.halves)%64, "the directions do not start a cache line")
}

// Property: the flush hint lastSeenNs, which follows a connection's packets
// only by steps of seenHintStep, changes no flush decision: packets less
// than a step apart, a flush with TC between them keeps the connection,
// one with TC past the last closes it, the hint at a step behind.
func TestSeenHintLagChangesNoFlush(t *testing.T) {
	f := newKitFactory()
	a := NewAssembler(NewStreamPool(f))
	c := kitConnN(1)
	at := func(d time.Duration) AssemblerContext { return kitAt(kitT0.Add(d)) }
	a.AssembleWithContext(c.flow(false), c.segOff(false, "S", 0, nil), at(0))
	a.AssembleWithContext(c.flow(true), c.segOff(true, "SA", 0, nil), at(1500*time.Microsecond))
	a.AssembleWithContext(c.flow(false), c.segOff(false, "A", 0, []byte("x")), at(1900*time.Microsecond))

	_, closed := a.FlushWithOptions(FlushOptions{TC: kitT0.Add(1700 * time.Microsecond)})
	assert.Zero(t, closed, "a connection seen after TC stays")
	_, closed = a.FlushWithOptions(FlushOptions{TC: kitT0.Add(2000 * time.Microsecond)})
	assert.Equal(t, 2, closed, "a connection last seen before TC closes, however little before")
	assert.EqualValues(t, 1, f.stream(c).completes.Load())
}
