package reassembly

import (
	"errors"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Tests of the connection lifecycle (issue 13): new conversations on a
// 4-tuple told apart from late copies, port reuse, timeouts applied before
// the packet, gaps declared by acknowledgements, mid-stream pickup. Each
// case runs the same packets through upstream, the drop-in face and the
// Safe face, and compares what each Stream got with the bytes sent.

// Property (case 1): a conversation that follows a completed one on the
// same 4-tuple within the graves' TTL, its SYN not captured and its
// sequence numbers below the old end, is delivered in full to a new Stream
// on every face; a true late copy of the old conversation still opens
// nothing.
func TestLifecycleNewConversationIsNotALateCopy(t *testing.T) {
	t.Parallel()
	old := newTrConv(1_000_000, 5_000_000, time.Second).handshake().send(0, "request-old").send(1, "response-old").close()
	lastData := old.segs[4] // the server's data segment
	// The new conversation's numbers lie below the old ones.
	neu := newTrConv(400_000, 2_000_000, 3*time.Second)
	neu.send(0, string(make200('a'))).send(1, string(make200('b'))).close()
	segs := trJoin(old.segs, neu.segs)

	for _, face := range []trFace{trFaceUp, trFaceDropIn, trFaceSafe} {
		t.Run(face.name, func(t *testing.T) {
			r := face.run(t, segs, true)
			second := r.conn(t, 1)
			assert.Equal(t, string(make200('a')), second.dirs[0].data)
			assert.Equal(t, string(make200('b')), second.dirs[1].data)
			if face.safe {
				assert.Zero(t, r.stats.BytesAfterClose, "new conversation dropped as late copies")
				kitRequireConserved(t, r.stats)
			}
		})
	}
	for _, face := range []trFace{trFaceDropIn, trFaceSafe} {
		t.Run(face.name+"/late copy", func(t *testing.T) {
			late := lastData
			late.at = old.at + time.Second
			r := face.run(t, trJoin(old.segs, []trSeg{late}), true)
			assert.Len(t, r.conns, 1, "a late copy opened a phantom Stream: %v", r.log)
			if face.safe {
				assert.EqualValues(t, len(lastData.data), r.stats.BytesAfterClose)
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
	v := newTrConv(1_000_000, 7_000_000, time.Second)
	v.emit(0, "S", "").emit(1, "R", "") // acknowledges the SYN: a refusal
	refused := v.segs
	v.segs = nil
	v.next[1] = 7_000_000
	v.emit(1, "S", "")
	v.ack(0).send(0, "request").send(1, "response").close()
	other := trSeg{rev: true, seq: 7_000_000, ack: 5, flags: "SA", at: v.at}
	keptDropIn, keptSafe := trFaceDropIn, trFaceSafe
	keptDropIn.keepOpen, keptSafe.keepOpen = true, true
	keptDropIn.name, keptSafe.name = "drop-in, Stream kept", "Safe, Stream kept"
	for _, face := range []trFace{trFaceDropIn, trFaceSafe, keptDropIn, keptSafe} {
		r := face.run(t, trJoin(refused, v.segs), false)
		assert.Equal(t, []string{"new 0", "complete 0", "new 1", "complete 1"}, r.log, "%s", face.name)
		resumed := r.conn(t, 1)
		assert.Equal(t, trDirRec{data: "request", ends: 1}, resumed.dirs[0], "%s: the SYN's sender is not the client, or lost bytes", face.name)
		assert.Equal(t, trDirRec{data: "response", ends: 1}, resumed.dirs[1], face.name)
		assert.Equal(t, [2]int{1, 1}, resumed.starts, "%s: each resumed direction reports start once", face.name)
		if face.keepOpen {
			continue // a kept connection takes nothing but the answer
		}
		r = face.run(t, trJoin(refused, []trSeg{other}), false)
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
		v := newTrConv(1_000_000, 7_000_000, time.Second).handshake().send(0, "hello, ").send(0, "world")
		stale := trSeg{seq: 1_000_001 + 3, ack: v.next[1], flags: flag[:1] + "A", at: v.at}
		v.segs = append(v.segs, stale)
		v.send(0, "!").send(1, "ok").close()
		for _, face := range []trFace{trFaceDropIn, trFaceSafe} {
			r := face.run(t, v.segs, false)
			c := r.conn(t, 0)
			assert.Equal(t, trDirRec{data: "hello, world!", ends: 1}, c.dirs[0], "%s: the stale %s ended the direction", face.name, flag)
			assert.Equal(t, trDirRec{data: "ok", ends: 1}, c.dirs[1], "%s: the stale %s ended the connection", face.name, flag)
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
	v := newTrConv(1_000_000, 7_000_000, time.Second).handshake().send(0, "before")
	stray := trSeg{seq: 3_000_000, flags: "S", at: v.at}
	v.segs = append(v.segs, stray)
	v.send(0, "-after").send(1, "reply").close()
	for _, face := range []trFace{trFaceDropIn, trFaceSafe} {
		r := face.run(t, v.segs, false)
		assert.Equal(t, []string{"new 0", "complete 0"}, r.log, "%s: the unanswered SYN restarted the connection", face.name)
		c := r.conn(t, 0)
		assert.Equal(t, trDirRec{data: "before-after", ends: 1}, c.dirs[0], face.name)
		assert.Equal(t, trDirRec{data: "reply", ends: 1}, c.dirs[1], face.name)
	}
	closing := newTrConv(1_000_000, 7_000_000, time.Second).handshake().send(0, "old").fin(0)
	neu := newTrConv(3_000_000, 9_000_000, closing.at+time.Millisecond).handshake().send(0, "new").close()
	segs := trJoin(closing.segs, neu.segs[:1])
	for _, face := range []trFace{trFaceDropIn, trFaceSafe} {
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
		old := newTrConv(1_000_000, 7_000_000, time.Second).handshake().send(0, "first-c").send(1, "first-s")
		old.lose(0, 10).send(0, "tail") // buffered behind a hole of 10 bytes
		neu := newTrConv(tc.newISN, 9_000_000, old.at+time.Second).handshake().send(0, "second-c").send(1, "second-s").close()
		segs := trJoin(old.segs, neu.segs)
		for _, face := range []trFace{trFaceDropIn, trFaceSafe} {
			t.Run(tc.name+"/"+face.name, func(t *testing.T) {
				r := face.run(t, segs, false)
				first, second := r.conn(t, 0), r.conn(t, 1)
				assert.Equal(t, []string{"new 0", "complete 0", "new 1", "complete 1"}, r.log)
				assert.Equal(t, "first-ctail", first.dirs[0].data)
				assert.Equal(t, []int{10}, first.dirs[0].skips)
				assert.Equal(t, "first-s", first.dirs[1].data)
				assert.Equal(t, trDirRec{data: "second-c", ends: 1}, second.dirs[0])
				assert.Equal(t, trDirRec{data: "second-s", ends: 1}, second.dirs[1])
				if face.safe {
					assert.EqualValues(t, 1, r.stats.ConnectionsReused)
					kitRequireConserved(t, r.stats)
				}
			})
		}
		t.Run(tc.name+"/upstream merges", func(t *testing.T) {
			// The fault the drop-in face fixes (MIGRATION.md): one Stream.
			r := trFaceUp.run(t, segs, true)
			t.Logf("upstream: %d Streams, log %v", len(r.conns), r.log)
		})
	}
	t.Run("retransmitted SYN", func(t *testing.T) {
		v := newTrConv(1_000_000, 7_000_000, time.Second).handshake().send(0, "abc")
		again := v.segs[0]
		again.at = v.at
		segs := trJoin(v.segs, []trSeg{again})
		v.segs = nil
		v.send(0, "def").close()
		segs = append(segs, v.segs...)
		for _, face := range []trFace{trFaceDropIn, trFaceSafe} {
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
	safe := trFaceSafe
	safe.opts.ConnectionTimeout = 10 * time.Second
	// A SYN whose ISN lies inside the old window: only the timeout tells
	// it is a new connection.
	old := newTrConv(1_000_000, 7_000_000, time.Second).handshake().send(0, "old-request")
	neu := newTrConv(1_000_005, 8_000_000, old.at+30*time.Second).handshake().send(0, "new-request").send(1, "new-response").close()
	segs := trJoin(old.segs, neu.segs)

	r := safe.run(t, segs, false)
	assert.Equal(t, []string{"new 0", "complete 0", "new 1", "complete 1"}, r.log)
	assert.Equal(t, "old-request", r.conn(t, 0).dirs[0].data)
	second := r.conn(t, 1)
	assert.Equal(t, trDirRec{data: "new-request", ends: 1}, second.dirs[0])
	assert.Equal(t, trDirRec{data: "new-response", ends: 1}, second.dirs[1])
	assert.EqualValues(t, 2, r.stats.ConnectionTimeouts)
	kitRequireConserved(t, r.stats)

	t.Run("data after the timeout", func(t *testing.T) {
		cont := newTrConv(old.next[0], old.next[1], old.at+30*time.Second).send(0, "later")
		r := safe.run(t, trJoin(old.segs, cont.segs), true)
		assert.Equal(t, []string{"new 0", "complete 0", "new 1", "complete 1"}, r.log)
		assert.Equal(t, "old-request", r.conn(t, 0).dirs[0].data)
		assert.Equal(t, "later", r.conn(t, 1).dirs[0].data, "the packet was not processed as a new connection's")
	})
	t.Run("drop-in face keeps upstream's merge", func(t *testing.T) {
		r := trFaceDropIn.run(t, segs, true)
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
	v := newTrConv(1_000_000, 7_000_000, time.Second).handshake()
	v.lose(0, 300).send(0, "client-tail").fin(0)
	v.lose(1, 500).send(1, "server-tail").fin(1)
	v.ack(0)
	want := [2]trDirRec{{data: "client-tail", skips: []int{300}, ends: 1}, {data: "server-tail", skips: []int{500}, ends: 1}}

	safeIgnoring := trFaceSafe
	safeIgnoring.name = "safe, IgnoreAcks"
	safeIgnoring.opts.IgnoreAcks = true
	dropInAcks := trFaceDropIn
	dropInAcks.name = "drop-in, SetSkipAckedHoles"
	dropInAcks.ackGaps = true
	for _, tc := range []struct {
		face   trFace
		closes bool
	}{
		{trFaceSafe, true}, {dropInAcks, true},
		{trFaceUp, false}, {trFaceDropIn, false}, {safeIgnoring, false},
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
				kitRequireConserved(t, r.stats)
			}
		})
	}

	t.Run("mid-stream hole", func(t *testing.T) {
		m := newTrConv(1_000_000, 7_000_000, time.Second).handshake().send(0, "one-")
		m.lose(0, 5).send(0, "three").ack(1) // the server acknowledges past the hole
		once := len(m.segs)
		m.ack(1)
		r := trFaceSafe.run(t, m.segs[:once], false)
		assert.Equal(t, "one-", r.conn(t, 0).dirs[0].data, "one acknowledgement declared the hole")
		r = trFaceSafe.run(t, m.segs, false)
		assert.Equal(t, trDirRec{data: "one-three", skips: []int{5}}, r.conn(t, 0).dirs[0], "two acknowledgements did not")

		// The missing bytes arriving after the first acknowledgement fill
		// the hole as usual.
		fill := trSeg{seq: 1_000_005, ack: 7_000_001, flags: "A", data: "two::", at: m.at}
		segs := trJoin(m.segs[:once], []trSeg{fill}, m.segs[once:once+1])
		r = trFaceSafe.run(t, segs, false)
		assert.Equal(t, trDirRec{data: "one-two::three"}, r.conn(t, 0).dirs[0])
	})
}

// Property (case 5): with Midstream, a direction whose SYN was not
// captured starts at its first packet, reports Skip -1 (unknown start),
// and completes at its FINs without a flush; a Stream can still refuse by
// clearing start. ReaderFactory's readers are served too.
func TestLifecycleMidstream(t *testing.T) {
	t.Parallel()
	v := newTrConv(3_000_000, 6_000_000, time.Second).send(0, "GET / HTTP/1.0\r\n\r\n").send(1, "HTTP/1.0 200 OK\r\n\r\n").close()
	mid := trFaceSafe
	mid.opts.Midstream = true
	r := mid.run(t, v.segs, false)
	c := r.conn(t, 0)
	assert.Equal(t, 1, c.completes, "not completed without a flush")
	assert.Equal(t, trDirRec{data: "GET / HTTP/1.0\r\n\r\n", skips: []int{-1}, ends: 1}, c.dirs[0])
	assert.Equal(t, trDirRec{data: "HTTP/1.0 200 OK\r\n\r\n", skips: []int{-1}, ends: 1}, c.dirs[1])
	kitRequireConserved(t, r.stats)

	r = trFaceSafe.run(t, v.segs, false)
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
		a := newKitAssembler(t, pool, SafeAssemblerOptions{Midstream: true, DisableBackgroundFlush: true})
		for _, p := range trBuild(t, v.segs) {
			require.NoError(t, a.AssembleWithContext(p.flow, p.tcp, p.ctx))
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
