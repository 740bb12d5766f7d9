package tcpreader_test

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/safepacket/reassembly/tcpassembly"
	"github.com/safepacket/reassembly/tcpassembly/tcpreader"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func batch(chunks ...string) []tcpassembly.Reassembly {
	var rs []tcpassembly.Reassembly
	for _, c := range chunks {
		rs = append(rs, tcpassembly.Reassembly{Bytes: []byte(c)})
	}
	return rs
}

// Reassembled does not return before its bytes are read: the reader can
// use them while the call is waiting.
func TestReassembledWaitsForTheReader(t *testing.T) {
	t.Parallel()
	r := tcpreader.NewReaderStream()
	returned := make(chan struct{})
	go func() {
		r.Reassembled(batch("hello ", "world"))
		close(returned)
		r.ReassemblyComplete()
	}()
	buf := make([]byte, 3)
	n, err := r.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "hel", string(buf[:n]))
	select {
	case <-returned:
		t.Fatal("Reassembled returned before its bytes were read")
	default:
	}
	rest, err := io.ReadAll(&r)
	require.NoError(t, err)
	require.Equal(t, "lo world", string(rest))
	<-returned
}

// Read hands over the bytes of one Reassembly at a time, reports a loss
// once before the bytes after it (with LossErrors), and io.EOF at the end.
func TestReadLossAndEOF(t *testing.T) {
	t.Parallel()
	r := tcpreader.NewReaderStream()
	r.LossErrors = true
	go func() {
		r.Reassembled([]tcpassembly.Reassembly{{Bytes: []byte("ab")}, {Bytes: []byte("cd"), Skip: 3}, {Skip: 1}})
		r.ReassemblyComplete()
	}()
	buf := make([]byte, 10)
	var got []string
	for {
		n, err := r.Read(buf)
		if err == io.EOF {
			break
		}
		if err != nil {
			got = append(got, err.Error())
			continue
		}
		got = append(got, string(buf[:n]))
	}
	require.Equal(t, []string{"ab", tcpreader.DataLost.Error(), "cd"}, got)
}

// A bounded ReaderStream whose reader stopped gives up on each delivery,
// drops its bytes and counts them; the reader, when it comes back, sees
// the loss.
func TestBoundedReaderStreamDropsForAStoppedReader(t *testing.T) {
	t.Parallel()
	r := tcpreader.NewBoundedReaderStream(tcpreader.WaitOptions{MaxWait: time.Millisecond})
	r.LossErrors = true
	r.Reassembled(batch("dropped"))   // returns after MaxWait: nobody reads
	r.Reassembled(batch("also gone")) // returns at once: the reader stalled
	require.EqualValues(t, len("dropped")+len("also gone"), r.Dropped())
	r.ReassemblyComplete()
	_, err := r.Read(make([]byte, 16))
	require.ErrorIs(t, err, tcpreader.DataLost)
	_, err = r.Read(make([]byte, 16))
	require.Equal(t, io.EOF, err)
}

// A reader that comes back after its stream dropped bytes gets the next
// ones, after a DataLost: the stream waits for a reader again as soon as
// it is reading.
func TestBoundedReaderStreamResumes(t *testing.T) {
	t.Parallel()
	r := tcpreader.NewBoundedReaderStream(tcpreader.WaitOptions{MaxWait: 20 * time.Millisecond})
	r.LossErrors = true
	r.Reassembled(batch("dropped"))
	got := make(chan []string, 1)
	go func() {
		var seen []string
		buf := make([]byte, 16)
		for {
			n, err := r.Read(buf)
			if err == io.EOF {
				got <- seen
				return
			}
			if err != nil {
				seen = append(seen, err.Error())
				continue
			}
			seen = append(seen, string(buf[:n]))
		}
	}()
	// Deliver until a delivery is read rather than dropped: only a machine
	// too slow to wake the reader within MaxWait takes more than one.
	for {
		before := r.Dropped()
		r.Reassembled(batch("kept"))
		if r.Dropped() == before {
			break
		}
	}
	r.ReassemblyComplete()
	seen := <-got
	require.NotEmpty(t, seen)
	require.Equal(t, tcpreader.DataLost.Error(), seen[0])
	require.Equal(t, "kept", seen[len(seen)-1])
}

// An unbounded ReaderStream never drops.
func TestUnboundedReaderStreamDropsNothing(t *testing.T) {
	t.Parallel()
	r := tcpreader.NewReaderStream()
	go func() {
		for i := 0; i < 100; i++ {
			r.Reassembled(batch("0123456789"))
		}
		r.ReassemblyComplete()
	}()
	require.Equal(t, 1000, tcpreader.DiscardBytesToEOF(&r))
	require.Zero(t, r.Dropped())
}

