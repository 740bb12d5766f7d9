package reassembly

// The fuzz seed corpus: fzBuilder writes inputs, fzSeeds names them, and
// TestFuzzSeedCorpus keeps testdata/fuzz in step with them.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/safepacket/reassembly/internal/capturetest"
)

// fzBuilder writes inputs for FuzzAssembler and FuzzSafeAssembler, for the
// seed corpus and for tests.
type fzBuilder struct{ b []byte }

// fzHdr is the header of an input: see fzDecodeConfig.
type fzHdr struct {
	conns              int // 1..4
	ipv6Odd, sameHost  bool
	twoAssemblers      bool
	maxConns           int // 0 none, else 1..4
	pagesTotal, perCon int // 0..32, 0..16
	bytes64            int // MaxBufferedBytesPerConnection / 64, 0 default
	gaps               int // 0..8
	timeout50ms        int // 0 default, else 1..16
	policy             OverlapPolicy
	depth16            int // ReassemblyDepth / 16, 0 none
	window8            int // ConflictWindow / 8
	isnSel             [fzMaxConns][2]byte
	isnRaw             [fzMaxConns][2]uint32
	cfg                [fzMaxConns]byte
	panicAt            [fzMaxConns]byte
}

func (b *fzBuilder) header(h fzHdr) *fzBuilder {
	x := byte(h.conns-1) & 3
	if h.ipv6Odd {
		x |= 4
	}
	if h.sameHost {
		x |= 8
	}
	if h.twoAssemblers {
		x |= 16
	}
	capv := byte(0)
	if h.maxConns > 0 {
		x |= 32
		capv = byte(h.maxConns - 1)
	}
	t := byte(0)
	if h.timeout50ms > 0 {
		t = byte(h.timeout50ms - 1)
		if t == 0 {
			t = 16 // 16%16+1 = 1
		}
	}
	b.b = append(b.b, x, capv, byte(h.pagesTotal), byte(h.perCon), byte(h.bytes64), byte(h.gaps), t,
		byte(h.policy), byte(h.depth16), byte(h.window8))
	for i := 0; i < h.conns; i++ {
		for d := 0; d < 2; d++ {
			b.b = append(b.b, h.isnSel[i][d])
			if h.isnSel[i][d]%8 == 7 {
				b.b = binary.BigEndian.AppendUint32(b.b, h.isnRaw[i][d])
			}
		}
		b.b = append(b.b, h.cfg[i], h.panicAt[i])
	}
	return b
}

// fzPkt describes one packet op.
type fzPkt struct {
	conn, dir, asm     int
	syn, fin, rst, ack bool
	psh, bogusAck      bool
	version            int
	mode               int // see fzHarness.packet
	arg                int // the mode's argument
	n                  int // payload length, 0..3000
	adv                int // time advance code, 0..15
	nilCtx             bool
}

func (b *fzBuilder) pkt(p fzPkt) *fzBuilder {
	kind := byte(0)
	if p.nilCtx {
		kind = 9
	}
	b.b = append(b.b, byte(p.adv)<<4|kind)
	p0 := byte(p.conn) & 0x3F
	p0 |= byte(p.asm&1) << 6
	p0 |= byte(p.dir&1) << 7
	var fl byte
	for i, f := range []bool{p.syn, p.fin, p.rst, p.ack, p.psh} {
		if f {
			fl |= 1 << i
		}
	}
	fl |= byte(p.version&3) << 5
	if p.bogusAck {
		fl |= 128
	}
	var cl byte
	switch {
	case p.n < 16:
		cl = byte(p.n)
	case p.n < 256:
		cl = 16
	case p.n < 1461:
		cl = 24
	default:
		cl = 30
	}
	b.b = append(b.b, p0, fl, cl<<3|byte(p.mode&7))
	switch p.mode {
	case 3, 7:
		b.b = append(b.b, byte(p.arg))
	case 4, 5:
		b.b = binary.BigEndian.AppendUint16(b.b, uint16(p.arg))
	case 6:
		b.b = binary.BigEndian.AppendUint32(b.b, uint32(p.arg))
	}
	switch {
	case p.n < 16:
	case p.n < 256:
		b.b = append(b.b, byte(p.n))
	default:
		b.b = binary.BigEndian.AppendUint16(b.b, uint16(p.n))
	}
	return b
}

