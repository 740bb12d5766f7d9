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
	lib "github.com/google/gopacket/reassembly"
)

func init() {
	registerDriver(lib.Sequence(0), func(rec *recorder) libOps {
		factory := &recFactory[lib.TCPFlowDirection, lib.Sequence, lib.TCPAssemblyStats,
			lib.ScatterGather, lib.AssemblerContext, lib.Stream]{rec: rec}
		var _ lib.StreamFactory = factory
		var _ lib.Stream = &recStream[lib.TCPFlowDirection, lib.Sequence, lib.TCPAssemblyStats,
			lib.ScatterGather, lib.AssemblerContext]{}

		pool := lib.NewStreamPool(factory)
		a := lib.NewAssembler(pool)
		a.AssemblerOptions = lib.AssemblerOptions{
			MaxBufferedPagesPerConnection: rec.scn.MaxPagesPerConn,
			MaxBufferedPagesTotal:         rec.scn.MaxPagesTotal,
		}
		return libOps{
			assemble: func(netFlow gopacket.Flow, tcp *layers.TCP, ac *kitCtx) {
				a.AssembleWithContext(netFlow, tcp, ac)
			},
			flushWithOptions: func(t, tc time.Time) (int, int) {
				return a.FlushWithOptions(lib.FlushOptions{T: t, TC: tc})
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
