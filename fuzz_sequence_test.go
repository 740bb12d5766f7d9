package reassembly

// FuzzSequence: one direction cut into segments in any order, from any ISN.

import (
	"fmt"
	"hash/crc32"
	"net/netip"
	"testing"
	"time"
)

// FuzzSequence cuts a stream of n bytes (n from the input, at most 64 KiB)
// into segments at the input's cut points, sends them in the input's order
// with duplicates from an ISN anywhere in the sequence space (so the stream
// may wrap at 2^32 anywhere), then the FIN, through both faces, and checks
// that each delivers exactly the stream, with no hole and one end.
func FuzzSequence(f *testing.F) {
	fzAddCorpus(f, "FuzzSequence")
	f.Add(uint32(0xFFFFFFF0), uint16(100), []byte{5, 10, 20, 3, 2, 1, 0})
	f.Fuzz(func(t *testing.T, isn uint32, size uint16, cuts []byte) {
		n := int(size)
		stream := make([]byte, n)
		for i := range stream {
			stream[i] = fzTruth(0, 0, int64(i))
		}
		// Segments: cut points from the input, in the order given by it.
		type seg struct{ off, n int }
		var segs []seg
		for off, i := 0, 0; off < n; i++ {
			l := 1 + n/4
			if i < len(cuts) {
				l = 1 + int(cuts[i])*7
			}
			l = min(l, n-off)
			segs = append(segs, seg{off, l})
			off += l
		}
		// Permute with the remaining input bytes, then duplicate some.
		rest := cuts[min(len(cuts), len(segs)):]
		for i := len(segs) - 1; i > 0 && len(rest) > 0; i-- {
			j := int(rest[0]) % (i + 1)
			rest = rest[1:]
			segs[i], segs[j] = segs[j], segs[i]
		}
		for _, b := range rest {
			if len(segs) > 0 && len(segs) < 4096 {
				segs = append(segs, segs[int(b)%len(segs)])
			}
		}
		client := netip.MustParseAddrPort("10.1.0.1:40000")
		server := netip.MustParseAddrPort("10.1.0.2:80")
		ts := time.Unix(1_700_000_000, 0)
		var pkts []testPacket
		pkts = append(pkts, segment{client: client, server: server, seq: isn, syn: true, ts: ts}.build())
		for _, s := range segs {
			pkts = append(pkts, segment{client: client, server: server, seq: isn + 1 + uint32(s.off), hasAck: true,
				payload: stream[s.off : s.off+s.n], ts: ts}.build())
		}
		pkts = append(pkts, segment{client: client, server: server, seq: isn + 1 + uint32(n), fin: true, hasAck: true, ts: ts}.build())
		for _, impl := range []string{"ours", "safe"} {
			rec := &atkCRCStream{
				pattern: func(off int64, b []byte) { copy(b, stream[min(off, int64(n)):]) },
				check:   fzSeqParts(Sequence(isn).Add(1)),
			}
			// Limits far above what an input can send: any skip is a fault.
			im := newAtkImpl(impl, atkCRCFactory{rec}, atkSafeInsertOptions, 0, false)
			for _, p := range pkts {
				// AssembleWithTimestamp: the one entry point the other
				// tests leave out.
				if impl == "safe" {
					if err := im.safe.AssembleWithTimestamp(p.netFlow, p.tcp, p.ci.Timestamp); err != nil {
						t.Fatalf("safe: %v", err)
					}
				} else {
					im.ours.AssembleWithTimestamp(p.netFlow, p.tcp, p.ci.Timestamp)
				}
			}
			// The server never answered: its direction closes at the end.
			im.flushAll()
			t.Logf("impl=%s isn=%#x n=%d", impl, isn, n)
			rec.verify(t, int64(n), crc32.ChecksumIEEE(stream))
		}
	})
}

// fzSeqParts checks the parts of a delivery of the stream whose first byte
// has sequence number first (kitCheckParts): each where its sequence
// number says and marked as a data packet's (only the ACK flag).
func fzSeqParts(first Sequence) func(sg ScatterGather, off int64, data []byte) error {
	return func(sg ScatterGather, off int64, _ []byte) error {
		return kitCheckParts(sg, func(i, at int, p Part) error {
			switch {
			case p.Seq != first.Add(int(off)+at):
				return fmt.Errorf("part %d at stream offset %d has sequence number %d", i, int(off)+at, p.Seq)
			case len(p.Bytes) > 0 && p.Flags != TCPFlagACK:
				return fmt.Errorf("part %d has flags %v", i, p.Flags)
			}
			return nil
		})
	}
}
