package tcpassembly_test

// Regression tests for where this package differs from upstream
// tcpassembly on purpose (MIGRATION.md, "The tcpassembly face"). They use
// the differential test's recorder (diffLog) and packets (decoded).

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	ours "github.com/safepacket/reassembly/tcpassembly"
	"github.com/stretchr/testify/require"
)

// seg builds a decoded segment of connection 0, direction dir (0 client).
func seg(dir int, seq uint32, flags string, payload string) layers.TCP {
	t := layers.TCP{SrcPort: 1000, DstPort: 80, Seq: seq}
	if dir == 1 {
		t.SrcPort, t.DstPort = 80, 1000
	}
	t.SYN, t.ACK, t.FIN, t.RST = strings.Contains(flags, "S"), strings.Contains(flags, "A"), strings.Contains(flags, "F"), strings.Contains(flags, "R")
	if payload != "" {
		t.Payload = []byte(payload)
	}
	return decoded(t)
}

type player struct {
	a  *ours.Assembler
	l  *diffLog
	ts time.Time
}

// newPlayer returns a player whose Assembler records into a new log,
// through the factory wrap makes of the recording one (nil: as it is).
func newPlayer(wrap func(ourFactory) ours.StreamFactory) *player {
	l := newDiffLog()
	var f ours.StreamFactory = ourFactory{l}
	if wrap != nil {
		f = wrap(ourFactory{l})
	}
	return &player{a: ours.NewAssembler(ours.NewStreamPool(f)), l: l, ts: diffT0}
}

// open sends the client's SYN and the server's SYN-ACK (ISNs 100, 500).
func (p *player) open() {
	p.send(0, 100, "S", "")
	p.send(1, 500, "SA", "")
}

func (p *player) send(dir int, seq uint32, flags, payload string) {
	p.ts = p.ts.Add(time.Second)
	p.l.step++
	t := seg(dir, seq, flags, payload)
	p.a.AssembleWithTimestamp(diffFlow(0, dir), &t, p.ts)
}

const (
	client = "10.0.0.1->192.168.0.2 1000->80 #0"
	server = "192.168.0.2->10.0.0.1 80->1000 #0"
)

// nilFactory refuses the server's direction.
type nilFactory struct{ ourFactory }

func (f nilFactory) New(a, b gopacket.Flow) ours.Stream {
	if b.Src().String() == "80" {
		return nil
	}
	return f.ourFactory.New(a, b)
}

// A nil Stream from New ignores its direction (upstream panicked, row 9),
// and a nil packet is ignored.
func TestNilStreamAndNilPacket(t *testing.T) {
	t.Parallel()
	p := newPlayer(func(f ourFactory) ours.StreamFactory { return nilFactory{f} })
	l := p.l
	p.a.AssembleWithTimestamp(diffFlow(0, 0), nil, diffT0)
	p.open()
	p.send(1, 501, "A", "ignored")
	p.send(0, 101, "A", "kept")
	p.send(0, 105, "FA", "")
	p.send(1, 508, "FA", "")
	require.Len(t, l.streams, 1)
	require.Contains(t, strings.Join(l.coarse[client], "|"), "bytes=6b657074")
	require.True(t, strings.HasSuffix(strings.Join(l.coarse[client], "|"), "complete"))
}

// An RST ends both directions: the other one's held bytes are delivered
// over their hole and its Stream completes (upstream left it open, row 38).
func TestRSTEndsBothDirections(t *testing.T) {
	t.Parallel()
	p := newPlayer(nil)
	l := p.l
	p.open()
	p.send(1, 510, "A", "held") // behind a hole of 9 bytes
	p.send(0, 101, "RA", "")
	require.Equal(t, []string{"step 2: new", "step 2: skip=0 start=true end=false bytes=", "step 4: skip=9 start=false end=false bytes=68656c64", "step 4: complete"}, l.coarse[server])
	require.Equal(t, "step 4: complete", l.coarse[client][len(l.coarse[client])-1])
}

// A late copy of a direction's bytes after its FIN opens no second Stream
// while the connection is open (upstream opened one, and delivered the
// copy with Skip -1 at the next flush).
func TestLateCopyAfterFINOpensNothing(t *testing.T) {
	t.Parallel()
	p := newPlayer(nil)
	l := p.l
	p.open()
	p.send(0, 101, "A", "data")
	p.send(0, 105, "FA", "")
	p.send(0, 101, "A", "data") // retransmitted after the FIN
	p.a.FlushAll()
	require.Len(t, l.streams, 2)
}

