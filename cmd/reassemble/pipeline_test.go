package main

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/safepacket/reassembly/internal/tracegen"
)

// writeTrace writes a generated capture into dir.
func writeTrace(t testing.TB, dir, name string, write func(io.Writer) (*tracegen.Capture, error)) (string, *tracegen.Capture) {
	t.Helper()
	path := filepath.Join(dir, name)
	fh, err := os.Create(path)
	require.NoError(t, err)
	c, err := write(fh)
	require.NoError(t, err)
	require.NoError(t, fh.Close())
	return path, c
}

// TestPipelineBytes: on the generated captures of the benchmark (bulk
// transfers interleaved with reordered, retransmitted and overlapping
// segments, deliveries of several packets' bytes and writes at the buffer
// bounds; many short connections), every direction's file holds exactly
// the bytes that direction sent, and there is no other file.
func TestPipelineBytes(t *testing.T) {
	bulk := tracegen.BulkIssue15()
	bulk.Conns, bulk.Rounds, bulk.Segments = 24, 2, 200
	http := tracegen.HTTPIssue15()
	http.Conns = 300
	for _, tc := range []struct {
		name  string
		write func(io.Writer) (*tracegen.Capture, error)
	}{
		{"bulk", func(w io.Writer) (*tracegen.Capture, error) { return tracegen.WriteBulk(w, bulk) }},
		{"http", func(w io.Writer) (*tracegen.Capture, error) { return tracegen.WriteHTTP(w, http) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			file, c := writeTrace(t, dir, tc.name+".pcap", tc.write)
			out := filepath.Join(dir, "out")
			code, _, stderr := runCmd(t, "-q", "-o", out, file)
			require.Equal(t, exitOK, code, stderr)
			s := readSummary(t, out)
			var dirs int
			c.Streams(func(src, dst netip.AddrPort, data []byte) {
				dirs++
				name := fmt.Sprintf("%s.%d-%s.%d%s", src.Addr(), src.Port(), dst.Addr(), dst.Port(), flowFileSuffix)
				got, err := os.ReadFile(filepath.Join(out, name))
				require.NoError(t, err)
				require.Equal(t, len(data), len(got), name)
				require.True(t, string(data) == string(got), "%s: bytes differ", name)
			})
			assert.Equal(t, dirs, s.Stats.Files)
			assert.Equal(t, int64(c.Packets), s.Stats.Packets)
			assert.Zero(t, s.Stats.Assembler.Gaps)
			if tc.name == "bulk" {
				assert.Positive(t, s.Stats.Assembler.BytesOverlap, "the capture has overlaps")
				assert.Positive(t, s.Stats.FlowCounters.Retransmitted, "the capture has retransmissions")
				assert.Positive(t, s.Stats.Pool.PageCache.PagesPeak, "the capture has reordering")
			}
		})
	}
}
