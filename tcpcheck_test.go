package reassembly

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	upstream "github.com/google/gopacket/reassembly"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	dirC2S = TCPDirClientToServer
	dirS2C = TCPDirServerToClient
)

// checkSeg builds a segment from flag letters (S, A, F, R), e.g. checkSeg("SA").
func checkSeg(flags string) *layers.TCP {
	return &layers.TCP{
		SYN: strings.Contains(flags, "S"),
		ACK: strings.Contains(flags, "A"),
		FIN: strings.Contains(flags, "F"),
		RST: strings.Contains(flags, "R"),
	}
}

// tcpcheckSeed returns the seed of the randomized tests: 1, or the value of
// REASSEMBLY_TEST_SEED to replay a failure.
func tcpcheckSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(1)
	if s := os.Getenv("REASSEMBLY_TEST_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 0, 64)
		require.NoError(t, err, "REASSEMBLY_TEST_SEED")
		seed = v
	}
	t.Logf("seed %d (set REASSEMBLY_TEST_SEED to change it)", seed)
	return seed
}

// Property: the state constants keep gopacket's names, values and untyped
// int type, so code that stores them in an int or compares them with
// upstream's keeps compiling and meaning the same.
func TestTCPStateConstantsMatchUpstream(t *testing.T) {
	t.Parallel()
	ours := []int{TCPStateClosed, TCPStateSynSent, TCPStateEstablished, TCPStateCloseWait, TCPStateLastAck, TCPStateReset}
	theirs := []int{upstream.TCPStateClosed, upstream.TCPStateSynSent, upstream.TCPStateEstablished, upstream.TCPStateCloseWait, upstream.TCPStateLastAck, upstream.TCPStateReset}
	assert.Equal(t, theirs, ours)
	assert.Equal(t, []int{0, 1, 2, 3, 4, 5}, ours)
}

// Property: String names every state as gopacket does, "?" for a state that
// cannot occur, and does not panic on a nil machine.
func TestTCPSimpleFSMString(t *testing.T) {
	t.Parallel()
	for state, want := range map[int]string{
		TCPStateClosed:      "Closed",
		TCPStateSynSent:     "SynSent",
		TCPStateEstablished: "Established",
		TCPStateCloseWait:   "CloseWait",
		TCPStateLastAck:     "LastAck",
		TCPStateReset:       "Reset",
		42:                  "?",
		-1:                  "?",
	} {
		assert.Equal(t, want, (&TCPSimpleFSM{state: state}).String(), "state %d", state)
	}
	var nilFSM *TCPSimpleFSM
	assert.Equal(t, "<nil>", nilFSM.String())
	assert.Equal(t, "Closed", NewTCPSimpleFSM(TCPSimpleFSMOptions{}).String())
	assert.Equal(t, "Closed", (&TCPSimpleFSM{}).String(), "zero value")
}

