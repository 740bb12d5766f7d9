package tcpassembly_test

import (
	"net"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	up "github.com/google/gopacket/tcpassembly"
	"github.com/safepacket/reassembly"
	"github.com/safepacket/reassembly/internal/stamp"
	ours "github.com/safepacket/reassembly/tcpassembly"
)

type nopUp struct{}

func (nopUp) New(_, _ gopacket.Flow) up.Stream { return nopUp{} }
func (nopUp) Reassembled([]up.Reassembly)      {}
func (nopUp) ReassemblyComplete()              {}

type nopOurs struct{}

func (nopOurs) New(_, _ gopacket.Flow) ours.Stream { return nopOurs{} }
func (nopOurs) Reassembled([]ours.Reassembly)      {}
func (nopOurs) ReassemblyComplete()                {}

// nopEngine is a Stream of the engine underneath that accepts every
// packet and ignores every delivery. It tells the engine, as the face's
// own Stream does, that its Accept is steady, so that the engine row
// leaves out only what the face does per delivery.
type nopEngine struct{}

func (nopEngine) AcceptsAll(bool) bool { return true }

var _ stamp.SteadyAccepter = nopEngine{}

func (nopEngine) New(_, _ gopacket.Flow, _ *layers.TCP, _ reassembly.AssemblerContext) reassembly.Stream {
	return nopEngine{}
}
func (nopEngine) Accept(*layers.TCP, gopacket.CaptureInfo, reassembly.TCPFlowDirection, reassembly.Sequence, *bool, reassembly.AssemblerContext) bool {
	return true
}
func (nopEngine) ReassembledSG(reassembly.ScatterGather, reassembly.AssemblerContext) {}
func (nopEngine) ReassemblyComplete(reassembly.AssemblerContext) bool                 { return true }

// benchContext is the one context the engine row restamps per packet.
type benchContext struct{ ci gopacket.CaptureInfo }

func (c *benchContext) GetCaptureInfo() gopacket.CaptureInfo { return c.ci }

func benchFlow() gopacket.Flow {
	f, _ := gopacket.FlowFromEndpoints(layers.NewIPEndpoint(net.IP{10, 0, 0, 1}), layers.NewIPEndpoint(net.IP{10, 0, 0, 2}))
	return f
}

// benchInOrder feeds one direction's 1000-byte segments in order.
func benchInOrder(b *testing.B, assemble func(gopacket.Flow, *layers.TCP, time.Time)) {
	nf := benchFlow()
	t := decoded(layers.TCP{SrcPort: 1000, DstPort: 80, SYN: true, Seq: 1})
	ts := time.Unix(0, 0)
	assemble(nf, &t, ts)
	seg := decoded(layers.TCP{SrcPort: 1000, DstPort: 80, ACK: true, Seq: 2, BaseLayer: layers.BaseLayer{Payload: make([]byte, 1000)}})
	b.SetBytes(1000)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		assemble(nf, &seg, ts)
		seg.Seq += 1000
	}
}

// benchDescending holds n one-byte segments that arrive in descending
// order, each after a hole, then fills the first hole: upstream walks its
// list for each one.
func benchDescending(b *testing.B, n int, assemble func(gopacket.Flow, *layers.TCP, time.Time), flush func()) {
	nf := benchFlow()
	ts := time.Unix(0, 0)
	segs := make([]layers.TCP, n)
	for i := range segs {
		segs[i] = decoded(layers.TCP{SrcPort: 1000, DstPort: 80, ACK: true, Seq: uint32(10 + 2*(n-i)), BaseLayer: layers.BaseLayer{Payload: []byte{1}}})
	}
	syn := decoded(layers.TCP{SrcPort: 1000, DstPort: 80, SYN: true, Seq: 0})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		assemble(nf, &syn, ts)
		for j := range segs {
			assemble(nf, &segs[j], ts)
		}
		flush()
	}
}

func BenchmarkInOrder(b *testing.B) {
	b.Run("upstream", func(b *testing.B) {
		a := up.NewAssembler(up.NewStreamPool(nopUp{}))
		benchInOrder(b, a.AssembleWithTimestamp)
	})
	b.Run("ours", func(b *testing.B) {
		a := ours.NewAssembler(ours.NewStreamPool(nopOurs{}))
		benchInOrder(b, a.AssembleWithTimestamp)
	})
	// The engine under the face through its own entry point, with a
	// context restamped per packet as the face does: what the face adds
	// is the difference from "ours".
	b.Run("engine", func(b *testing.B) {
		a := reassembly.NewAssembler(reassembly.NewStreamPool(nopEngine{}))
		ac := &benchContext{}
		benchInOrder(b, func(nf gopacket.Flow, t *layers.TCP, ts time.Time) {
			ac.ci.Timestamp = ts
			a.AssembleWithContext(nf, t, ac)
		})
	})
}

func BenchmarkDescending5000(b *testing.B) {
	b.Run("upstream", func(b *testing.B) {
		a := up.NewAssembler(up.NewStreamPool(nopUp{}))
		benchDescending(b, 5000, a.AssembleWithTimestamp, func() { a.FlushAll() })
	})
	b.Run("ours", func(b *testing.B) {
		a := ours.NewAssembler(ours.NewStreamPool(nopOurs{}))
		benchDescending(b, 5000, a.AssembleWithTimestamp, func() { a.FlushAll() })
	})
}
