package reassembly

// The differential test's drivers: one per implementation, each the same
// calls into its library's types (a driver of another implementation is
// one more registerDriver with its import). The one named "upstream" is
// the reference.

import (
	"time"

	lib "github.com/google/gopacket/reassembly"
)

func init() {
	registerDriver("upstream", lib.Sequence(0), func(rec *recorder) libOps {
		factory := &recFactory[lib.TCPFlowDirection, lib.Sequence, lib.TCPAssemblyStats,
			lib.ScatterGather, lib.AssemblerContext, lib.Stream]{rec: rec}
		var _ lib.StreamFactory = factory
		var _ lib.Stream = &recStream[lib.TCPFlowDirection, lib.Sequence, lib.TCPAssemblyStats,
			lib.ScatterGather, lib.AssemblerContext]{}
		a := lib.NewAssembler(lib.NewStreamPool(factory))
		a.AssemblerOptions = lib.AssemblerOptions{
			MaxBufferedPagesPerConnection: rec.scn.MaxPagesPerConn,
			MaxBufferedPagesTotal:         rec.scn.MaxPagesTotal,
		}
		return libOps{
			assemble: kitFeedUp(a),
			flushWithOptions: func(t, tc time.Time) (int, int) {
				return a.FlushWithOptions(lib.FlushOptions{T: t, TC: tc})
			},
			flushCloseOlderThan: a.FlushCloseOlderThan,
			flushAll:            a.FlushAll,
		}
	})
	registerDriver("ours", Sequence(0), func(rec *recorder) libOps {
		factory := &recFactory[TCPFlowDirection, Sequence, TCPAssemblyStats,
			ScatterGather, AssemblerContext, Stream]{rec: rec}
		var _ StreamFactory = factory
		var _ Stream = &recStream[TCPFlowDirection, Sequence, TCPAssemblyStats,
			ScatterGather, AssemblerContext]{}
		a := NewAssembler(NewStreamPool(factory))
		a.AssemblerOptions = AssemblerOptions{
			MaxBufferedPagesPerConnection: rec.scn.MaxPagesPerConn,
			MaxBufferedPagesTotal:         rec.scn.MaxPagesTotal,
		}
		return libOps{
			assemble: kitFeedDropIn(a),
			flushWithOptions: func(t, tc time.Time) (int, int) {
				return a.FlushWithOptions(FlushOptions{T: t, TC: tc})
			},
			flushCloseOlderThan: a.FlushCloseOlderThan,
			flushAll:            a.FlushAll,
		}
	})
}
