package main

import (
	"bytes"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestOutputBuffersBounded: with bounds of a few buffers, directions fed
// interleaved, in pieces of every size (some larger than a buffer), keep
// the bytes pending and the buffers held within the bounds after every
// piece, and every file still holds its direction's bytes whole, in order:
// with either bound the one reached first (the buffers held reach theirs
// only when it is the smaller). The files open between writes stay within
// their bound too (none, some, or more than the flows), and none is open
// once its direction ended or the output finished.
func TestOutputBuffersBounded(t *testing.T) {
	for _, tc := range []struct {
		name           string
		buffered, held int
		open           int
	}{
		{"pending first", 3 * dirBufferSize, 6 * dirBufferSize, 7},
		{"held first", 6 * dirBufferSize, 3 * dirBufferSize, 7},
		{"no file kept open", 3 * dirBufferSize, 6 * dirBufferSize, 0},
		{"every file kept open", 3 * dirBufferSize, 6 * dirBufferSize, 1000},
	} {
		t.Run(tc.name, func(t *testing.T) { testOutputBuffersBounded(t, tc.buffered, tc.held, tc.open) })
	}
}

func testOutputBuffersBounded(t *testing.T, maxBuffered, maxHeld, maxOpen int) {
	dir := t.TempDir()
	o, err := newOutput(dir)
	require.NoError(t, err)
	o.maxBuffered, o.maxHeld, o.maxOpen = maxBuffered, maxHeld, maxOpen
	rng := rand.New(rand.NewSource(3))
	const flows = 40
	var recs []flowHandle
	var want [flows][2][]byte
	for i := 0; i < flows; i++ {
		src := gopacket.NewFlow(layers.EndpointIPv4, net.IPv4(10, 0, 0, byte(i)).To4(), net.IPv4(10, 0, 1, 1).To4())
		ports := gopacket.NewFlow(layers.EndpointTCPPort, []byte{0x30, byte(i)}, []byte{0, 80})
		recs = append(recs, o.NewFlow(src, ports, time.Time{}))
	}
	for step := 0; step < 4000; step++ {
		i, d := rng.Intn(flows), rng.Intn(2)
		n := rng.Intn(3000)
		if rng.Intn(50) == 0 {
			n = dirBufferSize + rng.Intn(dirBufferSize)
		}
		b := make([]byte, n)
		rng.Read(b)
		recs[i].Data(d, b)
		want[i][d] = append(want[i][d], b...)
		require.Less(t, o.buffered, o.maxBuffered+dirBufferSize, "step %d", step)
		require.Less(t, o.held, o.maxHeld+dirBufferSize, "step %d", step)
		require.LessOrEqual(t, o.open, maxOpen, "step %d", step)
		if rng.Intn(200) == 0 {
			recs[i].End(d, endFIN)
			require.False(t, recs[i].(*flowRecord).open[d], "step %d: an ended direction's file is closed", step)
		}
	}
	if maxOpen > 0 {
		assert.Positive(t, o.open, "files are kept open between writes")
	}
	assert.Less(t, len(o.holders), 2*2*flows+1024, "the list of holders is pruned")
	o.finish()
	require.NoError(t, o.writeErr)
	assert.Zero(t, o.open, "every file is closed at the end")
	for i, r := range recs {
		for d := 0; d < 2; d++ {
			ds := r.(*flowRecord).dir(d)
			if len(want[i][d]) == 0 {
				assert.Empty(t, ds.File)
				continue
			}
			got, err := os.ReadFile(filepath.Join(dir, ds.File))
			require.NoError(t, err)
			assert.True(t, bytes.Equal(want[i][d], got), "flow %d direction %d: %d bytes, want %d", i, d, len(got), len(want[i][d]))
		}
	}
}

// TestOutputFreeBuffersBounded: directions ending give their whole buffers
// back, but at most freeBuffers are kept for reuse; a direction holding no
// more than smallBuffer bytes keeps a buffer grown to its size even when
// whole ones are free, and one needing more takes a free one.
func TestOutputFreeBuffersBounded(t *testing.T) {
	o, err := newOutput(t.TempDir())
	require.NoError(t, err)
	flows := freeBuffers/2 + 20
	var recs []flowHandle
	for i := 0; i < flows; i++ {
		src := gopacket.NewFlow(layers.EndpointIPv4, net.IPv4(10, 0, byte(i>>8), byte(i)).To4(), net.IPv4(10, 0, 1, 1).To4())
		ports := gopacket.NewFlow(layers.EndpointTCPPort, []byte{0x30, byte(i)}, []byte{0, 80})
		r := o.NewFlow(src, ports, time.Time{})
		for d := 0; d < 2; d++ {
			r.Data(d, make([]byte, dirBufferSize/2))
			require.Equal(t, dirBufferSize, cap(r.(*flowRecord).pending[d]), "flow %d direction %d takes a whole buffer", i, d)
		}
		recs = append(recs, r)
	}
	require.Less(t, freeBuffers, 2*flows)
	for _, r := range recs {
		r.End(dirC2S, endFIN)
		r.End(dirS2C, endFIN)
	}
	assert.Equal(t, freeBuffers, len(o.free), "buffers kept for reuse")
	assert.Zero(t, o.held)
	assert.Zero(t, o.buffered)

	src := gopacket.NewFlow(layers.EndpointIPv4, net.IPv4(10, 9, 9, 9).To4(), net.IPv4(10, 0, 1, 1).To4())
	ports := gopacket.NewFlow(layers.EndpointTCPPort, []byte{0x40, 0}, []byte{0, 80})
	r := o.NewFlow(src, ports, time.Time{}).(*flowRecord)
	r.Data(dirC2S, make([]byte, smallBuffer))
	assert.Less(t, cap(r.pending[dirC2S]), dirBufferSize, "a small direction takes no whole buffer")
	assert.Equal(t, freeBuffers, len(o.free))
	r.Data(dirC2S, make([]byte, 1))
	assert.Equal(t, dirBufferSize, cap(r.pending[dirC2S]), "past smallBuffer a whole buffer is taken")
	assert.Equal(t, freeBuffers-1, len(o.free), "from those free")
	o.finish()
	require.NoError(t, o.writeErr)
}

// TestMaxOpenFor: the flow files kept open leave fdMargin descriptors of
// the limit free, none are kept under a limit at or below the margin
// (the subtraction must not wrap), and an unlimited limit is capped.
func TestMaxOpenFor(t *testing.T) {
	for limit, want := range map[uint64]int{
		0: 0, fdMargin: 0, fdMargin + 1: 1, 1024: 1024 - fdMargin,
		1 << 40: 1<<20 - fdMargin, ^uint64(0): 1<<20 - fdMargin,
	} {
		require.Equal(t, want, maxOpenFor(limit), "limit %d", limit)
	}
}
