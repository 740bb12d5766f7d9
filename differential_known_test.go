package reassembly

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
)

// This file holds the two judgements the differential test needs beyond
// "the logs are equal": which documented upstream faults explain a
// difference (MIGRATION.md lists them), and whether our output is right on
// its own terms, checked against the generator's ground truth.

func (e event) get(key string) string {
	for _, f := range e.Fields {
		if f.K == key {
			return f.V
		}
	}
	return ""
}

// sgInfo parses "dir,start=..,end=..,skip=.." of an sg event.
func sgInfo(e event) (dir string, start, end bool, skip int) {
	parts := strings.Split(e.get("info"), ",")
	if len(parts) != 4 {
		return "", false, false, 0
	}
	dir = parts[0]
	start = parts[1] == "start=true"
	end = parts[2] == "end=true"
	skip, _ = strconv.Atoi(strings.TrimPrefix(parts[3], "skip="))
	return
}

func sgLengths(e event) (avail, saved int) {
	a, s, _ := strings.Cut(e.get("lengths"), ",")
	avail, _ = strconv.Atoi(a)
	saved, _ = strconv.Atoi(s)
	return
}

// stepOfCI returns the step id in a CaptureInfo rendering "+t#id/len".
func stepOfCI(s string) (int, bool) {
	_, rest, ok := strings.Cut(s, "#")
	if !ok {
		return 0, false
	}
	id, _, _ := strings.Cut(rest, "/")
	n, err := strconv.Atoi(id)
	return n, err == nil
}

// provenPrefix marks the reasons read off upstream's log with no doubt:
// clean scenarios accept only those.
const provenPrefix = "proven: "

// explainDifferenceExact names the upstream fault, documented in
// MIGRATION.md, that makes upstream's log for scn differ from ours ("" for
// none), and tells whether it was proven from upstream's log rather than
// inferred from the scenario's shape.
func explainDifferenceExact(scn *scenario, ref []event) (string, bool) {
	r := explainDifferenceAll(scn, ref)
	if rest, ok := strings.CutPrefix(r, provenPrefix); ok {
		return rest, true
	}
	return r, false
}

// explainDifferenceAll finds the reason; the triggers are read off
// upstream's own log, so a scenario is excused only when upstream actually
// went down the faulty path.
func explainDifferenceAll(scn *scenario, ref []event) string {
	if scn.has(featWrap) || spansQuarters(scn) {
		// Upstream's Difference is off by one across 2^32 (row 25): any
		// comparison spanning the wrap may differ.
		return "row 25: Sequence.Difference off by one across the wrap"
	}
	if staleFINEnded(scn, ref) {
		return provenPrefix + staleFINReason
	}
	if staleFIN(scn) {
		return staleFINReason
	}
	type sdir struct{ stream, dir string }
	starts := map[sdir]int{}
	waiting := map[sdir]bool{} // data accepted while the direction had no start
	finEnd := map[sdir]int64{}
	wantSaved := map[sdir]int{} // bytes KeepFrom asked to keep, per direction
	for _, e := range ref {
		if e.Step < 0 || e.Step >= len(scn.Steps) {
			continue
		}
		st := scn.Steps[e.Step]
		switch e.Kind {
		case "panic":
			return "" // the comparison stops at upstream's panic already
		case "new":
			if !st.SYN && len(st.Payload) == 0 {
				return "rows 21/23: a packet without SYN or payload creates a Stream upstream"
			}
			if st.SYN && !st.ACK && !strings.HasSuffix(e.Stream, ".1") && st.Seq == scn.Conns[st.Conn].ISN[st.Dir] {
				// Ours drops a retransmitted SYN of a completed connection
				// as a late copy (lifecycle issue).
				return "duplicates after close: upstream opens a phantom connection with a retransmitted SYN"
			}
			if (!st.SYN || st.ACK) && !strings.HasSuffix(e.Stream, ".1") {
				// Ours remembers the completed connection and drops late
				// copies of its packets; new data still reopens it.
				return "duplicates after close: upstream opens a phantom connection with late copies"
			}
		case "accept":
			if e.get("return") != "true" {
				continue
			}
			k := sdir{e.Stream, e.get("dir")}
			next, _ := strconv.ParseInt(e.get("nextSeq"), 10, 64)
			forced := strings.HasSuffix(e.get("start"), "->true")
			if st.RST {
				return "row 38: an RST closes only its own direction upstream"
			}
			if st.SYN && next != -1 {
				return "row 27 / start flag: a retransmitted SYN after the start"
			}
			if next == -1 && !st.SYN && !forced && len(st.Payload) > 0 {
				waiting[k] = true
			}
			if next == -1 && (st.SYN || forced) && waiting[k] {
				return "data buffered before the direction's start is discarded here, delivered with a negative Skip upstream"
			}
			if st.FIN {
				data := int64(st.Seq)
				if next == -1 || int32(uint32(data)-uint32(next)) > 0 {
					return "rows 26/28: a FIN out of order is lost upstream"
				}
				finEnd[k] = int64(st.Seq) + int64(len(st.Payload))
			} else if end, ok := finEnd[k]; ok && len(st.Payload) > 0 && int64(st.Seq)+int64(len(st.Payload)) > end {
				return "row 28: data past a FIN is delivered upstream"
			}
		case "sg":
			if e.get("keepFrom") != "" && (scn.MaxPagesPerConn > 0 || scn.MaxPagesTotal > 0) {
				// Upstream leaves pages it copies for KeepFrom out of the
				// per-connection count, then subtracts them when freed.
				return "KeepFrom pages count toward the page limits here; upstream's count drifts"
			}
			dirName, start, _, skip := sgInfo(e)
			k := sdir{e.Stream, dirName}
			avail, saved := sgLengths(e)
			if want, ok := wantSaved[k]; ok && skip == 0 && saved != want {
				return provenPrefix + "row 2: upstream loses or mangles bytes kept by KeepFrom"
			}
			delete(wantSaved, k)
			if off, err := strconv.Atoi(e.get("keepFrom")); err == nil && off >= 0 && off < avail {
				wantSaved[k] = avail - off
			}
			if start {
				starts[k]++
				if starts[k] > 1 {
					return "start flag: upstream reports start on every SYN"
				}
			}
			if skip < -1 {
				return provenPrefix + "data buffered before the direction's start is delivered with a negative Skip upstream"
			}
		}
	}
	return ""
}

