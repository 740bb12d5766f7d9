package reassembly

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tbStream records what one Stream received.
type tbStream struct {
	data      []byte
	completes int
}

func (s *tbStream) Accept(_ *layers.TCP, _ gopacket.CaptureInfo, _ TCPFlowDirection, _ Sequence, start *bool, _ AssemblerContext) bool {
	*start = true
	return true
}

func (s *tbStream) ReassembledSG(sg ScatterGather, _ AssemblerContext) {
	n, saved := sg.Lengths()
	s.data = append(s.data, sg.Fetch(n)[saved:]...)
}

func (s *tbStream) ReassemblyComplete(AssemblerContext) bool { s.completes++; return true }

type tbFactory struct{ streams []*tbStream }

func (f *tbFactory) New(gopacket.Flow, gopacket.Flow, *layers.TCP, AssemblerContext) Stream {
	s := &tbStream{}
	f.streams = append(f.streams, s)
	return s
}

// tbConn plays one short connection: handshake, "hello" from the client,
// FIN both ways. It returns the client's data segment for replays.
func tbConn(t *testing.T, a *SafeAssembler, c, s netip.AddrPort, isn uint32, ts time.Time) testPacket {
	t.Helper()
	send := func(seg segment) testPacket {
		seg.client, seg.server, seg.ts = c, s, ts
		p := seg.build()
		_ = a.AssembleWithContext(p.netFlow, p.tcp, &benchCtx{ci: p.ci})
		return p
	}
	send(segment{seq: isn, syn: true})
	send(segment{fromServer: true, seq: 9000, ack: isn + 1, syn: true, hasAck: true})
	data := send(segment{seq: isn + 1, ack: 9001, hasAck: true, payload: []byte("hello")})
	send(segment{seq: isn + 6, ack: 9001, hasAck: true, fin: true})
	send(segment{fromServer: true, seq: 9001, ack: isn + 7, hasAck: true, fin: true})
	return data
}

func tbAssembler(t *testing.T, f StreamFactory) (*SafeStreamPool, *SafeAssembler) {
	t.Helper()
	pool := NewSafeStreamPool(f, 0)
	a, err := NewSafeAssembler(pool, SafeAssemblerOptions{DisableBackgroundFlush: true, ConnectionTimeout: time.Hour})
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Close(); _ = pool.Close() })
	return pool, a
}

// Property: after a connection completed, a late copy of its data opens no
// new Stream and is counted as dropped; a new SYN on the same 4-tuple, new
// data past the old end, or any packet after graveTTL opens a new one.
func TestGraveDropsLateCopiesAndReopens(t *testing.T) {
	c := netip.MustParseAddrPort("10.1.0.1:40000")
	s := netip.MustParseAddrPort("10.1.0.2:80")
	t0 := time.Unix(1_700_000_000, 0)
	replay := func(a *SafeAssembler, p testPacket, ts time.Time) error {
		return a.AssembleWithContext(p.netFlow, p.tcp, &benchCtx{ci: gopacket.CaptureInfo{Timestamp: ts}})
	}

	t.Run("late copy dropped", func(t *testing.T) {
		f := &tbFactory{}
		pool, a := tbAssembler(t, f)
		data := tbConn(t, a, c, s, 1000, t0)
		require.Len(t, f.streams, 1)
		require.Equal(t, 1, f.streams[0].completes)
		assert.EqualValues(t, 1, pool.Stats().RecentlyClosed)
		assert.ErrorIs(t, replay(a, data, t0.Add(time.Second)), ErrConnectionClosed)
		assert.Len(t, f.streams, 1, "a late copy opened a phantom Stream")
		assert.EqualValues(t, 5, a.Stats().BytesAfterClose)
		assert.Equal(t, "hello", string(f.streams[0].data))
	})
	t.Run("late SYN-ACK with data dropped", func(t *testing.T) {
		f := &tbFactory{}
		_, a := tbAssembler(t, f)
		tbConn(t, a, c, s, 1000, t0)
		p := segment{client: c, server: s, fromServer: true, seq: 9000, ack: 1001, syn: true, hasAck: true,
			payload: []byte("x"), ts: t0}.build()
		assert.ErrorIs(t, replay(a, p, t0.Add(time.Second)), ErrConnectionClosed)
		assert.Len(t, f.streams, 1, "a late SYN-ACK opened a phantom Stream")
	})
	t.Run("new data past the old end reopens", func(t *testing.T) {
		f := &tbFactory{}
		_, a := tbAssembler(t, f)
		tbConn(t, a, c, s, 1000, t0)
		// The client's FIN took 1006: new bytes start at 1007.
		p := segment{client: c, server: s, seq: 1007, ack: 9002, hasAck: true, payload: []byte("more"), ts: t0}.build()
		require.NoError(t, replay(a, p, t0.Add(time.Second)))
		require.Len(t, f.streams, 2, "new data did not open a new connection")
		assert.Equal(t, "more", string(f.streams[1].data))
	})
	t.Run("new SYN reopens", func(t *testing.T) {
		f := &tbFactory{}
		_, a := tbAssembler(t, f)
		tbConn(t, a, c, s, 1000, t0)
		tbConn(t, a, c, s, 5000, t0.Add(time.Second))
		require.Len(t, f.streams, 2)
		assert.Equal(t, "hello", string(f.streams[1].data))
	})
	t.Run("after the TTL", func(t *testing.T) {
		f := &tbFactory{}
		_, a := tbAssembler(t, f)
		data := tbConn(t, a, c, s, 1000, t0)
		require.NoError(t, replay(a, data, t0.Add(graveTTL+time.Second)))
		assert.Len(t, f.streams, 2, "a packet after the TTL must open a new connection")
	})
	t.Run("flush reaps", func(t *testing.T) {
		f := &tbFactory{}
		pool, a := tbAssembler(t, f)
		tbConn(t, a, c, s, 1000, t0)
		a.FlushCloseOlderThan(t0.Add(time.Second))
		assert.Zero(t, pool.Stats().RecentlyClosed, "a flush past the close keeps the grave")
	})
}

