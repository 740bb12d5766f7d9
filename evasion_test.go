package reassembly

// The evasion suite. Insertion attacks (Ptacek & Newsham, 1998): segments
// the host drops but a sensor may reassemble, and teardown by RSTs the host
// ignores. For each screen, what the default Safe face delivers (the
// attacker's bytes) and what the screen delivers (the host's), on crafted
// packets and on the evasion captures, and the screens' cost. Each
// screen's own tests are beside its code: checksum_test.go, window_test.go
// (the unacknowledged copy: acked_delivery_test.go).

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	upstream "github.com/google/gopacket/reassembly"
	"github.com/stretchr/testify/require"

	"github.com/safepacket/reassembly/internal/capturetest"
)

// Property: a segment with a wrong checksum, carrying other bytes than the
// real one and arriving first, is what the default face delivers; with
// ChecksumCount it is counted and still delivered; with ChecksumDrop the
// host's bytes are delivered and the attacker's counted as discarded.
func TestEvasionBadChecksum(t *testing.T) {
	t.Parallel()
	c := kitConnN(2)
	pkts := func() []*layers.TCP {
		return []*layers.TCP{
			idsSeg(c, false, "S", 0, "", 0, 65535),
			idsSeg(c, true, "S", 0, "", c.seqAt(false, 0), 65535),
			idsSeg(c, false, "", 0, "", c.seqAt(true, 0), 65535),
			corrupt(idsSeg(c, false, "", 0, "EVIL", c.seqAt(true, 0), 65535)),
			idsSeg(c, false, "", 0, "GOOD", c.seqAt(true, 0), 65535),
			idsSeg(c, false, "", 4, " day", c.seqAt(true, 0), 65535),
		}
	}
	for _, tc := range []struct {
		policy  ChecksumPolicy
		want    string
		bad     int64
		dropped int64
	}{
		{ChecksumOff, "EVIL day", 0, 0},
		{ChecksumCount, "EVIL day", 1, 0},
		{ChecksumDrop, "GOOD day", 1, 4},
	} {
		t.Run(tc.policy.String(), func(t *testing.T) {
			t.Parallel()
			opts := kitReplayOpts()
			opts.ChecksumPolicy = tc.policy
			got, st, _ := idsRun(t, c, opts, pkts())
			require.Equal(t, tc.want, got)
			require.Equal(t, tc.bad, st.BadChecksums)
			require.Equal(t, tc.dropped, st.BytesBadChecksum)
			require.Zero(t, st.UnverifiedChecksums)
		})
	}
}

// Property: a segment beyond the window the server advertised (100
// scaled by 2: 400 bytes), which the server drops, is what the default
// face delivers when it arrives first; CheckWindow delivers the copy sent
// once the window opened, and counts the other. Data inside the scaled
// window but past the unscaled one goes on (the scale is applied), an
// older ACK reordered after a newer one does not pull the edge back, and
// a retransmission of bytes already acknowledged goes on as an overlap.
func TestEvasionOutOfWindow(t *testing.T) {
	t.Parallel()
	c := kitConnN(4)
	a400 := strings.Repeat("a", 400)
	pkts := func() []*layers.TCP {
		sAck := c.seqAt(true, 0)
		return []*layers.TCP{
			idsSeg(c, false, "S", 0, "", 0, 65535, wsOpt(7)),
			idsSeg(c, true, "S", 0, "", c.seqAt(false, 0), 100, wsOpt(2)), // a SYN's window is not scaled
			idsSeg(c, false, "", 0, "", sAck, 500),
			idsSeg(c, true, "", 0, "", c.seqAt(false, 0), 100),
			idsSeg(c, false, "", 0, a400[:300], sAck, 500),
			idsSeg(c, false, "", 300, a400[300:], sAck, 500), // past 100, inside 400
			idsSeg(c, false, "", 400, "EVIL", sAck, 500),     // at the edge: dropped by the host
			idsSeg(c, true, "", 0, "", c.seqAt(false, 400), 100),
			idsSeg(c, true, "", 0, "", c.seqAt(false, 0), 100), // an older ACK, reordered: the edge stays
			idsSeg(c, false, "", 0, "aaaa", sAck, 500),         // retransmitted, acknowledged
			idsSeg(c, false, "", 400, "GOOD", sAck, 500),
		}
	}
	got, st, _ := idsRun(t, c, kitReplayOpts(), pkts())
	require.Equal(t, a400+"EVIL", got, "the default face")
	require.Zero(t, st.OutOfWindow)

	opts := kitReplayOpts()
	opts.CheckWindow = true
	got, st, _ = idsRun(t, c, opts, pkts())
	require.Equal(t, a400+"GOOD", got, "CheckWindow")
	require.Equal(t, int64(1), st.OutOfWindow)
	require.Equal(t, int64(4), st.BytesOutOfWindow)
	require.Equal(t, int64(4), st.BytesOverlap, "the retransmission goes on as an overlap")
}

