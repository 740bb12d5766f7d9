package tcpassembly_test

// Tests of the context the face reuses for every packet instead of
// allocating one (internal/stamp).

import (
	"testing"
	"time"

	"github.com/google/gopacket"
	ours "github.com/safepacket/reassembly/tcpassembly"
	"github.com/stretchr/testify/require"
)

// seenRecorder keeps the Seen of every Reassembly it receives.
type seenRecorder struct{ seen []time.Time }

func (r *seenRecorder) New(_, _ gopacket.Flow) ours.Stream { return r }
func (r *seenRecorder) Reassembled(rs []ours.Reassembly) {
	for _, x := range rs {
		r.seen = append(r.seen, x.Seen)
	}
}
func (r *seenRecorder) ReassemblyComplete() {}

// Bytes held out of order keep the capture time of the packet that carried
// them, though the face restamps one context for every packet: the engine
// copies it for what it buffers. Both a held packet of one page and one of
// several pages are checked, and bytes delivered by a flush too.
func TestHeldBytesKeepTheirPacketsTime(t *testing.T) {
	t.Parallel()
	rec := &seenRecorder{}
	a := ours.NewAssembler(ours.NewStreamPool(rec))
	at := func(s int) time.Time { return diffT0.Add(time.Duration(s) * time.Second) }
	nf := diffFlow(0, 0)
	big := string(make([]byte, 4000)) // three pages
	for i, p := range []struct {
		seq         uint32
		flags, data string
	}{
		{100, "S", ""},
		{111, "A", "later"}, // held behind "0123456789"
		{116, "A", big},     // held, after it
		{101, "A", "0123456789"},
		{5000, "A", "flushed"}, // held behind a hole no packet fills
	} {
		tcp := seg(0, p.seq, p.flags, p.data)
		a.AssembleWithTimestamp(nf, &tcp, at(i+1))
	}
	a.FlushAll()
	want := []time.Time{at(1), at(4), at(2), at(3), at(3), at(3), at(5)}
	require.Equal(t, want, rec.seen)
}

// A packet in order costs no allocation: its context is the Assembler's
// own, restamped, where upstream's AssembleWithTimestamp made one per
// packet.
func TestInOrderPacketAllocatesNothing(t *testing.T) {
	a := ours.NewAssembler(ours.NewStreamPool(nopOurs{}))
	nf := diffFlow(0, 0)
	syn := seg(0, 100, "S", "")
	a.AssembleWithTimestamp(nf, &syn, diffT0)
	tcp := seg(0, 101, "A", string(make([]byte, 1000)))
	ts := diffT0
	allocs := testing.AllocsPerRun(1000, func() {
		ts = ts.Add(time.Millisecond)
		a.AssembleWithTimestamp(nf, &tcp, ts)
		tcp.Seq += 1000
	})
	require.Zero(t, allocs)
}
