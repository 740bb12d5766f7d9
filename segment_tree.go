package reassembly

import "sync/atomic"

// segmentTree keeps the out-of-order chunks of one half-connection ordered
// by stream offset, as a treap. Chunks never overlap, so the offset of the
// first byte is a unique key. Every operation costs O(log n) expected time
// whatever the arrival order, where upstream's linked list paid O(n) per
// insertion and so O(n²) for segments arriving in descending order.
type segmentTree struct {
	root  *chunk
	count int
	bytes int
	rng   uint64
	// pooled, when set, follows bytes for every tree of a pool, so that
	// the bytes waiting in all queues can be read at any time.
	pooled *atomic.Int64
}

func (t *segmentTree) addBytes(n int) {
	t.bytes += n
	if t.pooled != nil {
		t.pooled.Add(int64(n))
	}
}

func (t *segmentTree) empty() bool { return t.root == nil }

// nextPriority is splitmix64: the priorities only need to be independent of
// the keys, which an attacker chooses.
func (t *segmentTree) nextPriority() uint64 {
	t.rng += 0x9E3779B97F4A7C15
	z := t.rng
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

// split divides the tree into chunks with pos < key and pos >= key.
func split(n *chunk, key int64) (*chunk, *chunk) {
	if n == nil {
		return nil, nil
	}
	if n.pos < key {
		l, r := split(n.right, key)
		n.right = l
		return n, r
	}
	l, r := split(n.left, key)
	n.left = r
	return l, n
}

// merge joins two trees where every key of a is below every key of b.
func merge(a, b *chunk) *chunk {
	if a == nil {
		return b
	}
	if b == nil {
		return a
	}
	if a.prio > b.prio {
		a.right = merge(a.right, b)
		return a
	}
	b.left = merge(a, b.left)
	return b
}

// insert adds c, which must not overlap any chunk in the tree.
func (t *segmentTree) insert(c *chunk) {
	c.prio = t.nextPriority()
	c.left, c.right = nil, nil
	l, r := split(t.root, c.pos)
	t.root = merge(merge(l, c), r)
	t.count++
	t.addBytes(len(c.bytes))
}

// remove takes c, which must be in the tree, out of it.
func (t *segmentTree) remove(c *chunk) {
	link := &t.root
	for n := *link; n != nil && n != c; n = *link {
		if c.pos < n.pos {
			link = &n.left
		} else {
			link = &n.right
		}
	}
	if *link == nil {
		return
	}
	*link = merge(c.left, c.right)
	c.left, c.right = nil, nil
	t.count--
	t.addBytes(-len(c.bytes))
}

// min returns the chunk with the lowest offset, or nil.
func (t *segmentTree) min() *chunk {
	n := t.root
	if n == nil {
		return nil
	}
	for n.left != nil {
		n = n.left
	}
	return n
}

// max returns the chunk with the highest offset, or nil.
func (t *segmentTree) max() *chunk {
	n := t.root
	if n == nil {
		return nil
	}
	for n.right != nil {
		n = n.right
	}
	return n
}

// floor returns the chunk with the highest offset <= pos, or nil.
func (t *segmentTree) floor(pos int64) *chunk {
	var best *chunk
	for n := t.root; n != nil; {
		if n.pos <= pos {
			best = n
			n = n.right
		} else {
			n = n.left
		}
	}
	return best
}

// after returns the chunk with the lowest offset > pos, or nil.
func (t *segmentTree) after(pos int64) *chunk {
	var best *chunk
	for n := t.root; n != nil; {
		if n.pos > pos {
			best = n
			n = n.left
		} else {
			n = n.right
		}
	}
	return best
}

// resized tells the tree that a chunk's length changed by delta bytes.
func (t *segmentTree) resized(delta int) { t.addBytes(delta) }

// drain removes every chunk, calling f on each in offset order.
func (t *segmentTree) drain(f func(*chunk)) {
	var walk func(n *chunk)
	walk = func(n *chunk) {
		for n != nil {
			walk(n.left)
			r := n.right
			n.left, n.right = nil, nil
			f(n)
			n = r
		}
	}
	root := t.root
	t.addBytes(-t.bytes)
	t.root, t.count = nil, 0
	walk(root)
}

// each calls f on every chunk in offset order until f returns false.
func (t *segmentTree) each(f func(*chunk) bool) {
	var walk func(n *chunk) bool
	walk = func(n *chunk) bool {
		for n != nil {
			if !walk(n.left) || !f(n) {
				return false
			}
			n = n.right
		}
		return true
	}
	walk(t.root)
}

// runStartsIn counts the chunks with an offset in [lo, hi] that start a
// run, that is, that no chunk ends exactly where they begin.
func (t *segmentTree) runStartsIn(lo, hi int64) int {
	n := 0
	c := t.floor(lo)
	if c == nil || c.pos < lo {
		c = t.after(lo - 1)
	}
	for ; c != nil && c.pos <= hi; c = t.after(c.pos) {
		if p := t.floor(c.pos - 1); p == nil || p.end() != c.pos {
			n++
		}
	}
	return n
}