// Property: each (state, packet, direction) gives the documented verdict,
// next state and initiator direction.
func TestTCPSimpleFSMTransitions(t *testing.T) {
	t.Parallel()
	type tc struct {
		name      string
		missing   bool // SupportMissingEstablishment
		state     int
		initiator TCPFlowDirection
		flags     string
		dir       TCPFlowDirection
		want      bool
		wantState int
		wantInit  TCPFlowDirection
	}
	tests := []tc{
		// Closed, handshake required.
		{"closed SYN c2s", false, TCPStateClosed, dirC2S, "S", dirC2S, true, TCPStateSynSent, dirC2S},
		{"closed SYN s2c", false, TCPStateClosed, dirC2S, "S", dirS2C, true, TCPStateSynSent, dirS2C},
		{"closed SYN+FIN is a bare SYN", false, TCPStateClosed, dirS2C, "SF", dirC2S, true, TCPStateSynSent, dirC2S},
		{"closed SYN+ACK", false, TCPStateClosed, dirC2S, "SA", dirS2C, false, TCPStateClosed, dirC2S},
		{"closed ACK", false, TCPStateClosed, dirC2S, "A", dirC2S, false, TCPStateClosed, dirC2S},
		{"closed FIN", false, TCPStateClosed, dirC2S, "F", dirC2S, false, TCPStateClosed, dirC2S},
		{"closed RST", false, TCPStateClosed, dirC2S, "R", dirC2S, false, TCPStateClosed, dirC2S},
		{"closed no flags", false, TCPStateClosed, dirC2S, "", dirC2S, false, TCPStateClosed, dirC2S},
		// Closed, missing establishment tolerated.
		{"guess: bare SYN as usual", true, TCPStateClosed, dirC2S, "S", dirS2C, true, TCPStateSynSent, dirS2C},
		{"guess: SYN+ACK completes", true, TCPStateClosed, dirC2S, "SA", dirC2S, true, TCPStateEstablished, dirS2C},
		{"guess: SYN+ACK+FIN completes", true, TCPStateClosed, dirC2S, "SAF", dirS2C, true, TCPStateEstablished, dirC2S},
		{"guess: SYN+ACK+RST resets", true, TCPStateClosed, dirC2S, "SAR", dirC2S, true, TCPStateReset, dirS2C},
		{"guess: FIN closes", true, TCPStateClosed, dirS2C, "F", dirC2S, true, TCPStateCloseWait, dirC2S},
		{"guess: FIN+ACK is the answer", true, TCPStateClosed, dirC2S, "FA", dirC2S, true, TCPStateLastAck, dirS2C},
		{"guess: ACK established", true, TCPStateClosed, dirC2S, "A", dirS2C, true, TCPStateEstablished, dirC2S},
		{"guess: no flags established", true, TCPStateClosed, dirS2C, "", dirC2S, true, TCPStateEstablished, dirS2C},
		{"guess: RST resets", true, TCPStateClosed, dirC2S, "R", dirC2S, true, TCPStateReset, dirC2S},
		// SynSent.
		{"synsent RST", false, TCPStateSynSent, dirC2S, "R", dirS2C, true, TCPStateReset, dirC2S},
		{"synsent SYN+ACK from peer", false, TCPStateSynSent, dirC2S, "SA", dirS2C, true, TCPStateEstablished, dirC2S},
		{"synsent SYN+ACK from initiator", false, TCPStateSynSent, dirC2S, "SA", dirC2S, false, TCPStateSynSent, dirC2S},
		{"synsent SYN retransmitted", false, TCPStateSynSent, dirS2C, "S", dirS2C, true, TCPStateSynSent, dirS2C},
		{"synsent simultaneous open", false, TCPStateSynSent, dirC2S, "S", dirS2C, false, TCPStateSynSent, dirC2S},
		{"synsent ACK", false, TCPStateSynSent, dirC2S, "A", dirS2C, false, TCPStateSynSent, dirC2S},
		{"synsent FIN", false, TCPStateSynSent, dirC2S, "F", dirC2S, false, TCPStateSynSent, dirC2S},
		{"synsent no guess", true, TCPStateSynSent, dirC2S, "A", dirC2S, false, TCPStateSynSent, dirC2S},
		// Established.
		{"established RST", false, TCPStateEstablished, dirC2S, "R", dirS2C, true, TCPStateReset, dirC2S},
		{"established RST+FIN", false, TCPStateEstablished, dirC2S, "RF", dirS2C, true, TCPStateReset, dirC2S},
		{"established FIN from s2c", false, TCPStateEstablished, dirC2S, "F", dirS2C, true, TCPStateCloseWait, dirS2C},
		{"established FIN+ACK from c2s", false, TCPStateEstablished, dirS2C, "FA", dirC2S, true, TCPStateCloseWait, dirC2S},
		{"established ACK", false, TCPStateEstablished, dirC2S, "A", dirS2C, true, TCPStateEstablished, dirC2S},
		{"established no flags", false, TCPStateEstablished, dirC2S, "", dirC2S, true, TCPStateEstablished, dirC2S},
		{"established SYN", false, TCPStateEstablished, dirC2S, "S", dirS2C, true, TCPStateEstablished, dirC2S},
		// CloseWait.
		{"closewait RST", false, TCPStateCloseWait, dirC2S, "R", dirC2S, true, TCPStateReset, dirC2S},
		{"closewait FIN+ACK from peer", false, TCPStateCloseWait, dirC2S, "FA", dirS2C, true, TCPStateLastAck, dirC2S},
		{"closewait FIN+ACK from initiator", false, TCPStateCloseWait, dirC2S, "FA", dirC2S, true, TCPStateCloseWait, dirC2S},
		{"closewait FIN without ACK", false, TCPStateCloseWait, dirC2S, "F", dirS2C, false, TCPStateCloseWait, dirC2S},
		{"closewait ACK", false, TCPStateCloseWait, dirS2C, "A", dirC2S, true, TCPStateCloseWait, dirS2C},
		{"closewait no flags", false, TCPStateCloseWait, dirC2S, "", dirS2C, false, TCPStateCloseWait, dirC2S},
		// LastAck.
		{"lastack RST", false, TCPStateLastAck, dirC2S, "R", dirS2C, true, TCPStateReset, dirC2S},
		{"lastack ACK from initiator", false, TCPStateLastAck, dirC2S, "A", dirC2S, true, TCPStateClosed, dirC2S},
		{"lastack FIN+ACK from initiator", false, TCPStateLastAck, dirS2C, "FA", dirS2C, true, TCPStateClosed, dirS2C},
		{"lastack ACK from peer", false, TCPStateLastAck, dirC2S, "A", dirS2C, false, TCPStateLastAck, dirC2S},
		{"lastack no flags", false, TCPStateLastAck, dirC2S, "", dirC2S, false, TCPStateLastAck, dirC2S},
		// Reset is final.
		{"reset SYN", false, TCPStateReset, dirC2S, "S", dirC2S, false, TCPStateReset, dirC2S},
		{"reset ACK", true, TCPStateReset, dirC2S, "A", dirS2C, false, TCPStateReset, dirC2S},
		{"reset RST", true, TCPStateReset, dirC2S, "R", dirC2S, false, TCPStateReset, dirC2S},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fsm := &TCPSimpleFSM{
				state:     tt.state,
				initiator: tt.initiator,
				options:   TCPSimpleFSMOptions{SupportMissingEstablishment: tt.missing},
			}
			assert.Equal(t, tt.want, fsm.CheckState(checkSeg(tt.flags), tt.dir), "verdict")
			assert.Equal(t, tt.wantState, fsm.state, "state %s", fsm)
			assert.Equal(t, tt.wantInit, fsm.initiator, "initiator")
		})
	}
}

