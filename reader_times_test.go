package reassembly

// Tests of ReaderStream.ReadTimes: the capture times of what each Read
// returned, exact while few packets wait, bracketing beyond that, and one
// time per Read with SplitReadsByTime.

import (
	"errors"
	"io"
	"math/rand"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// rtSent is one direction sent in random segments, some out of order,
// with the capture time of every byte.
type rtSent struct {
	data  []byte
	times []time.Time // times[i]: capture time of the packet that carried data[i]
}

// rtSend sends n bytes from the client in segments of 1 to maxSeg bytes,
// swapping neighbours at random, each packet 1 ms after the previous one
// (every few packets share a time), then the FIN.
func rtSend(t *testing.T, r *rand.Rand, a *SafeAssembler, c kitConn, n, maxSeg int) rtSent {
	s := rtSent{data: rdPattern(n, 3), times: make([]time.Time, n)}
	type seg struct{ off, n int }
	var segs []seg
	for off := 0; off < n; {
		k := min(n-off, 1+r.Intn(maxSeg))
		segs = append(segs, seg{off, k})
		off += k
	}
	for i := 1; i < len(segs); i++ {
		if r.Intn(4) == 0 {
			segs[i-1], segs[i] = segs[i], segs[i-1]
		}
	}
	fd := newKitFeeder(t, a, rdT0, 0)
	fd.open(c)
	for _, g := range segs {
		if r.Intn(3) > 0 {
			fd.ts = fd.ts.Add(time.Millisecond)
		}
		fd.send(c, false, "A", g.off, s.data[g.off:g.off+g.n])
		for i := g.off; i < g.off+g.n; i++ {
			s.times[i] = fd.ts
		}
	}
	fd.send(c, false, "FA", n, nil)
	return s
}

// rtReadAll reads r to io.EOF with reads of 1 to maxRead bytes, checking with
// check the times of every Read that returned bytes (short: fewer than
// asked for); it returns the bytes.
func rtReadAll(t *testing.T, r *rand.Rand, rs *ReaderStream, maxRead int, check func(from, to int, short bool, first, last time.Time)) []byte {
	var got []byte
	for {
		buf := make([]byte, 1+r.Intn(maxRead))
		n, err := rs.Read(buf)
		first, last := rs.ReadTimes()
		if n == 0 {
			require.True(t, first.IsZero() && last.IsZero(), "a Read that returned no bytes has no times")
		} else {
			check(len(got), len(got)+n, n < len(buf), first, last)
		}
		got = append(got, buf[:n]...)
		if errors.Is(err, io.EOF) {
			return got
		}
		require.NoError(t, err)
	}
}

// Property: while fewer packets wait than the buffer keeps apart,
// ReadTimes gives the capture times of exactly the first and the last
// byte each Read returned; with SplitReadsByTime, every byte of a Read has
// the one time it gives. The bytes were all buffered before the first
// Read, out of order, so that Reads span many packets.
func TestReaderReadTimesExact(t *testing.T) {
	t.Parallel()
	for _, split := range []bool{false, true} {
		for seed := int64(1); seed <= 6; seed++ {
			// Full-size segments, or 1- to 6-byte ones: about 80 or 500
			// packets, under the 2048 runs of the default buffer.
			n, maxSeg, maxRead := 60000, 1460, 3000
			if seed > 3 {
				n, maxSeg, maxRead = 1500, 6, 40
			}
			r := rand.New(rand.NewSource(seed))
			f := newRDPairs(ReaderOptions{SplitReadsByTime: split}, nil)
			a, _, _ := rdSetup(t, f)
			sent := rtSend(t, r, a, kitConnN(int(seed)), n, maxSeg)
			reads := 0
			got := rtReadAll(t, r, f.pair(t, 0).Client, maxRead, func(from, to int, short bool, first, last time.Time) {
				reads++
				require.Equal(t, sent.times[from], first, "first byte of read [%d, %d), split %v", from, to, split)
				require.Equal(t, sent.times[to-1], last, "last byte of read [%d, %d), split %v", from, to, split)
				if split {
					for i := from; i < to; i++ {
						require.Equal(t, first, sent.times[i], "byte %d of a split read [%d, %d)", i, from, to)
					}
					// A short read stops where the time changes.
					if short && to < len(sent.times) {
						require.NotEqual(t, first, sent.times[to], "split read [%d, %d) stopped within a time", from, to)
					}
				}
			})
			require.Equal(t, sent.data, got)
			require.Greater(t, reads, 10)
		}
	}
}

// Property: with more packets waiting than the buffer keeps apart, the
// times of a Read still bracket those of every byte it returned, though
// packets arrived out of order, and the bytes are all delivered.
func TestReaderReadTimesBracketBeyondTheCap(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewSource(9))
	// 16 runs for this buffer: thousands of 1- to 8-byte packets exceed it.
	f := newRDPairs(ReaderOptions{MaxBuffered: 8192}, nil)
	a, _, _ := rdSetup(t, f)
	sent := rtSend(t, r, a, kitConnN(20), 8000, 8)
	exact := true
	got := rtReadAll(t, r, f.pair(t, 0).Client, 300, func(from, to int, _ bool, first, last time.Time) {
		for i := from; i < to; i++ {
			require.False(t, sent.times[i].Before(first), "byte %d captured before the read's first time", i)
			require.False(t, sent.times[i].After(last), "byte %d captured after the read's last time", i)
		}
		if !first.Equal(sent.times[from]) || !last.Equal(sent.times[to-1]) {
			exact = false
		}
	})
	require.Equal(t, sent.data, got)
	require.False(t, exact, "past the cap, times were merged")
}

// Property: a Read that returns a gap or the end, and not bytes, leaves
// ReadTimes at zero, and the Reads around it get their bytes' times.
func TestReaderReadTimesZeroWithoutBytes(t *testing.T) {
	t.Parallel()
	f := newRDPairs(ReaderOptions{}, nil)
	a, _, fd := rdSetup(t, f)
	c := kitConnN(30)
	fd.open(c)
	fd.send(c, false, "A", 0, []byte("hello"))
	tHello := fd.ts
	fd.send(c, false, "A", 10, []byte("world")) // bytes 5 to 9 are lost
	tWorld := fd.ts
	fd.send(c, false, "FA", 15, nil)
	a.FlushAll()
	rs := f.pair(t, 0).Client
	buf := make([]byte, 100)
	for _, want := range []struct {
		data string
		gap  bool
		at   time.Time
	}{{data: "hello", at: tHello}, {gap: true}, {data: "world", at: tWorld}, {}} {
		n, err := rs.Read(buf)
		first, last := rs.ReadTimes()
		require.Equal(t, want.data, string(buf[:n]))
		require.Equal(t, want.gap, errors.Is(err, ErrGap), "%v", err)
		require.Equal(t, want.at, first)
		require.Equal(t, want.at, last)
	}
}

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
