package tcpreader_test

import (
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	uptcpassembly "github.com/google/gopacket/tcpassembly"
	uptcpreader "github.com/google/gopacket/tcpassembly/tcpreader"
	"github.com/safepacket/reassembly/tcpassembly"
	"github.com/safepacket/reassembly/tcpassembly/tcpreader"
	"github.com/stretchr/testify/require"
)

// transcripts records, per direction (by its flows), what a reader read:
// the bytes, with "<lost>" where Read reported DataLost.
type transcripts struct {
	mu  sync.Mutex
	wg  sync.WaitGroup
	got map[string]*strings.Builder
}

// read drains r (a ReaderStream of either implementation) into the
// transcript of key until io.EOF.
func (tr *transcripts) read(key string, r io.Reader, lost error) {
	tr.mu.Lock()
	b := &strings.Builder{}
	tr.got[key] = b
	tr.mu.Unlock()
	tr.wg.Add(1)
	go func() {
		defer tr.wg.Done()
		buf := make([]byte, 700)
		for {
			n, err := r.Read(buf)
			tr.mu.Lock()
			b.Write(buf[:n])
			if err == lost {
				b.WriteString("<lost>")
			}
			tr.mu.Unlock()
			if err == io.EOF {
				return
			}
		}
	}()
}

type upReaders struct{ tr *transcripts }

// New keys a direction by its addresses, which the scenarios keep unique
// (the port flow of a hand-built layers.TCP has no endpoints upstream).
func (f upReaders) New(netFlow, _ gopacket.Flow) uptcpassembly.Stream {
	r := uptcpreader.NewReaderStream()
	r.LossErrors = true
	f.tr.read(netFlow.String(), &r, uptcpreader.DataLost)
	return &r
}

type ourReaders struct{ tr *transcripts }

func (f ourReaders) New(netFlow, _ gopacket.Flow) tcpassembly.Stream {
	r := tcpreader.NewReaderStream()
	r.LossErrors = true
	f.tr.read(netFlow.String(), &r, tcpreader.DataLost)
	return &r
}

// readerPacket is one segment of a generated scenario.
type readerPacket struct {
	net gopacket.Flow
	tcp layers.TCP
	at  time.Time
}

// readerScenario generates connections whose directions each send random
// bytes in segments of random sizes, from a SYN (or midway), reordered
// within a few segments, some duplicated, sometimes one lost, then a FIN
// after everything: the shapes a ReaderStream's user meets, without the
// faults upstream is known for (late copies after the end, RSTs).
func readerScenario(rng *rand.Rand) []readerPacket {
	var out []readerPacket
	t0 := time.Unix(1_700_000_000, 0)
	conns := 1 + rng.IntN(3)
	for c := 0; c < conns; c++ {
		client := net.IPv4(10, 0, 0, byte(1+c)).To4()
		server := net.IPv4(10, 0, 1, 1).To4()
		cport, sport := layers.TCPPort(40000+c), layers.TCPPort(80)
		for dir := 0; dir < 2; dir++ {
			src, dst, sp, dp := client, server, cport, sport
			if dir == 1 {
				src, dst, sp, dp = server, client, sport, cport
			}
			flow := gopacket.NewFlow(layers.EndpointIPv4, src, dst)
			isn := rng.Uint32()
			seq := isn
			var segs []readerPacket
			mk := func(flags string, payload []byte) readerPacket {
				p := readerPacket{net: flow, tcp: layers.TCP{SrcPort: sp, DstPort: dp, Seq: seq, ACK: true,
					SYN: strings.Contains(flags, "S"), FIN: strings.Contains(flags, "F")}}
				p.tcp.Payload = payload
				return p
			}
			if rng.IntN(4) != 0 {
				segs = append(segs, mk("S", nil))
				seq++
			}
			lose := -1
			n := 1 + rng.IntN(12)
			if rng.IntN(4) == 0 {
				lose = rng.IntN(n)
			}
			for i := 0; i < n; i++ {
				payload := make([]byte, 1+rng.IntN(1500))
				for j := range payload {
					payload[j] = byte('a' + rng.IntN(26))
				}
				p := mk("", payload)
				seq += uint32(len(payload))
				if i == lose {
					continue
				}
				segs = append(segs, p)
				if rng.IntN(20) == 0 {
					segs = append(segs, p)
				}
			}
			// Reorder within a few segments, the SYN staying first.
			for i := 1; i < len(segs); i++ {
				if j := i + rng.IntN(3); j < len(segs) && rng.IntN(5) == 0 {
					segs[i], segs[j] = segs[j], segs[i]
				}
			}
			segs = append(segs, mk("F", nil))
			out = append(out, segs...)
		}
	}
	for i := range out {
		out[i].at = t0.Add(time.Duration(i) * time.Millisecond)
	}
	return out
}

// Property: fed the same packets, upstream's ReaderStream and ours let
// their readers read the same bytes and the same losses, direction by
// direction (randomized; DIFF_SEED and DIFF_N reproduce a run).
func TestReaderStreamDifferential(t *testing.T) {
	t.Parallel()
	seed, n := uint64(time.Now().UnixNano()), 200
	if s, err := strconv.ParseUint(os.Getenv("DIFF_SEED"), 0, 64); err == nil {
		seed = s
	}
	if v, err := strconv.Atoi(os.Getenv("DIFF_N")); err == nil {
		n = v
	}
	t.Logf("DIFF_SEED=%#x DIFF_N=%d", seed, n)
	for i := 0; i < n; i++ {
		pkts := readerScenario(rand.New(rand.NewPCG(seed, uint64(i))))
		up := &transcripts{got: map[string]*strings.Builder{}}
		ua := uptcpassembly.NewAssembler(uptcpassembly.NewStreamPool(upReaders{up}))
		ours := &transcripts{got: map[string]*strings.Builder{}}
		oa := tcpassembly.NewAssembler(tcpassembly.NewStreamPool(ourReaders{ours}))
		for _, p := range pkts {
			tcp := p.tcp
			ua.AssembleWithTimestamp(p.net, &tcp, p.at)
			tcp = p.tcp
			oa.AssembleWithTimestamp(p.net, &tcp, p.at)
		}
		ua.FlushAll()
		oa.FlushAll()
		up.wg.Wait()
		ours.wg.Wait()
		require.Equal(t, texts(up), texts(ours), "scenario %d: rerun with DIFF_SEED=%#x DIFF_N=%d", i, seed, i+1)
	}
}

func texts(tr *transcripts) map[string]string {
	m := make(map[string]string, len(tr.got))
	for k, b := range tr.got {
		m[k] = b.String()
	}
	return m
}
