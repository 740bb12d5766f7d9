package reassembly

import (
	"testing"
	"time"

	"github.com/google/gopacket/layers"
	"github.com/safepacket/reassembly/internal/stamp"
	"github.com/stretchr/testify/require"
)

// The engine keeps a reused context (the tcpassembly face's stamp.Context,
// restamped for every packet) by copying it: bytes buffered out of order
// and bytes a Stream keeps with KeepFrom report the time of the packet
// that carried them, not that of the packet being assembled when they are
// delivered. A user's own context is kept as it was handed in.
func TestReusedContextIsCopiedWhenKept(t *testing.T) {
	t.Parallel()
	for _, serialized := range []bool{false, true} {
		// The Stream keeps every delivery's bytes once (KeepFrom(0) on the
		// deliveries that bring no kept bytes) and records, part by part,
		// the capture time of each part's context.
		var parts []string
		r := &trRec{onSG: func(_ *trStream, sg trSG, _ *trDelivery) {
			pw := sg.(PartWalker)
			kept := false
			for i := range pw.NumParts() {
				p := pw.Part(i)
				kept = kept || p.Kept
				parts = append(parts, string(p.Bytes)+"@"+p.CaptureInfo().Timestamp.Format("05"))
			}
			if !kept {
				sg.KeepFrom(0)
			}
		}}
		a := NewAssembler(NewStreamPool(r.ours(t)))
		ctx := &stamp.Context{Serialized: serialized}
		c := kitConnN(1)
		at := func(sec int) time.Time { return time.Unix(int64(sec), 0) }
		send := func(sec int, tcp *layers.TCP) {
			ctx.Stamp(at(sec))
			if serialized {
				// The caller's lock, which a Serialized context promises.
				a.mu.Lock()
				defer a.mu.Unlock()
			}
			a.AssembleWithContext(c.flow(false), tcp, ctx)
		}
		send(1, c.segOff(false, "S", 0, nil))
		send(2, c.segOff(false, "A", 3, []byte("def"))) // held behind "abc"
		send(3, c.segOff(false, "A", 0, []byte("abc"))) // delivered, kept
		send(4, c.segOff(false, "A", 6, []byte("ghi"))) // the kept ones again
		require.Equal(t, []string{"@01", "abc@03", "def@02", "abc@03", "def@02", "ghi@04"}, parts, "serialized=%v", serialized)
	}
}
