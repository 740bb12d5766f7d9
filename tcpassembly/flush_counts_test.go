package tcpassembly_test

import (
	"testing"
	"time"

	"github.com/google/gopacket/layers"
	ours "github.com/safepacket/reassembly/tcpassembly"
	"github.com/stretchr/testify/require"
)

// A flush counts only what it did itself, even on a pool that a second
// Assembler joins while the first is assembling: the first one's
// deliveries, before or after the join, never enter the second one's
// flush counts. The flushes here have nothing older than their T, so each
// must count nothing; -race checks the hand-over of the pool from one
// Assembler to two.
func TestFlushCountsOnlyItsOwnOnAJoinedPool(t *testing.T) {
	t.Parallel()
	pool := ours.NewStreamPool(nopOurs{})
	first := ours.NewAssembler(pool)
	started := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for c := 0; c < 400; c++ {
			nf := diffFlow(c, 0)
			syn := seg(0, 100, "S", "")
			syn.SrcPort = layers.TCPPort(1000 + c)
			data := syn
			data.SYN, data.Seq, data.Payload = false, 101, []byte("payload")
			for i := 0; i < 20; i++ {
				first.AssembleWithTimestamp(nf, &syn, diffT0)
				first.AssembleWithTimestamp(nf, &data, diffT0)
				data.Seq += uint32(len(data.Payload))
			}
			if c == 0 {
				close(started)
			}
		}
	}()
	<-started
	second := ours.NewAssembler(pool)
	for {
		flushed, closed := second.FlushWithOptions(ours.FlushOptions{T: diffT0.Add(-time.Hour)})
		require.Zero(t, flushed)
		require.Zero(t, closed)
		select {
		case <-done:
			return
		default:
		}
	}
}
