package reassembly

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Property: a direction delivers exactly ReassemblyDepth bytes, in
// order, whatever the packet boundaries and ISN; the delivery that reaches
// the depth is marked DepthReached and is the direction's last; the rest is
// counted in BytesBeyondDepth, never buffered; the other direction is not
// affected; the FIN still closes the direction and the Stream is completed
// once.
func TestDepthStopsDirection(t *testing.T) {
	t.Parallel()
	data := []byte(strings.Repeat("0123456789", 30))
	for _, isn := range kitISNs {
		for _, depth := range []int{1, 10, 95, 100, 101, 299} {
			h := newKitRig(t, SafeAssemblerOptions{ReassemblyDepth: depth})
			c := h.conn(isn)
			c.send("S", 0, nil)
			require.NoError(t, c.packet(true, "S", 0, nil))
			for off := 0; off < 200; off += 50 {
				c.send("", off, data[off:off+50])
			}
			// Out of order, past the depth: nothing is buffered.
			c.send("", 250, data[250:])
			require.EqualValues(t, max(0, depth-250), h.a.Stats().PageCache.QueuedBytes, "bytes buffered past the depth")
			c.send("", 200, data[200:250])
			require.NoError(t, c.packet(true, "", 0, data[:120]))
			c.send("F", 300, nil)
			require.NoError(t, c.packet(true, "F", 120, nil))
			s := c.stream()
			require.Equal(t, string(data[:depth]), string(s.shown[0]), "depth %d", depth)
			require.Equal(t, string(data[:min(depth, 120)]), string(s.shown[1]), "the server's direction has its own depth")
			require.EqualValues(t, 1, s.completes.Load())
			if depth < 120 {
				require.Equal(t, 2, s.depthHits, "depth %d: %v", depth, s.sgs)
			} else {
				require.Equal(t, 1, s.depthHits, "depth %d: %v", depth, s.sgs)
			}
			// Nothing after the depth delivery of the client's direction.
			var afterDepth bool
			for _, sg := range s.sgs {
				if strings.HasPrefix(sg, "client->server") {
					require.False(t, afterDepth, "delivery after the depth: %v", s.sgs)
					afterDepth = strings.Contains(sg, "depth=true")
				}
			}
			st := h.a.Stats()
			require.Equal(t, int64(s.depthHits), st.DepthReached)
			require.Equal(t, int64(300-depth+max(0, 120-depth)), st.BytesBeyondDepth)
			require.Zero(t, st.PageCache.QueuedBytes)
			kitRequireConserved(t, st)
		}
	}
}

// Property: holes count towards the depth (it is a stream offset), and a
// FIN seen before the depth is reached ends the direction with the depth
// delivery.
func TestDepthCountsHolesAndEnds(t *testing.T) {
	t.Parallel()
	h := newKitRig(t, SafeAssemblerOptions{ReassemblyDepth: 25})
	c := h.conn(1<<32 - 11)
	c.send("S", 0, nil)
	c.send("", 0, []byte("01234"))
	c.send("", 20, []byte("abcdefghij"))
	c.send("F", 30, nil)
	h.a.FlushWithOptions(FlushOptions{T: h.ts.Add(time.Second)})
	s := c.stream()
	require.Equal(t, "01234???????????????abcde", string(s.shown[0]))
	require.Equal(t, 1, s.depthHits)
	require.Contains(t, s.sgs[len(s.sgs)-1], "end=true depth=true")
	st := h.a.Stats()
	require.Equal(t, int64(5), st.BytesBeyondDepth)
	kitRequireConserved(t, st)
}

// Property: a Stream that implements DepthOverrider sets the depth of each
// direction: > 0 a depth, 0 the assembler's, < 0 none; it may change it
// until the depth is reached, after which the direction stays ended.
func TestDepthOverrider(t *testing.T) {
	t.Parallel()
	data := []byte(strings.Repeat("abcdefghij", 10))
	h := newKitRig(t, SafeAssemblerOptions{ReassemblyDepth: 30})
	calls := 0
	h.f.depth = func(dir TCPFlowDirection) int {
		calls++
		if dir == TCPDirClientToServer {
			return -1 // the client's direction is wanted whole
		}
		return 0 // the server's takes the assembler's 30 bytes
	}
	c := h.conn(0)
	c.send("S", 0, nil)
	require.NoError(t, c.packet(true, "S", 0, nil))
	c.send("", 0, data)
	require.NoError(t, c.packet(true, "", 0, data))
	s := c.stream()
	require.Equal(t, string(data), string(s.shown[0]))
	require.Equal(t, string(data[:30]), string(s.shown[1]))
	require.Equal(t, 4, calls, "once per accepted packet")
	require.NoError(t, c.packet(true, "", 100, data))
	require.Equal(t, 4, calls, "not after the direction reached its depth")

	// Raising the depth before it is reached, then lowering it below what
	// was delivered: the next delivery is the last, and empty.
	depth := 10
	h.f.depth = func(TCPFlowDirection) int { return depth }
	c = h.conn(1)
	c.send("S", 0, nil)
	c.send("", 0, data[:5])
	depth = 50
	c.send("", 5, data[5:40])
	depth = 20
	c.send("", 40, data[40:60])
	s = c.stream()
	require.Equal(t, string(data[:40]), string(s.shown[0]))
	require.Equal(t, 1, s.depthHits)
	require.Contains(t, s.sgs[len(s.sgs)-1], `depth=true skip=0 ""`)
	kitRequireConserved(t, h.a.Stats())
}

