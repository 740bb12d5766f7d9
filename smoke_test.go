package reassembly

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	up "github.com/google/gopacket/reassembly"
)

type rec struct{ log *[]string }

func (r rec) Accept(tcp *layers.TCP, ci gopacket.CaptureInfo, dir TCPFlowDirection, nextSeq Sequence, start *bool, ac AssemblerContext) bool {
	*start = true
	return true
}
func (r rec) ReassembledSG(sg ScatterGather, ac AssemblerContext) {
	a, s := sg.Lengths()
	d, st, en, sk := sg.Info()
	*r.log = append(*r.log, fmt.Sprintf("SG %v %v %v %d len=%d saved=%d %q %+v", d, st, en, sk, a, s, sg.Fetch(a), sg.Stats()))
}
func (r rec) ReassemblyComplete(ac AssemblerContext) bool {
	*r.log = append(*r.log, "complete")
	return true
}

type fac struct{ log *[]string }

func (f fac) New(n, t gopacket.Flow, tcp *layers.TCP, ac AssemblerContext) Stream {
	*f.log = append(*f.log, "new "+n.String()+" "+t.String())
	return rec{f.log}
}

type urec struct{ log *[]string }

func (r urec) Accept(tcp *layers.TCP, ci gopacket.CaptureInfo, dir up.TCPFlowDirection, nextSeq up.Sequence, start *bool, ac up.AssemblerContext) bool {
	*start = true
	return true
}
func (r urec) ReassembledSG(sg up.ScatterGather, ac up.AssemblerContext) {
	a, s := sg.Lengths()
	d, st, en, sk := sg.Info()
	*r.log = append(*r.log, fmt.Sprintf("SG %v %v %v %d len=%d saved=%d %q %+v", d, st, en, sk, a, s, sg.Fetch(a), sg.Stats()))
}
func (r urec) ReassemblyComplete(ac up.AssemblerContext) bool {
	*r.log = append(*r.log, "complete")
	return true
}

type ufac struct{ log *[]string }

func (f ufac) New(n, t gopacket.Flow, tcp *layers.TCP, ac up.AssemblerContext) up.Stream {
	*f.log = append(*f.log, "new "+n.String()+" "+t.String())
	return urec{f.log}
}

type pkt struct {
	rev                bool
	seq                uint32
	data               string
	syn, fin, rst, ack bool
}

func TestSmoke(t *testing.T) {
	nf := gopacket.NewFlow(layers.EndpointIPv4, net.IP{1, 2, 3, 4}.To4(), net.IP{5, 6, 7, 8}.To4())
	cases := [][]pkt{
		{{syn: true, seq: 100}, {seq: 101, data: "hello"}, {seq: 106, data: "world"}, {fin: true, seq: 111}},
		{{syn: true, seq: 100}, {seq: 106, data: "world"}, {seq: 101, data: "hello"}, {seq: 111, data: "!!", fin: true}},
		{{syn: true, seq: 100}, {seq: 106, data: "world"}, {seq: 120, data: "zz"}},
		{{syn: true, seq: 100}, {rev: true, syn: true, ack: true, seq: 500}, {seq: 101, data: "abc"}, {rev: true, seq: 501, data: "xyz"}, {seq: 104, fin: true}, {rev: true, seq: 504, fin: true}},
	}
	for i, c := range cases {
		var l1, l2 []string
		a := NewAssembler(NewStreamPool(fac{&l1}))
		b := up.NewAssembler(up.NewStreamPool(ufac{&l2}))
		ts := time.Unix(1000, 0)
		for _, p := range c {
			tcp := &layers.TCP{SrcPort: 1000, DstPort: 80, Seq: p.seq, SYN: p.syn, FIN: p.fin, RST: p.rst, ACK: p.ack}
			f := nf
			if p.rev {
				tcp.SrcPort, tcp.DstPort = 80, 1000
				f = nf.Reverse()
			}
			tcp.Payload = []byte(p.data)
			ts = ts.Add(time.Second)
			a.AssembleWithTimestamp(f, tcp, ts)
			ctx := captureContext{Timestamp: ts}
			b.AssembleWithContext(f, tcp, &ctx)
		}
		a.FlushAll()
		b.FlushAll()
		t.Logf("case %d\nours: %q\nupst: %q", i, l1, l2)
	}
}