// idsScreens are the insertion screens' settings the benchmark and the
// allocation test compare: none, each alone, both.
var idsScreens = []struct {
	name string
	set  func(*SafeAssemblerOptions)
}{
	{"off", func(*SafeAssemblerOptions) {}},
	{"checksum", func(o *SafeAssemblerOptions) { o.ChecksumPolicy = ChecksumDrop }},
	{"window", func(o *SafeAssemblerOptions) { o.CheckWindow = true }},
	{"both", func(o *SafeAssemblerOptions) { o.ChecksumPolicy, o.CheckWindow = ChecksumDrop, true }},
}

// Property: with the insertion screens on, an in-order packet of an open
// connection still allocates nothing, and every byte is delivered (none
// is screened out of a well-formed connection).
func TestInsertionScreensDoNotAllocate(t *testing.T) {
	pkts := inOrderTraffic(200, 1460)
	ctxs := contexts(pkts)
	for _, sc := range idsScreens[1:] {
		t.Run(sc.name, func(t *testing.T) {
			opts := kitReplayOpts()
			sc.set(&opts)
			f := &atkFactory{sinkAll: true}
			a := newKitAssembler(t, NewSafeStreamPool(f, 10), opts)
			feed := func(j int, p []testPacket, c []benchCtx) { _ = a.AssembleWithContext(p[j].netFlow, p[j].tcp, &c[j]) }
			// The connection opens with the handshake; the steady state is
			// the data and ACKs, fed once each.
			for j := 0; j < 3; j++ {
				feed(j, pkts, ctxs)
			}
			steady, sctx := pkts[3:len(pkts)-2], ctxs[3:len(ctxs)-2]
			i := 0
			allocs := testing.AllocsPerRun(len(steady)-1, func() {
				feed(i, steady, sctx)
				i++
			})
			require.Zero(t, allocs, "allocations per in-order packet")
			st := a.Stats()
			require.Equal(t, st.BytesProcessed, st.BytesDelivered, "%+v", st)
			require.Zero(t, st.BadChecksums+st.OutOfWindow+st.UnverifiedChecksums)
		})
	}
}

// BenchmarkInsertionScreens is the cost of the insertion screens on one
// long in-order connection (1460-byte segments both ways, each ACKed),
// the Safe face's cheapest traffic, where their share is the largest; the
// count consumer never reads the bytes, the copy consumer copies them out
// as a parser would:
//
//	go test -run X -bench InsertionScreens -count 10 > ids.out
//	benchstat -col /screens ids.out
func BenchmarkInsertionScreens(b *testing.B) {
	pkts := inOrderTraffic(2000, 1460)
	var payload int64
	for _, p := range pkts {
		payload += int64(len(p.tcp.Payload))
	}
	scratch := make([]byte, 0, 64<<10)
	for _, consumer := range []string{"count", "copy"} {
		for _, sc := range idsScreens {
			b.Run("consumer="+consumer+"/screens="+sc.name, func(b *testing.B) {
				ctxs := contexts(pkts)
				for i := range ctxs {
					ctxs[i].scratch = &scratch
				}
				opts := benchSafeOptions
				sc.set(&opts)
				b.SetBytes(payload / int64(len(pkts)))
				var cpu time.Duration
				b.ResetTimer()
				for left := b.N; left > 0; {
					// A fresh assembler per replay, not timed: the trace
					// opens and closes its one connection.
					b.StopTimer()
					var f StreamFactory = &atkFactory{sinkAll: true}
					if consumer == "copy" {
						bf := &benchFactory{copyBytes: true}
						bf.init(1, 4)
						f = bf
					}
					a, err := NewSafeAssembler(NewSafeStreamPool(f, 0), opts)
					if err != nil {
						b.Fatal(err)
					}
					n := min(left, len(pkts))
					b.StartTimer()
					c0 := processCPU()
					for j := 0; j < n; j++ {
						_ = a.AssembleWithContext(pkts[j].netFlow, pkts[j].tcp, &ctxs[j])
					}
					cpu += processCPU() - c0
					b.StopTimer()
					_ = a.Close()
					b.StartTimer()
					left -= n
				}
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/pkt")
			})
		}
	}
}

