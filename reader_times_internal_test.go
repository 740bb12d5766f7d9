package reassembly

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Property: however many packets of distinct capture times wait, a
// ReaderStream keeps at most MaxBuffered/512 (at least 16) time runs, so
// the memory of the times is bounded by the buffer's.
func TestReaderTimeRunsBounded(t *testing.T) {
	t.Parallel()
	for _, maxBuf := range []int{1000, 64 << 10} {
		r := newReaderStream(ReaderOptions{MaxBuffered: maxBuf}, nil, new(blockPool))
		limit := max(minTimeRuns, maxBuf/timeRunsPer)
		ts := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
		r.deliver(&onePart{}, true, 0, false)
		for i := 0; i < 2*maxBuf; i++ {
			ts = ts.Add(time.Millisecond)
			r.deliver(&onePart{data: []byte{'x'}, ac: &captureContext{Timestamp: ts}}, false, 0, false)
			require.LessOrEqual(t, len(r.times)-r.timeHead, limit, "buffer %d, packet %d", maxBuf, i)
		}
		require.Equal(t, maxBuf, r.n, "the buffer filled")
		require.Equal(t, limit, len(r.times)-r.timeHead)
	}
}