// Close discards what is pending and what comes after, and returns once
// the stream is complete.
func TestCloseDiscards(t *testing.T) {
	t.Parallel()
	r := tcpreader.NewReaderStream()
	go func() {
		r.Reassembled(batch("one"))
		r.Reassembled(batch("two"))
		r.ReassemblyComplete()
	}()
	buf := make([]byte, 1)
	n, err := r.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "o", string(buf[:n]))
	require.NoError(t, r.Close())
	n, err = r.Read(buf)
	require.Equal(t, 0, n)
	require.Equal(t, io.EOF, err)
	require.Zero(t, r.Dropped(), "bytes the reader refused are not counted as dropped")
}

// The zero ReaderStream (upstream panicked) has no data and ignores what
// it is given; a second ReassemblyComplete does nothing.
func TestZeroAndRepeatedCompleteDoNotPanic(t *testing.T) {
	t.Parallel()
	var z tcpreader.ReaderStream
	z.Reassembled(batch("x"))
	z.ReassemblyComplete()
	n, err := z.Read(make([]byte, 4))
	require.Equal(t, 0, n)
	require.Equal(t, io.EOF, err)
	require.NoError(t, z.Close())

	r := tcpreader.NewReaderStream()
	r.ReassemblyComplete()
	r.ReassemblyComplete()
	r.Reassembled(batch("late")) // after the end: dropped, no block
	_, err = r.Read(make([]byte, 4))
	require.Equal(t, io.EOF, err)
}

// stalledFactory gives the direction to port 81 a bounded ReaderStream
// that is never read, and the others plain ones read to the end.
type stalledFactory struct {
	wait  time.Duration
	got   chan []byte
	pause chan struct{}
	made  []*tcpreader.ReaderStream
}

func (f *stalledFactory) New(_, tcpFlow gopacket.Flow) tcpassembly.Stream {
	if tcpFlow.Dst().String() == "81" {
		r := tcpreader.NewBoundedReaderStream(tcpreader.WaitOptions{MaxWait: f.wait})
		f.made = append(f.made, &r)
		go func() {
			<-f.pause // a reader that stopped
			tcpreader.DiscardBytesToEOF(&r)
		}()
		return &r
	}
	// Unbounded, so that how fast this reader runs cannot lose its bytes:
	// what the test shows is that the stopped one does not hold it up.
	r := tcpreader.NewReaderStream()
	f.made = append(f.made, &r)
	go func() {
		b, _ := io.ReadAll(&r)
		f.got <- b
	}()
	return &r
}

// One stopped reader does not stop the Assembler (google/gopacket#873):
// the other connection's bytes all arrive, and the stopped one's are
// counted as dropped.
func TestStoppedReaderDoesNotStopTheAssembler(t *testing.T) {
	t.Parallel()
	f := &stalledFactory{wait: time.Millisecond, got: make(chan []byte, 1), pause: make(chan struct{})}
	a := tcpassembly.NewAssembler(tcpassembly.NewStreamPool(f))
	nf, _ := gopacket.FlowFromEndpoints(layers.NewIPEndpoint(net.IP{10, 0, 0, 1}), layers.NewIPEndpoint(net.IP{10, 0, 0, 2}))
	ts := time.Unix(100, 0)
	var want bytes.Buffer
	for _, port := range []layers.TCPPort{81, 80} {
		a.AssembleWithTimestamp(nf, &layers.TCP{SrcPort: 1000, DstPort: port, SYN: true, Seq: 1}, ts)
	}
	seq := uint32(2)
	for i := 0; i < 20; i++ {
		p := bytes.Repeat([]byte{byte('a' + i)}, 100)
		for _, port := range []layers.TCPPort{81, 80} {
			a.AssembleWithTimestamp(nf, &layers.TCP{SrcPort: 1000, DstPort: port, Seq: seq, BaseLayer: layers.BaseLayer{Payload: p}}, ts)
		}
		want.Write(p)
		seq += 100
	}
	for _, port := range []layers.TCPPort{81, 80} {
		a.AssembleWithTimestamp(nf, &layers.TCP{SrcPort: 1000, DstPort: port, FIN: true, Seq: seq}, ts)
	}
	require.Equal(t, want.Bytes(), <-f.got)
	require.Len(t, f.made, 2)
	require.Greater(t, f.made[0].Dropped(), int64(0), "the stopped reader's bytes are counted")
	close(f.pause)
}
