package reassembly

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestPageBudgetOneWord: the pool's pages and bytes in use, kept in one
// word, are at every step exactly the pages and costs of the chunks held,
// through chunks of every class, a reservation whose chunks cost other
// than was booked (its difference given back, in either direction), a
// reservation given back unused, and the pool emptied again.
func TestPageBudgetOneWord(t *testing.T) {
	var b SafePageCache
	var e engine
	e.pc = newPageCache(&b)
	e.room.maxPagesTotal = 64
	var held []*chunk
	// book reserves as pushHoles does; take takes a booked chunk as
	// insertChunks does.
	book := func(pages int, cost int64) bool {
		if !e.reserve(int64(pages), cost) {
			return false
		}
		e.room.reserved, e.room.reservedCost = int64(pages), cost
		return true
	}
	take := func(n int) {
		c := e.pc.getReserved(n)
		e.room.reserved--
		e.room.reservedCost -= c.cost()
		held = append(held, c)
	}
	check := func(step string) {
		t.Helper()
		var cost int64
		for _, c := range held {
			cost += c.cost()
		}
		st := b.Stats()
		require.Equal(t, int64(len(held)), st.PagesInUse, step)
		require.Equal(t, cost, st.BytesInUse, step)
	}
	for _, n := range []int{1, 64, 65, 256, 1000, 1460, pageBytes} {
		held = append(held, e.pc.get(n))
		check("get")
	}
	// Booked for two full pages, taken as two small chunks: less cost
	// than booked, given back.
	require.True(t, book(2, costFor(2*pageBytes)))
	take(10)
	take(300)
	e.giveBack()
	check("reservation taken below its booking")
	// Booked for one small chunk, taken as one full page: more cost than
	// booked, charged by giveBack.
	require.True(t, book(1, costFor(1)))
	take(pageBytes)
	e.giveBack()
	check("reservation taken above its booking")
	require.True(t, book(3, costFor(3*pageBytes)))
	e.giveBack()
	check("reservation given back unused")
	// The pages limit counts the booked pages.
	require.False(t, book(64-len(held)+1, 0))
	require.True(t, book(64-len(held), 0))
	e.giveBack()
	check("limit")
	for len(held) > 0 {
		e.pc.put(held[len(held)-1])
		held = held[:len(held)-1]
		check("put")
	}
	require.Equal(t, int64(10), b.Stats().PagesPeak, "peak: the most chunks taken at once")
}