// truthSource regenerates the bytes the generator put in each direction:
// stream (conn, dir) is a PCG sequence seeded by (DataSeed, conn<<1|dir).
type truthSource struct {
	scn     *scenario
	streams map[[2]int][]byte
}

func (t *truthSource) bytes(conn, dir, off, n int) []byte {
	if off < 0 || off+n > 1<<24 {
		return nil // no generated stream is that long
	}
	k := [2]int{conn, dir}
	buf := t.streams[k]
	if len(buf) < off+n {
		src := rand.NewPCG(t.scn.DataSeed, uint64(conn)<<1|uint64(dir))
		buf = buf[:0]
		for len(buf) < 2*(off+n) {
			v := src.Uint64()
			buf = append(buf, byte(v), byte(v>>8), byte(v>>16), byte(v>>24), byte(v>>32), byte(v>>40), byte(v>>48), byte(v>>56))
		}
		t.streams[k] = buf
	}
	return buf[off : off+n]
}

// checkTruth verifies our log on its own terms: every byte delivered is the
// byte the sender put at that stream offset (offsets follow Skip), kept
// bytes come back unchanged, start is reported at most once per direction
// and only first, and nothing reaches a Stream after its completion. It
// returns nil for scenarios it cannot judge (conflicting retransmissions,
// reused 4-tuples).
func checkTruth(scn *scenario, evs []event) error {
	if scn.has(featConflict) || scn.has(featTupleReuse) {
		return nil
	}
	truth := &truthSource{scn: scn, streams: map[[2]int][]byte{}}
	type sdir struct{ stream, dir string }
	next := map[sdir]int{} // offset of the next new byte; absent: unknown
	sgs := map[sdir]int{}
	conns := map[string]int{}
	completed := map[string]bool{}
	reversed := map[string]bool{}
	for i, e := range evs {
		if e.Kind == "new" {
			c := scn.Steps[e.Step].Conn
			conns[e.Stream] = c
			ip := scn.Conns[c].ClientIP
			reversed[e.Stream] = !strings.HasPrefix(e.get("net"), fmt.Sprintf("%d.%d.%d.%d->", ip[0], ip[1], ip[2], ip[3]))
			continue
		}
		if e.Stream == "" {
			continue
		}
		if completed[e.Stream] && (e.Kind == "sg" || e.Kind == "complete") {
			return fmt.Errorf("event %d: %s %s after ReassemblyComplete", i, e.Stream, e.Kind)
		}
		if e.Kind == "complete" {
			completed[e.Stream] = true
			continue
		}
		if e.Kind != "sg" {
			continue
		}
		dirName, start, _, skip := sgInfo(e)
		d := 0
		if dirName == "server->client" {
			d = 1
		}
		k := sdir{e.Stream, dirName}
		if start && sgs[k] > 0 {
			return fmt.Errorf("event %d: start reported on delivery %d of %s %s", i, sgs[k]+1, e.Stream, dirName)
		}
		sgs[k]++
		avail, saved := sgLengths(e)
		if avail != len(e.Data) || saved > avail {
			return fmt.Errorf("event %d: lengths %d,%d but %d bytes fetched", i, avail, saved, len(e.Data))
		}
		conn := conns[e.Stream]
		// The direction of the Stream is the reverse of the generator's
		// when its client is the generator's server: the first packet seen
		// was the server's (a SYN-ACK that answers a remembered SYN aside).
		if reversed[e.Stream] {
			d = 1 - d
		}
		fresh := e.Data[saved:]
		off, known := next[k]
		switch {
		case skip > 0 && known:
			off += skip
		case skip < 0 || !known:
			// Start unknown: find the bytes from the packet that carried
			// the first fresh one.
			id, ok := stepOfCI(e.get("ci0"))
			if saved > 0 || !ok || len(fresh) == 0 {
				next[k] = math.MinInt / 2 // stays negative whatever follows
				continue
			}
			st := stepByID(scn, id)
			if st == nil {
				continue
			}
			pktOff := int(int32(st.Seq - (scn.Conns[conn].ISN[d] + 1)))
			if st.SYN {
				pktOff++
			}
			found := -1
			for o := max(0, pktOff); o <= pktOff+len(st.Payload) && found < 0; o++ {
				if bytes.Equal(truth.bytes(conn, d, o, len(fresh)), fresh) {
					found = o
				}
			}
			if found < 0 {
				return fmt.Errorf("event %d: %s %s delivered %d bytes found nowhere near step %d", i, e.Stream, dirName, len(fresh), id)
			}
			off = found
			known = true
		}
		if off < 0 {
			continue // lost track after an unlocatable delivery
		}
		if saved > 0 && off >= saved {
			if want := truth.bytes(conn, d, off-saved, saved); !bytes.Equal(e.Data[:saved], want) {
				return fmt.Errorf("event %d: %s %s kept bytes differ from offsets [%d,%d)", i, e.Stream, dirName, off-saved, off)
			}
		}
		if want := truth.bytes(conn, d, off, len(fresh)); !bytes.Equal(fresh, want) {
			j := 0
			for j < len(fresh) && fresh[j] == want[j] {
				j++
			}
			return fmt.Errorf("event %d: %s %s byte at stream offset %d is %#x, sender sent %#x", i, e.Stream, dirName, off+j, fresh[j], want[j])
		}
		next[k] = off + len(fresh)
	}
	return nil
}

