package reassembly

// Tests of the io.Reader face (ReaderStream, ReaderPair, ReaderFactory):
// bytes in order, gaps surfaced and resumed from, io.EOF, a bounded buffer
// that never holds the assembler up, early Close, completion by the pool's
// Close, and HTTP requests parsed from reassembled packets. Helpers are
// prefixed rd.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ---------------------------------------------------------------------------
// Helpers

var rdT0 = time.Date(2022, 3, 1, 9, 0, 0, 0, time.UTC)

const (
	rdCISN uint32 = 0xFFFFFF00 // close to the wrap, so streams cross it
	rdSISN uint32 = 7000
)

// rdConnN is connection i of the reader tests (client port 30000+i), with
// a client ISN close to the wrap, so that streams cross it.
func rdConnN(i int) kitConn { return kitConnN(10000+i).withISNs(rdCISN, rdSISN) }

// rdSetup returns an assembler and its pool, closed at the end of the test.
func rdSetup(t *testing.T, f StreamFactory) (*SafeAssembler, *SafeStreamPool, *kitFeeder) {
	t.Helper()
	pool := NewSafeStreamPool(f, 0)
	t.Cleanup(func() { pool.Close() }) // after the assembler's
	a := newKitAssembler(t, pool, kitReplayOpts())
	return a, pool, newKitFeeder(t, a, rdT0, time.Millisecond)
}

// rdPiece is what one or more Reads returned: bytes, or a gap.
type rdPiece struct {
	data string
	gap  *GapError
}

func (p rdPiece) String() string {
	if p.gap != nil {
		return fmt.Sprintf("gap(%d,%d)", p.gap.Bytes, p.gap.Dropped)
	}
	return fmt.Sprintf("%q", p.data)
}

// rdReadAll reads r to its first error other than a gap, with reads of
// bufSize bytes, merging consecutive bytes into one piece.
func rdReadAll(r io.Reader, bufSize int) ([]rdPiece, error) {
	var out []rdPiece
	buf := make([]byte, bufSize)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if k := len(out); k > 0 && out[k-1].gap == nil {
				out[k-1].data += string(buf[:n])
			} else {
				out = append(out, rdPiece{data: string(buf[:n])})
			}
		}
		var g *GapError
		switch {
		case err == nil:
		case errors.As(err, &g):
			if !errors.Is(err, ErrGap) {
				return out, fmt.Errorf("GapError does not match ErrGap: %w", err)
			}
			if n != 0 {
				return out, fmt.Errorf("a gap came with %d bytes", n)
			}
			out = append(out, rdPiece{gap: g})
		default:
			return out, err
		}
	}
}

// rdResult is what a reader goroutine saw.
type rdResult struct {
	pieces []rdPiece
	err    error
}

// rdCollect reads r to its end in a goroutine.
func rdCollect(r io.Reader, bufSize int) <-chan rdResult {
	ch := make(chan rdResult, 1)
	go func() {
		p, err := rdReadAll(r, bufSize)
		ch <- rdResult{p, err}
	}()
	return ch
}

// rdPairs is a ReaderFactory that keeps the pairs it made.
type rdPairs struct {
	ReaderFactory
	mu    sync.Mutex
	pairs []*ReaderPair
}

func newRDPairs(opts ReaderOptions, onConn func(*ReaderPair)) *rdPairs {
	f := &rdPairs{}
	f.Options = opts
	f.OnConnection = func(p *ReaderPair) {
		f.mu.Lock()
		f.pairs = append(f.pairs, p)
		f.mu.Unlock()
		if onConn != nil {
			onConn(p)
		}
	}
	return f
}

func (f *rdPairs) pair(t *testing.T, i int) *ReaderPair {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	require.Greater(t, len(f.pairs), i, "connection %d was not created", i)
	return f.pairs[i]
}

// rdSG is a hand-made ScatterGather, to drive a ReaderPair directly.
type rdSG struct {
	dir        TCPFlowDirection
	start, end bool
	skip       int
	data       []byte
}

