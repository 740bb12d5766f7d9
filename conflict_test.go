package reassembly

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"
)

// kitConflictRig is a kitRig that keeps every Conflict whole.
func kitConflictRig(t *testing.T, opts SafeAssemblerOptions) (*kitRig, *[]Conflict) {
	var all []Conflict
	opts.OnConflict = func(c Conflict) { all = append(all, c) }
	return newKitRig(t, opts), &all
}

// Property: a retransmission that differs from bytes delivered within the
// window, and one that differs from buffered bytes, are each reported once
// with both versions, the sender's flows and direction, the Stream, the
// sequence number and stream offset of the first differing range's byte,
// and the capture info of the packet; Old and New are copies.
func TestConflictReportContents(t *testing.T) {
	t.Parallel()
	for _, isn := range kitISNs {
		h, all := kitConflictRig(t, SafeAssemblerOptions{ConflictWindow: 100})
		c := h.conn(isn)
		c.send("S", 0, nil)
		require.NoError(t, c.packet(true, "S", 0, nil))
		c.send("", 0, []byte("GET /index.html"))
		// An injected copy of delivered bytes.
		inj := []byte("GET /evil!.html")
		c.send("", 0, inj)
		inj[0] = 'X' // the report holds copies
		require.Len(t, *all, 1)
		x := (*all)[0]
		require.True(t, x.Delivered)
		require.Equal(t, int64(0), x.Offset)
		require.Equal(t, Sequence(isn+1), x.Seq)
		require.Equal(t, "GET /index.html", string(x.Old))
		require.Equal(t, "GET /evil!.html", string(x.New))
		require.Equal(t, TCPDirClientToServer, x.Direction)
		require.Equal(t, c.netFlow, x.NetFlow)
		require.Equal(t, gopacket.NewFlow(layers.EndpointTCPPort, []byte{byte(c.sport >> 8), byte(c.sport)}, []byte{0, 80}), x.TCPFlow)
		require.Same(t, c.stream(), x.Stream.(*kitStream))
		require.Equal(t, h.ts, x.CaptureInfo.Timestamp)

		// The server buffers bytes out of order in two separate runs; a copy
		// over both that repeats the first and differs in the second gives
		// one report, for the second.
		require.NoError(t, c.packet(true, "", 10, []byte("0123456789")))
		require.NoError(t, c.packet(true, "", 30, []byte("abcdefghij")))
		require.NoError(t, c.packet(true, "", 5, []byte("xxxxx"+"0123456789"+"----------"+"XXcdefghiZ")))
		require.Len(t, *all, 2, "the first run is the same bytes: only the second differs")
		x = (*all)[1]
		require.False(t, x.Delivered)
		require.Equal(t, TCPDirServerToClient, x.Direction)
		require.Equal(t, c.netFlow.Reverse(), x.NetFlow)
		require.Equal(t, int64(30), x.Offset)
		require.Equal(t, Sequence(kitRigServerISN+1+30), x.Seq)
		require.Equal(t, "abcdefghij", string(x.Old))
		require.Equal(t, "XXcdefghiZ", string(x.New))

		st := h.a.Stats()
		require.Equal(t, int64(2), st.OverlapConflicts)
		require.Equal(t, int64(15+10), st.ConflictBytes)
	}
}

// Property: identical retransmissions, of delivered or of buffered bytes,
// are no conflict.
func TestConflictIdenticalRetransmissionsAreNone(t *testing.T) {
	t.Parallel()
	h, all := kitConflictRig(t, SafeAssemblerOptions{ConflictWindow: 1 << 16})
	c := h.conn(7)
	c.send("S", 0, nil)
	data := bytes.Repeat([]byte("hello world "), 400)
	c.send("", 0, data[:3000])
	c.send("", 4000, data[4000:])
	for _, r := range [][2]int{{0, 3000}, {100, 200}, {2500, 4100}, {4000, 4800}, {3000, 4800}} {
		c.send("", r[0], data[r[0]:r[1]])
	}
	h.a.FlushAll()
	require.Empty(t, *all)
	require.Equal(t, string(data), string(c.stream().shown[0]))
	require.Zero(t, h.a.Stats().OverlapConflicts)
}

// Property: with ConflictWindow 0 (the default) delivered bytes are not
// kept, so a differing copy of them is not reported, while a differing
// copy of buffered bytes is; without OnConflict the conflicts are still
// counted.
func TestConflictWindowZeroComparesBufferedOnly(t *testing.T) {
	t.Parallel()
	h := newKitRig(t, SafeAssemblerOptions{OnConflict: func(Conflict) {}})
	c := h.conn(1<<32 - 1)
	c.send("S", 0, nil)
	c.send("", 0, []byte("aaaa"))
	c.send("", 0, []byte("bbbb"))
	c.send("", 10, []byte("cccc"))
	c.send("", 10, []byte("dddd"))
	st := h.a.Stats()
	require.Equal(t, int64(1), st.OverlapConflicts)
	require.Equal(t, int64(4), st.ConflictBytes)

	h2 := newKitRigRaw(t, SafeAssemblerOptions{}, false)
	c = h2.conn(5)
	c.send("S", 0, nil)
	c.send("", 10, []byte("cccc"))
	c.send("", 8, []byte("ddddd"))
	require.Equal(t, int64(1), h2.a.Stats().OverlapConflicts, "counted without a handler")
	require.Equal(t, int64(3), h2.a.Stats().ConflictBytes)
}

