package tracegen

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDeterministic: the same parameters give the same file, another seed
// another one, and the packet count is what the shape implies.
func TestDeterministic(t *testing.T) {
	b := BulkIssue15()
	b.Conns, b.Rounds, b.Segments = 4, 2, 40
	var one, two, other bytes.Buffer
	c, err := WriteBulk(&one, b)
	require.NoError(t, err)
	_, err = WriteBulk(&two, b)
	require.NoError(t, err)
	b.Seed++
	_, err = WriteBulk(&other, b)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(one.Bytes(), two.Bytes()), "same seed, same capture")
	assert.False(t, bytes.Equal(one.Bytes(), other.Bytes()), "another seed, another capture")
	// Per connection: 3 handshake, 40 segments each way, 20 ACKs each way,
	// 3 closing, plus the retransmitted and overlapping copies.
	assert.GreaterOrEqual(t, c.Packets, 8*(3+80+40+3))
	assert.Less(t, c.Packets, 8*(3+80+40+3)+8*10)

	h := HTTPIssue15()
	h.Conns = 10
	var hb bytes.Buffer
	hc, err := WriteHTTP(&hb, h)
	require.NoError(t, err)
	// handshake 3, request and its ACK 2, 4 responses and 2 ACKs, closing 3.
	assert.Equal(t, 10*14, hc.Packets)
	assert.Equal(t, 24+hc.Packets*16+10*(14*54+300+4*1460), hb.Len(), "pcap header, record headers, frames")
	var dirs int
	hc.Streams(func(src, dst netip.AddrPort, data []byte) {
		dirs++
		if dst.Port() == 80 {
			assert.Len(t, data, 300)
		} else {
			assert.Len(t, data, 4*1460)
		}
	})
	assert.Equal(t, 20, dirs)
}