func (s *rdSG) Lengths() (int, int)                  { return len(s.data), 0 }
func (s *rdSG) Fetch(n int) []byte                   { return s.data[:max(0, min(n, len(s.data)))] }
func (s *rdSG) KeepFrom(int)                         {}
func (s *rdSG) CaptureInfo(int) gopacket.CaptureInfo { return gopacket.CaptureInfo{} }
func (s *rdSG) Stats() TCPAssemblyStats              { return TCPAssemblyStats{} }
func (s *rdSG) Info() (TCPFlowDirection, bool, bool, int) {
	return s.dir, s.start, s.end, s.skip
}

func rdDeliver(p *ReaderPair, dir TCPFlowDirection, start bool, skip int, data string, end bool) {
	p.ReassembledSG(&rdSG{dir: dir, start: start, end: end, skip: skip, data: []byte(data)}, nil)
}

func rdConserved(t *testing.T, s ReaderStats) {
	t.Helper()
	assert.Equal(t, s.BytesIn, s.BytesRead+s.Buffered+s.BytesDropped+s.BytesDiscarded,
		"BytesIn = BytesRead + Buffered + BytesDropped + BytesDiscarded: %+v", s)
}

func rdPattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + (byte(i)+seed)%26
	}
	return b
}

// ---------------------------------------------------------------------------
// The ReaderStream contract, driven directly

func TestReaderGapThenResume(t *testing.T) {
	kitNoLeaks(t)
	p := NewReaderPair(gopacket.Flow{}, gopacket.Flow{}, ReaderOptions{})
	c2s := TCPDirClientToServer
	rdDeliver(p, c2s, true, 0, "", false) // the SYN
	rdDeliver(p, c2s, false, 0, "abc", false)
	rdDeliver(p, c2s, false, 5, "def", false)
	rdDeliver(p, c2s, false, 2, "", false) // a hole right before another
	rdDeliver(p, c2s, false, 3, "gh", true)

	r := p.Client
	buf := make([]byte, 100)
	n, err := r.Read(buf)
	require.NoError(t, err)
	assert.Equal(t, "abc", string(buf[:n]), "bytes before the gap come first, alone")

	n, err = r.Read(buf)
	assert.Zero(t, n)
	require.ErrorIs(t, err, ErrGap)
	var g *GapError
	require.ErrorAs(t, err, &g)
	assert.Equal(t, int64(5), g.Bytes)
	assert.Zero(t, g.Dropped)
	assert.Contains(t, err.Error(), "5 bytes missing")

	n, err = r.Read(buf)
	require.NoError(t, err)
	assert.Equal(t, "def", string(buf[:n]), "reading resumes after the gap")

	_, err = r.Read(buf)
	require.ErrorAs(t, err, &g)
	assert.Equal(t, int64(5), g.Bytes, "adjacent holes make one gap")

	n, err = r.Read(buf)
	require.NoError(t, err)
	assert.Equal(t, "gh", string(buf[:n]))
	for range 3 {
		n, err = r.Read(buf)
		assert.Zero(t, n)
		assert.Equal(t, io.EOF, err, "io.EOF after the end, every time")
	}
	s := r.Stats()
	assert.Equal(t, ReaderStats{
		BytesIn: 8, BytesRead: 8, Gaps: 2, BytesSkipped: 10, PeakBuffered: 8,
	}, s)

	// The other direction ends with the connection.
	assert.True(t, p.ReassemblyComplete(nil))
	n, err = p.Server.Read(buf)
	assert.Zero(t, n)
	assert.Equal(t, io.EOF, err)
}

func TestReaderUnknownStartIsAGap(t *testing.T) {
	p := NewReaderPair(gopacket.Flow{}, gopacket.Flow{}, ReaderOptions{})
	// The assembler's way of saying the start is unknown: Skip -1.
	rdDeliver(p, TCPDirClientToServer, false, -1, "xyz", true)
	// A forced start: Skip 0 but no start flag on the first delivery.
	rdDeliver(p, TCPDirServerToClient, false, 0, "uvw", true)
	for _, r := range []*ReaderStream{p.Client, p.Server} {
		pieces, err := rdReadAll(r, 10)
		require.Equal(t, io.EOF, err)
		require.Len(t, pieces, 2)
		require.NotNil(t, pieces[0].gap)
		assert.Equal(t, int64(-1), pieces[0].gap.Bytes)
		assert.Contains(t, pieces[0].gap.Error(), "start was not captured")
		assert.Len(t, pieces[1].data, 3)
	}
}

