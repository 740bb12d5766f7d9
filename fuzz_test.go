package reassembly

import (
	"os"
	"testing"
)

// Native fuzz targets (issue 4). Each decodes arbitrary bytes into a
// sequence of TCP segments over up to four connections, both directions,
// with flush, close and nil-packet calls interleaved, and drives the drop-in
// Assembler (FuzzAssembler) or SafeAssemblers sharing a SafeStreamPool
// (FuzzSafeAssembler, with small limits, a connection cap, an overlap
// policy, a reassembly depth, a conflict window, the insertion screens,
// and Streams that panic).
// After every call the harness checks:
//
//   - nothing panics (the Safe face's own recovered panics aside);
//   - conservation: BytesProcessed = BytesDelivered + BytesOverlap +
//     BytesOverwritten + BytesDiscarded + PageCache.QueuedBytes, summed over
//     the assemblers of the pool and the pool's Closing counters;
//     BytesDiscarded is the sum of its parts; the bytes, deliveries, holes,
//     completions and conflicts the Streams saw equal BytesDelivered,
//     Deliveries, Gaps and GapBytes, StreamsCompleted, OverlapConflicts and
//     ConflictBytes;
//   - limits (Safe face): ActiveConnections <= the pool's cap and equal to
//     created - removed, PagesInUse <= MaxBufferedPagesTotal, and per
//     direction the pages and charged bytes, queued or kept by KeepFrom,
//     and the holes within MaxBufferedPagesPerConnection,
//     MaxBufferedBytesPerConnection and MaxGapsPerConnection; for both
//     faces, the engine's own page, byte and hole counts agree with its
//     queues, which never overlap nor reach back before the delivery point;
//   - the Stream contract: Accept with the packet's direction, start only
//     on the first delivery of a direction, Skip -1 only there, nothing for
//     a direction after its end (FIN, RST or reassembly depth), no call
//     after ReassemblyComplete returned true or after the Stream panicked,
//     no ReassembledSG after ReassemblyComplete at all, ReassemblyComplete
//     at most once, and exactly once for every Stream after the final
//     FlushAll (drop-in) or Close (Safe face); a Conflict names two
//     different copies that were both sent at its offset;
//   - the bytes: every payload byte is a function of (connection, direction,
//     stream offset) XOR one of four version masks (retransmissions may
//     carry other bytes), so each delivered byte is checked at its offset,
//     found by following Skip from the packet that carried the first byte
//     of the direction: it must be one of the versions sent at that offset,
//     in order, each offset at most once, and bytes kept by KeepFrom must
//     come back unchanged in front of the next delivery.
//
// The input: a header (fzDecodeConfig: connections, addresses, cap, limits,
// timeout, policy, depth, window, then per connection the ISNs of both
// directions and how its Stream behaves), then operations (fzHarness.run:
// a packet, with its connection, direction, flags, version, offset mode
// and length; a flush; FlushAll; a nil packet; closing an assembler;
// closing the pool), each advancing capture time. fzBuilder writes inputs.
//
// FuzzSequence reassembles one direction cut into segments delivered in any
// order, with duplicates, from any ISN (wraps anywhere), and checks that the
// output is exactly the stream. The seed corpus is under testdata/fuzz;
// TestFuzzSeedCorpus keeps it in step with fzSeeds (REASSEMBLY_WRITE_SEEDS=1
// rewrites it) and replays it, and scripts/fuzz.sh runs each target for
// FUZZTIME. FZTRACE=1 prints the decoded operations of a failing input:
//
//	FZTRACE=1 go test -run 'FuzzSafeAssembler/<name>' -v .
//
// Files: fuzz_input_test.go (the input and its header),
// fuzz_harness_test.go (the harness and its checks),
// fuzz_sequence_test.go (FuzzSequence), fuzz_seeds_test.go (the corpus).

const (
	fzMaxConns   = 4
	fzMaxOps     = 3000
	fzServerPort = 80
	fzClientPort = 10000
	fzMaxOffset  = 1 << 30   // offsets stay in [-fzMinOffset, fzMaxOffset)
	fzMinOffset  = 1 << 20   // so that any two are less than 2^31 apart
	fzTraceEnv   = "FZTRACE" // set to print each decoded operation
)

// fzRun replays data through one face.
func fzRun(t testing.TB, data []byte, safe bool) {
	in := &fzInput{b: data}
	h := &fzHarness{tb: t, safe: safe, trace: os.Getenv(fzTraceEnv) != ""}
	h.cfg = fzDecodeConfig(in, safe)
	f := fzFactory{h: h}
	if safe {
		h.cfg.opts.OnConflict = h.onConflict
		sf := &fzSafe{h: h, pool: NewSafeStreamPool(f, h.cfg.maxConns)}
		for range h.cfg.assemblers {
			a, err := NewSafeAssembler(sf.pool, h.cfg.opts)
			if err != nil {
				t.Fatalf("NewSafeAssembler(%+v): %v", h.cfg.opts, err)
			}
			sf.asms = append(sf.asms, a)
		}
		sf.all = append(sf.all, sf.asms...)
		h.face = sf
	} else {
		of := &fzOurs{pool: NewStreamPool(f)}
		for range h.cfg.assemblers {
			a := NewAssembler(of.pool)
			a.MaxBufferedPagesTotal = h.cfg.opts.MaxBufferedPagesTotal
			a.MaxBufferedPagesPerConnection = h.cfg.opts.MaxBufferedPagesPerConnection
			of.asms = append(of.asms, a)
		}
		h.face = of
	}
	h.logf("config %+v", h.cfg)
	h.run(in)
}

func FuzzAssembler(f *testing.F) {
	fzAddCorpus(f, "FuzzAssembler")
	f.Fuzz(func(t *testing.T, data []byte) { fzRun(t, data, false) })
}

func FuzzSafeAssembler(f *testing.F) {
	fzAddCorpus(f, "FuzzSafeAssembler")
	f.Fuzz(func(t *testing.T, data []byte) { fzRun(t, data, true) })
}