// Property: the window keeps the last ConflictWindow delivered bytes and no
// more, across many deliveries (so its ring wraps), and copies that span
// its edge are compared over the part it still holds; a hole starts it
// anew.
func TestConflictWindowBounds(t *testing.T) {
	t.Parallel()
	const window = 1000
	h := newKitRig(t, SafeAssemblerOptions{ConflictWindow: window})
	c := h.conn(1<<32 - 11)
	c.send("S", 0, nil)
	data := make([]byte, 10_000)
	for i := range data {
		data[i] = byte('a' + i%26)
	}
	for off := 0; off < len(data); off += 333 {
		c.send("", off, data[off:min(len(data), off+333)])
	}
	bad := bytes.ToUpper(data)
	// Entirely before the window: not compared.
	c.send("", 5000, bad[5000:6000])
	require.Empty(t, h.got)
	// Straddling the window's oldest byte: the part within is reported.
	c.send("", 8500, bad[8500:9500])
	require.Equal(t, []kitConflict{{9000, true, string(data[9000:9500]), string(bad[9000:9500])}}, h.got)
	// Straddling the delivery point: the delivered part is compared, the
	// rest delivered.
	h.got = nil
	c.send("", 9990, append(bad[9990:10000:10000], "tail"...))
	require.Equal(t, []kitConflict{{9990, true, string(data[9990:]), string(bad[9990:])}}, h.got)
	// After a hole, the window holds only what followed it.
	c = h.conn(1)
	c.send("S", 0, nil)
	c.send("", 0, data[:500])
	c.send("", 1000, data[:500])
	h.a.FlushWithOptions(FlushOptions{T: h.ts.Add(1)}) // skips the hole [500, 1000)
	h.got = nil
	c.send("", 400, bad[:700])
	require.Equal(t, []kitConflict{{1000, true, string(data[:100]), string(bad[600:700])}}, h.got)
}

// Property: a panic in OnConflict is recovered like one in a Stream: the
// call returns an error wrapping ErrStreamPanic, it is counted, and the
// connection is closed and completed once.
func TestConflictHandlerPanicRecovered(t *testing.T) {
	t.Parallel()
	var logs strings.Builder
	h := newKitRig(t, SafeAssemblerOptions{
		OnConflict: func(Conflict) { panic("handler bug") },
		Logger:     kitLogger(&logs),
	})
	c := h.conn(3)
	c.send("S", 0, nil)
	c.send("", 10, []byte("abc"))
	err := c.packet(false, "", 10, []byte("xyz"))
	require.True(t, errors.Is(err, ErrStreamPanic), "%v", err)
	require.Contains(t, logs.String(), "OnConflict")
	st := h.a.Stats()
	require.Equal(t, int64(1), st.PanicsRecovered)
	require.EqualValues(t, 1, c.stream().completes.Load())
	kitRequireConserved(t, st)
	h.a.FlushAll()
	require.EqualValues(t, 1, c.stream().completes.Load())
}

// Property: the delivered-bytes window holds exactly the last limit bytes
// of the contiguous run of deliveries it was given (bytes that do not follow
// the last ones start it anew; an empty delivery changes nothing), whatever
// the sizes of the deliveries, as it grows and wraps; it never allocates
// more than limit bytes.
func TestDeliveredWindowModel(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 300 {
		limit := 1 + r.IntN(5000)
		var w deliveredWindow
		var ref []byte // the contiguous run, ending at end
		end := int64(1<<40) + int64(r.IntN(1000))
		pos := end
		for range 50 {
			if r.IntN(10) == 0 {
				pos += int64(1 + r.IntN(100)) // a hole
			}
			b := make([]byte, r.IntN(3*limit/2+2))
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			w.add(b, pos, limit)
			if len(b) > 0 {
				if pos != end {
					ref = nil
				}
				ref = append(ref, b...)
				pos += int64(len(b))
				end = pos
			}
			require := func(cond bool, what string) {
				if !cond {
					t.Fatalf("round %d: %s (limit %d, held %d, ref %d)", round, what, limit, w.n, len(ref))
				}
			}
			want := ref[max(0, len(ref)-limit):]
			require(w.n == len(want), "holds the last limit bytes")
			require(len(w.buf) <= limit, "never more than limit")
			if w.n == 0 {
				continue
			}
			require(w.end == end, "ends where the run ends")
			got := make([]byte, w.n)
			w.read(got, w.from())
			require(bytes.Equal(got, want), "the bytes")
			from := w.from() + int64(r.IntN(w.n))
			n := 1 + r.IntN(int(w.end-from))
			seg := want[from-w.from() : int(from-w.from())+n]
			require(w.equal(seg, from), "equal on its own bytes")
			bad := bytes.Clone(seg)
			bad[r.IntN(len(bad))]++
			require(!w.equal(bad, from), "unequal on different bytes")
		}
	}
}
