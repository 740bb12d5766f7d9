package reassembly

import (
	"errors"
	"io"
	"net/netip"
	"testing"
	"time"

	upstream "github.com/google/gopacket/reassembly"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Tests of the connection lifecycle (issue 13): new conversations on a
// 4-tuple told apart from late copies, port reuse, timeouts applied before
// the packet, gaps declared by acknowledgements, mid-stream pickup. Each
// case runs the same packets through upstream, the drop-in face and the
// Safe face, and compares what each Stream got with the bytes sent.

// lcConv writes the packets of one conversation, in the order its hosts
// send them; every packet acknowledges all the peer sent, lost or not.
type lcConv struct {
	c, s netip.AddrPort
	next [2]uint32 // per direction (0: client), the next sequence number
	ts   time.Time
	segs []segment
}

func newLCConv(isnC, isnS uint32, ts time.Time) *lcConv {
	return &lcConv{
		c:    netip.MustParseAddrPort("10.13.0.1:40013"),
		s:    netip.MustParseAddrPort("10.13.0.2:80"),
		next: [2]uint32{isnC, isnS},
		ts:   ts,
	}
}

func (v *lcConv) emit(dir int, seg segment) {
	seg.client, seg.server, seg.ts = v.c, v.s, v.ts
	seg.fromServer = dir == 1
	seg.seq = v.next[dir]
	if !seg.syn || dir == 1 {
		seg.ack, seg.hasAck = v.next[1-dir], true
	}
	v.segs = append(v.segs, seg)
	v.next[dir] += uint32(len(seg.payload))
	if seg.syn || seg.fin {
		v.next[dir]++
	}
	v.ts = v.ts.Add(time.Millisecond)
}

// handshake sends SYN, SYN-ACK, ACK.
func (v *lcConv) handshake() *lcConv {
	v.emit(0, segment{syn: true})
	v.emit(1, segment{syn: true})
	v.emit(0, segment{})
	return v
}

func (v *lcConv) send(dir int, data string) *lcConv {
	v.emit(dir, segment{payload: []byte(data), psh: true})
	return v
}

// lose sends n bytes the capture misses.
func (v *lcConv) lose(dir, n int) *lcConv {
	v.next[dir] += uint32(n)
	return v
}

func (v *lcConv) ack(dir int) *lcConv { v.emit(dir, segment{}); return v }

func (v *lcConv) fin(dir int) *lcConv { v.emit(dir, segment{fin: true}); return v }

// close sends FIN both ways and the last ACK.
func (v *lcConv) close() *lcConv { return v.fin(0).fin(1).ack(0) }

// lcDir is what one direction of a Stream received, read off its record.
type lcDir struct {
	data  string
	skips []int // the Skips other than 0, in order
	ends  int
}

// lcConn is one Stream's record, as it stood when the run ended.
type lcConn struct {
	dirs      [2]lcDir
	completes int
	starts    [2]int // deliveries reporting start, per direction
}

func lcConnOf(st *trStream) *lcConn {
	c := &lcConn{completes: st.completes}
	for _, d := range st.deliveries {
		if d.skip != 0 {
			c.dirs[d.dir].skips = append(c.dirs[d.dir].skips, d.skip)
		}
		if d.end {
			c.dirs[d.dir].ends++
		}
		if d.start {
			c.starts[d.dir]++
		}
	}
	for i := range c.dirs {
		c.dirs[i].data = string(st.got[i])
	}
	return c
}

// lcFace is a way to run packets: a library and its options.
type lcFace struct {
	name        string
	upstream    bool
	safe        bool
	ackGaps     bool                 // drop-in face: SetSkipAckedHoles
	opts        SafeAssemblerOptions // Safe face
	refuseStart bool                 // the Streams clear Accept's start
	keepOpen    bool                 // ReassemblyComplete returns false
}

// lcResult is what a run left: the Streams, the event log, and the Safe
// face's counters (zero for the others).
type lcResult struct {
	conns []*lcConn
	log   []string
	stats AssemblerStats
}

// conn returns Stream i, failing the test when there is none.
func (r *lcResult) conn(t *testing.T, i int) *lcConn {
	t.Helper()
	require.Greater(t, len(r.conns), i, "Stream %d was never made; log %v", i, r.log)
	return r.conns[i]
}

// run feeds segs to a new assembler of the face, then FlushAll when flush
// is set.
func (f lcFace) run(t *testing.T, segs []segment, flush bool) *lcResult {
	t.Helper()
	res := &lcResult{}
	rec := &trRec{refuseStart: f.refuseStart, keepOpen: f.keepOpen}
	pkts := make([]trPacket, len(segs))
	for i, s := range segs {
		pkts[i] = s.build().trPacket()
	}
	// What a run leaves is read before any Close, whose flush is not the
	// run's.
	var flushAll func() int
	switch {
	case f.upstream:
		a, pv := trUp(rec, upstream.AssemblerOptions{}, pkts)
		require.Nil(t, pv, "upstream panicked")
		flushAll = a.FlushAll
	case !f.safe:
		a := NewAssembler(NewStreamPool(trFactory{rec}))
		a.SetSkipAckedHoles(f.ackGaps)
		trFeed(t, a, pkts)
		flushAll = a.FlushAll
	default:
		opts := f.opts
		opts.DisableBackgroundFlush = true
		if opts.ConnectionTimeout == 0 {
			opts.ConnectionTimeout = time.Hour
		}
		a, pool, _ := trSafe(t, rec, opts, pkts)
		flushAll = a.FlushAll
		defer func() {
			res.stats = a.Stats()
			require.NoError(t, a.Close())
			require.NoError(t, pool.Close())
		}()
	}
	if flush {
		flushAll()
	}
	for _, st := range rec.streams {
		res.conns = append(res.conns, lcConnOf(st))
	}
	res.log = append([]string(nil), rec.log...)
	return res
}

var (
	lcUpstream = lcFace{name: "upstream", upstream: true}
	lcDropIn   = lcFace{name: "drop-in"}
	lcSafe     = lcFace{name: "safe", safe: true}
)

// conservation checks the Safe face's byte accounting after a run.
func lcConserved(t *testing.T, r *lcResult) {
	t.Helper()
	s := r.stats
	assert.Equal(t, s.BytesProcessed, s.BytesDelivered+s.BytesOverlap+s.BytesOverwritten+s.BytesDiscarded+s.PageCache.QueuedBytes,
		"bytes not conserved: %+v", s)
}

var lcT0 = time.Unix(1_750_000_000, 0)

// Property (case 1): a conversation that follows a completed one on the
// same 4-tuple within the graves' TTL, its SYN not captured and its
// sequence numbers below the old end, is delivered in full to a new Stream
// on every face; a true late copy of the old conversation still opens
// nothing.
func TestLifecycleNewConversationIsNotALateCopy(t *testing.T) {
	t.Parallel()
	old := newLCConv(1_000_000, 5_000_000, lcT0).handshake().send(0, "request-old").send(1, "response-old").close()
	lastData := old.segs[4] // the server's data segment
	// The new conversation's numbers lie below the old ones.
	neu := newLCConv(400_000, 2_000_000, lcT0.Add(2*time.Second))
	neu.send(0, string(make200('a'))).send(1, string(make200('b'))).close()
	segs := append(append([]segment{}, old.segs...), neu.segs...)

	for _, face := range []lcFace{lcUpstream, lcDropIn, lcSafe} {
		t.Run(face.name, func(t *testing.T) {
			r := face.run(t, segs, true)
			second := r.conn(t, 1)
			assert.Equal(t, string(make200('a')), second.dirs[0].data)
			assert.Equal(t, string(make200('b')), second.dirs[1].data)
			if face.safe {
				assert.Zero(t, r.stats.BytesAfterClose, "new conversation dropped as late copies")
				lcConserved(t, r)
			}
		})
	}
	for _, face := range []lcFace{lcDropIn, lcSafe} {
		t.Run(face.name+"/late copy", func(t *testing.T) {
			late := lastData
			late.ts = old.ts.Add(time.Second)
			r := face.run(t, append(append([]segment{}, old.segs...), late), true)
			assert.Len(t, r.conns, 1, "a late copy opened a phantom Stream: %v", r.log)
			if face.safe {
				assert.EqualValues(t, len(lastData.payload), r.stats.BytesAfterClose)
			}
		})
	}
}

// Property: a SYN-ACK answering the SYN of a connection an RST refused
// is the host going on with the conversation after all (as a Windows host
// does, suricata-verify bug-3286): it opens a Stream whose client is the
// SYN's sender, and both directions' bytes are delivered in order, none
// lost, also when the refused Stream asked to be kept. A SYN-ACK answering
// some other SYN is a new conversation.
func TestLifecycleLateAnswerToRememberedSYN(t *testing.T) {
	t.Parallel()
	v := newLCConv(1_000_000, 7_000_000, lcT0)
	v.emit(0, segment{syn: true})
	v.emit(1, segment{rst: true}) // acknowledges the SYN: a refusal
	refused := append([]segment{}, v.segs...)
	v.segs = nil
	v.next[1] = 7_000_000
	v.emit(1, segment{syn: true})
	v.ack(0).send(0, "request").send(1, "response").close()
	other := segment{client: v.c, server: v.s, fromServer: true, seq: 7_000_000, ack: 5, syn: true, hasAck: true, ts: v.ts}
	keptDropIn, keptSafe := lcDropIn, lcSafe
	keptDropIn.keepOpen, keptSafe.keepOpen = true, true
	keptDropIn.name, keptSafe.name = "drop-in, Stream kept", "Safe, Stream kept"
	for _, face := range []lcFace{lcDropIn, lcSafe, keptDropIn, keptSafe} {
		r := face.run(t, append(append([]segment{}, refused...), v.segs...), false)
		assert.Equal(t, []string{"new 0", "complete 0", "new 1", "complete 1"}, r.log, "%s", face.name)
		resumed := r.conn(t, 1)
		assert.Equal(t, lcDir{data: "request", ends: 1}, resumed.dirs[0], "%s: the SYN's sender is not the client, or lost bytes", face.name)
		assert.Equal(t, lcDir{data: "response", ends: 1}, resumed.dirs[1], face.name)
		assert.Equal(t, [2]int{1, 1}, resumed.starts, "%s: each resumed direction reports start once", face.name)
		if face.keepOpen {
			continue // a kept connection takes nothing but the answer
		}
		r = face.run(t, append(append([]segment{}, refused...), other), false)
		assert.Equal(t, []string{"new 0", "complete 0", "new 1"}, r.log, "%s: a SYN-ACK of a new conversation was dropped", face.name)
	}
}

func make200(b byte) []byte {
	out := make([]byte, 200)
	for i := range out {
		out[i] = b + byte(i%26)
	}
	return out
}

// Property: a FIN or an RST in bytes a direction already went past (a
// stale or forged copy: data past it was delivered) ends nothing on either
// face, as a host drops such a segment; the bytes after it still arrive,
// and the real FIN ends the direction.
func TestLifecycleStaleFINEndsNothing(t *testing.T) {
	t.Parallel()
	for _, flag := range []string{"FIN", "RST"} {
		v := newLCConv(1_000_000, 7_000_000, lcT0).handshake().send(0, "hello, ").send(0, "world")
		stale := segment{client: v.c, server: v.s, seq: 1_000_001 + 3, ack: v.next[1], hasAck: true,
			fin: flag == "FIN", rst: flag == "RST", ts: v.ts}
		v.segs = append(v.segs, stale)
		v.send(0, "!").send(1, "ok").close()
		for _, face := range []lcFace{lcDropIn, lcSafe} {
			r := face.run(t, v.segs, false)
			c := r.conn(t, 0)
			assert.Equal(t, lcDir{data: "hello, world!", ends: 1}, c.dirs[0], "%s: the stale %s ended the direction", face.name, flag)
			assert.Equal(t, lcDir{data: "ok", ends: 1}, c.dirs[1], "%s: the stale %s ended the connection", face.name, flag)
			assert.Equal(t, []string{"new 0", "complete 0"}, r.log, face.name)
		}
	}
}

// Property: on an open conversation, a SYN with a new ISN that the peer
// does not answer with a SYN-ACK changes nothing (a host answers it with
// an ACK and goes on, RFC 5961; suricata-verify bug-5437): the old
// conversation's bytes go on in order in its one Stream. After a FIN the
// same SYN starts a new conversation at once.
func TestLifecycleSYNOnOpenConversation(t *testing.T) {
	t.Parallel()
	v := newLCConv(1_000_000, 7_000_000, lcT0).handshake().send(0, "before")
	stray := segment{client: v.c, server: v.s, seq: 3_000_000, syn: true, ts: v.ts}
	v.segs = append(v.segs, stray)
	v.send(0, "-after").send(1, "reply").close()
	for _, face := range []lcFace{lcDropIn, lcSafe} {
		r := face.run(t, v.segs, false)
		assert.Equal(t, []string{"new 0", "complete 0"}, r.log, "%s: the unanswered SYN restarted the connection", face.name)
		c := r.conn(t, 0)
		assert.Equal(t, lcDir{data: "before-after", ends: 1}, c.dirs[0], face.name)
		assert.Equal(t, lcDir{data: "reply", ends: 1}, c.dirs[1], face.name)
	}
	closing := newLCConv(1_000_000, 7_000_000, lcT0).handshake().send(0, "old").fin(0)
	neu := newLCConv(3_000_000, 9_000_000, closing.ts.Add(time.Millisecond)).handshake().send(0, "new").close()
	segs := append(append([]segment{}, closing.segs...), neu.segs[0])
	for _, face := range []lcFace{lcDropIn, lcSafe} {
		r := face.run(t, segs, false)
		assert.Equal(t, []string{"new 0", "complete 0", "new 1"}, r.log, "%s: a SYN after a FIN did not restart at once", face.name)
	}
}

// Property (case 2): on an open connection, a SYN without ACK whose ISN
// lies outside the direction's window completes the old connection once,
// its buffered bytes delivered with their skip first, and starts a new
// Stream that receives the new conversation in full. A retransmitted SYN
// (same ISN) restarts nothing.
func TestLifecyclePortReuse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		newISN uint32
	}{
		{"ISN ahead", 2_000_000},
		{"ISN behind", 10},
		{"ISN across the wrap", 4_293_967_296}, // 1e6 behind the old ISN, modulo 2^32
	} {
		old := newLCConv(1_000_000, 7_000_000, lcT0).handshake().send(0, "first-c").send(1, "first-s")
		old.lose(0, 10).send(0, "tail") // buffered behind a hole of 10 bytes
		neu := newLCConv(tc.newISN, 9_000_000, old.ts.Add(time.Second)).handshake().send(0, "second-c").send(1, "second-s").close()
		segs := append(append([]segment{}, old.segs...), neu.segs...)
		for _, face := range []lcFace{lcDropIn, lcSafe} {
			t.Run(tc.name+"/"+face.name, func(t *testing.T) {
				r := face.run(t, segs, false)
				first, second := r.conn(t, 0), r.conn(t, 1)
				assert.Equal(t, []string{"new 0", "complete 0", "new 1", "complete 1"}, r.log)
				assert.Equal(t, "first-ctail", first.dirs[0].data)
				assert.Equal(t, []int{10}, first.dirs[0].skips)
				assert.Equal(t, "first-s", first.dirs[1].data)
				assert.Equal(t, lcDir{data: "second-c", ends: 1}, second.dirs[0])
				assert.Equal(t, lcDir{data: "second-s", ends: 1}, second.dirs[1])
				if face.safe {
					assert.EqualValues(t, 1, r.stats.ConnectionsReused)
					lcConserved(t, r)
				}
			})
		}
		t.Run(tc.name+"/upstream merges", func(t *testing.T) {
			// The fault the drop-in face fixes (MIGRATION.md): one Stream.
			r := lcUpstream.run(t, segs, true)
			t.Logf("upstream: %d Streams, log %v", len(r.conns), r.log)
		})
	}
	t.Run("retransmitted SYN", func(t *testing.T) {
		v := newLCConv(1_000_000, 7_000_000, lcT0).handshake().send(0, "abc")
		again := v.segs[0]
		again.ts = v.ts
		segs := append(append([]segment{}, v.segs...), again)
		v.segs = nil
		v.send(0, "def").close()
		segs = append(segs, v.segs...)
		for _, face := range []lcFace{lcDropIn, lcSafe} {
			r := face.run(t, segs, false)
			require.Len(t, r.conns, 1, "%s: a retransmitted SYN restarted the connection: %v", face.name, r.log)
			assert.Equal(t, "abcdef", r.conns[0].dirs[0].data, face.name)
			assert.Equal(t, 1, r.conns[0].completes, face.name)
		}
	})
}

