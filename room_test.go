package reassembly

// Tests of the make-room stage (room.go) through the Safe face: the page
// budget holds for any segment, a forced skip frees what it must, and the
// bytes it makes deliverable are delivered once.

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Property: the page budget holds even for a segment larger than a page:
// with MaxBufferedPagesTotal 2, an out-of-order segment of three pages
// never makes PagesInUse (hence PagesPeak) exceed 2; the hole is skipped
// and reported instead.
func TestSafePageBudgetLargeSegment(t *testing.T) {
	kitNoLeaks(t)
	f, _, a := newKitSafe(t, kitPagesOpts(2, 2))
	c := kitConnN(1)
	c.open(t, a, kitT0)
	big := strings.Repeat("x", 5000)
	require.NoError(t, c.send(a, false, "A", 100, big, kitT0))
	st := a.Stats()
	kitRequireConserved(t, st)
	require.Equal(t, kitGot{data: [2]string{big, ""}, gaps: [2]int{100, 0}}, f.stream(c).got(), "the forced skip delivers the segment")
	require.EqualValues(t, 1, st.ForcedSkips)
	assert.LessOrEqual(t, st.PageCache.PagesPeak, int64(2), "PagesPeak exceeds MaxBufferedPagesTotal")
	kitCloseSound(t, f, a)
}

// Property: a forced skip is a hole skipped and reported to a Stream
// (ForcedSkips <= Gaps), and once a packet has been handled the pool is
// back within its budget (PagesInUse <= MaxBufferedPagesTotal), even when
// the forced delivery of the first hole does not free enough pages.
func TestSafePageBudgetRestoredAfterForcedSkip(t *testing.T) {
	kitNoLeaks(t)
	f, _, a := newKitSafe(t, kitPagesOpts(2, 2))
	x, y := kitConnN(1), kitConnN(2)
	x.open(t, a, kitT0)
	require.NoError(t, x.send(a, false, "A", 100, "x", kitT0))                       // one page
	require.NoError(t, x.send(a, false, "A", 200, strings.Repeat("y", 5000), kitT0)) // three pages, after another hole
	st := a.Stats()
	kitRequireConserved(t, st)
	assert.LessOrEqual(t, st.PageCache.PagesInUse, int64(2), "pages in use after the packet was handled")

	// An out-of-order FIN without data on a connection that buffers nothing.
	y.play(t, a, kitT0, ">S", "<SA", ">FA 10")
	st = a.Stats()
	assert.Equal(t, f.gaps.Load(), st.Gaps)
	assert.LessOrEqual(t, st.ForcedSkips, st.Gaps, "ForcedSkips counts a skip that no Stream saw")
	kitCloseSound(t, f, a)
}

// Property: PagesPeak, like PagesInUse, stays within
// MaxBufferedPagesTotal when the budget is filled exactly, one page at a
// time.
func TestSafePagesPeakWithinBudget(t *testing.T) {
	kitNoLeaks(t)
	f, _, a := newKitSafe(t, kitPagesOpts(2, 2))
	c := kitConnN(1)
	c.open(t, a, kitT0)
	for _, off := range []int{10, 20, 30, 40} {
		require.NoError(t, c.send(a, false, "A", off, "p", kitT0))
		st := a.Stats()
		require.LessOrEqual(t, st.PageCache.PagesInUse, int64(2))
		require.LessOrEqual(t, st.PageCache.PagesPeak, int64(2), "PagesPeak after the page at %d", off)
	}
	kitCloseSound(t, f, a)
}

// Property: bytes buffered for a direction are never lost from the page
// budget: when making room for a segment pushes the direction over its FIN
// (closing it), the segment is not queued on the closed direction; after
// Close no page is in use and nothing is queued. (Regression: PagesInUse
// and QueuedBytes stayed at 1 page / 5 bytes for ever.)
func TestSafeNoPagesLeakedWhenMakingRoomClosesDirection(t *testing.T) {
	kitNoLeaks(t)
	f, _, a := newKitSafe(t, kitPagesOpts(100, 2))
	c := kitConnN(1)
	c.open(t, a, kitT0)
	require.NoError(t, c.send(a, false, "FA", 10, "", kitT0))     // FIN ahead, out of order
	require.NoError(t, c.send(a, false, "A", 5, "fghij", kitT0))  // page 1, ends at the FIN
	require.NoError(t, c.send(a, false, "A", 20, "uvwxy", kitT0)) // page 2, past the FIN
	_ = c.send(a, false, "A", 30, "UVWXY", kitT0)                 // no room: pushing reaches the FIN
	require.NoError(t, c.send(a, true, "FA", 0, "", kitT0))
	require.NoError(t, a.Close())
	st := a.Stats()
	kitRequireConserved(t, st)
	require.Equal(t, "fghij", f.stream(c).bytes(0))
	assert.Zero(t, st.PageCache.QueuedBytes, "bytes left queued after Close")
	assert.Zero(t, st.PageCache.PagesInUse, "pages left in use after Close")
	f.requireSound(t)
}

// Property: when room has to be made for an out-of-order segment by
// skipping the first hole, and that skip makes the segment in order (or
// partly delivered already), its bytes are delivered at once and exactly
// once: never queued at or below the delivery point, never re-delivered
// with a negative Skip, and the forced skip is the one reported.
func TestSafeMakeRoomThenSegmentInOrder(t *testing.T) {
	kitNoLeaks(t)
	f, _, a := newKitSafe(t, kitPagesOpts(100, 2), func(f *kitFactory) { f.checkContent = true })
	c := kitConnN(1)
	c.open(t, a, kitT0)
	require.NoError(t, c.send(a, false, "A", 10, kitPayload(c, 0, 10, 10), kitT0)) // [10,20)
	require.NoError(t, c.send(a, false, "A", 40, kitPayload(c, 0, 40, 10), kitT0)) // [40,50)
	// No room: [10,20) is pushed out over its hole; [15,35) then follows
	// the delivery point directly.
	require.NoError(t, c.send(a, false, "A", 15, kitPayload(c, 0, 15, 20), kitT0))
	s := f.stream(c)
	assert.Equal(t, kitPayload(c, 0, 10, 25), s.bytes(0), "bytes [10,35) are deliverable after the packet")
	st := a.Stats()
	kitRequireConserved(t, st)
	assert.Equal(t, st.Gaps, st.ForcedSkips)
	require.NoError(t, a.Close())
	require.Equal(t, f.firstBytes.Load(), a.Stats().BytesDelivered)
	assert.Equal(t, 35, len(s.bytes(0)), "each byte delivered once")
	assert.Equal(t, 15, s.gap(0), "holes [0,10) and [35,40)")
	f.requireSound(t)
}