// Property: a normal connection walks Closed → SynSent → Established →
// CloseWait → LastAck → Closed, and a later SYN opens it again.
func TestTCPSimpleFSMLifecycle(t *testing.T) {
	t.Parallel()
	fsm := NewTCPSimpleFSM(TCPSimpleFSMOptions{})
	steps := []struct {
		flags string
		dir   TCPFlowDirection
		want  string
	}{
		{"S", dirC2S, "SynSent"},
		{"SA", dirS2C, "Established"},
		{"A", dirC2S, "Established"},
		{"FA", dirS2C, "CloseWait"},
		{"A", dirC2S, "CloseWait"},
		{"FA", dirC2S, "LastAck"},
		{"A", dirS2C, "Closed"},
		{"S", dirS2C, "SynSent"},
	}
	for i, s := range steps {
		require.True(t, fsm.CheckState(checkSeg(s.flags), s.dir), "step %d", i)
		require.Equal(t, s.want, fsm.String(), "step %d", i)
	}
}

// Property: a nil packet or a nil machine is refused without a panic and
// without a state change.
func TestTCPSimpleFSMNil(t *testing.T) {
	t.Parallel()
	for _, missing := range []bool{false, true} {
		for state := TCPStateClosed; state <= TCPStateReset; state++ {
			fsm := &TCPSimpleFSM{state: state, initiator: dirS2C, options: TCPSimpleFSMOptions{SupportMissingEstablishment: missing}}
			before := *fsm
			assert.False(t, fsm.CheckState(nil, dirC2S), "state %d", state)
			assert.Equal(t, before, *fsm, "state %d", state)
		}
	}
	var nilFSM *TCPSimpleFSM
	assert.NotPanics(t, func() { assert.False(t, nilFSM.CheckState(checkSeg("S"), dirC2S)) })
}

func upstreamDir(d TCPFlowDirection) upstream.TCPFlowDirection {
	if d == TCPDirClientToServer {
		return upstream.TCPDirClientToServer
	}
	return upstream.TCPDirServerToClient
}

// Property: fed the same random packets, our machine and gopacket's give
// the same verdict and the same String after every packet, with and without
// SupportMissingEstablishment, from NewTCPSimpleFSM and from the zero value.
func TestTCPSimpleFSMMatchesUpstream(t *testing.T) {
	t.Parallel()
	seed := tcpcheckSeed(t)
	rng := rand.New(rand.NewPCG(seed, 0x7c9c_fa5e))
	const traces, steps = 3000, 24
	seen := map[string]int{}
	for trace := range traces {
		opts := TCPSimpleFSMOptions{SupportMissingEstablishment: rng.IntN(2) == 0}
		ours := NewTCPSimpleFSM(opts)
		theirs := upstream.NewTCPSimpleFSM(upstream.TCPSimpleFSMOptions{SupportMissingEstablishment: opts.SupportMissingEstablishment})
		if rng.IntN(10) == 0 {
			ours, theirs = &TCPSimpleFSM{}, &upstream.TCPSimpleFSM{}
		}
		var history []string
		for step := range steps {
			tcp := randomFSMSegment(rng)
			dir := TCPFlowDirection(rng.IntN(2) == 0)
			history = append(history, fmt.Sprintf("%s %s", checkFlags(tcp), dir))
			got := ours.CheckState(tcp, dir)
			want := theirs.CheckState(tcp, upstreamDir(dir))
			if got != want || ours.String() != theirs.String() {
				require.Failf(t, "FSM differs from gopacket",
					"seed %d trace %d step %d, options %+v\npackets: %s\nverdict ours=%v theirs=%v, state ours=%s theirs=%s",
					seed, trace, step, opts, strings.Join(history, " | "), got, want, ours, theirs)
			}
			seen[ours.String()]++
		}
	}
	// The comparison is only worth something if every state was reached.
	for _, s := range []string{"Closed", "SynSent", "Established", "CloseWait", "LastAck", "Reset"} {
		assert.Positive(t, seen[s], "state %s never reached", s)
	}
}

