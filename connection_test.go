package reassembly

import (
	"testing"
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