// Property (case 3): on the Safe face, a packet for a connection idle
// longer than ConnectionTimeout completes it before the packet is
// processed, as the first packet of a new connection.
func TestLifecycleTimeoutBeforeUse(t *testing.T) {
	t.Parallel()
	safe := lcSafe
	safe.opts.ConnectionTimeout = 10 * time.Second
	// A SYN whose ISN lies inside the old window: only the timeout tells
	// it is a new connection.
	old := newLCConv(1_000_000, 7_000_000, lcT0).handshake().send(0, "old-request")
	neu := newLCConv(1_000_005, 8_000_000, old.ts.Add(30*time.Second)).handshake().send(0, "new-request").send(1, "new-response").close()
	segs := append(append([]segment{}, old.segs...), neu.segs...)

	r := safe.run(t, segs, false)
	assert.Equal(t, []string{"new 0", "complete 0", "new 1", "complete 1"}, r.log)
	assert.Equal(t, "old-request", r.conn(t, 0).dirs[0].data)
	second := r.conn(t, 1)
	assert.Equal(t, lcDir{data: "new-request", ends: 1}, second.dirs[0])
	assert.Equal(t, lcDir{data: "new-response", ends: 1}, second.dirs[1])
	assert.EqualValues(t, 2, r.stats.ConnectionTimeouts)
	lcConserved(t, r)

	t.Run("data after the timeout", func(t *testing.T) {
		cont := newLCConv(old.next[0], old.next[1], old.ts.Add(30*time.Second)).send(0, "later")
		r := safe.run(t, append(append([]segment{}, old.segs...), cont.segs...), true)
		assert.Equal(t, []string{"new 0", "complete 0", "new 1", "complete 1"}, r.log)
		assert.Equal(t, "old-request", r.conn(t, 0).dirs[0].data)
		assert.Equal(t, "later", r.conn(t, 1).dirs[0].data, "the packet was not processed as a new connection's")
	})
	t.Run("drop-in face keeps upstream's merge", func(t *testing.T) {
		r := lcDropIn.run(t, segs, true)
		assert.Len(t, r.conns, 1, "the drop-in face has no timeout: %v", r.log)
	})
}