// randomFSMSegment favours the flag sets of real connections, so that random
// traces get past the handshake, and otherwise draws any of the 16 sets.
func randomFSMSegment(rng *rand.Rand) *layers.TCP {
	common := []string{"S", "SA", "A", "A", "FA", "F", "R"}
	if rng.IntN(3) != 0 {
		tcp := checkSeg(common[rng.IntN(len(common))])
		tcp.RST = tcp.RST || rng.IntN(30) == 0
		return tcp
	}
	bits := rng.IntN(16)
	return &layers.TCP{SYN: bits&1 != 0, ACK: bits&2 != 0, FIN: bits&4 != 0, RST: bits&8 != 0}
}

func checkFlags(tcp *layers.TCP) string {
	var b strings.Builder
	for _, f := range []struct {
		on bool
		c  byte
	}{{tcp.SYN, 'S'}, {tcp.ACK, 'A'}, {tcp.FIN, 'F'}, {tcp.RST, 'R'}} {
		if f.on {
			b.WriteByte(f.c)
		}
	}
	if b.Len() == 0 {
		return "-"
	}
	return b.String()
}

func mssOption(data ...byte) layers.TCPOption {
	return layers.TCPOption{OptionType: layers.TCPOptionKindMSS, OptionLength: uint8(2 + len(data)), OptionData: data}
}

func wsOption(data ...byte) layers.TCPOption {
	return layers.TCPOption{OptionType: layers.TCPOptionKindWindowScale, OptionLength: uint8(2 + len(data)), OptionData: data}
}

// Property: a SYN records the last MSS and window scale it carries (-1 when
// absent), ignores other options, and a malformed MSS or window scale option
// yields gopacket's error and leaves what was recorded before untouched.
func TestTCPOptionCheckSYNOptions(t *testing.T) {
	t.Parallel()
	nop := layers.TCPOption{OptionType: layers.TCPOptionKindNop, OptionLength: 1}
	sack := layers.TCPOption{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2}
	odd := layers.TCPOption{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 3, OptionData: []byte{1}}
	tests := []struct {
		name      string
		flags     string
		opts      []layers.TCPOption
		wantErr   string
		wantMSS   int
		wantScale int
	}{
		{"none", "S", nil, "", -1, -1},
		{"mss", "S", []layers.TCPOption{mssOption(0x05, 0xb4)}, "", 1460, -1},
		{"scale", "SA", []layers.TCPOption{nop, wsOption(7)}, "", -1, 7},
		{"both and others", "S", []layers.TCPOption{mssOption(0x02, 0x18), sack, odd, nop, wsOption(14)}, "", 536, 14},
		{"last wins", "S", []layers.TCPOption{mssOption(0, 100), wsOption(2), mssOption(0, 200), wsOption(3)}, "", 200, 3},
		{"mss zero", "S", []layers.TCPOption{mssOption(0, 0)}, "", 0, -1},
		{"hostile scale", "S", []layers.TCPOption{wsOption(255)}, "", -1, 255},
		{"mss empty", "S", []layers.TCPOption{mssOption()}, "MSS option data length expected 2, got 0", 11, 12},
		{"mss short", "S", []layers.TCPOption{mssOption(5)}, "MSS option data length expected 2, got 1", 11, 12},
		{"mss long", "SA", []layers.TCPOption{mssOption(5, 180, 0)}, "MSS option data length expected 2, got 3", 11, 12},
		{"scale empty", "S", []layers.TCPOption{wsOption()}, "Window scaling length expected: 1, got 0", 11, 12},
		{"scale long", "S", []layers.TCPOption{wsOption(1, 2)}, "Window scaling length expected: 1, got 2", 11, 12},
		{"good mss then bad scale", "S", []layers.TCPOption{mssOption(0, 99), wsOption(1, 2)}, "Window scaling length expected: 1, got 2", 11, 12},
		{"bad mss then bad scale", "S", []layers.TCPOption{mssOption(9), wsOption()}, "MSS option data length expected 2, got 1", 11, 12},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := NewTCPOptionCheck()
			c.halves[1] = halfOptions{mss: 11, scale: 12, window: 13}
			tcp := checkSeg(tt.flags)
			tcp.Options = tt.opts
			tcp.Window = 1000
			err := c.Accept(tcp, gopacket.CaptureInfo{}, dirS2C, 5, nil)
			if tt.wantErr != "" {
				require.EqualError(t, err, tt.wantErr)
				assert.Equal(t, halfOptions{mss: 11, scale: 12, window: 13}, c.halves[1], "refused SYN changed the state")
			} else {
				require.NoError(t, err)
				assert.Equal(t, tt.wantMSS, c.halves[1].mss, "mss")
				assert.Equal(t, tt.wantScale, c.halves[1].scale, "scale")
			}
			assert.Equal(t, halfOptions{mss: 0, scale: -1, window: 0}, c.halves[0], "other direction touched")

			// gopacket agrees on the verdict.
			u := upstream.NewTCPOptionCheck()
			uerr := u.Accept(tcp, gopacket.CaptureInfo{}, upstream.TCPDirServerToClient, 5, nil)
			assert.Equal(t, fmt.Sprint(uerr), fmt.Sprint(err), "gopacket differs")
		})
	}
}

