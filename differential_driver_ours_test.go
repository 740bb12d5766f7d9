package reassembly

// Differential driver for one reassembly implementation.
//
// This file must stay library-agnostic except for the import below: the
// driver of another implementation is a copy of this file with only the
// import path changed. The driver's name comes from the file name
// (differential_driver_<name>_test.go or driver_<name>_test.go); the one
// named "upstream" is the reference.

import (
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

func init() {
	registerDriver(Sequence(0), func(rec *recorder) libOps {
		factory := &recFactory[TCPFlowDirection, Sequence, TCPAssemblyStats,
			ScatterGather, AssemblerContext, Stream]{rec: rec}
		var _ StreamFactory = factory
		var _ Stream = &recStream[TCPFlowDirection, Sequence, TCPAssemblyStats,
			ScatterGather, AssemblerContext]{}

		pool := NewStreamPool(factory)
		a := NewAssembler(pool)
		a.AssemblerOptions = AssemblerOptions{
			MaxBufferedPagesPerConnection: rec.scn.MaxPagesPerConn,
			MaxBufferedPagesTotal:         rec.scn.MaxPagesTotal,
		}
		return libOps{
			assemble: func(netFlow gopacket.Flow, tcp *layers.TCP, ac *kitCtx) {
				a.AssembleWithContext(netFlow, tcp, ac)
			},
			flushWithOptions: func(t, tc time.Time) (int, int) {
				return a.FlushWithOptions(FlushOptions{T: t, TC: tc})
			},
			flushCloseOlderThan: func(t time.Time) (int, int) {
				return a.FlushCloseOlderThan(t)
			},
			flushAll: func() int {
				return a.FlushAll()
			},
		}
	})
}
