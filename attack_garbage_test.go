package reassembly

// Malformed and hostile input (issue 4) and the limits the fuzzer found
// wanting: no panic, every byte accounted, kept bytes bounded. The flood
// kit is kit_traffic_test.go.

import (
	"errors"
	"math/rand"
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// --- garbage ---------------------------------------------------------------

// TestAttackGarbage: nil layers, zero-length segments, RST+SYN+FIN all set,
// data on RST, bare ACKs, undecoded layers, a billion-byte jump in
// sequence, nil contexts. No panic through either face, every byte
// accounted, every Stream completed once, nothing left buffered.
func TestAttackGarbage(t *testing.T) {
	for _, impl := range []string{"ours", "safe"} {
		t.Run("impl="+impl, func(t *testing.T) {
			safe := impl == "safe"
			f := newAtkFactory()
			im := newAtkImpl(impl, f, SafeAssemblerOptions{MaxBufferedPagesTotal: 16, DisableBackgroundFlush: true}, 0, true)
			feed, stats, live, finish := im.assemble, im.stats, im.live, im.flushAll
			g := newAtkGen()
			ts := time.Unix(1_700_000_000, 0)
			c := atkClient(1) // a checked connection: id 1
			isn := atkISN(1, 0)
			pkt := func(src, dst netip.AddrPort, seq, ack uint32, flags byte, n int) error {
				flow, tcp, ac := g.packet(src, dst, seq, ack, flags, n, func(b []byte) {
					for i := range b {
						b[i] = 0xEE
					}
				}, ts)
				return feed(flow, tcp, ac)
			}
			steps := []struct {
				name string
				run  func() error
			}{
				{"nil layer", func() error { return feed(gopacket.Flow{}, nil, nil) }},
				{"nil layer with context", func() error { return feed(atkFlow(c.Addr(), atkServer.Addr()), nil, &kitCtx{}) }},
				{"undecoded layer, zero flow", func() error { return feed(gopacket.Flow{}, &layers.TCP{}, nil) }},
				{"undecoded layer with payload", func() error {
					return feed(gopacket.Flow{}, &layers.TCP{SYN: true, BaseLayer: layers.BaseLayer{Payload: []byte("abc")}}, nil)
				}},
				{"bare ACK creates nothing", func() error {
					before := live()
					err := pkt(atkFloodClient(1), atkServer, 5, 5, atkACK, 0)
					assert.Equal(t, before, live(), "connections after a bare ACK")
					return err
				}},
				{"zero-length segment", func() error { return pkt(atkFloodClient(2), atkServer, 5, 0, 0, 0) }},
				{"SYN FIN RST all set", func() error { return pkt(atkFloodClient(3), atkServer, 7, 0, atkSYN|atkFIN|atkRST, 0) }},
				{"SYN FIN RST PSH ACK with data", func() error {
					return pkt(atkFloodClient(4), atkServer, 0xFFFFFFFF, 1, atkSYN|atkFIN|atkRST|atkPSH|atkACK, 100)
				}},
				{"data on RST", func() error {
					if err := pkt(atkFloodClient(5), atkServer, 10, 0, atkSYN, 0); err != nil {
						return err
					}
					return pkt(atkFloodClient(5), atkServer, 11, 0, atkRST|atkACK, 500)
				}},
				{"ACK without data on a live connection", func() error {
					if err := pkt(c, atkServer, isn, 0, atkSYN, 0); err != nil {
						return err
					}
					if err := pkt(atkServer, c, 77, isn+1, atkSYN|atkACK, 0); err != nil {
						return err
					}
					return pkt(c, atkServer, isn+1, 78, atkACK, 0)
				}},
				{"billion-byte jump", func() error {
					flow, tcp, ac := g.packet(c, atkServer, isn+1+1_000_000_000, 78, atkACK, 300, atkFill(1, 0, 1_000_000_000), ts)
					return feed(flow, tcp, ac)
				}},
				{"data at the start after the jump", func() error {
					flow, tcp, ac := g.packet(c, atkServer, isn+1, 78, atkACK, 100, atkFill(1, 0, 0), ts)
					return feed(flow, tcp, ac)
				}},
				{"jump back by two billion", func() error {
					return pkt(c, atkServer, isn+1+100-2_000_000_000, 78, atkACK, 50)
				}},
				{"IPv6 flow with IPv4 sized garbage", func() error {
					v6 := netip.MustParseAddrPort("[2001:db8::1]:1234")
					return pkt(v6, netip.MustParseAddrPort("[2001:db8::2]:80"), 1, 0, atkSYN|atkRST, 20)
				}},
				{"nil context", func() error {
					flow, tcp, _ := g.packet(atkFloodClient(6), atkServer, 1, 0, atkSYN, 10, nil, ts)
					return feed(flow, tcp, nil)
				}},
			}
			for _, st := range steps {
				var err error
				require.NotPanics(t, func() { err = st.run() }, st.name)
				if safe && !errors.Is(err, ErrNilPacket) && !errors.Is(err, ErrConnectionClosed) {
					assert.NoError(t, err, st.name)
				}
				kitRequireConserved(t, stats())
			}
			s := stats()
			finish()
			end := stats()
			kitRequireConserved(t, end)
			require.NoError(t, f.err)
			// The checked connection delivered its first 100 bytes, then the
			// jump over the hole, reported as a skip of about a billion.
			ck := f.checked[1]
			require.True(t, ck != nil && ck.completes == 1 && ck.bytes[0] == 400 && ck.gaps == 1, "checked connection: %+v", ck)
			assert.GreaterOrEqual(t, end.GapBytes, int64(999_999_000), "GapBytes: the billion-byte jump")
			assert.Equal(t, f.sink.news, f.sink.completes, "Streams created and completed")
			assert.True(t, end.PageCache.PagesInUse == 0 && end.PageCache.QueuedBytes == 0, "left buffered: %+v", end.PageCache)
			assert.False(t, safe && s.Errors == 0, "nil layers reported no error")
			t.Logf("processed %d bytes: delivered %d, overlap %d, overwritten %d, discarded %d; gaps %d (%d bytes)",
				end.BytesProcessed, end.BytesDelivered, end.BytesOverlap, end.BytesOverwritten, end.BytesDiscarded, end.Gaps, end.GapBytes)
		})
	}
}

// --- limits the fuzzer found wanting --------------------------------------

// TestAttackKeepFromBounded: a Stream that keeps what it cannot parse yet
// (KeepFrom(0), as a parser waiting for the end of a header does) lets a
// peer that never ends its header grow the kept bytes. The Safe face holds
// them to MaxBufferedPagesTotal and MaxBufferedBytesPerConnection: past a
// limit the oldest kept bytes are let go and counted in KeptBytesDropped.
func TestAttackKeepFromBounded(t *testing.T) {
	const budget = 8
	opts := kitReplayOpts()
	opts.MaxBufferedPagesTotal, opts.MaxBufferedBytesPerConnection = budget, 4*atkChargedPage
	_, pool, a := newKitSafe(t, opts, func(f *kitFactory) {
		f.keepFrom = func(*rand.Rand, int) int { return 0 } // keeps every byte delivered
	})
	defer pool.Close()
	g := newAtkGen()
	ts := time.Unix(1_700_000_000, 0)
	c := atkClient(0)
	_ = a.AssembleWithContext(g.packet(c, atkServer, 0, 0, atkSYN, 0, nil, ts))
	peak, peakBytes := int64(0), int64(0)
	for i := 0; i < 100; i++ {
		_ = a.AssembleWithContext(g.packet(c, atkServer, 1+uint32(i*1460), 0, atkACK, 1460, atkFill(0, 0, int64(i*1460)), ts))
		pc := a.Stats().PageCache
		peak, peakBytes = max(peak, pc.PagesInUse), max(peakBytes, pc.BytesInUse)
	}
	assert.LessOrEqual(t, peak, int64(budget), "KeepFrom(0) on every delivery: pages in use, against MaxBufferedPagesTotal")
	assert.LessOrEqual(t, peakBytes, int64(4*atkChargedPage), "KeepFrom(0) on every delivery: bytes charged, against MaxBufferedBytesPerConnection")
	assert.NotZero(t, a.Stats().KeptBytesDropped, "KeptBytesDropped: nothing kept was let go, yet the limits held")
}

// TestAttackConservationPoolClosedFirst: closing the SafeStreamPool while
// an assembler is still open flushes the buffered bytes; they are counted
// in PoolStats.Closing, and with it the identity holds (the fuzzer found
// it broken before Closing existed: 40 bytes processed, none accounted).
func TestAttackConservationPoolClosedFirst(t *testing.T) {
	f := newAtkFactory()
	pool := NewSafeStreamPool(f, 0)
	a := newKitAssembler(t, pool, SafeAssemblerOptions{DisableBackgroundFlush: true})
	defer a.Close()
	g := newAtkGen()
	ts := time.Unix(1_700_000_000, 0)
	c := atkClient(0)
	isn := atkISN(0, 0)
	_ = a.AssembleWithContext(g.packet(c, atkServer, isn, 0, atkSYN, 0, nil, ts))
	_ = a.AssembleWithContext(g.packet(c, atkServer, isn+1+10, 0, atkACK, 40, atkFill(0, 0, 10), ts))
	kitRequireConserved(t, a.Stats())
	pool.Close() // delivers the 40 bytes over the hole
	s := f.checked[0]
	require.True(t, s != nil && s.bytes[0] == 40, "pool.Close did not deliver: %+v", s)
	kitRequireConserved(t, kitSumStats([]AssemblerStats{pool.Stats().Closing, a.Stats()}))
}