func TestReaderZeroLengthReadDoesNotBlock(t *testing.T) {
	p := NewReaderPair(gopacket.Flow{}, gopacket.Flow{}, ReaderOptions{})
	n, err := p.Client.Read(nil)
	assert.Zero(t, n)
	assert.NoError(t, err)
	rdDeliver(p, TCPDirClientToServer, true, 0, "ab", false)
	n, err = p.Client.Read(nil)
	assert.Zero(t, n)
	assert.NoError(t, err)
	assert.Equal(t, int64(2), p.Client.Stats().Buffered)
}

func TestReaderBoundedBufferDropsAndReportsGap(t *testing.T) {
	p := NewReaderPair(gopacket.Flow{}, gopacket.Flow{}, ReaderOptions{MaxBuffered: 10})
	c2s := TCPDirClientToServer
	rdDeliver(p, c2s, true, 0, "0123456", false)
	rdDeliver(p, c2s, false, 0, "789ABCDEF", false) // 3 fit, 6 dropped
	rdDeliver(p, c2s, false, 4, "GHIJ", false)      // all dropped: one gap with the hole
	s := p.Client.Stats()
	assert.Equal(t, int64(10), s.Buffered)
	assert.Equal(t, int64(10), s.PeakBuffered)
	assert.Equal(t, int64(10), s.BytesDropped)
	rdConserved(t, s)

	buf := make([]byte, 4)
	var got []byte
	for len(got) < 10 {
		n, err := p.Client.Read(buf)
		require.NoError(t, err)
		got = append(got, buf[:n]...)
	}
	assert.Equal(t, "0123456789", string(got))
	_, err := p.Client.Read(buf)
	var g *GapError
	require.ErrorAs(t, err, &g)
	assert.Equal(t, GapError{Bytes: 14, Dropped: 10}, *g)
	assert.Contains(t, g.Error(), "fell behind")

	// Room again: bytes after the gap flow.
	rdDeliver(p, c2s, false, 0, "KLM", true)
	pieces, err := rdReadAll(p.Client, 100)
	require.Equal(t, io.EOF, err)
	assert.Equal(t, []rdPiece{{data: "KLM"}}, pieces)
	rdConserved(t, p.Client.Stats())
}

func TestReaderPendingGapsCountTowardTheCap(t *testing.T) {
	// One byte and one hole, over and over: the gap records must not grow
	// past what MaxBuffered allows.
	const maxBuf = 1000
	p := NewReaderPair(gopacket.Flow{}, gopacket.Flow{}, ReaderOptions{MaxBuffered: maxBuf})
	rdDeliver(p, TCPDirClientToServer, true, 0, "", false)
	for range 10000 {
		rdDeliver(p, TCPDirClientToServer, false, 1, "x", false)
	}
	s := p.Client.Stats()
	assert.LessOrEqual(t, s.Buffered, int64(maxBuf))
	assert.LessOrEqual(t, s.Gaps*32+s.Buffered, int64(maxBuf+32), "gap records are charged against MaxBuffered")
	rdConserved(t, s)
	rdDeliver(p, TCPDirClientToServer, false, 0, "", true)
	pieces, err := rdReadAll(p.Client, 7)
	require.Equal(t, io.EOF, err)
	// Every byte and every hole is accounted for in what the reader saw.
	var total int64
	for _, pc := range pieces {
		if pc.gap != nil {
			total += pc.gap.Bytes
		} else {
			total += int64(len(pc.data))
		}
	}
	assert.Equal(t, int64(20000), total)
}

func TestReaderCloseDiscardsAndEndsRead(t *testing.T) {
	kitNoLeaks(t)
	p := NewReaderPair(gopacket.Flow{}, gopacket.Flow{}, ReaderOptions{})
	r := p.Client
	// A Read blocked in another goroutine returns when the stream is closed.
	res := rdCollect(r, 16)
	rdDeliver(p, TCPDirClientToServer, true, 0, "hello", false)
	require.Eventually(t, func() bool { return r.Stats().BytesRead == 5 }, 10*time.Second, time.Millisecond)
	require.NoError(t, r.Close())
	out := <-res
	assert.Equal(t, io.EOF, out.err)
	assert.Equal(t, []rdPiece{{data: "hello"}}, out.pieces)

	rdDeliver(p, TCPDirClientToServer, false, 3, "later", true)
	require.NoError(t, r.Close(), "Close is idempotent")
	n, err := r.Read(make([]byte, 4))
	assert.Zero(t, n)
	assert.Equal(t, io.EOF, err)
	s := r.Stats()
	assert.Equal(t, int64(5), s.BytesDiscarded)
	assert.Zero(t, s.Gaps, "gaps after Close are not recorded")
	rdConserved(t, s)
}

