package reassembly

import (
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The segmentTree (a treap of chunks keyed by stream offset) is checked
// against a trivial model: a slice of chunks sorted by offset.

func stChunk(pos int64, n int) *chunk {
	buf := make([]byte, n)
	return &chunk{pos: pos, buf: buf, bytes: buf}
}

// stModel is the reference: chunks sorted by pos, never overlapping.
type stModel []*chunk

// index returns the position of the first chunk with pos >= p.
func (m stModel) index(p int64) int {
	return sort.Search(len(m), func(i int) bool { return m[i].pos >= p })
}

func (m stModel) overlaps(pos int64, n int) bool {
	i := m.index(pos)
	if i < len(m) && m[i].pos < pos+int64(n) {
		return true
	}
	return i > 0 && m[i-1].end() > pos
}

func (m stModel) floor(p int64) *chunk {
	i := m.index(p + 1)
	if i == 0 {
		return nil
	}
	return m[i-1]
}

func (m stModel) after(p int64) *chunk {
	i := m.index(p + 1)
	if i == len(m) {
		return nil
	}
	return m[i]
}

func (m stModel) bytes() int {
	n := 0
	for _, c := range m {
		n += len(c.bytes)
	}
	return n
}

// stHeight returns the height of a (sub)tree.
func stHeight(c *chunk) int {
	if c == nil {
		return 0
	}
	return 1 + max(stHeight(c.left), stHeight(c.right))
}

// stCheckNode verifies the search-tree order and the heap order of the
// priorities below c, and appends the chunks in order to out.
func stCheckNode(t testing.TB, c *chunk, lo, hi int64, out []*chunk) []*chunk {
	t.Helper()
	if c == nil {
		return out
	}
	require.True(t, c.pos > lo && c.pos < hi, "chunk at %d out of its subtree's range (%d, %d)", c.pos, lo, hi)
	require.False(t, (c.left != nil && c.left.prio > c.prio) || (c.right != nil && c.right.prio > c.prio),
		"heap order of priorities violated under chunk at %d", c.pos)
	out = stCheckNode(t, c.left, lo, c.pos, out)
	out = append(out, c)
	return stCheckNode(t, c.right, c.pos, hi, out)
}

// stSameOrder fails unless got holds exactly the chunks of want, in order.
func stSameOrder(t testing.TB, what string, want, got []*chunk) {
	t.Helper()
	require.Len(t, got, len(want), "%s: chunks, against the model's", what)
	for i := range want {
		if want[i] != got[i] {
			require.Failf(t, what, "chunk %d is at %d, model's is at %d", i, got[i].pos, want[i].pos)
		}
	}
}

// stCheck compares the tree with the model: same chunks in the same order,
// count, bytes, the pooled byte counter, min, empty, and the tree's own
// structural invariants. With full unset, only the O(1) figures.
func stCheck(t testing.TB, tr *segmentTree, m stModel, pooled *atomic.Int64, full bool) {
	t.Helper()
	b := m.bytes()
	if tr.count != len(m) || tr.bytes != b || pooled.Load() != int64(b) || tr.empty() != (len(m) == 0) {
		require.Failf(t, "tree and model differ", "count %d, bytes %d, pooled counter %d, empty() %v; model has %d chunks, %d bytes",
			tr.count, tr.bytes, pooled.Load(), tr.empty(), len(m), b)
	}
	if len(m) == 0 {
		require.Nil(t, tr.min(), "min() of an empty tree")
	} else if tr.min() != m[0] {
		require.Failf(t, "min()", "min() is at %v, model's is at %d", stPos(tr.min()), m[0].pos)
	}
	if !full {
		return
	}
	stSameOrder(t, "in-order walk", m, stCheckNode(t, tr.root, math.MinInt64, math.MaxInt64, nil))
	var each []*chunk
	tr.each(func(c *chunk) bool { each = append(each, c); return true })
	stSameOrder(t, "each()", m, each)
}

// stPos describes a chunk for messages.
func stPos(c *chunk) any {
	if c == nil {
		return "nil"
	}
	return c.pos
}

// stRun applies the operations encoded in data to a tree and to the model,
// checking after each one that they agree.
// It returns the largest number of chunks the tree held.
func stRun(t testing.TB, seed uint64, data []byte) (peak int) {
	t.Helper()
	const space = 4096
	var pooled atomic.Int64
	tr := &segmentTree{rng: seed, pooled: &pooled}
	var m stModel
	ops := &fzInput{b: data} // the fuzz targets' reader
	for step := 0; ops.more(); step++ {
		switch op := ops.u8() % 10; op {
		case 0, 1, 2, 3: // insert a non-overlapping chunk
			pos, n := int64(ops.u16()%space), 1+int(ops.u8()%24)
			if m.overlaps(pos, n) {
				continue
			}
			c := stChunk(pos, n)
			tr.insert(c)
			i := m.index(pos)
			m = slices.Insert(m, i, c)
		case 4: // remove a chunk of the tree
			if len(m) == 0 {
				continue
			}
			i := ops.u16() % len(m)
			tr.remove(m[i])
			require.True(t, m[i].left == nil && m[i].right == nil, "removed chunk at %d keeps links", m[i].pos)
			m = slices.Delete(m, i, i+1)
		case 5: // remove a chunk that is not in the tree: no effect
			pos := int64(ops.u16() % space)
			tr.remove(stChunk(pos, 1))
		case 6: // floor and after
			q := int64(ops.u16()%(space+64)) - 32
			if got, want := tr.floor(q), m.floor(q); got != want {
				require.Failf(t, "floor", "floor(%d) = %v, model says %v", q, stPos(got), stPos(want))
			}
			if got, want := tr.after(q), m.after(q); got != want {
				require.Failf(t, "after", "after(%d) = %v, model says %v", q, stPos(got), stPos(want))
			}
		case 7: // shrink a chunk from either end, as trimQueued does
			if len(m) == 0 {
				continue
			}
			c := m[ops.u16()%len(m)]
			if len(c.bytes) < 2 {
				continue
			}
			cut := 1 + int(ops.u8())%(len(c.bytes)-1)
			if ops.u8()%2 == 0 {
				c.bytes = c.bytes[:len(c.bytes)-cut]
			} else {
				// Cutting the head moves the key up, within the gap to
				// the next chunk: the order is unchanged.
				c.bytes = c.bytes[cut:]
				c.pos += int64(cut)
			}
			tr.resized(-cut)
		case 8: // each, stopping early
			if len(m) == 0 {
				continue
			}
			stop := ops.u16() % len(m)
			var seen []*chunk
			tr.each(func(c *chunk) bool {
				seen = append(seen, c)
				return len(seen) <= stop
			})
			stSameOrder(t, "each() stopping after f returns false", m[:stop+1], seen)
		case 9: // drain, rarely
			if ops.u8()%64 != 0 {
				continue
			}
			var got []*chunk
			tr.drain(func(c *chunk) {
				require.True(t, c.left == nil && c.right == nil, "drained chunk at %d keeps links", c.pos)
				got = append(got, c)
			})
			stSameOrder(t, "drain()", m, got)
			m = m[:0]
		}
		stCheck(t, tr, m, &pooled, len(m) < 64 || step%16 == 0)
		peak = max(peak, len(m))
	}
	// Drain what is left.
	var got []*chunk
	tr.drain(func(c *chunk) { got = append(got, c) })
	stSameOrder(t, "final drain()", m, got)
	stCheck(t, tr, nil, &pooled, true)
	return peak
}

func TestSegmentTreeMatchesModel(t *testing.T) {
	for seed := uint64(1); seed <= 40; seed++ {
		rng := rand.New(rand.NewPCG(seed, seed*0x9E3779B97F4A7C15))
		data := make([]byte, 6000)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		// Bias towards inserts so that trees grow to a few hundred chunks.
		for i := 0; i < len(data); i += 4 {
			if rng.IntN(3) != 0 {
				data[i] = byte(rng.IntN(4))
			}
		}
		if peak := stRun(t, seed, data); seed == 1 {
			t.Logf("seed 1: up to %d chunks", peak)
		}
	}
}

func TestSegmentTreeHeightStaysLogarithmic(t *testing.T) {
	const n = 1 << 15
	bound := int(4 * math.Log2(n))
	orders := map[string]func(i int) int64{
		"ascending":  func(i int) int64 { return int64(2 * i) },
		"descending": func(i int) int64 { return int64(2 * (n - i)) },
		"zigzag": func(i int) int64 {
			if i%2 == 0 {
				return int64(i)
			}
			return int64(4*n - i)
		},
	}
	for name, key := range orders {
		t.Run(name, func(t *testing.T) {
			var pooled atomic.Int64
			tr := &segmentTree{pooled: &pooled}
			chunks := make([]*chunk, n)
			for i := range n {
				chunks[i] = stChunk(key(i), 1)
				tr.insert(chunks[i])
			}
			h := stHeight(tr.root)
			t.Logf("height %d after %d %s inserts (bound %d)", h, n, name, bound)
			assert.LessOrEqual(t, h, bound, "height after %d %s inserts", n, name)
			assert.Equal(t, n, tr.count)
			// Remove every other chunk, lowest first, as deliveries do.
			for i := 0; i < n; i += 2 {
				tr.remove(tr.min())
			}
			assert.LessOrEqual(t, stHeight(tr.root), bound, "height after removing half")
			assert.Equal(t, n/2, tr.count)
			assert.EqualValues(t, n/2, pooled.Load(), "pooled bytes")
		})
	}
}

func TestSegmentTreeEmpty(t *testing.T) {
	var tr segmentTree // no pooled counter
	assert.True(t, tr.empty())
	assert.Nil(t, tr.min())
	assert.Nil(t, tr.floor(10))
	assert.Nil(t, tr.after(-10))
	tr.remove(stChunk(3, 1)) // absent: no effect
	tr.drain(func(*chunk) { t.Fatal("drain of an empty tree called f") })
	tr.each(func(*chunk) bool { t.Fatal("each of an empty tree called f"); return false })
	c := stChunk(5, 3)
	tr.insert(c)
	assert.Same(t, c, tr.floor(5))
	assert.Same(t, c, tr.floor(100))
	assert.Nil(t, tr.floor(4))
	assert.Same(t, c, tr.after(4))
	assert.Nil(t, tr.after(5))
	other := stChunk(5, 3) // same key, different chunk: not in the tree
	tr.remove(other)
	assert.Equal(t, 1, tr.count, "removing a chunk that is not in the tree changed it")
	tr.remove(c)
	assert.True(t, tr.empty())
	assert.Equal(t, 0, tr.bytes)
}

func FuzzSegmentTree(f *testing.F) {
	f.Add(uint64(0), []byte{})
	f.Add(uint64(1), []byte{0, 1, 0, 5, 1, 2, 0, 3, 0, 9, 6, 1, 0, 4, 0, 0})
	f.Add(uint64(2), []byte{0, 0, 0, 1, 0, 10, 0, 2, 8, 0, 0, 8, 7, 0, 0, 1, 1, 9, 0})
	f.Add(uint64(3), []byte{1, 255, 15, 3, 2, 200, 1, 7, 6, 255, 15, 4, 1, 0, 5, 255, 15, 9, 8})
	seq := make([]byte, 0, 400)
	for i := range 100 { // descending inserts, then queries and removals
		seq = append(seq, 0, byte(200-i), 0, 1)
	}
	f.Add(uint64(4), append(seq, 6, 50, 0, 4, 0, 0, 8, 3, 0, 9, 0))
	f.Fuzz(func(t *testing.T, seed uint64, data []byte) {
		if len(data) > 8192 {
			data = data[:8192]
		}
		stRun(t, seed, data)
	})
}
