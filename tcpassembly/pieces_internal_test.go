package tcpassembly

import (
	"net"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// pieceRecorder keeps the length of every Reassembly it receives.
type pieceRecorder struct{ lens []int }

func (r *pieceRecorder) New(_, _ gopacket.Flow) Stream { return r }
func (r *pieceRecorder) Reassembled(rs []Reassembly) {
	for _, x := range rs {
		r.lens = append(r.lens, len(x.Bytes))
	}
}
func (r *pieceRecorder) ReassemblyComplete() {}

// A packet held out of order reaches its Stream in pieces of at most
// pageBytes, each its own Reassembly, as upstream's pages were.
func TestHeldPacketComesInPages(t *testing.T) {
	t.Parallel()
	nf, _ := gopacket.FlowFromEndpoints(layers.NewIPEndpoint(net.IP{10, 0, 0, 1}), layers.NewIPEndpoint(net.IP{10, 0, 0, 2}))
	rec := &pieceRecorder{}
	a := NewAssembler(NewStreamPool(rec))
	ts := time.Unix(1, 0)
	big := make([]byte, 2*pageBytes+7)
	a.AssembleWithTimestamp(nf, &layers.TCP{SrcPort: 1, DstPort: 2, Seq: 101, BaseLayer: layers.BaseLayer{Payload: big}}, ts)
	a.AssembleWithTimestamp(nf, &layers.TCP{SrcPort: 1, DstPort: 2, Seq: 100, SYN: true}, ts)
	want := []int{0, pageBytes, pageBytes, 7}
	if len(rec.lens) != len(want) {
		t.Fatalf("pieces %v, want %v", rec.lens, want)
	}
	for i := range want {
		if rec.lens[i] != want[i] {
			t.Fatalf("pieces %v, want %v", rec.lens, want)
		}
	}
}