// ---------------------------------------------------------------------------
// Through the assembler

func TestReaderBytesInOrderBothDirections(t *testing.T) {
	kitNoLeaks(t)
	results := make(chan [2]<-chan rdResult, 1)
	f := newRDPairs(ReaderOptions{}, func(p *ReaderPair) {
		results <- [2]<-chan rdResult{rdCollect(p.Client, 7), rdCollect(p.Server, 4096)}
	})
	a, _, fd := rdSetup(t, f)
	_ = a
	c := rdConnN(1)
	req := rdPattern(5000, 0)
	resp := rdPattern(9000, 3)

	fd.open(c)
	// Client bytes out of order: the second half first.
	fd.stream(c, false, 2500, req[2500:], 700)
	fd.stream(c, false, 0, req[:2500], 700)
	fd.stream(c, true, 0, resp, 1460)
	fd.send(c, false, "FA", len(req), nil)
	fd.send(c, true, "FA", len(resp), nil)

	rs := <-results
	cli, srv := <-rs[0], <-rs[1]
	require.Equal(t, io.EOF, cli.err)
	require.Equal(t, io.EOF, srv.err)
	assert.Equal(t, []rdPiece{{data: string(req)}}, cli.pieces)
	assert.Equal(t, []rdPiece{{data: string(resp)}}, srv.pieces)

	p := f.pair(t, 0)
	assert.Equal(t, c.flow(false), p.NetFlow)
	assert.Equal(t, "30001->80", p.TCPFlow.String())
	assert.Same(t, p.Client, p.Reader(TCPDirClientToServer))
	assert.Same(t, p.Server, p.Reader(TCPDirServerToClient))

	tot := f.Stats()
	assert.Equal(t, int64(len(req)+len(resp)), tot.BytesIn)
	assert.Equal(t, tot.BytesIn, tot.BytesRead)
	assert.Zero(t, tot.Buffered)
	assert.Zero(t, tot.Gaps)
	rdConserved(t, tot)
}

func TestReaderEOFPerDirection(t *testing.T) {
	kitNoLeaks(t)
	f := newRDPairs(ReaderOptions{}, nil)
	_, _, fd := rdSetup(t, f)
	c := rdConnN(2)
	fd.open(c)
	fd.send(c, false, "A", 0, []byte("GET / HTTP/1.0\r\n\r\n"))
	fd.send(c, false, "FA", 18, nil)
	p := f.pair(t, 0)
	// The client is done while the server still sends: its reader ends now.
	pieces, err := rdReadAll(p.Client, 64)
	require.Equal(t, io.EOF, err)
	assert.Equal(t, []rdPiece{{data: "GET / HTTP/1.0\r\n\r\n"}}, pieces)

	fd.send(c, true, "A", 0, []byte("HTTP/1.0 200 OK\r\n\r\n"))
	buf := make([]byte, 64)
	n, err := p.Server.Read(buf)
	require.NoError(t, err)
	assert.Equal(t, "HTTP/1.0 200 OK\r\n\r\n", string(buf[:n]))
	fd.send(c, true, "RA", 19, nil)
	_, err = p.Server.Read(buf)
	assert.Equal(t, io.EOF, err)
}

