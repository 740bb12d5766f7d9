package main

import (
	"encoding/json"
	"math/rand"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestFlowJSONMatchesMarshalIndent: appendFlowJSON writes byte for byte
// what json.MarshalIndent writes for the flows of summary.json: with and
// without file names, gaps (none, nil, several), omitted gaps, strings that
// encoding/json escapes, zero and non-UTC times.
func TestFlowJSONMatchesMarshalIndent(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	strs := []string{"", "10.0.0.1", "2001:db8::1", "::ffff:10.1.2.3", "fin", "a<b", "c>d", "e&f", "quote\"back\\slash", "tab\there", "é", "\xff", "x\u2028y"}
	pick := func() string { return strs[rng.Intn(len(strs))] }
	zone := time.FixedZone("x", 3600)
	times := []time.Time{{}, time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC), time.Date(2010, 5, 6, 7, 8, 9, 0, zone)}
	dir := func() directionSummary {
		d := directionSummary{Src: pick(), SrcPort: uint16(rng.Intn(65536)), Dst: pick(), DstPort: uint16(rng.Intn(65536)),
			File: pick(), Bytes: rng.Int63(), Packets: rng.Int63n(1000), GapCount: rng.Int63n(3), GapBytes: rng.Int63n(5000),
			OverlapBytes: rng.Int63n(100), OverlapPackets: rng.Int63n(3), Retransmitted: rng.Int63n(100), End: pick()}
		switch rng.Intn(4) {
		case 0:
			d.Gaps = []gapRecord{}
		case 1:
			d.Gaps = nil
		default:
			for i := rng.Intn(4); i >= 0; i-- {
				d.Gaps = append(d.Gaps, gapRecord{Offset: rng.Int63n(1 << 40), Length: rng.Int63n(1 << 20)})
			}
		}
		if rng.Intn(3) == 0 {
			d.GapsOmitted = rng.Int63n(10) + 1
		}
		return d
	}
	for i := 0; i < 500; i++ {
		f := flowSummary{ID: rng.Intn(1 << 30), FirstSeen: times[rng.Intn(len(times))], LastSeen: times[rng.Intn(len(times))],
			ClientToSv: dir(), SvToClient: dir()}
		want, err := json.MarshalIndent(&f, "    ", "  ")
		require.NoError(t, err)
		got, err := appendFlowJSON(nil, &f)
		require.NoError(t, err)
		require.Equal(t, string(want), string(got), "flow %d", i)
	}
	// A time encoding/json refuses is refused too.
	_, err := appendFlowJSON(nil, &flowSummary{FirstSeen: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)})
	require.Error(t, err)
}
