package reassembly

// The window check (window.go, SafeAssemblerOptions.CheckWindow): where it
// checks nothing (the window unknown or unscaled), a side that sent its FIN
// still moving its window, and the next byte an RST must hit. The attacks
// it screens, across the screens, are evasion_test.go's.

import (
	"testing"

	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"
)

// Property: CheckWindow checks nothing where the window is not known: a
// connection picked up mid-stream (no SYN, the scale unknown) delivers
// data far past the raw window, and without a scale option on both SYNs
// the window is unscaled.
func TestCheckWindowUnknownOrUnscaled(t *testing.T) {
	t.Parallel()
	c := kitConnN(5)
	opts := kitReplayOpts()
	opts.CheckWindow, opts.Midstream = true, true
	got, st, _ := idsRun(t, c, opts, []*layers.TCP{
		idsSeg(c, false, "", 0, "0123456789abcdef", c.seqAt(true, 0), 10),
		idsSeg(c, true, "", 0, "", c.seqAt(false, 0), 10),
		idsSeg(c, false, "", 16, "later", c.seqAt(true, 0), 10),
	})
	require.Equal(t, "0123456789abcdeflater", got)
	require.Zero(t, st.OutOfWindow)

	opts.Midstream = false
	got, st, _ = idsRun(t, c, opts, []*layers.TCP{
		idsSeg(c, false, "S", 0, "", 0, 65535), // no scale: the server's window 10 is not shifted by its 7
		idsSeg(c, true, "S", 0, "", c.seqAt(false, 0), 10, wsOpt(7)),
		idsSeg(c, true, "", 0, "", c.seqAt(false, 0), 10),
		idsSeg(c, false, "", 0, "0123456789", c.seqAt(true, 0), 500),
		idsSeg(c, false, "", 10, "x", c.seqAt(true, 0), 500),
	})
	require.Equal(t, "0123456789", got)
	require.Equal(t, int64(1), st.OutOfWindow)
}

// Property: a side that sent its FIN still moves its window with its
// ACKs: the other side's data within the window goes on (as in
// zk-tcp-reassembly, where the server closes first and acknowledges 30 KB
// after).
func TestCheckWindowFollowsClosedSide(t *testing.T) {
	t.Parallel()
	c := kitConnN(6)
	sAck := c.seqAt(true, 1) // past the server's FIN
	opts := kitReplayOpts()
	opts.CheckWindow = true
	got, st, _ := idsRun(t, c, opts, []*layers.TCP{
		idsSeg(c, false, "S", 0, "", 0, 65535),
		idsSeg(c, true, "S", 0, "", c.seqAt(false, 0), 8),
		idsSeg(c, true, "F", 0, "", c.seqAt(false, 0), 8),
		idsSeg(c, false, "", 0, "01234567", sAck, 500),
		idsSeg(c, true, "", 1, "", c.seqAt(false, 8), 8),
		idsSeg(c, false, "", 8, "89abcdef", sAck, 500),
	})
	require.Equal(t, "0123456789abcdef", got)
	require.Zero(t, st.OutOfWindow)
}

// Property: the next byte an RST must hit is the receiver's furthest
// acknowledgement, not its last (an older ACK the capture reorders after
// a newer one does not move it back), and it takes the RST even when the
// window there is zero (RFC 9293 §3.10.7.4): such an RST ends the
// connection, neither counted as out of the window nor as off the next
// byte.
func TestCheckWindowResetAtTheAck(t *testing.T) {
	t.Parallel()
	c := kitConnN(12)
	sAck := c.seqAt(true, 0)
	reordered := append(idsHandshake(c, 1000),
		idsSeg(c, false, "", 0, "GET ", sAck, 1000),
		idsSeg(c, true, "", 0, "", c.seqAt(false, 8), 1000), // the capture missed bytes 4 to 8
		idsSeg(c, true, "", 0, "", c.seqAt(false, 4), 1000), // an older ACK, reordered
		idsSeg(c, false, "R", 8, "", sAck, 0))
	zero := []*layers.TCP{
		idsSeg(c, false, "S", 0, "", 0, 1000),
		idsSeg(c, true, "S", 0, "", c.seqAt(false, 0), 4), // the edge is at 4
		idsSeg(c, false, "", 0, "", sAck, 1000),
		idsSeg(c, false, "", 0, "GET ", sAck, 1000),
		idsSeg(c, true, "", 0, "", c.seqAt(false, 4), 0), // the window closes there
		idsSeg(c, false, "R", 4, "", sAck, 0),
		idsSeg(c, false, "", 4, "EVIL", sAck, 1000),
	}
	for name, pkts := range map[string][]*layers.TCP{"reordered ACK": reordered, "zero window": zero} {
		got, st, _ := idsRun(t, c, idsOptions(), pkts)
		require.Equal(t, "GET ", got, name)
		require.Zero(t, st.ResetsOutOfWindow+st.ResetsNotExact, name)
	}
	_, st, _ := idsRun(t, c, idsOptions(), zero)
	require.Equal(t, int64(4), st.BytesAfterReset, "the RST at a zero window ended the connection")
}
