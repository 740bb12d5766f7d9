//go:build linux

package main

import (
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/safepacket/reassembly/internal/capture"
	ct "github.com/safepacket/reassembly/internal/capturetest"
)

// TestMappedFileCutShort: a mapped capture cut short while it is read
// (another program truncating it) ends the capture with an error instead
// of crashing the command, and releasing pages behind the reader leaves
// the frames the file's own.
func TestMappedFileCutShort(t *testing.T) {
	orig, err := os.ReadFile(ct.Testdata("captures", "pf-ip-fragmented-ooo.pcap"))
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "cut.pcap")
	require.NoError(t, os.WriteFile(path, orig, 0o644))
	fh, err := os.Open(path)
	require.NoError(t, err)
	defer fh.Close()
	m := mapFile(fh, int64(len(orig)))
	require.NotNil(t, m)
	defer m.close()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	cr, err := capture.OpenBytes(m.data)
	require.NoError(t, err)
	// Frames past the second page: their record starts at Consumed.
	var data []byte
	for cr.Consumed() < 8192 {
		data, _, _, err = cr.Next()
		require.NoError(t, err)
	}
	at := int(cr.Consumed()) + 16
	require.Equal(t, orig[at:at+len(data)], data)
	m.every = 1 // release every page behind the frame
	m.release(cr.Consumed())
	require.Positive(t, m.released, "pages released")
	assert.Equal(t, orig[at:at+len(data)], data, "the frame is intact")
	assert.Equal(t, orig[:m.released], m.data[:m.released], "released pages read the file again")

	require.NoError(t, os.Truncate(path, 0))
	for {
		_, _, _, err = cr.Next()
		if err != nil {
			break
		}
	}
	require.NotErrorIs(t, err, io.EOF)
	assert.Contains(t, err.Error(), "capture reader failed")
}