func TestReaderHoleBecomesGapAtFlush(t *testing.T) {
	kitNoLeaks(t)
	f := newRDPairs(ReaderOptions{}, func(p *ReaderPair) { p.Server.Close() })
	a, _, fd := rdSetup(t, f)
	c := rdConnN(3)
	fd.open(c)
	fd.send(c, false, "A", 0, []byte("0123456789"))
	fd.send(c, false, "A", 20, []byte("KLMNOPQRST")) // bytes 10..19 never come
	fd.send(c, false, "FA", 30, nil)
	res := rdCollect(f.pair(t, 0).Client, 3)
	a.FlushAll()
	out := <-res
	require.Equal(t, io.EOF, out.err)
	assert.Equal(t, []rdPiece{
		{data: "0123456789"},
		{gap: &GapError{Bytes: 10}},
		{data: "KLMNOPQRST"},
	}, out.pieces)
	assert.Equal(t, int64(10), a.Stats().GapBytes)
	assert.Equal(t, int64(10), f.Stats().BytesSkipped)
}

func TestReaderForceStart(t *testing.T) {
	kitNoLeaks(t)
	for _, force := range []bool{false, true} {
		t.Run(fmt.Sprint("ForceStart=", force), func(t *testing.T) {
			f := newRDPairs(ReaderOptions{ForceStart: force}, nil)
			a, _, fd := rdSetup(t, f)
			c := rdConnN(4)
			// Capture began mid-connection: no handshake.
			fd.send(c, false, "A", 100, []byte("mid-stream"))
			p := f.pair(t, 0)
			st := p.Client.Stats()
			if force {
				assert.Equal(t, int64(10), st.Buffered, "a forced start delivers at once")
			} else {
				assert.Zero(t, st.BytesIn, "without a start nothing is delivered before a flush")
			}
			a.FlushAll()
			pieces, err := rdReadAll(p.Client, 64)
			require.Equal(t, io.EOF, err)
			require.Len(t, pieces, 2)
			assert.Equal(t, int64(-1), pieces[0].gap.Bytes, "the start was not captured")
			assert.Equal(t, "mid-stream", pieces[1].data)
		})
	}
}

func TestReaderStalledReaderNeverBlocksAssembler(t *testing.T) {
	kitNoLeaks(t)
	const maxBuf = 1000
	// The reader never reads, and a second connection must go on being
	// reassembled meanwhile.
	f := newRDPairs(ReaderOptions{MaxBuffered: maxBuf}, nil)
	a, _, fd := rdSetup(t, f)
	stalled, other := rdConnN(5), rdConnN(6)
	data := rdPattern(20000, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		fd.open(stalled)
		fd.open(other)
		for off := 0; off < len(data); off += 100 {
			fd.send(stalled, false, "A", off, data[off:off+100])
			fd.send(other, false, "A", off, data[off:off+100])
		}
		fd.send(stalled, false, "FA", len(data), nil)
	}()
	require.Eventually(t, kitClosed(done), 30*time.Second, time.Millisecond, "the assembler blocked on a reader that does not read")

	p := f.pair(t, 0)
	s := p.Client.Stats()
	assert.Equal(t, int64(maxBuf), s.Buffered)
	assert.LessOrEqual(t, s.PeakBuffered, int64(maxBuf), "the buffer never exceeds MaxBuffered")
	assert.Equal(t, int64(len(data)-maxBuf), s.BytesDropped)
	rdConserved(t, s)
	assert.LessOrEqual(t, f.Stats().PeakBuffered, int64(maxBuf))
	assert.Equal(t, int64(2*len(data)), a.Stats().BytesDelivered, "the other connection was reassembled")

	// A late reader gets what was kept, the gap, then the end.
	pieces, err := rdReadAll(p.Client, 333)
	require.Equal(t, io.EOF, err)
	require.Len(t, pieces, 2)
	assert.Equal(t, string(data[:maxBuf]), pieces[0].data)
	assert.Equal(t, GapError{Bytes: int64(len(data) - maxBuf), Dropped: int64(len(data) - maxBuf)}, *pieces[1].gap)
}

func TestReaderBlockTimeoutIsLosslessForAReaderThatKeepsUp(t *testing.T) {
	kitNoLeaks(t)
	const maxBuf = 512
	var res <-chan rdResult
	f := newRDPairs(ReaderOptions{MaxBuffered: maxBuf, BlockTimeout: time.Hour}, func(p *ReaderPair) {
		p.Server.Close()
		res = rdCollect(p.Client, 13) // small reads: the reader is slower than the assembler
	})
	_, _, fd := rdSetup(t, f)
	c := rdConnN(7)
	data := rdPattern(100000, 2)
	fd.open(c)
	fd.stream(c, false, 0, data, 1460)
	fd.send(c, false, "FA", len(data), nil)
	out := <-res
	require.Equal(t, io.EOF, out.err)
	require.Equal(t, []rdPiece{{data: string(data)}}, out.pieces, "no byte is lost")
	s := f.pair(t, 0).Client.Stats()
	assert.LessOrEqual(t, s.PeakBuffered, int64(maxBuf))
	assert.Zero(t, s.Stalls)
	assert.Zero(t, s.BytesDropped)
}

