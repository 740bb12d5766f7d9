package reassembly

// Tests of the drop-in face (Assembler) that are not upstream fault rows
// (regression_test.go) nor races (race_test.go): where it keeps upstream's
// behaviour on purpose.

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// Property: the drop-in face keeps upstream's behaviour and delivers the
// payload of an RST (see MIGRATION.md).
func TestDropInRSTPayloadDelivered(t *testing.T) {
	t.Parallel()
	r := &trRec{}
	trOurs(t, r, AssemblerOptions{}, trBuild(t, []trSeg{
		{seq: 99, flags: "S"},
		{seq: 100, data: "hello"},
		{seq: 105, flags: "R", data: "RST data"},
	}))
	require.Equal(t, "helloRST data", r.stream(0).data(false))
}
