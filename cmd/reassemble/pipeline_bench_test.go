package main

import (
	"io"
	"path/filepath"
	"testing"

	"github.com/safepacket/reassembly/internal/tracegen"
)

// BenchmarkPipeline runs the whole command (read the capture, decode,
// reassemble, write every direction's file and the summary) on smaller
// versions of issue 15's two generated captures: bulk, 32 interleaved
// connections of 256 segments each way with reordering, retransmissions
// and overlaps (~25k packets, 26 MB), and http, 2000 HTTP-like connections
// (28k packets, 4000 files). It reports wall time, user CPU time (the
// issue's target, against tcpflow) and allocations per packet. The files
// go to the benchmark's temporary directory: TMPDIR=/dev/shm keeps the
// disk out of the wall time.
//
//	TMPDIR=/dev/shm go test -run '^$' -bench Pipeline -count 5 ./cmd/reassemble
func BenchmarkPipeline(b *testing.B) {
	bulk := tracegen.BulkIssue15()
	bulk.Conns, bulk.Rounds = 32, 1
	http := tracegen.HTTPIssue15()
	http.Conns = 2000
	shapes := []struct {
		name  string
		write func(io.Writer) (*tracegen.Capture, error)
	}{
		{"bulk", func(w io.Writer) (*tracegen.Capture, error) { return tracegen.WriteBulk(w, bulk) }},
		{"http", func(w io.Writer) (*tracegen.Capture, error) { return tracegen.WriteHTTP(w, http) }},
	}
	for _, sh := range shapes {
		b.Run("capture="+sh.name, func(b *testing.B) {
			dir := b.TempDir()
			file, c := writeTrace(b, dir, sh.name+".pcap", sh.write)
			out := filepath.Join(dir, "out")
			args := []string{"-q", "-o", out, file}
			b.ReportAllocs()
			b.ResetTimer()
			user := processUserCPU()
			for i := 0; i < b.N; i++ {
				if code := run(args, io.Discard, io.Discard); code != exitOK {
					b.Fatalf("exit status %d", code)
				}
			}
			user = processUserCPU() - user
			n := float64(b.N) * float64(c.Packets)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/pkt")
			b.ReportMetric(float64(user.Nanoseconds())/n, "user-ns/pkt")
		})
	}
}