func TestReaderBlockTimeoutExpiresOnce(t *testing.T) {
	kitNoLeaks(t)
	f := newRDPairs(ReaderOptions{MaxBuffered: 100, BlockTimeout: time.Millisecond}, nil)
	_, _, fd := rdSetup(t, f)
	c := rdConnN(8)
	fd.open(c)
	fd.stream(c, false, 0, rdPattern(5000, 0), 50)
	p := f.pair(t, 0)
	s := p.Client.Stats()
	assert.Equal(t, int64(1), s.Stalls, "after one expired wait, deliveries stop waiting for that reader")
	assert.Equal(t, int64(4900), s.BytesDropped)

	// Reading again re-arms the wait.
	buf := make([]byte, 10)
	_, err := p.Client.Read(buf)
	require.NoError(t, err)
	fd.stream(c, false, 5000, rdPattern(500, 0), 50)
	assert.Equal(t, int64(2), p.Client.Stats().Stalls)
	rdConserved(t, p.Client.Stats())
}

func TestReaderCloseReleasesAWaitingDelivery(t *testing.T) {
	kitNoLeaks(t)
	f := newRDPairs(ReaderOptions{MaxBuffered: 100, BlockTimeout: time.Hour}, nil)
	_, _, fd := rdSetup(t, f)
	c := rdConnN(9)
	fd.open(c)
	done := make(chan struct{})
	go func() {
		defer close(done)
		fd.send(c, false, "A", 0, rdPattern(300, 0))
	}()
	var p *ReaderPair
	require.Eventually(t, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		if len(f.pairs) == 0 {
			return false
		}
		p = f.pairs[0]
		return p.Client.Stats().Buffered == 100
	}, 10*time.Second, time.Millisecond)
	require.NoError(t, p.Client.Close())
	require.Eventually(t, kitClosed(done), 30*time.Second, time.Millisecond, "Close did not release the delivery waiting for room")
	s := p.Client.Stats()
	assert.Equal(t, int64(300), s.BytesDiscarded)
	assert.Zero(t, s.BytesDropped)
	rdConserved(t, s)
}

func TestReaderStopsEarly(t *testing.T) {
	kitNoLeaks(t)
	got := make(chan string, 1)
	f := newRDPairs(ReaderOptions{MaxBuffered: 4096}, func(p *ReaderPair) {
		p.Server.Close()
		go func() {
			// Read a header, then lose interest.
			buf := make([]byte, 5)
			n, _ := io.ReadFull(p.Client, buf)
			p.Client.Close()
			got <- string(buf[:n])
		}()
	})
	a, _, fd := rdSetup(t, f)
	c := rdConnN(10)
	data := rdPattern(200000, 0)
	fd.open(c)
	fd.stream(c, false, 0, data, 1000)
	assert.Equal(t, string(data[:5]), <-got)
	fd.stream(c, true, 0, data, 1000)
	fd.send(c, false, "FA", len(data), nil)
	fd.send(c, true, "FA", len(data), nil)
	assert.Equal(t, int64(2*len(data)), a.Stats().BytesDelivered)
	tot := f.Stats()
	assert.Equal(t, int64(5), tot.BytesRead)
	assert.Zero(t, tot.Buffered)
	rdConserved(t, tot)
}

