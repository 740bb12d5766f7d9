package reassembly

import (
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	upstream "github.com/google/gopacket/reassembly"
)

// inOrderTraffic is one connection: handshake, then n segments of size
// bytes each way, each answered by an ACK, then FINs.
func inOrderTraffic(n, size int) []testPacket {
	c := netip.MustParseAddrPort("10.0.0.1:40000")
	s := netip.MustParseAddrPort("10.0.0.2:80")
	ts := time.Unix(1_700_000_000, 0)
	var out []testPacket
	add := func(seg segment) {
		ts = ts.Add(time.Microsecond)
		seg.client, seg.server, seg.ts = c, s, ts
		out = append(out, seg.build())
	}
	cseq, sseq := uint32(1000), uint32(900_000)
	add(segment{seq: cseq, syn: true})
	add(segment{fromServer: true, seq: sseq, ack: cseq + 1, syn: true, hasAck: true})
	cseq++
	sseq++
	add(segment{seq: cseq, ack: sseq, hasAck: true})
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(i)
	}
	for i := 0; i < n; i++ {
		add(segment{seq: cseq, ack: sseq, hasAck: true, payload: payload})
		cseq += uint32(size)
		add(segment{fromServer: true, seq: sseq, ack: cseq, hasAck: true})
		add(segment{fromServer: true, seq: sseq, ack: cseq, hasAck: true, payload: payload})
		sseq += uint32(size)
		add(segment{seq: cseq, ack: sseq, hasAck: true})
	}
	add(segment{seq: cseq, ack: sseq, hasAck: true, fin: true})
	add(segment{fromServer: true, seq: sseq, ack: cseq + 1, hasAck: true, fin: true})
	return out
}

type countingStream struct{ bytes int }

func (s *countingStream) Accept(*layers.TCP, gopacket.CaptureInfo, TCPFlowDirection, Sequence, *bool, AssemblerContext) bool {
	return true
}
func (s *countingStream) ReassembledSG(sg ScatterGather, _ AssemblerContext) {
	n, _ := sg.Lengths()
	s.bytes += n
}
func (s *countingStream) ReassemblyComplete(AssemblerContext) bool { return true }

type countingFactory struct{ s countingStream }

func (f *countingFactory) New(gopacket.Flow, gopacket.Flow, *layers.TCP, AssemblerContext) Stream {
	return &f.s
}

type upCountingStream struct{ bytes int }

func (s *upCountingStream) Accept(*layers.TCP, gopacket.CaptureInfo, upstream.TCPFlowDirection, upstream.Sequence, *bool, upstream.AssemblerContext) bool {
	return true
}
func (s *upCountingStream) ReassembledSG(sg upstream.ScatterGather, _ upstream.AssemblerContext) {
	n, _ := sg.Lengths()
	s.bytes += n
}
func (s *upCountingStream) ReassemblyComplete(upstream.AssemblerContext) bool { return true }

type upCountingFactory struct{ s upCountingStream }

func (f *upCountingFactory) New(gopacket.Flow, gopacket.Flow, *layers.TCP, upstream.AssemblerContext) upstream.Stream {
	return &f.s
}

// ctxOf gives each packet its own context before timing, as a capture loop
// that keeps its CaptureInfo would.
type benchCtx struct{ ci gopacket.CaptureInfo }

func (c *benchCtx) GetCaptureInfo() gopacket.CaptureInfo { return c.ci }

func contexts(pkts []testPacket) []benchCtx {
	out := make([]benchCtx, len(pkts))
	for i, p := range pkts {
		out[i].ci = p.ci
	}
	return out
}

// BenchmarkInOrder replays one long in-order connection; ns/op is per
// packet. The connection is re-created each pass (the FINs close it).
func BenchmarkInOrder(b *testing.B) {
	pkts := inOrderTraffic(2000, 1460)
	ctxs := contexts(pkts)
	b.Run("impl=ours", func(b *testing.B) {
		f := &countingFactory{}
		a := NewAssembler(NewStreamPool(f))
		b.ReportAllocs()
		b.SetBytes(1460 / 2)
		for i := 0; i < b.N; i++ {
			j := i % len(pkts)
			a.AssembleWithContext(pkts[j].netFlow, pkts[j].tcp, &ctxs[j])
		}
	})
	b.Run("impl=upstream", func(b *testing.B) {
		f := &upCountingFactory{}
		a := upstream.NewAssembler(upstream.NewStreamPool(f))
		b.ReportAllocs()
		b.SetBytes(1460 / 2)
		for i := 0; i < b.N; i++ {
			j := i % len(pkts)
			a.AssembleWithContext(pkts[j].netFlow, pkts[j].tcp, &ctxs[j])
		}
	})
}

func TestInOrderPathDoesNotAllocate(t *testing.T) {
	pkts := inOrderTraffic(200, 1460)
	ctxs := contexts(pkts)
	f := &countingFactory{}
	a := NewAssembler(NewStreamPool(f))
	// Warm up: the first pass creates the connection and its buffers.
	for j := range pkts {
		a.AssembleWithContext(pkts[j].netFlow, pkts[j].tcp, &ctxs[j])
	}
	steady := pkts[3 : len(pkts)-2]
	sctx := ctxs[3 : len(ctxs)-2]
	// Re-open the connection so that steady-state packets find it.
	for j := 0; j < 3; j++ {
		a.AssembleWithContext(pkts[j].netFlow, pkts[j].tcp, &ctxs[j])
	}
	i := 0
	allocs := testing.AllocsPerRun(len(steady), func() {
		j := i % len(steady)
		a.AssembleWithContext(steady[j].netFlow, steady[j].tcp, &sctx[j])
		i++
	})
	if allocs != 0 {
		t.Fatalf("in-order packet allocates %.2f times, want 0", allocs)
	}
	if f.s.bytes == 0 {
		t.Fatal("no bytes delivered")
	}
}

// descendingTraffic is a SYN, then n one-byte segments at non-adjacent
// sequence numbers from the highest down, none of them fillable.
func descendingTraffic(n int) []testPacket {
	c := netip.MustParseAddrPort("10.0.0.1:40000")
	s := netip.MustParseAddrPort("10.0.0.2:80")
	ts := time.Unix(1_700_000_000, 0)
	out := []testPacket{segment{client: c, server: s, seq: 0, syn: true, ts: ts}.build()}
	for i := n; i >= 1; i-- {
		out = append(out, segment{client: c, server: s, seq: uint32(10 + 2*i), hasAck: true, payload: []byte{'x'}, ts: ts}.build())
	}
	return out
}

// BenchmarkDescendingInsert reports the cost per out-of-order segment when
// n segments arrive in descending order (upstream's quadratic case).
func BenchmarkDescendingInsert(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		pkts := descendingTraffic(n)
		ctxs := contexts(pkts)
		b.Run("impl=ours/n="+itoa(n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				a := NewAssembler(NewStreamPool(&countingFactory{}))
				for j := range pkts {
					a.AssembleWithContext(pkts[j].netFlow, pkts[j].tcp, &ctxs[j])
				}
				a.FlushAll()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/segment")
		})
		if n > 10000 && testing.Short() {
			continue
		}
		b.Run("impl=upstream/n="+itoa(n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				a := upstream.NewAssembler(upstream.NewStreamPool(&upCountingFactory{}))
				for j := range pkts {
					a.AssembleWithContext(pkts[j].netFlow, pkts[j].tcp, &ctxs[j])
				}
				a.FlushAll()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/segment")
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