// Property: on the shipped captures, real traffic, CheckWindow changes
// nothing (no false positive) but in sv-stream-out-of-window, whose one
// data segment lies beyond the window the SYN-ACK advertised (Suricata's
// tcp-session-stream-out-of-window test), and kept out there, and in
// sv-urgent11, whose exploit segment follows the client's RST at its next
// byte (the host has no connection left to take it).
func TestInsertionScreensOnCaptures(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(capturetest.Testdata("captures", "*.pcap*"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			plain, _ := idsReplay(t, path, SafeAssemblerOptions{})
			windowed, st := idsReplay(t, path, SafeAssemblerOptions{CheckWindow: true})
			switch name {
			case "sv-stream-out-of-window.pcap":
			case "sv-urgent11.pcap":
				require.Equal(t, int64(1024), st.BytesAfterReset)
				require.Zero(t, st.BytesDelivered)
				return
			default:
				require.Equal(t, plain, windowed)
				require.Zero(t, st.OutOfWindow+st.BytesAfterReset)
				return
			}
			require.Equal(t, int64(1), st.OutOfWindow)
			require.Equal(t, int64(11), st.BytesOutOfWindow)
			require.Zero(t, st.BytesDelivered)
		})
	}
}

// idsRec feeds pkts, timed as idsRun times them, to a fresh upstream
// Assembler (upstream) or Safe face with opts (the connection kept after
// its Stream completes, keep), recorded by a trRec, and returns the
// client's bytes, Stream by Stream as idsRun does.
func idsRec(t *testing.T, c kitConn, pkts []*layers.TCP, upstreamFace, keep bool, opts SafeAssemblerOptions) (string, AssemblerStats) {
	t.Helper()
	trp := make([]trPacket, len(pkts))
	ts := kitT0
	for i, p := range pkts {
		ts = ts.Add(1e6)
		trp[i] = trPacket{flow: c.flow(p.SrcPort == kitServerPort), tcp: p, ctx: &trCtx{Timestamp: ts}}
	}
	r := &trRec{keepOpen: keep}
	var st AssemblerStats
	if upstreamFace {
		a, pv := trUp(r, upstream.AssemblerOptions{}, trp)
		require.Nil(t, pv)
		a.FlushAll()
	} else {
		a, _, _ := trSafe(t, r, opts, trp)
		a.FlushAll()
		st = a.Stats()
		kitRequireConserved(t, st)
	}
	var got []string
	for _, s := range r.streams {
		got = append(got, s.data(false))
	}
	return strings.Join(got, "|"), st
}