func TestReaderPoolCloseEndsBlockedReaders(t *testing.T) {
	kitNoLeaks(t)
	var mu sync.Mutex
	var results []<-chan rdResult
	f := newRDPairs(ReaderOptions{}, func(p *ReaderPair) {
		mu.Lock()
		defer mu.Unlock()
		results = append(results, rdCollect(p.Client, 100), rdCollect(p.Server, 100))
	})
	pool := NewSafeStreamPool(f, 0)
	a := newKitAssembler(t, pool, SafeAssemblerOptions{})
	fd := newKitFeeder(t, a, rdT0, time.Millisecond)
	for i := range 20 {
		c := rdConnN(100 + i)
		fd.open(c)
		fd.send(c, false, "A", 0, []byte("open connection"))
		if i%2 == 0 {
			fd.send(c, false, "A", 100, []byte("after a hole"))
		}
	}
	// Every reader now waits for bytes that will not come; closing the
	// assembler and the pool must end them all.
	require.NoError(t, a.Close())
	require.NoError(t, pool.Close())
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, results, 40)
	for i, ch := range results {
		out := <-ch
		assert.Equal(t, io.EOF, out.err)
		if i%2 == 1 {
			assert.Empty(t, out.pieces)
		}
	}
	assert.Zero(t, pool.Stats().ActiveConnections)
}

func TestReaderWithDropInAssembler(t *testing.T) {
	kitNoLeaks(t)
	var res <-chan rdResult
	f := &ReaderFactory{OnConnection: func(p *ReaderPair) {
		p.Server.Close()
		res = rdCollect(p.Client, 10)
	}}
	a := NewAssembler(NewStreamPool(f))
	c := rdConnN(11)
	ts := rdT0
	a.AssembleWithTimestamp(c.flow(false), c.segOff(false, "S", 0, nil), ts)
	a.AssembleWithTimestamp(c.flow(false), c.segOff(false, "A", 0, []byte("drop-in")), ts)
	a.FlushAll()
	out := <-res
	require.Equal(t, io.EOF, out.err)
	assert.Equal(t, []rdPiece{{data: "drop-in"}}, out.pieces)
}

func TestReaderNilOnConnectionDiscards(t *testing.T) {
	f := &ReaderFactory{}
	a, _, fd := rdSetup(t, f)
	c := rdConnN(12)
	fd.open(c)
	fd.send(c, false, "A", 0, []byte("nobody reads this"))
	assert.Equal(t, int64(17), f.Stats().BytesDiscarded)
	assert.Zero(t, f.Stats().Buffered)
	assert.Zero(t, a.Stats().Errors)
}

// ---------------------------------------------------------------------------
// HTTP from packets

func TestReaderParsesHTTPRequests(t *testing.T) {
	kitNoLeaks(t)
	type request struct {
		method, url, host, body string
	}
	got := make(chan []request, 1)
	f := &ReaderFactory{OnConnection: func(p *ReaderPair) {
		p.Server.Close()
		go func() {
			var reqs []request
			br := bufio.NewReader(p.Client)
			for {
				req, err := http.ReadRequest(br)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Errorf("ReadRequest: %v", err)
					break
				}
				body, err := io.ReadAll(req.Body)
				if err != nil {
					t.Errorf("reading body: %v", err)
				}
				req.Body.Close()
				reqs = append(reqs, request{req.Method, req.URL.String(), req.Host, string(body)})
			}
			got <- reqs
		}()
	}}
	_, _, fd := rdSetup(t, f)
	c := rdConnN(13)
	stream := []byte("GET /index.html HTTP/1.1\r\nHost: example.com\r\nUser-Agent: test\r\n\r\n" +
		"POST /api/items?x=1 HTTP/1.1\r\nHost: example.com\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{\"name\":\"gizmo\"}" +
		"PUT /big HTTP/1.1\r\nHost: example.com\r\nContent-Length: 3000\r\n\r\n" + strings.Repeat("z", 3000))
	// Cut at awkward places and deliver out of order.
	type segment struct{ off, end int }
	var segs []segment
	rng := rand.New(rand.NewSource(13))
	for off := 0; off < len(stream); {
		end := min(len(stream), off+1+rng.Intn(200))
		segs = append(segs, segment{off, end})
		off = end
	}
	rng.Shuffle(len(segs), func(i, j int) { segs[i], segs[j] = segs[j], segs[i] })
	fd.open(c)
	for _, s := range segs {
		fd.send(c, false, "A", s.off, stream[s.off:s.end])
	}
	fd.send(c, false, "FA", len(stream), nil)
	assert.Equal(t, []request{
		{"GET", "/index.html", "example.com", ""},
		{"POST", "/api/items?x=1", "example.com", `{"name":"gizmo"}`},
		{"PUT", "/big", "example.com", strings.Repeat("z", 3000)},
	}, <-got)
}