// Property: a Stream's depth applies when the assembler has none of its
// own, to the bytes delivered in order as to those buffered first.
func TestDepthOverriderWithoutAssemblerDepth(t *testing.T) {
	t.Parallel()
	data := []byte(strings.Repeat("abcdefghij", 10))
	h := newKitRig(t, SafeAssemblerOptions{})
	h.f.depth = func(TCPFlowDirection) int { return 25 }
	c := h.conn(0)
	c.send("S", 0, nil)
	c.send("", 0, data[:20])
	c.send("", 20, data[20:40])
	s := c.stream()
	require.Equal(t, string(data[:25]), string(s.shown[0]), "in order")
	require.Equal(t, 1, s.depthHits)

	c = h.conn(1)
	c.send("S", 0, nil)
	c.send("", 20, data[20:40])
	c.send("", 0, data[:20])
	s = c.stream()
	require.Equal(t, string(data[:25]), string(s.shown[0]), "out of order")
	require.Equal(t, 1, s.depthHits)
	st := h.a.Stats()
	require.Equal(t, int64(30), st.BytesBeyondDepth)
	kitRequireConserved(t, st)
}

// Property: after its depth, a direction's RST still ends the connection,
// and its packets still count as activity, so that the connection closes
// as usual.
func TestDepthDirectionStillCloses(t *testing.T) {
	t.Parallel()
	h := newKitRig(t, SafeAssemblerOptions{ReassemblyDepth: 3, ConnectionTimeout: time.Minute})
	c := h.conn(9)
	c.send("S", 0, nil)
	c.send("", 0, []byte("abcdef"))
	require.Equal(t, "abc", string(c.stream().shown[0]))
	c.send("R", 6, []byte("zz"))
	require.EqualValues(t, 1, c.stream().completes.Load())
	st := h.a.Stats()
	require.Equal(t, int64(2), st.BytesOnReset)
	kitRequireConserved(t, st)

	c = h.conn(10)
	c.send("S", 0, nil)
	c.send("", 0, []byte("abcdef"))
	// Late packets keep the connection alive: a flush of what is idle
	// since before the last one does not close it.
	for i := range 5 {
		h.ts = h.ts.Add(50 * time.Second)
		c.send("", 6+i, []byte("x"))
	}
	_, closed := h.a.FlushWithOptions(FlushOptions{T: h.ts.Add(-time.Minute), TC: h.ts.Add(-time.Minute)})
	require.Zero(t, closed)
	require.Zero(t, c.stream().completes.Load())
	c.send("F", 11, nil)
	require.NoError(t, c.packet(true, "S", 0, nil))
	require.NoError(t, c.packet(true, "F", 0, nil))
	require.EqualValues(t, 1, c.stream().completes.Load())
}

// Property: a panic in ReassemblyDepth is recovered like one in a Stream.
func TestDepthOverriderPanicRecovered(t *testing.T) {
	t.Parallel()
	var logs strings.Builder
	h := newKitRig(t, SafeAssemblerOptions{Logger: kitLogger(&logs)})
	armed := false
	h.f.depth = func(TCPFlowDirection) int {
		if armed {
			panic("depth bug")
		}
		return 0
	}
	c := h.conn(2)
	c.send("S", 0, nil)
	armed = true
	err := c.packet(false, "", 0, []byte("abc"))
	require.True(t, errors.Is(err, ErrStreamPanic), "%v", err)
	require.Contains(t, logs.String(), "ReassemblyDepth")
	require.EqualValues(t, 1, c.stream().completes.Load())
	kitRequireConserved(t, h.a.Stats())
}

// Property: a direction picked up midstream (no SYN) counts its depth from
// its first delivered byte, also when a buffer limit forces that delivery
// while a packet is being buffered; the packet is then dropped, not
// buffered nor delivered past the depth.
func TestDepthMidstreamForcedDelivery(t *testing.T) {
	t.Parallel()
	h := newKitRig(t, SafeAssemblerOptions{
		ReassemblyDepth:               10,
		MaxBufferedPagesTotal:         1,
		MaxBufferedPagesPerConnection: 1,
	})
	c := h.conn(1000)
	c.send("", 100, []byte("abcdefghijklmnopqrst"))
	c.send("", 200, []byte("ABCDEFGHIJ"))
	s := c.stream()
	require.Equal(t, "abcdefghij", string(s.shown[0]))
	require.Equal(t, 1, s.depthHits)
	require.Equal(t, []string{`client->server end=false depth=true skip=-1 "abcdefghij"`}, s.sgs)
	st := h.a.Stats()
	require.Equal(t, int64(1), st.DepthReached)
	require.Equal(t, int64(20), st.BytesBeyondDepth)
	require.Zero(t, st.PageCache.PagesInUse)
	kitRequireConserved(t, st)
	h.a.FlushAll()
	require.Len(t, s.sgs, 1)
	require.EqualValues(t, 1, s.completes.Load())
}