// Property: a non-SYN packet is refused for exactly the documented reasons,
// judged against the other direction's MSS and window, with gopacket's
// error text; everything else is accepted.
func TestTCPOptionCheckRejects(t *testing.T) {
	t.Parallel()
	unknown := halfOptions{mss: 0, scale: -1, window: 0}
	tests := []struct {
		name    string
		peer    halfOptions // options of the receiving side (the s2c half)
		nextSeq Sequence
		seq     uint32
		length  int
		wantErr string
	}{
		{"in order", unknown, 1000, 1000, 100, ""},
		{"ahead, no window known", unknown, 1000, 900_000, 100, ""},
		{"unknown nextSeq skips all checks", halfOptions{mss: 10, scale: -1, window: 5}, invalidSequence, 1, 3000, ""},
		{"re-emitted", unknown, 1000, 990, 10, "Re-emitted packet (diff:-10,seq:990,rev-ack:1000)"},
		{"keep-alive empty", unknown, 1000, 999, 0, ""},
		{"keep-alive one byte", unknown, 1000, 999, 1, ""},
		{"keep-alive too long", unknown, 1000, 999, 2, "Re-emitted packet (diff:-1,seq:999,rev-ack:1000)"},
		{"keep-alive ignores mss", halfOptions{mss: 0, scale: -1}, 1000, 999, 1, ""},
		{"two behind", unknown, 1000, 998, 0, "Re-emitted packet (diff:-2,seq:998,rev-ack:1000)"},
		{"mss exceeded", halfOptions{mss: 536, scale: -1}, 1000, 1000, 537, "537 > mss (536)"},
		{"mss exact", halfOptions{mss: 536, scale: -1}, 1000, 1000, 536, ""},
		{"mss unknown", halfOptions{mss: -1, scale: -1}, 1000, 1000, 3000, ""},
		{"re-emitted before mss", halfOptions{mss: 1, scale: -1}, 1000, 900, 2, "Re-emitted packet (diff:-100,seq:900,rev-ack:1000)"},
		{"window exceeded", halfOptions{mss: -1, scale: -1, window: 512}, 1000, 1513, 0, "513 > receiveWindow(512)"},
		{"window edge", halfOptions{mss: -1, scale: -1, window: 512}, 1000, 1512, 100, ""},
		{"mss before window", halfOptions{mss: 10, scale: -1, window: 512}, 1000, 5000, 11, "11 > mss (10)"},
		{"window unchecked once scaled", halfOptions{mss: -1, scale: 0, window: 512}, 1000, 900_000, 0, ""},
		{"window never advertised", halfOptions{mss: -1, scale: -1, window: 0}, 1000, 900_000, 0, ""},
		// Across the 2^32 wrap distances stay exact (UPSTREAM-BUGS row 25).
		{"wrap forward", halfOptions{mss: -1, scale: -1, window: 512}, 0xFFFFFFF0, 0x10, 10, ""},
		{"wrap forward beyond window", halfOptions{mss: -1, scale: -1, window: 31}, 0xFFFFFFF0, 0x10, 10, "32 > receiveWindow(31)"},
		{"wrap backward", unknown, 0x10, 0xFFFFFFF0, 10, "Re-emitted packet (diff:-32,seq:4294967280,rev-ack:16)"},
		{"wrap keep-alive", unknown, 0, 0xFFFFFFFF, 1, ""},
		{"wrap two behind", unknown, 1, 0xFFFFFFFF, 0, "Re-emitted packet (diff:-2,seq:4294967295,rev-ack:1)"},
		{"wrap one behind with data", unknown, 0, 0xFFFFFFFF, 2, "Re-emitted packet (diff:-1,seq:4294967295,rev-ack:0)"},
		{"half the space ahead is behind", unknown, 0, 0x80000000, 0, "Re-emitted packet (diff:-2147483648,seq:2147483648,rev-ack:0)"},
	}
	payload := make([]byte, 3000)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := NewTCPOptionCheck()
			c.halves[1] = tt.peer
			tcp := checkSeg("A")
			tcp.Seq = tt.seq
			tcp.Payload = payload[:tt.length]
			tcp.Window = 777
			err := c.Accept(tcp, gopacket.CaptureInfo{}, dirC2S, tt.nextSeq, nil)
			if tt.wantErr == "" {
				require.NoError(t, err)
				assert.Equal(t, uint(777), c.halves[0].window, "window of an accepted packet not recorded")
			} else {
				require.EqualError(t, err, tt.wantErr)
				assert.Zero(t, c.halves[0].window, "window of a refused packet recorded")
			}
			assert.Equal(t, tt.peer, c.halves[1], "receiving side changed")
		})
	}
}