// ---------------------------------------------------------------------------
// Concurrency

func TestReaderConcurrentConnectionsAccountForEveryByte(t *testing.T) {
	kitNoLeaks(t)
	const conns = 40
	type outcome struct {
		id  int
		res rdResult
	}
	var wg sync.WaitGroup
	outcomes := make(chan outcome, 2*conns)
	f := &ReaderFactory{
		Options: ReaderOptions{MaxBuffered: 300},
		OnConnection: func(p *ReaderPair) {
			src, _ := p.TCPFlow.Endpoints() // the client's port, 30000+id
			id := int(src.Raw()[0])<<8 | int(src.Raw()[1]) - 30000
			for dir, r := range []*ReaderStream{p.Client, p.Server} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					pieces, err := rdReadAll(r, 1+id%17)
					outcomes <- outcome{id*2 + dir, rdResult{pieces, err}}
				}()
			}
		},
	}
	pool := NewSafeStreamPool(f, 0)
	a := newKitAssembler(t, pool, SafeAssemblerOptions{DisableBackgroundFlush: true})

	payload := func(id, dir int) []byte { return rdPattern(3000+id*50, byte(id*2+dir)) }
	var feeders sync.WaitGroup
	for w := range 4 {
		feeders.Add(1)
		go func() {
			defer feeders.Done()
			fd := newKitFeeder(t, a, rdT0, time.Millisecond)
			for id := w; id < conns; id += 4 {
				c := rdConnN(id)
				fd.open(c)
				req, resp := payload(id, 0), payload(id, 1)
				fd.stream(c, false, 0, req, 100+id)
				fd.stream(c, true, 0, resp, 200+id)
				fd.send(c, false, "FA", len(req), nil)
				fd.send(c, true, "FA", len(resp), nil)
				// Stats may be read while everything runs.
				_ = f.Stats()
			}
		}()
	}
	feeders.Wait()
	require.NoError(t, a.Close())
	require.NoError(t, pool.Close())
	wg.Wait()
	close(outcomes)
	n := 0
	for o := range outcomes {
		n++
		require.Equal(t, io.EOF, o.res.err)
		want := payload(o.id/2, o.id%2)
		// Rebuild the stream from bytes and gaps: every byte read must be
		// where it belongs, and the gaps must cover the rest exactly.
		at := 0
		for _, pc := range o.res.pieces {
			if pc.gap != nil {
				require.Positive(t, pc.gap.Bytes)
				at += int(pc.gap.Bytes)
				continue
			}
			require.LessOrEqual(t, at+len(pc.data), len(want))
			require.True(t, bytes.Equal(want[at:at+len(pc.data)], []byte(pc.data)), "connection %d: bytes out of place at %d", o.id, at)
			at += len(pc.data)
		}
		require.Equal(t, len(want), at, "connection %d: bytes and gaps must add up to the stream", o.id)
	}
	assert.Equal(t, 2*conns, n)
	tot := f.Stats()
	rdConserved(t, tot)
	assert.Zero(t, tot.Buffered)
	assert.LessOrEqual(t, tot.PeakBuffered, int64(300))
}

// BenchmarkReaderPairThroughput measures a delivery of one 1460-byte
// segment and its Read by another goroutine.
func BenchmarkReaderPairThroughput(b *testing.B) {
	p := NewReaderPair(gopacket.Flow{}, gopacket.Flow{}, ReaderOptions{BlockTimeout: time.Minute})
	sg := &rdSG{dir: TCPDirClientToServer, start: true, data: rdPattern(1460, 0)}
	done := make(chan int64)
	go func() {
		n, _ := io.Copy(io.Discard, p.Client)
		done <- n
	}()
	b.SetBytes(int64(len(sg.data)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		p.ReassembledSG(sg, nil)
		sg.start = false
	}
	p.ReassemblyComplete(nil)
	n := <-done
	if s := p.Client.Stats(); n != s.BytesIn || s.BytesDropped != 0 {
		b.Fatalf("read %d of %d bytes, dropped %d", n, s.BytesIn, s.BytesDropped)
	}
}