// Property: no shard holds more than maxGravesPerShard graves, however many
// connections complete in it (that the oldest go first is
// TestGraveyardMatchesModel's).
func TestGravesCappedPerShard(t *testing.T) {
	f := &tbFactory{}
	pool, a := tbAssembler(t, f)
	s := netip.MustParseAddrPort("10.2.0.2:80")
	var target *shard
	n := 0
	t0 := time.Unix(1_700_000_000, 0)
	for host := 1; host < 255 && n < maxGravesPerShard+100; host++ {
		for port := 1024; port < 65535 && n < maxGravesPerShard+100; port++ {
			c := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 2, 1, byte(host)}), uint16(port))
			p := segment{client: c, server: s, seq: 1, syn: true}.build()
			k, _ := makeKey(p.netFlow, p.tcp)
			sh := pool.t.shardOf(&k)
			if target == nil {
				target = sh
			}
			if sh != target {
				continue
			}
			tbConn(t, a, c, s, 1000, t0)
			n++
		}
	}
	require.Equal(t, maxGravesPerShard+100, n)
	target.mu.Lock()
	graves, ring := target.graves.live, len(target.graves.ring)
	target.mu.Unlock()
	assert.Equal(t, maxGravesPerShard, graves, "the shard does not hold exactly the cap")
	assert.LessOrEqual(t, ring, maxGravesPerShard)
	assert.EqualValues(t, maxGravesPerShard, pool.Stats().RecentlyClosed)
	assert.Len(t, f.streams, n)
}

// Property: a completed connection leaves only its small grave behind (its
// connection object goes back to the assembler's free list), and reopening the
// same 4-tuple again and again without a flush keeps the shard's grave
// ring at its smallest: the slots the reopened graves leave are reused.
func TestGravesAreSmallAndBounded(t *testing.T) {
	f := &tbFactory{}
	pool, a := tbAssembler(t, f)
	c := netip.MustParseAddrPort("10.3.0.1:40000")
	s := netip.MustParseAddrPort("10.3.0.2:80")
	t0 := time.Unix(1_700_000_000, 0)
	p := segment{client: c, server: s, seq: 1, syn: true}.build()
	k, _ := makeKey(p.netFlow, p.tcp)
	sh := pool.t.shardOf(&k)

	tbConn(t, a, c, s, 1000, t0)
	sh.mu.Lock()
	live := sh.idx.get(pool.t.hash(&k), &k) != nil
	buried := sh.graves.find(pool.t.hash(&k), &k) >= 0
	sh.mu.Unlock()
	free := len(a.eng.free.free)
	assert.False(t, live, "a completed connection stays in the live map")
	assert.True(t, buried, "a completed connection leaves no grave")
	assert.Equal(t, 1, free, "the connection object was not recycled")

	rounds := 3*maxGravesPerShard + 7
	for i := range rounds {
		tbConn(t, a, c, s, uint32(5000+10*i), t0.Add(time.Duration(i+1)*time.Millisecond))
	}
	require.Len(t, f.streams, rounds+1, "every new SYN opens a connection")
	sh.mu.Lock()
	ring, graves := len(sh.graves.ring), sh.graves.live
	sh.mu.Unlock()
	assert.Equal(t, 1, graves)
	assert.LessOrEqual(t, ring, minGraveRing)
	assert.EqualValues(t, 1, pool.Stats().RecentlyClosed)
}

// shardOf returns the shard of a key.
func (t *connTable) shardOf(k *connKey) *shard { return t.shard(t.hash(k)) }

// Property: a packet more than graveTTL after the grave is never taken for
// a late copy, however far apart the two timestamps are (no overflow), and
// one within graveTTL that repeats old bytes is.
func TestGraveLateCopyTimes(t *testing.T) {
	old := &layers.TCP{Seq: 100, ACK: true, BaseLayer: layers.BaseLayer{Payload: []byte("x")}}
	early := time.Unix(-1<<40, 0) // clamped to the smallest nanos
	late := time.Unix(1<<40, 0)   // clamped to the largest
	g := grave{retired: nanos(early), next: [2]Sequence{200, 200}}
	assert.False(t, g.lateCopy(true, old, late), "a packet long after the TTL was dropped")
	assert.True(t, g.lateCopy(true, old, early.Add(time.Second)), "a late copy within the TTL opened a connection")
	g.retired = nanos(time.Unix(1_700_000_000, 0))
	assert.False(t, g.lateCopy(true, old, time.Unix(1_700_000_000, 0).Add(graveTTL+time.Second)))
	assert.True(t, g.lateCopy(false, old, time.Unix(1_700_000_000, 0).Add(graveTTL-time.Second)))
}