// Property: these inputs are where gopacket's off-by-one Difference (row 25)
// or its non-modular distances give another verdict; we assert ours and
// that gopacket's indeed differs, so the table stays honest.
func TestTCPOptionCheckDiffersFromUpstreamAtWrap(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		nextSeq  Sequence
		seq      uint32
		length   int
		ours     string
		upstream string
	}{
		// gopacket sees diff -1 and takes it for a keep-alive.
		{"two behind across wrap", 1, 0xFFFFFFFF, 0, "Re-emitted packet (diff:-2,seq:4294967295,rev-ack:1)", "<nil>"},
		// gopacket sees diff 0 and accepts a retransmission.
		{"one behind across wrap", 0, 0xFFFFFFFF, 100, "Re-emitted packet (diff:-1,seq:4294967295,rev-ack:0)", "<nil>"},
		// gopacket reports the distance one byte short.
		{"far behind across wrap", 0x10, 0xFFFFFFF0, 0, "Re-emitted packet (diff:-32,seq:4294967280,rev-ack:16)", "Re-emitted packet (diff:-31,seq:4294967280,rev-ack:16)"},
		// gopacket does not wrap at all in the middle of the space.
		{"more than 2^31 ahead", 0x40000000, 0xF0000000, 0, "Re-emitted packet (diff:-1342177280,seq:4026531840,rev-ack:1073741824)", "<nil>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tcp := checkSeg("A")
			tcp.Seq = tt.seq
			tcp.Payload = make([]byte, tt.length)
			c := NewTCPOptionCheck()
			assert.Equal(t, tt.ours, fmt.Sprint(c.Accept(tcp, gopacket.CaptureInfo{}, dirC2S, tt.nextSeq, nil)), "ours")
			u := upstream.NewTCPOptionCheck()
			assert.Equal(t, tt.upstream, fmt.Sprint(u.Accept(tcp, gopacket.CaptureInfo{}, upstream.TCPDirClientToServer, upstream.Sequence(tt.nextSeq), nil)), "gopacket")
		})
	}
}

// Property: every accepted packet records its window in its own direction,
// shifted by that direction's scale with the shift capped at 14; a refused
// packet records nothing.
func TestTCPOptionCheckWindow(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		scale int
		want  uint
	}{
		{"no scale", -1, 1000},
		{"scale zero", 0, 1000},
		{"scale 7", 7, 1000 << 7},
		{"scale 14", 14, 1000 << 14},
		{"scale 15 capped", 15, 1000 << 14},
		{"scale 255 capped", 255, 1000 << 14},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := NewTCPOptionCheck()
			syn := checkSeg("S")
			if tt.scale >= 0 {
				syn.Options = []layers.TCPOption{wsOption(byte(tt.scale))}
			}
			syn.Window = 1000
			require.NoError(t, c.Accept(syn, gopacket.CaptureInfo{}, dirS2C, invalidSequence, nil))
			assert.Equal(t, tt.want, c.halves[1].window, "after SYN")

			ack := checkSeg("A")
			ack.Window = 3
			require.NoError(t, c.Accept(ack, gopacket.CaptureInfo{}, dirS2C, invalidSequence, nil))
			assert.Equal(t, uint(3)<<min(max(tt.scale, 0), 14), c.halves[1].window, "after ACK")

			// A refused packet leaves the recorded window alone.
			old := checkSeg("A")
			old.Seq, old.Window = 10, 9
			require.Error(t, c.Accept(old, gopacket.CaptureInfo{}, dirS2C, 20, nil))
			assert.Equal(t, uint(3)<<min(max(tt.scale, 0), 14), c.halves[1].window, "after refused packet")
			assert.Zero(t, c.halves[0].window, "other direction touched")
		})
	}
}