// The FIN's piece ends its direction even when another, overlapping copy
// follows it in the same delivery (upstream left the direction open, row
// 28).
func TestFINPieceEnds(t *testing.T) {
	t.Parallel()
	p := newPlayer(nil)
	l := p.l
	p.send(0, 100, "S", "")
	p.send(0, 105, "FA", "efgh") // held, with the FIN
	p.send(0, 107, "A", "gh")    // held, inside it
	p.send(0, 101, "A", "abcd")  // fills the hole
	p.send(0, 109, "A", "more")  // after the FIN: not part of the stream
	require.Equal(t, "step 4: complete", l.coarse[client][len(l.coarse[client])-1])
	require.Contains(t, l.coarse[client][len(l.coarse[client])-2], "end=true bytes=6162636465666768")
}

// FlushOlderThan closes a direction when its whole connection has been
// idle, not while the other direction is active (google/gopacket#487).
func TestCloseAllWaitsForTheConnection(t *testing.T) {
	t.Parallel()
	p := newPlayer(nil)
	p.open()
	p.send(0, 101, "A", "quiet")
	cut := p.ts.Add(time.Millisecond)
	p.send(1, 501, "A", "busy")
	f, c := p.a.FlushOlderThan(cut)
	require.Equal(t, [2]int{0, 0}, [2]int{f, c})
	f, c = p.a.FlushOlderThan(p.ts.Add(time.Millisecond))
	require.Equal(t, [2]int{2, 2}, [2]int{f, c})
}

// MaxBufferedPagesPerConnection bounds what a direction holds: with a
// limit of 3, fewer than 3 one-page segments are left waiting after each
// packet: the one that reaches the limit pushes the first hole out.
func TestPageLimitBoundsWhatIsHeld(t *testing.T) {
	t.Parallel()
	p := newPlayer(nil)
	l := p.l
	p.a.MaxBufferedPagesPerConnection = 3
	p.send(0, 100, "S", "")
	for i := 0; i < 100; i++ {
		p.send(0, uint32(1000+8*i), "A", "x")  // each after a hole
		delivered := len(l.coarse[client]) - 2 // new, and the SYN's delivery
		require.Less(t, i+1-delivered, 3, "segments held after %d sent: %v", i+1, l.coarse[client])
	}
}

// Two Assemblers sharing a pool, fed the two directions of the same
// connections, and a third goroutine flushing, make one Stream per
// direction and complete each once (upstream rows 3, 12); -race checks
// the rest.
func TestSharedPoolConcurrency(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	l := newDiffLog()
	pool := ours.NewStreamPool(lockedFactory{&mu, ourFactory{l}})
	as := []*ours.Assembler{ours.NewAssembler(pool), ours.NewAssembler(pool)}
	var wg sync.WaitGroup
	for d := 0; d < 2; d++ {
		wg.Add(1)
		go func(d int) {
			defer wg.Done()
			for c := 0; c < 50; c++ {
				nf := diffFlow(c, d)
				syn := seg(d, 100, "S", "")
				if d == 1 {
					syn = seg(d, 100, "SA", "")
				}
				syn.SrcPort, syn.DstPort = layers.TCPPort(1000+c), 80
				if d == 1 {
					syn.SrcPort, syn.DstPort = 80, layers.TCPPort(1000+c)
				}
				data, fin := syn, syn
				data.SYN, data.Seq, data.Payload = false, 101, []byte("payload")
				fin.SYN, fin.FIN, fin.Seq, fin.Payload = false, true, 108, nil
				for _, pk := range []*layers.TCP{&syn, &data, &fin} {
					as[d].AssembleWithTimestamp(nf, pk, diffT0)
				}
			}
		}(d)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 20; i++ {
			as[0].FlushOlderThan(diffT0.Add(-time.Hour))
		}
	}()
	wg.Wait()
	as[1].FlushAll()
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, l.streams, 100)
	for id, ev := range l.streams {
		require.Equal(t, 1, strings.Count(strings.Join(ev, "|"), "complete"), id)
	}
}

// lockedFactory serializes the recorder, which Assemblers of one pool call
// from their goroutines.
type lockedFactory struct {
	mu *sync.Mutex
	f  ourFactory
}

func (f lockedFactory) New(a, b gopacket.Flow) ours.Stream {
	f.mu.Lock()
	defer f.mu.Unlock()
	return lockedStream{f.mu, f.f.New(a, b)}
}

type lockedStream struct {
	mu *sync.Mutex
	s  ours.Stream
}

func (s lockedStream) Reassembled(rs []ours.Reassembly) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.s.Reassembled(rs)
}

func (s lockedStream) ReassemblyComplete() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.s.ReassemblyComplete()
}
