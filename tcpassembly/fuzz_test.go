package tcpassembly_test

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// Whatever the traffic (the differential's scenarios, with RSTs, SYNs and
// FINs sprinkled on random packets, which it avoids), nothing panics and
// every Stream is completed exactly once, after all its deliveries.
func FuzzFace(f *testing.F) {
	for _, seed := range []uint64{1, 2, 3, 42} {
		f.Add(seed, uint8(3))
	}
	f.Fuzz(func(t *testing.T, seed uint64, flips uint8) {
		r := rand.New(rand.NewPCG(seed, 7))
		s := genScenario(r)
		for i := 0; i < int(flips%16); i++ {
			st := &s.steps[r.IntN(len(s.steps))]
			if st.flush != "" {
				continue
			}
			switch r.IntN(3) {
			case 0:
				st.tcp.RST = !st.tcp.RST
			case 1:
				st.tcp.SYN = !st.tcp.SYN
			default:
				st.tcp.FIN = !st.tcp.FIN
			}
		}
		l := playOurs(s)
		for id, ev := range l.streams {
			joined := strings.Join(ev, "|")
			if strings.Count(joined, "complete") != 1 || !strings.HasSuffix(joined, "complete") {
				t.Fatalf("%s: not completed exactly once, last: %v", id, ev)
			}
		}
	})
}