// Property: options announced by one direction constrain only what the other
// direction sends.
func TestTCPOptionCheckDirections(t *testing.T) {
	t.Parallel()
	c := NewTCPOptionCheck()
	syn := checkSeg("S")
	syn.Options = []layers.TCPOption{mssOption(0, 100)}
	syn.Window = 50
	require.NoError(t, c.Accept(syn, gopacket.CaptureInfo{}, dirC2S, invalidSequence, nil))

	data := checkSeg("A")
	data.Seq = 1000
	data.Window = 50 // each accepted packet re-advertises its sender's window
	data.Payload = make([]byte, 200)
	require.NoError(t, c.Accept(data, gopacket.CaptureInfo{}, dirC2S, 1000, nil), "c2s data is judged by s2c's options")
	require.EqualError(t, c.Accept(data, gopacket.CaptureInfo{}, dirS2C, 1000, nil), "200 > mss (100)")

	// c2s's last window (50, unscaled because its SYN had no scale
	// option) bounds what s2c may send.
	data.Payload = data.Payload[:10]
	data.Seq = 1051
	require.EqualError(t, c.Accept(data, gopacket.CaptureInfo{}, dirS2C, 1000, nil), "51 > receiveWindow(50)")
	data.Seq = 1050
	require.NoError(t, c.Accept(data, gopacket.CaptureInfo{}, dirS2C, 1000, nil))
}

// Property: nil inputs yield an error, not a panic, and change nothing; the
// zero value works; ci and start are ignored.
func TestTCPOptionCheckNilAndZero(t *testing.T) {
	t.Parallel()
	c := NewTCPOptionCheck()
	before := c
	require.ErrorIs(t, c.Accept(nil, gopacket.CaptureInfo{}, dirC2S, 0, nil), ErrNilPacket)
	require.ErrorIs(t, c.Accept(nil, gopacket.CaptureInfo{}, dirS2C, invalidSequence, nil), ErrNilPacket)
	assert.Equal(t, before, c)

	var nilCheck *TCPOptionCheck
	assert.NotPanics(t, func() { require.Error(t, nilCheck.Accept(checkSeg("S"), gopacket.CaptureInfo{}, dirC2S, 0, nil)) })

	var zero TCPOptionCheck
	tcp := checkSeg("A")
	tcp.Seq, tcp.Window = 100_000, 10
	require.NoError(t, zero.Accept(tcp, gopacket.CaptureInfo{}, dirC2S, 0, nil))
	require.NoError(t, zero.Accept(tcp, gopacket.CaptureInfo{}, dirS2C, 0, nil), "zero value has window checks off")

	start := true
	require.NoError(t, c.Accept(checkSeg("S"), gopacket.CaptureInfo{}, dirC2S, 0, &start))
	assert.True(t, start)
	start = false
	require.NoError(t, c.Accept(checkSeg("A"), gopacket.CaptureInfo{}, dirC2S, invalidSequence, &start))
	assert.False(t, start)
}

// randomOption draws one TCP option for the differential test: mostly valid
// MSS and window scale options, sometimes with a wrong length, sometimes
// unrelated options.
func randomOption(rng *rand.Rand) layers.TCPOption {
	switch rng.IntN(12) {
	case 0, 1, 2, 3:
		msses := []uint16{0, 1, 100, 536, 1460, 9000, 65535, uint16(rng.Uint32())}
		v := msses[rng.IntN(len(msses))]
		return mssOption(byte(v>>8), byte(v))
	case 4, 5, 6:
		scales := []byte{0, 1, 7, 14, 15, 63, 64, 200, 255}
		return wsOption(scales[rng.IntN(len(scales))])
	case 7:
		return mssOption(make([]byte, []int{0, 1, 3, 4}[rng.IntN(4)])...)
	case 8:
		return wsOption(make([]byte, []int{0, 2, 3}[rng.IntN(3)])...)
	case 9:
		return layers.TCPOption{OptionType: layers.TCPOptionKindNop, OptionLength: 1}
	case 10:
		return layers.TCPOption{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2}
	default:
		return layers.TCPOption{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: make([]byte, 8)}
	}
}

// verdictKind classifies a verdict of Accept for the coverage counts.
func verdictKind(err error, diff, length int) string {
	if err == nil {
		if diff == -1 && length <= 1 {
			return "keep-alive"
		}
		return "accepted"
	}
	msg := err.Error()
	for _, k := range []string{"MSS option", "Window scaling", "Re-emitted", "> mss", "> receiveWindow"} {
		if strings.Contains(msg, k) {
			return k
		}
	}
	return "other: " + msg
}

