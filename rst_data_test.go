package reassembly

import (
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"
)

// Property: on the Safe face, the payload of an RST never enters the
// stream — in order, out of order, or filling a hole, whatever the overlap
// policy — and is counted in BytesOnReset; the RST still ends the
// connection, with an end delivery, once its position is reached.
func TestSafeRSTPayloadNeverDelivered(t *testing.T) {
	t.Parallel()
	for _, p := range opAllPolicies() {
		for _, isn := range opISNs {
			h := newOPHarness(t, SafeAssemblerOptions{OverlapPolicy: p})

			// In order.
			c := h.conn(isn)
			c.send("S", 0, nil)
			c.send("", 0, []byte("hello"))
			c.send("R", 5, []byte("INJECTED"))
			s := c.stream()
			require.Equal(t, "hello", string(s.out))
			require.Equal(t, 1, s.completes)
			require.Contains(t, s.sgs[len(s.sgs)-1], `end=true depth=false skip=0 ""`)

			// Out of order: the RST waits for the bytes before it, and its
			// payload is not buffered.
			c = h.conn(isn)
			c.send("S", 0, nil)
			c.send("R", 5, []byte("INJECTED"))
			require.Zero(t, h.a.Stats().PageCache.QueuedBytes)
			c.send("", 0, []byte("hello"))
			s = c.stream()
			require.Equal(t, "hello", string(s.out))
			require.Equal(t, 1, s.completes)

			// An RST whose payload would fill a hole, or overwrite buffered
			// bytes, changes nothing: the bytes after the RST are not
			// delivered either.
			c = h.conn(isn)
			c.send("S", 0, nil)
			c.send("", 10, []byte("world"))
			c.send("R", 0, []byte("0123456789WORLD"))
			s = c.stream()
			require.Equal(t, "", string(s.out))
			require.Equal(t, 1, s.completes)

			st := h.a.Stats()
			require.Equal(t, int64(8+8+15), st.BytesOnReset)
			require.Equal(t, int64(10), st.BytesDelivered)
			kitRequireConserved(t, st)
		}
	}
}

// Property: the drop-in face keeps upstream's behaviour and delivers the
// payload of an RST (see MIGRATION.md).
func TestDropInRSTPayloadDelivered(t *testing.T) {
	t.Parallel()
	f := &opFactory{streams: map[uint16]*opStream{}}
	a := NewAssembler(NewStreamPool(f))
	netFlow := gopacket.NewFlow(layers.EndpointIPv4, []byte{1, 2, 3, 4}, []byte{5, 6, 7, 8})
	ts := time.Unix(1_700_000_000, 0)
	for _, p := range []*layers.TCP{
		{SrcPort: 1000, DstPort: 80, Seq: 99, SYN: true},
		{SrcPort: 1000, DstPort: 80, Seq: 100, BaseLayer: layers.BaseLayer{Payload: []byte("hello")}},
		{SrcPort: 1000, DstPort: 80, Seq: 105, RST: true, BaseLayer: layers.BaseLayer{Payload: []byte("RST data")}},
	} {
		ts = ts.Add(time.Millisecond)
		a.AssembleWithTimestamp(netFlow, p, ts)
	}
	require.Equal(t, "helloRST data", string(f.streams[1000].out))
}