func (b *fzBuilder) op(kind byte, args ...byte) *fzBuilder {
	b.b = append(b.b, kind)
	b.b = append(b.b, args...)
	return b
}

// Op codes of fzHarness.run besides packets.
const (
	fzOpFlush      = 10 // T ago (x10ms, 255: zero), TC ago, assembler
	fzOpFlushOlder = 11 // ago (x10ms), assembler
	fzOpFlushAll   = 12 // assembler
	fzOpNilPacket  = 13 // assembler
	fzOpClose      = 14 // assembler (Safe: close, or replace when closed; drop-in: Dump)
	fzOpClosePool  = 15 // (drop-in: Dump)
)

// handshake appends SYN, SYN-ACK, ACK for conn.
func (b *fzBuilder) handshake(conn int) *fzBuilder {
	b.pkt(fzPkt{conn: conn, syn: true})
	b.pkt(fzPkt{conn: conn, dir: 1, syn: true, ack: true})
	return b.pkt(fzPkt{conn: conn, ack: true})
}

// fzSeeds are the committed seed corpus, by file name; both targets share
// it.
func fzSeeds() map[string][]byte {
	seeds := map[string][]byte{}
	seed := func(name string, h fzHdr, ops func(b *fzBuilder)) {
		b := (&fzBuilder{}).header(h)
		ops(b)
		seeds[name] = b.b
	}

	// 1. A clean connection: handshake, data both ways in order, FINs.
	seed("clean-handshake-fin", fzHdr{conns: 1}, func(b *fzBuilder) {
		b.handshake(0)
		for i := 0; i < 4; i++ {
			b.pkt(fzPkt{ack: true, n: 1460, adv: 1})
			b.pkt(fzPkt{dir: 1, ack: true, n: 300, adv: 1})
		}
		b.pkt(fzPkt{ack: true, fin: true})
		b.pkt(fzPkt{dir: 1, ack: true, fin: true})
	})
	// 2. ISNs at the wrap: 2^32-1 and 2^32-11, data across 2^32.
	seed("isn-wrap", fzHdr{conns: 2, isnSel: [fzMaxConns][2]byte{{2, 3}, {3, 2}}}, func(b *fzBuilder) {
		b.handshake(0).handshake(1)
		for i := 0; i < 3; i++ {
			b.pkt(fzPkt{conn: 0, ack: true, n: 7})
			b.pkt(fzPkt{conn: 1, dir: 1, ack: true, n: 700})
		}
		b.pkt(fzPkt{conn: 0, fin: true, ack: true}).pkt(fzPkt{conn: 1, dir: 1, rst: true})
	})
	// 3. Out of order behind a hole with a small page budget (forced skips).
	seed("hole-page-budget", fzHdr{conns: 1, pagesTotal: 4, perCon: 2, gaps: 2}, func(b *fzBuilder) {
		b.handshake(0)
		for i := 0; i < 8; i++ {
			b.pkt(fzPkt{ack: true, mode: 4, arg: 100, n: 200 + i})
		}
		b.op(fzOpFlushAll, 0)
	})
	// 4. Overlapping retransmissions with different bytes (versions).
	seed("overlap-versions", fzHdr{conns: 1}, func(b *fzBuilder) {
		b.handshake(0)
		b.pkt(fzPkt{ack: true, mode: 4, arg: 50, n: 100})
		for v := 1; v < 4; v++ {
			b.pkt(fzPkt{ack: true, mode: 3, arg: 120, n: 100, version: v})
		}
		b.pkt(fzPkt{ack: true, mode: 5, arg: 1000, n: 300, version: 2})
		b.pkt(fzPkt{ack: true, mode: 3, arg: 30, n: 200, version: 3})
	})
	// 4b. A copy of bytes inside a buffered chunk, rewritten in place by
	// the default policy: the part that holds them says it was rewritten.
	seed("overlap-in-place", fzHdr{conns: 1}, func(b *fzBuilder) {
		b.handshake(0)
		b.pkt(fzPkt{ack: true, mode: 4, arg: 50, n: 100})
		b.pkt(fzPkt{ack: true, mode: 3, arg: 80, n: 20, version: 1})
		b.pkt(fzPkt{ack: true, mode: 5, arg: 1000, n: 50, version: 2})
	})
	// 5. Garbage flags: SYN+FIN+RST, data on RST, bare ACKs, zero length.
	seed("garbage-flags", fzHdr{conns: 2}, func(b *fzBuilder) {
		b.pkt(fzPkt{conn: 0, syn: true, fin: true, rst: true, ack: true, n: 10})
		b.pkt(fzPkt{conn: 0, dir: 1, ack: true})
		b.pkt(fzPkt{conn: 1, syn: true})
		b.pkt(fzPkt{conn: 1, rst: true, n: 40})
		b.pkt(fzPkt{conn: 1, dir: 1, ack: true, bogusAck: true})
		b.pkt(fzPkt{conn: 1, ack: true, n: 0, mode: 6, arg: 1_000_000_000})
		b.op(fzOpNilPacket, 0)
	})
	// 6. A billion-byte jump in sequence.
	seed("billion-jump", fzHdr{conns: 1, pagesTotal: 8}, func(b *fzBuilder) {
		b.handshake(0)
		b.pkt(fzPkt{ack: true, n: 100})
		b.pkt(fzPkt{ack: true, mode: 6, arg: 1_000_000_000, n: 500})
		b.pkt(fzPkt{ack: true, n: 100})
		b.op(fzOpFlush, 0, 255, 0)
	})
	// 7. Connection cap with four connections and two assemblers.
	seed("conn-cap-two-assemblers", fzHdr{conns: 4, maxConns: 2, twoAssemblers: true}, func(b *fzBuilder) {
		for c := 0; c < 4; c++ {
			b.pkt(fzPkt{conn: c, asm: c, syn: true})
			b.pkt(fzPkt{conn: c, asm: c, mode: 4, arg: 10, n: 50})
		}
		b.pkt(fzPkt{conn: 0, dir: 1, syn: true, ack: true, asm: 1})
		b.op(fzOpClose, 0).op(fzOpClose, 0)
		b.pkt(fzPkt{conn: 2, syn: true})
	})
	// 8. No SYN: data only, forced start on one connection, flushes in
	// capture time with a short timeout.
	seed("no-syn-timeouts", fzHdr{conns: 2, timeout50ms: 2, cfg: [fzMaxConns]byte{1, 0}}, func(b *fzBuilder) {
		for i := 0; i < 3; i++ {
			b.pkt(fzPkt{conn: 0, ack: true, mode: 4, arg: 10, n: 30, adv: 3})
			b.pkt(fzPkt{conn: 1, dir: 1, ack: true, mode: 4, arg: 10, n: 30, adv: 3})
		}
		b.op(fzOpFlushOlder, 5, 0)
		b.pkt(fzPkt{conn: 1, ack: true, n: 10, adv: 14})
	})
	// 9. KeepFrom: a short tail kept, and KeepFrom(0) on another connection.
	seed("keepfrom", fzHdr{conns: 2, cfg: [fzMaxConns]byte{1 << 2, 2 << 2}}, func(b *fzBuilder) {
		b.handshake(0).handshake(1)
		for i := 0; i < 5; i++ {
			b.pkt(fzPkt{conn: 0, ack: true, n: 20 + i})
			b.pkt(fzPkt{conn: 1, ack: true, n: 300})
		}
		b.pkt(fzPkt{conn: 0, ack: true, mode: 4, arg: 5, n: 9})
		b.op(fzOpFlushAll, 0)
	})
	// 10. Streams that panic (Safe face) or reject packets, and
	// ReassemblyComplete returning false.
	seed("panics-rejects", fzHdr{conns: 4, cfg: [fzMaxConns]byte{2<<6 | 2, 1<<6 | 1<<4, 3 << 6, 3<<4 | 2}, panicAt: [fzMaxConns]byte{1, 2, 0, 0}}, func(b *fzBuilder) {
		for c := 0; c < 4; c++ {
			b.handshake(c)
			b.pkt(fzPkt{conn: c, ack: true, n: 10})
			b.pkt(fzPkt{conn: c, ack: true, n: 10})
			b.pkt(fzPkt{conn: c, ack: true, rst: true, n: 3})
		}
		b.op(fzOpFlushAll, 1)
		b.pkt(fzPkt{conn: 0, ack: true, n: 10})
	})
	// 11. Close the pool under an open assembler, then go on.
	seed("close-pool-early", fzHdr{conns: 2, twoAssemblers: true}, func(b *fzBuilder) {
		b.handshake(0)
		b.pkt(fzPkt{conn: 0, ack: true, mode: 4, arg: 7, n: 40})
		b.op(fzOpClose, 1)
		b.op(fzOpClosePool)
		b.pkt(fzPkt{conn: 1, syn: true})
		b.op(fzOpClose, 1)
	})
	// 12. Descending arrival, 1-byte segments, tiny byte budget.
	seed("descending-byte-budget", fzHdr{conns: 1, bytes64: 8, gaps: 8}, func(b *fzBuilder) {
		b.handshake(0)
		for i := 40; i > 0; i-- {
			b.pkt(fzPkt{ack: true, mode: 5, arg: 1000 + 2*i, n: 1})
		}
		b.pkt(fzPkt{ack: true, n: 1})
	})
	// 13. FIN out of order, data past the FIN, IPv6 and shared host.
	seed("fin-out-of-order-ipv6", fzHdr{conns: 2, ipv6Odd: true, sameHost: true}, func(b *fzBuilder) {
		b.handshake(1)
		b.pkt(fzPkt{conn: 1, ack: true, fin: true, mode: 4, arg: 100, n: 10})
		b.pkt(fzPkt{conn: 1, ack: true, mode: 4, arg: 20, n: 10})
		b.pkt(fzPkt{conn: 1, ack: true, mode: 5, arg: 1000, n: 100})
		b.pkt(fzPkt{conn: 1, dir: 1, ack: true, fin: true})
	})
	// 14. Overlap policy (Linux), a 320-byte reassembly depth and a
	// 128-byte conflict window: retransmissions with other bytes, of
	// delivered and of buffered data, then data past the depth.
	seed("policy-depth-conflicts", fzHdr{conns: 1, policy: OverlapLinux, depth16: 20, window8: 16}, func(b *fzBuilder) {
		b.handshake(0)
		b.pkt(fzPkt{ack: true, n: 100})
		b.pkt(fzPkt{ack: true, mode: 3, arg: 50, n: 50, version: 1})
		b.pkt(fzPkt{ack: true, mode: 4, arg: 20, n: 60})
		b.pkt(fzPkt{ack: true, mode: 3, arg: 70, n: 90, version: 2})
		b.pkt(fzPkt{ack: true, mode: 5, arg: 1100, n: 30, version: 3})
		b.pkt(fzPkt{ack: true, mode: 5, arg: 1000, n: 400})
		b.pkt(fzPkt{ack: true, n: 100, fin: true})
	})
	return seeds
}