// Property: fed the same random packets in both directions, our checker and
// gopacket's give the same verdict with the same error text, from
// NewTCPOptionCheck and from the zero value. Where the two sequence
// distances differ (gopacket's off-by-one across the wrap, row 25, or its
// non-modular distances beyond 2^31), our verdict is asserted against the
// serial-arithmetic distance instead, and the trace ends if the verdicts
// disagree, since the recorded windows may then differ.
func TestTCPOptionCheckMatchesUpstream(t *testing.T) {
	t.Parallel()
	seed := tcpcheckSeed(t)
	rng := rand.New(rand.NewPCG(seed, 0x0c4e_c8ed))
	payload := make([]byte, 3000)
	const traces, steps = 4000, 30
	kinds := map[string]int{}
	var distanceDiffers, tracesCut int
	for trace := range traces {
		ours, theirs := NewTCPOptionCheck(), upstream.NewTCPOptionCheck()
		if rng.IntN(8) == 0 {
			ours, theirs = TCPOptionCheck{}, upstream.TCPOptionCheck{}
		}
		// Where each direction's stream is: near the wrap, near zero, or anywhere.
		var next [2]uint32
		for i := range next {
			switch rng.IntN(4) {
			case 0:
				next[i] = 0xFFFFFFFF - rng.Uint32N(4000)
			case 1:
				next[i] = rng.Uint32N(4000)
			default:
				next[i] = rng.Uint32()
			}
		}
		var history []string
	steps:
		for step := range steps {
			dir := TCPFlowDirection(rng.IntN(2) == 0)
			tcp := &layers.TCP{
				SYN: rng.IntN(5) == 0,
				ACK: rng.IntN(2) == 0,
				FIN: rng.IntN(10) == 0,
				RST: rng.IntN(20) == 0,
				Ack: rng.Uint32(),
			}
			switch rng.IntN(10) {
			case 0:
				tcp.Window = 0
			case 1, 2:
				tcp.Window = 512
			case 3:
				tcp.Window = 65535
			default:
				tcp.Window = uint16(rng.Uint32())
			}
			for range rng.IntN(5) {
				tcp.Options = append(tcp.Options, randomOption(rng))
			}
			length := 0
			switch rng.IntN(10) {
			case 0, 1, 2:
			case 3:
				length = 1
			default:
				length = rng.IntN(3001)
			}
			tcp.Payload = payload[:length]

			expect := next[halfIndex(dir)]
			var delta int64
			switch rng.IntN(12) {
			case 0, 1, 2:
			case 3:
				delta = -1
			case 4, 5:
				delta = -rng.Int64N(3000) - 1
			case 6, 7, 8:
				delta = rng.Int64N(3000) + 1
			case 9:
				delta = rng.Int64N(70000)
			case 10:
				delta = 512 + rng.Int64N(3) - 1
			default:
				delta = int64(rng.Uint32())
			}
			tcp.Seq = uint32(int64(expect) + delta)
			nextSeq := Sequence(expect)
			if rng.IntN(10) == 0 {
				nextSeq = invalidSequence
			}

			history = append(history, fmt.Sprintf("%s %s seq=%#x next=%d len=%d win=%d opts=%v",
				checkFlags(tcp), dir, tcp.Seq, nextSeq, length, tcp.Window, tcp.Options))
			got := ours.Accept(tcp, gopacket.CaptureInfo{}, dir, nextSeq, nil)
			want := theirs.Accept(tcp, gopacket.CaptureInfo{}, upstreamDir(dir), upstream.Sequence(nextSeq), nil)

			fail := func(msg string) {
				require.Failf(t, msg, "seed %d trace %d step %d\npackets:\n  %s\nours:   %v\ntheirs: %v",
					seed, trace, step, strings.Join(history, "\n  "), got, want)
			}
			diff := nextSeq.Difference(Sequence(tcp.Seq))
			checked := !tcp.SYN && nextSeq != invalidSequence
			if checked && diff != upstream.Sequence(nextSeq).Difference(upstream.Sequence(tcp.Seq)) {
				distanceDiffers++
				if diff < 0 && (diff != -1 || length > 1) {
					wantOurs := fmt.Sprintf("Re-emitted packet (diff:%d,seq:%d,rev-ack:%d)", diff, tcp.Seq, nextSeq)
					if fmt.Sprint(got) != wantOurs {
						fail("not refused as re-emitted by serial arithmetic")
					}
				} else if diff == -1 && got != nil {
					fail("keep-alive refused")
				}
				if (got == nil) != (want == nil) {
					tracesCut++
					break steps
				}
				continue
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				fail("option check differs from gopacket")
			}
			kinds[verdictKind(got, diff, length)]++

			// Move the stream on as an assembler would.
			if got == nil {
				switch {
				case tcp.SYN:
					next[halfIndex(dir)] = tcp.Seq + 1
				case rng.IntN(2) == 0 && diff >= 0:
					next[halfIndex(dir)] = tcp.Seq + uint32(length)
				}
			}
		}
	}
	t.Logf("verdicts compared: %v; distance differs from gopacket's %d times, %d traces cut", kinds, distanceDiffers, tracesCut)
	// The comparison is only worth something if every verdict was produced.
	for _, k := range []string{"accepted", "keep-alive", "MSS option", "Window scaling", "Re-emitted", "> mss", "> receiveWindow"} {
		assert.GreaterOrEqual(t, kinds[k], 20, "verdict %q too rare", k)
	}
	for k := range kinds {
		assert.False(t, strings.HasPrefix(k, "other"), "unexpected error %q", k)
	}
}