// Property (case 4): when the peer acknowledges past a hole, the hole is
// skipped at once and reported, the bytes after it delivered, and a FIN so
// reached completes the direction: no flush is needed. One acknowledgement
// past a hole in the middle of a stream waits for a second (a shuffled
// capture may show it before the data); one that covers the FIN does not.
func TestLifecycleAckedHoles(t *testing.T) {
	t.Parallel()
	v := newLCConv(1_000_000, 7_000_000, lcT0).handshake()
	v.lose(0, 300).send(0, "client-tail").fin(0)
	v.lose(1, 500).send(1, "server-tail").fin(1)
	v.ack(0)
	want := [2]lcDir{{data: "client-tail", skips: []int{300}, ends: 1}, {data: "server-tail", skips: []int{500}, ends: 1}}

	safeIgnoring := lcSafe
	safeIgnoring.name = "safe, IgnoreAcks"
	safeIgnoring.opts.IgnoreAcks = true
	dropInAcks := lcDropIn
	dropInAcks.name = "drop-in, SetSkipAckedHoles"
	dropInAcks.ackGaps = true
	for _, tc := range []struct {
		face   lcFace
		closes bool
	}{
		{lcSafe, true}, {dropInAcks, true},
		{lcUpstream, false}, {lcDropIn, false}, {safeIgnoring, false},
	} {
		t.Run(tc.face.name, func(t *testing.T) {
			r := tc.face.run(t, v.segs, false)
			c := r.conn(t, 0)
			if !tc.closes {
				assert.Zero(t, c.completes, "completed without a flush: %v", r.log)
				return
			}
			assert.Equal(t, 1, c.completes, "not completed without a flush")
			assert.Equal(t, want, c.dirs)
			if tc.face.safe {
				assert.EqualValues(t, 2, r.stats.AckedGaps)
				assert.EqualValues(t, 800, r.stats.AckedGapBytes)
				assert.EqualValues(t, 800, r.stats.GapBytes)
				lcConserved(t, r)
			}
		})
	}

	t.Run("mid-stream hole", func(t *testing.T) {
		m := newLCConv(1_000_000, 7_000_000, lcT0).handshake().send(0, "one-")
		m.lose(0, 5).send(0, "three").ack(1) // the server acknowledges past the hole
		once := len(m.segs)
		m.ack(1)
		r := lcSafe.run(t, m.segs[:once], false)
		assert.Equal(t, "one-", r.conn(t, 0).dirs[0].data, "one acknowledgement declared the hole")
		r = lcSafe.run(t, m.segs, false)
		assert.Equal(t, lcDir{data: "one-three", skips: []int{5}}, r.conn(t, 0).dirs[0], "two acknowledgements did not")

		// The missing bytes arriving after the first acknowledgement fill
		// the hole as usual.
		fill := segment{client: m.c, server: m.s, seq: 1_000_005, ack: 7_000_001, hasAck: true, payload: []byte("two::"), ts: m.ts}
		segs := append(append([]segment{}, m.segs[:once]...), fill, m.segs[once])
		r = lcSafe.run(t, segs, false)
		assert.Equal(t, lcDir{data: "one-two::three"}, r.conn(t, 0).dirs[0])
	})
}