// Property: teardown by an RST outside the window. An RST from the client
// at or past the right edge of the window the server advertised (100
// bytes), which the server drops, ends the default face's stream (here
// when the server's ACK passes it): the attacker's data after it escapes
// the stream, into a second Stream picked up at the flush. With the IDS options it ends nothing and
// is counted, and the whole conversation is one stream. The same for an
// RST before the next byte the server expects, which it acknowledged past
// bytes the capture missed.
func TestEvasionResetOutOfWindow(t *testing.T) {
	t.Parallel()
	c := kitConnN(7)
	sAck := c.seqAt(true, 0)
	x96, y100 := strings.Repeat("x", 96), strings.Repeat("y", 100)
	beyond := append(idsHandshake(c, 100),
		idsSeg(c, false, "", 0, "GET ", sAck, 100),
		idsSeg(c, false, "R", 150, "", sAck, 0), // the edge is at 100
		idsSeg(c, true, "", 0, "", c.seqAt(false, 100), 100),
		idsSeg(c, false, "", 4, x96, sAck, 100),
		idsSeg(c, true, "", 0, "", c.seqAt(false, 200), 100),
		idsSeg(c, false, "", 100, y100, sAck, 100))
	got, _ := idsRec(t, c, beyond, true, false, SafeAssemblerOptions{})
	require.Equal(t, "GET "+x96+y100, got, "upstream ignores an RST out of order")
	got, st, _ := idsRun(t, c, kitReplayOpts(), beyond)
	require.Equal(t, "GET "+x96+"|"+y100, got, "the default face")
	require.Zero(t, st.ResetsOutOfWindow)
	got, st, pool := idsRun(t, c, idsOptions(), beyond)
	require.Equal(t, "GET "+x96+y100, got, "the IDS options")
	require.Equal(t, int64(1), st.ResetsOutOfWindow)
	require.Zero(t, st.ResetsNotExact+st.BytesAfterReset+st.OutOfWindow)
	require.Equal(t, int64(1), pool.Stats().TotalCreated)

	before := append(idsHandshake(c, 1000),
		idsSeg(c, false, "", 0, "GET ", sAck, 1000),
		idsSeg(c, true, "", 0, "", c.seqAt(false, 8), 1000), // the capture missed bytes 4 to 8
		idsSeg(c, false, "R", 4, "", sAck, 0),
		idsSeg(c, false, "", 8, "more", sAck, 1000),
		idsSeg(c, true, "", 0, "", c.seqAt(false, 12), 1000))
	got, _, _ = idsRun(t, c, kitReplayOpts(), before)
	require.Equal(t, "GET |more", got, "the default face")
	got, st, _ = idsRun(t, c, idsOptions(), before)
	require.Equal(t, "GET more", got, "the IDS options")
	require.Equal(t, int64(1), st.ResetsOutOfWindow)
	require.Equal(t, int64(4), st.GapBytes)
}

// Property: an RST inside the window but past the next byte the server
// expects, which a host answers with a challenge ACK (RFC 5961 §3.2),
// cuts the default face's stream at the RST, so that the attacker chooses
// where the sensor stops; with the IDS options the conversation goes on,
// the RST counted.
func TestEvasionResetNotAtNextByte(t *testing.T) {
	t.Parallel()
	c := kitConnN(8)
	sAck := c.seqAt(true, 0)
	pkts := append(idsHandshake(c, 1000),
		idsSeg(c, false, "", 0, "GET ", sAck, 1000),
		idsSeg(c, false, "R", 8, "", sAck, 0),
		idsSeg(c, false, "", 4, "/index.html", sAck, 1000))
	got, _ := idsRec(t, c, pkts, true, false, SafeAssemblerOptions{})
	require.Equal(t, "GET /index.html", got, "upstream ignores an RST out of order")
	got, st, _ := idsRun(t, c, kitReplayOpts(), pkts)
	require.Equal(t, "GET /ind", got, "the default face")
	require.Equal(t, int64(7), st.BytesAfterEnd)
	got, st, _ = idsRun(t, c, idsOptions(), pkts)
	require.Equal(t, "GET /index.html", got, "the IDS options")
	require.Equal(t, int64(1), st.ResetsNotExact)
	require.Zero(t, st.ResetsOutOfWindow+st.BytesAfterEnd)
}

// Property: a side that sent its FIN is held to the same RST rule as an
// open one: with the IDS options, a forged RST from it away from the byte
// after its FIN ends nothing (counted), so the other side's data goes on
// being delivered; an RST at that byte ends the connection, and what
// follows is data after the RST.
func TestEvasionResetAfterFIN(t *testing.T) {
	t.Parallel()
	c := kitConnN(10)
	sAck := c.seqAt(true, 1) // past the server's FIN
	run := func(rst int) (string, AssemblerStats) {
		got, st, _ := idsRun(t, c, idsOptions(), append(idsHandshake(c, 1000),
			idsSeg(c, true, "F", 0, "", c.seqAt(false, 0), 1000),
			idsSeg(c, false, "", 0, "0123", sAck, 1000),
			idsSeg(c, true, "R", rst, "", 0, 0),
			idsSeg(c, false, "", 4, "4567", sAck, 1000),
			idsSeg(c, true, "", 1, "", c.seqAt(false, 8), 1000)))
		return got, st
	}
	got, st := run(500)
	require.Equal(t, "01234567", got, "a forged RST inside the window")
	require.Equal(t, int64(1), st.ResetsNotExact)
	require.Zero(t, st.BytesAfterReset)
	got, st = run(1)
	require.Equal(t, "0123", got, "an RST at the byte after the FIN")
	require.Equal(t, int64(4), st.BytesAfterReset)
	require.Zero(t, st.ResetsNotExact+st.ResetsOutOfWindow)
}