// fzSequenceSeed is one input of FuzzSequence.
type fzSequenceSeed struct {
	isn   uint32
	size  uint16
	order []byte
}

// fzSequenceSeeds are FuzzSequence's committed corpus: the four ISNs of
// issue 4, the middle of the space and a wrap a page in, with segments cut
// small and large, sent in order, reversed, shuffled and duplicated.
func fzSequenceSeeds() map[string]fzSequenceSeed {
	// seed cuts the stream into segments of 1+7c bytes, one per cut c, so
	// that the cuts cover it exactly, and appends order: the swaps of the
	// shuffle, then the duplicates.
	seed := func(isn uint32, cuts []byte, order func(n int) []byte) fzSequenceSeed {
		size := 0
		for _, c := range cuts {
			size += 1 + 7*int(c)
		}
		return fzSequenceSeed{isn, uint16(size), append(append([]byte(nil), cuts...), order(len(cuts))...)}
	}
	inOrder := func(n int) []byte { return nil }
	// reversed makes the shuffle (j chosen for i = n-1 down to 1) a
	// reversal: i swaps with n-1-i in the upper half, with itself below.
	reversed := func(n int) []byte {
		var b []byte
		for i := n - 1; i > 0; i-- {
			b = append(b, byte(min(i, n-1-i)))
		}
		return b
	}
	mixed := func(n int) []byte {
		var b []byte
		for i := n - 1; i > 0; i-- {
			b = append(b, byte(i*37+11))
		}
		return append(b, 1, 1, 3, 0, 7) // then five duplicates
	}
	small := bytes.Repeat([]byte{0, 3, 1}, 20)        // 1-, 22- and 8-byte segments
	large := []byte{208, 208, 208, 208, 100, 208, 50} // about 1460 bytes each
	return map[string]fzSequenceSeed{
		"isn-0-reversed":        seed(0, small, reversed),
		"isn-1-in-order":        seed(1, large, inOrder),
		"isn-max-reversed":      seed(0xFFFFFFFF, large, reversed),
		"isn-max-minus-10-dups": seed(0xFFFFFFF5, small, mixed),
		"isn-half-shuffled":     seed(0x7FFFFFF0, append(small, large...), mixed),
		"isn-wrap-page-cuts":    seed(0xFFFFF000, large, mixed),
		"empty":                 {0xFFFFFFFF, 0, nil},
	}
}