// Property (case 5): with Midstream, a direction whose SYN was not
// captured starts at its first packet, reports Skip -1 (unknown start),
// and completes at its FINs without a flush; a Stream can still refuse by
// clearing start. ReaderFactory's readers are served too.
func TestLifecycleMidstream(t *testing.T) {
	t.Parallel()
	v := newLCConv(3_000_000, 6_000_000, lcT0).send(0, "GET / HTTP/1.0\r\n\r\n").send(1, "HTTP/1.0 200 OK\r\n\r\n").close()
	mid := lcSafe
	mid.opts.Midstream = true
	r := mid.run(t, v.segs, false)
	c := r.conn(t, 0)
	assert.Equal(t, 1, c.completes, "not completed without a flush")
	assert.Equal(t, lcDir{data: "GET / HTTP/1.0\r\n\r\n", skips: []int{-1}, ends: 1}, c.dirs[0])
	assert.Equal(t, lcDir{data: "HTTP/1.0 200 OK\r\n\r\n", skips: []int{-1}, ends: 1}, c.dirs[1])
	lcConserved(t, r)

	r = lcSafe.run(t, v.segs, false)
	assert.Empty(t, r.conn(t, 0).dirs[0].data, "picked up without the option")

	refusing := mid
	refusing.refuseStart = true
	r = refusing.run(t, v.segs, false)
	assert.Empty(t, r.conn(t, 0).dirs[0].data, "picked up although Accept cleared start")

	t.Run("ReaderFactory", func(t *testing.T) {
		got := make(chan string, 2)
		f := &ReaderFactory{OnConnection: func(p *ReaderPair) {
			for _, rs := range []*ReaderStream{p.Client, p.Server} {
				go func(rs *ReaderStream) {
					var all []byte
					buf := make([]byte, 64)
					for {
						n, err := rs.Read(buf)
						all = append(all, buf[:n]...)
						if errors.Is(err, ErrGap) {
							continue
						}
						if err != nil {
							assert.ErrorIs(t, err, io.EOF)
							break
						}
					}
					got <- string(all)
				}(rs)
			}
		}}
		pool := NewSafeStreamPool(f, 0)
		a, err := NewSafeAssembler(pool, SafeAssemblerOptions{Midstream: true, DisableBackgroundFlush: true})
		require.NoError(t, err)
		for _, s := range v.segs {
			p := s.build()
			require.NoError(t, a.AssembleWithContext(p.netFlow, p.tcp, &benchCtx{ci: p.ci}))
		}
		// Both readers end before any flush or Close. The wait is bounded
		// only so that a broken pickup fails instead of hanging the suite.
		var texts []string
		for range 2 {
			select {
			case s := <-got:
				texts = append(texts, s)
			case <-time.After(time.Minute):
				require.NoError(t, a.Close()) // ends the readers
				t.Fatalf("the readers did not end without a flush (got %q)", texts)
			}
		}
		assert.ElementsMatch(t, []string{"GET / HTTP/1.0\r\n\r\n", "HTTP/1.0 200 OK\r\n\r\n"}, texts)
		require.NoError(t, a.Close())
		require.NoError(t, pool.Close())
	})
}