// Property: a side past its reassembly depth is held to the same RST rule:
// with the IDS options, a forged RST from it away from its receiver's next
// byte ends nothing (counted), so the other side's bytes under their depth
// are still delivered; one at that byte (here the acknowledged end of
// the bytes past the depth) ends the connection, and what follows is data
// after the RST.
func TestEvasionResetPastDepth(t *testing.T) {
	t.Parallel()
	c := kitConnN(11)
	opts := idsOptions()
	opts.ReassemblyDepth = 8
	run := func(rst int) AssemblerStats {
		_, st, _ := idsRun(t, c, opts, append(idsHandshake(c, 1000),
			idsSeg(c, false, "", 0, "abcdefghij", c.seqAt(true, 0), 1000),
			idsSeg(c, true, "", 0, "01", c.seqAt(false, 10), 1000),
			idsSeg(c, false, "R", rst, "", 0, 0),
			idsSeg(c, true, "", 2, "23", c.seqAt(false, 10), 1000)))
		require.Equal(t, int64(2), st.BytesBeyondDepth)
		return st
	}
	st := run(500)
	require.Equal(t, int64(8+4), st.BytesDelivered, "a forged RST inside the window")
	require.Equal(t, int64(1), st.ResetsNotExact)
	require.Zero(t, st.BytesAfterReset)
	st = run(10)
	require.Equal(t, int64(8+2), st.BytesDelivered, "an RST at the server's acknowledgement")
	require.Equal(t, int64(2), st.BytesAfterReset)
	require.Zero(t, st.ResetsNotExact+st.ResetsOutOfWindow)
}

// Property: data after an RST the host accepted (at the server's next
// byte) is what the default face delivers, in a second Stream picked up
// at the flush; the host has no connection left to take it. With the
// IDS options it is counted (BytesAfterReset), whichever side sends it,
// and reported as for a closed connection; a SYN still opens a new
// conversation on the 4-tuple. The same for an RST at the server's
// acknowledgement past bytes the capture missed, and for data sent to a
// connection whose Stream chose to stay after the RST.
func TestEvasionDataAfterReset(t *testing.T) {
	t.Parallel()
	c := kitConnN(9)
	sAck := c.seqAt(true, 0)
	pkts := append(idsHandshake(c, 1000),
		idsSeg(c, false, "", 0, "GET ", sAck, 1000),
		idsSeg(c, false, "R", 4, "", sAck, 0),
		idsSeg(c, false, "", 4, "EVIL", sAck, 1000),
		idsSeg(c, true, "", 0, "HTTP", c.seqAt(false, 4), 1000))
	got, _ := idsRec(t, c, pkts, true, false, SafeAssemblerOptions{})
	require.Equal(t, "GET ", got, "upstream: the RST's half stays closed")
	got, st, _ := idsRun(t, c, kitReplayOpts(), pkts)
	require.Equal(t, "GET |EVIL", got, "the default face")
	require.Zero(t, st.BytesAfterReset)
	got, st, pool := idsRun(t, c, idsOptions(), pkts)
	require.Equal(t, "GET ", got, "the IDS options")
	require.Equal(t, int64(8), st.BytesAfterReset)
	require.Zero(t, st.ResetsOutOfWindow+st.ResetsNotExact)
	require.Equal(t, int64(1), pool.Stats().TotalCreated)

	reopened := append(pkts, idsHandshake(c.withISNs(7000, 9000), 1000)...)
	reopened = append(reopened, idsSeg(c.withISNs(7000, 9000), false, "", 0, "next", c.withISNs(7000, 9000).seqAt(true, 0), 1000))
	got, _, pool = idsRun(t, c, idsOptions(), reopened)
	require.Equal(t, "GET |next", got, "a new conversation after the RST")
	require.Equal(t, int64(2), pool.Stats().TotalCreated)

	acked := append(idsHandshake(c, 1000),
		idsSeg(c, false, "", 0, "GET ", sAck, 1000),
		idsSeg(c, true, "", 0, "", c.seqAt(false, 8), 1000), // the capture missed bytes 4 to 8
		idsSeg(c, false, "R", 8, "", sAck, 0),
		idsSeg(c, false, "", 8, "EVIL", sAck, 1000))
	got, st = idsRec(t, c, pkts, false, true, idsOptions())
	require.Equal(t, "GET ", got, "a connection kept by its Stream after the RST")
	require.Equal(t, int64(8), st.BytesAfterReset)

	got, st, _ = idsRun(t, c, idsOptions(), acked)
	require.Equal(t, "GET ", got, "an RST at the server's acknowledgement")
	require.Equal(t, int64(4), st.BytesAfterEnd, "held behind the hole with the RST, then cut at it")
}

