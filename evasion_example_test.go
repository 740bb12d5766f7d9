package reassembly_test

import (
	"fmt"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/safepacket/reassembly"
)

// exampleStream prints what it is given.
type exampleStream struct{}

func (exampleStream) Accept(*layers.TCP, gopacket.CaptureInfo, reassembly.TCPFlowDirection, reassembly.Sequence, *bool, reassembly.AssemblerContext) bool {
	return true
}

func (exampleStream) ReassembledSG(sg reassembly.ScatterGather, _ reassembly.AssemblerContext) {
	n, _ := sg.Lengths()
	if n == 0 {
		return
	}
	depth := false
	if d, ok := sg.(reassembly.DepthReporter); ok {
		depth = d.DepthReached()
	}
	fmt.Printf("stream: %q (depth reached: %v)\n", sg.Fetch(n), depth)
}

func (exampleStream) ReassemblyComplete(reassembly.AssemblerContext) bool { return true }

type exampleFactory struct{}

func (exampleFactory) New(gopacket.Flow, gopacket.Flow, *layers.TCP, reassembly.AssemblerContext) reassembly.Stream {
	return exampleStream{}
}

// Resolve overlaps as a Windows Vista host would (the first copy wins),
// report copies that differ, and stop each direction after 20 bytes.
func ExampleOverlapPolicy() {
	policy, err := reassembly.ParseOverlapPolicy("vista") // as in a Snort or Suricata configuration
	if err != nil {
		panic(err)
	}
	a, err := reassembly.NewSafeAssembler(reassembly.NewSafeStreamPool(exampleFactory{}, 0), reassembly.SafeAssemblerOptions{
		OverlapPolicy:   policy,
		ReassemblyDepth: 20,
		OnConflict: func(c reassembly.Conflict) {
			fmt.Printf("conflict at offset %d: %q then %q\n", c.Offset, c.Old, c.New)
		},
		DisableBackgroundFlush: true,
	})
	if err != nil {
		panic(err)
	}
	defer a.Close()
	netFlow := gopacket.NewFlow(layers.EndpointIPv4, []byte{192, 0, 2, 1}, []byte{192, 0, 2, 2})
	ts := time.Unix(1_700_000_000, 0)
	for _, p := range []struct {
		seq     uint32
		syn     bool
		payload string
	}{
		{seq: 1000, syn: true},
		{seq: 1007, payload: "/index.html"}, // out of order
		{seq: 1007, payload: "/evil.html!"}, // a second version of the same bytes
		{seq: 1001, payload: "GET /x"},      // fills the hole
		{seq: 1018, payload: " HTTP/1.1"},   // reaches the depth
	} {
		tcp := &layers.TCP{SrcPort: 40000, DstPort: 80, Seq: p.seq, SYN: p.syn}
		tcp.Payload = []byte(p.payload)
		ts = ts.Add(time.Millisecond)
		if err := a.AssembleWithTimestamp(netFlow, tcp, ts); err != nil {
			panic(err)
		}
	}
	st := a.Stats()
	fmt.Println("conflicts:", st.OverlapConflicts, "bytes past the depth:", st.BytesBeyondDepth)
	// Output:
	// conflict at offset 6: "/index.html" then "/evil.html!"
	// stream: "GET /x/index.html" (depth reached: false)
	// stream: " HT" (depth reached: true)
	// conflicts: 1 bytes past the depth: 6
}
