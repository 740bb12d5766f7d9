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
// piece, and every file still holds its direction's bytes whole, in order.
func TestOutputBuffersBounded(t *testing.T) {
	dir := t.TempDir()
	o, err := newOutput(dir)
	require.NoError(t, err)
	o.maxBuffered, o.maxHeld = 3*dirBufferSize, 6*dirBufferSize
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
		if rng.Intn(200) == 0 {
			recs[i].End(d, endFIN)
		}
	}
	assert.Less(t, len(o.holders), 2*2*flows+1024, "the list of holders is pruned")
	o.finish()
	require.NoError(t, o.writeErr)
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