// idsCaptureRun reassembles a capture with the Safe face and opts, its
// directions named as the reference names them (confReassemble).
func idsCaptureRun(t *testing.T, path string, opts SafeAssemblerOptions) (*confRun, AssemblerStats) {
	t.Helper()
	opts.DisableBackgroundFlush, opts.Logger = true, kitQuietLogger()
	// The Safe face's own rules start a direction: Accept leaves start.
	rec := &trRec{}
	a, _, _ := trSafe(t, rec, opts, nil)
	run := confReassemble(t, path, rec, func(nf gopacket.Flow, tcp *layers.TCP, ac *trCtx) { _ = a.AssembleWithContext(nf, tcp, ac) },
		func() { a.FlushAll() })
	st := a.Stats()
	kitRequireConserved(t, st, "%s", path)
	return run, st
}

// Property: on the evasion captures of suricata-verify, the IDS options
// (ChecksumDrop, CheckWindow and its RST rules) deliver, direction by
// direction, what the host accepted: Wireshark's reference where the host
// took every byte the capture shows, less what the capture's attack sent
// past the host, each exception argued from the capture; the default Safe
// face delivers the attacker's version where the two differ. The
// reference is read from testdata/expected, never from our output.
func TestEvasionCaptures(t *testing.T) {
	t.Parallel()
	// host says what the host accepted of each direction: "ref" all of
	// the reference, "" nothing; a direction not named is expected
	// nowhere. dflt is what the default Safe face delivers where it
	// differs from host.
	type dir struct{ host, dflt string }
	for _, tc := range []struct {
		name string
		why  string
		// offload: the capture was taken on a host with checksum
		// offload, whose every segment carries a wrong checksum: the IDS
		// options then count checksums instead of dropping (ChecksumDrop
		// would drop all of that host's traffic: checked apart).
		offload string
		dirs    map[string]dir
	}{
		{name: "sv-bug-3286-01-no-evasion.pcap", why: "a clean HTTP exchange: the baseline",
			dirs: map[string]dir{
				"192.168.1.43.35488-192.168.1.90.80.bin": {host: "ref"},
				"192.168.1.90.80-192.168.1.43.35488.bin": {host: "ref"},
			}},
		{name: "sv-bug-3286-03-windows-evasion.pcap",
			why: "an RST and a FIN answer the client's SYN before the SYN-ACK; the Windows client ignores them, completes the handshake and sends " +
				"its request, which the server acknowledges (packet 7), and acknowledges the response (packet 9): both hosts took every byte",
			dirs: map[string]dir{
				"192.168.1.27.58432-192.168.1.90.80.bin": {host: "ref"},
				"192.168.1.90.80-192.168.1.27.58432.bin": {host: "ref"},
			}},
		{name: "sv-stream-out-of-window.pcap",
			why: "the one data segment starts 100,000 bytes past the 256-byte window of the SYN-ACK (no window scale): the server drops it",
			dirs: map[string]dir{
				"192.0.2.10.43210-198.51.100.5.80.bin": {host: "", dflt: "ref"},
			}},
		{name: "sv-rst-unacked-03-gap.pcap",
			why: "the server's bytes, a hole the capture missed among them, all precede the client's RST, which is at the client's next byte; " +
				"the reference's client bytes are the RST's own data, which a host never takes",
			dirs: map[string]dir{
				"2.2.2.2.8080-1.1.1.1.12345.bin": {host: "ref"},
				"1.1.1.1.12345-2.2.2.2.8080.bin": {host: ""},
			}},
		{name: "sv-rst-unacked-10.pcap",
			why: "a download with lost and reordered segments, all inside the client's window (256 scaled by 2^8), ended by the client's RST at its next byte",
			dirs: map[string]dir{
				"10.3.11.101.49309-174.56.47.59.80.bin": {host: "ref"},
				"174.56.47.59.80-10.3.11.101.49309.bin": {host: "ref"},
			}},
		{name: "sv-eve-overlap-exact.pcap",
			why: "GOOD, then EVIL over the same 4 bytes: the first copy was in order, handed to the server's application at once, so " +
				"every stack keeps it (the reference's first copy), and the server acknowledges 4 bytes",
			dirs: map[string]dir{
				"1.1.1.1.12345-2.2.2.2.8080.bin": {host: "ref"},
			}},
		{name: "sv-smb-eicar-overlap.pcap", offload: "192.168.1.100",
			why: "SMB carrying EICAR; the server's last segment is sent twice, the same bytes; every segment of the client, where the " +
				"capture was taken, has the wrong checksum of NIC offload, and the server acknowledges each of them",
			dirs: map[string]dir{
				"192.168.1.100.48234-192.168.1.3.445.bin": {host: "ref"},
				"192.168.1.3.445-192.168.1.100.48234.bin": {host: "ref"},
			}},
		{name: "sv-urgent11.pcap",
			why: "the client resets its handshake with an RST at its next byte, then sends the exploit's 1024 bytes without a new SYN: " +
				"the server has no connection left to take them (it answers them with an RST)",
			dirs: map[string]dir{
				"192.168.1.24.31337-178.128.142.56.443.bin": {host: "", dflt: "ref"},
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := capturetest.Testdata("captures", tc.name)
			ref := func(file string) string {
				b, err := os.ReadFile(capturetest.Testdata("expected", tc.name, file))
				require.NoError(t, err)
				return string(b)
			}
			want := func(which, file string) string {
				if which == "ref" {
					return ref(file)
				}
				return which
			}
			got := func(run *confRun, file string) string {
				if d := run.files[file]; d != nil {
					return string(d.data)
				}
				return ""
			}
			ids := SafeAssemblerOptions{ChecksumPolicy: ChecksumDrop, CheckWindow: true}
			if tc.offload != "" {
				ids.ChecksumPolicy = ChecksumCount
			}
			hostRun, st := idsCaptureRun(t, path, ids)
			plainRun, _ := idsCaptureRun(t, path, SafeAssemblerOptions{})
			for file, d := range tc.dirs {
				require.Equal(t, want(d.host, file), got(hostRun, file), "IDS options, %s: %s", file, tc.why)
				dflt := d.dflt
				if dflt == "" && d.host != "" {
					dflt = d.host
				}
				if d.dflt != "" || d.host != "" {
					require.Equal(t, want(dflt, file), got(plainRun, file), "default Safe face, %s", file)
				}
			}
			for file, d := range hostRun.files {
				if _, named := tc.dirs[file]; !named {
					require.Empty(t, d.data, "IDS options: a direction the capture does not have: %s", file)
				}
			}
			if tc.offload == "" {
				require.Zero(t, st.BadChecksums)
				return
			}
			// ChecksumDrop on such a capture drops all that host sent.
			ids.ChecksumPolicy = ChecksumDrop
			_, st = idsCaptureRun(t, path, ids)
			var sent int64
			for file, d := range tc.dirs {
				if strings.HasPrefix(file, tc.offload+".") && d.host == "ref" {
					sent += int64(len(ref(file)))
				}
			}
			require.Equal(t, sent, st.BytesBadChecksum, "ChecksumDrop drops every byte of the offloading host")
		})
	}
}