func stepByID(scn *scenario, id int) *step {
	for i := range scn.Steps {
		if scn.Steps[i].ID == id {
			return &scn.Steps[i]
		}
	}
	return nil
}

// spansQuarters reports whether packets sharing a 4-tuple and direction
// have sequence numbers where upstream's Difference and serial arithmetic
// disagree (row 25): some in the first and some in the last quarter of the
// space (off by one), or two more than 2^31 apart (opposite signs), as when
// a reused 4-tuple starts a new connection with a distant ISN.
func spansQuarters(scn *scenario) bool {
	type key struct{ tuple, dir int }
	lo, hi := map[key]uint32{}, map[key]uint32{}
	for _, st := range scn.Steps {
		if st.Kind != stepPacket {
			continue
		}
		k := key{scn.Conns[st.Conn].Tuple, st.Dir}
		if v, ok := lo[k]; !ok || st.Seq < v {
			lo[k] = st.Seq
		}
		if v, ok := hi[k]; !ok || st.Seq > v {
			hi[k] = st.Seq
		}
	}
	for k, h := range hi {
		l := lo[k]
		if h-l >= 1<<31 || (h >= 0xC0000000 && l < 0x40000000) {
			return true
		}
	}
	return false
}

const staleFINReason = "a FIN in bytes its direction already went past ends the direction upstream (here, as in the fork since v1.7.6, it ends nothing)"

// staleFINEnded reports whether upstream's log shows a direction ended by
// a FIN packet that lies before bytes upstream delivered from an earlier
// packet of that direction of the same Stream. Sequence numbers are
// compared absolute, per Stream: on a reused 4-tuple without a handshake
// upstream carries on the earlier connection's Stream, so a FIN can be
// stale against the bytes of the connection before it.
func staleFINEnded(scn *scenario, ref []event) bool {
	type sdir struct {
		stream string
		dir    int
	}
	delivered := map[sdir]uint32{} // absolute end of the bytes delivered
	for _, e := range ref {
		if e.Kind != "sg" || e.Step < 0 || e.Step >= len(scn.Steps) {
			continue
		}
		st := scn.Steps[e.Step]
		if st.Kind != stepPacket {
			continue
		}
		k := sdir{e.Stream, st.Dir}
		end := st.Seq + uint32(len(st.Payload))
		_, _, ended, _ := sgInfo(e)
		if last, ok := delivered[k]; ok && st.FIN && !st.RST && ended && int32(end-last) < 0 {
			return true
		}
		if avail, _ := sgLengths(e); avail > 0 && len(st.Payload) > 0 {
			if last, ok := delivered[k]; !ok || int32(end-last) > 0 {
				delivered[k] = end
			}
		}
	}
	return false
}

// staleFIN reports whether a FIN arrives in a segment that ends before
// bytes its direction sent earlier: a stale copy, which ours ignores.
func staleFIN(scn *scenario) bool {
	type cdir struct{ conn, dir int }
	sent := map[cdir]int32{}
	for _, st := range scn.Steps {
		if st.Kind != stepPacket {
			continue
		}
		k := cdir{st.Conn, st.Dir}
		end := int32(st.Seq-(scn.Conns[st.Conn].ISN[st.Dir]+1)) + int32(len(st.Payload))
		if st.SYN {
			end++
		}
		if st.FIN && !st.RST && end < sent[k] {
			return true
		}
		sent[k] = max(sent[k], end)
	}
	return false
}
