package reassembly

// FuzzSequence: one direction cut into segments in any order, from any ISN.

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// FuzzSequence cuts a stream of n bytes (n from the input, at most 64 KiB)
// into segments at the input's cut points, sends them in the input's order
// with duplicates from an ISN anywhere in the sequence space (so the stream
// may wrap at 2^32 anywhere), then the FIN, through both faces, and checks
// that each delivers exactly the stream, with no hole and one end.
func FuzzSequence(f *testing.F) {
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
		for _, safe := range []bool{false, true} {
			rec := &fzSeqStream{first: Sequence(isn).Add(1)}
			var feed func(p *testPacket)
			var end func()
			if safe {
				pool := NewSafeStreamPool(fzSeqFactory{rec}, 0)
				// Limits far above what an input can send: any skip is a fault.
				a, err := NewSafeAssembler(pool, atkSafeInsertOptions)
				if err != nil {
					t.Fatal(err)
				}
				feed = func(p *testPacket) {
					if err := a.AssembleWithTimestamp(p.netFlow, p.tcp, p.ci.Timestamp); err != nil {
						t.Fatalf("safe: %v", err)
					}
				}
				end = func() { a.Close(); pool.Close() }
			} else {
				a := NewAssembler(NewStreamPool(fzSeqFactory{rec}))
				feed = func(p *testPacket) { a.AssembleWithTimestamp(p.netFlow, p.tcp, p.ci.Timestamp) }
				end = func() { a.FlushAll() }
			}
			for i := range pkts {
				feed(&pkts[i])
			}
			// The server never answered: its direction closes at the end.
			end()
			if rec.err != nil {
				t.Fatalf("safe=%v isn=%#x n=%d: %v", safe, isn, n, rec.err)
			}
			if !bytes.Equal(rec.got, stream) {
				t.Fatalf("safe=%v isn=%#x n=%d: got %d bytes, want %d (first difference at %d)", safe, isn, n, len(rec.got), n, fzFirstDiff(rec.got, stream))
			}
			if !rec.ended || rec.completes != 1 {
				t.Fatalf("safe=%v isn=%#x: end %v, %d completions", safe, isn, rec.ended, rec.completes)
			}
		}
	})
}

func fzFirstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

type fzSeqStream struct {
	first     Sequence // the sequence number of the stream's first byte
	got       []byte
	ended     bool
	completes int
	err       error
}

type fzSeqFactory struct{ s *fzSeqStream }

func (f fzSeqFactory) New(gopacket.Flow, gopacket.Flow, *layers.TCP, AssemblerContext) Stream {
	return f.s
}

func (s *fzSeqStream) Accept(*layers.TCP, gopacket.CaptureInfo, TCPFlowDirection, Sequence, *bool, AssemblerContext) bool {
	return true
}

func (s *fzSeqStream) ReassembledSG(sg ScatterGather, _ AssemblerContext) {
	dir, _, end, skip := sg.Info()
	if dir != TCPDirClientToServer {
		return
	}
	if skip != 0 && s.err == nil {
		s.err = fmt.Errorf("skip %d after %d bytes", skip, len(s.got))
	}
	if s.ended && s.err == nil {
		s.err = fmt.Errorf("delivery after the end")
	}
	n, _ := sg.Lengths()
	data := sg.Fetch(n)
	// The parts are the delivery, each where its sequence number says and
	// marked as a data packet's (only the ACK flag).
	at, w := 0, sg.(PartWalker)
	for i := 0; i < w.NumParts() && s.err == nil; i++ {
		p := w.Part(i)
		switch {
		case !bytes.Equal(p.Bytes, data[at:min(len(data), at+len(p.Bytes))]):
			s.err = fmt.Errorf("part %d is not bytes [%d, %d) of the delivery", i, at, at+len(p.Bytes))
		case p.Seq != s.first.Add(len(s.got)+at):
			s.err = fmt.Errorf("part %d at stream offset %d has sequence number %d", i, len(s.got)+at, p.Seq)
		case len(p.Bytes) > 0 && p.Flags != TCPFlagACK:
			s.err = fmt.Errorf("part %d has flags %v", i, p.Flags)
		}
		at += len(p.Bytes)
	}
	if at != n && s.err == nil {
		s.err = fmt.Errorf("parts hold %d of %d bytes", at, n)
	}
	s.got = append(s.got, data...)
	s.ended = s.ended || end
}

func (s *fzSeqStream) ReassemblyComplete(AssemblerContext) bool {
	s.completes++
	return true
}