// TestFuzzSeedCorpus checks that the committed corpus is the one fzSeeds
// describes (REASSEMBLY_WRITE_SEEDS=1 writes it), and runs every seed
// through both faces with the operation trace on failure.
func TestFuzzSeedCorpus(t *testing.T) {
	write := os.Getenv("REASSEMBLY_WRITE_SEEDS") != ""
	for name, data := range fzSeeds() {
		content := "go test fuzz v1\n[]byte(" + strconv.Quote(string(data)) + ")\n"
		for _, target := range []string{"FuzzAssembler", "FuzzSafeAssembler"} {
			fzSyncSeed(t, capturetest.Testdata("fuzz", target, name), content, write)
		}
		for _, safe := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/safe=%v", name, safe), func(t *testing.T) { fzRun(t, data, safe) })
		}
	}
	for name, sd := range fzSequenceSeeds() {
		content := fmt.Sprintf("go test fuzz v1\nuint32(%d)\nuint16(%d)\n[]byte(%s)\n", sd.isn, sd.size, strconv.Quote(string(sd.order)))
		fzSyncSeed(t, capturetest.Testdata("fuzz", "FuzzSequence", name), content, write)
	}
}

// fzSyncSeed writes the seed file at path when write is set, and otherwise
// reports it if it is missing or differs from content.
func fzSyncSeed(t *testing.T, path, content string, write bool) {
	t.Helper()
	if write {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != content {
		t.Errorf("%s is missing or stale: run REASSEMBLY_WRITE_SEEDS=1 go test -run TestFuzzSeedCorpus", path)
	}
}
