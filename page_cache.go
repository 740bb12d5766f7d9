package reassembly

import (
	"sync/atomic"
	"time"
)

// pageBytes is the largest number of bytes one buffered chunk holds. It is
// upstream's page size, so that page counts, and with them the
// MaxBufferedPages* limits and TCPAssemblyStats.Chunks, mean the same here.
const pageBytes = 1900

// chunkClasses are the buffer capacities chunks are drawn from: a 1-byte
// segment takes a 64-byte buffer, not a whole page.
var chunkClasses = [...]int{64, 256, 1024, 1536, 2048}

const numChunkClasses = len(chunkClasses)

// chunkOverhead approximates the bytes a chunk costs besides its buffer; it
// is charged to byte budgets so that tiny segments are not free.
const chunkOverhead = 160

// chunk is one buffered piece of a half-connection's byte stream: at most
// pageBytes bytes received out of order, or kept for the Stream by KeepFrom.
// Chunks are nodes of a segmentTree and are recycled through a pageCache.
type chunk struct {
	pos   int64    // stream offset of bytes[0]
	seq   Sequence // sequence number of bytes[0]
	bytes []byte   // the data, a window into buf
	buf   []byte   // owned storage
	ac    AssemblerContext
	seen  time.Time // capture time of the packet that carried it
	// packetStart is set on the first chunk of a packet, which counts as a
	// packet in TCPAssemblyStats.
	packetStart bool
	class       int8
	flags       TCPFlags // the TCP flags of the packet
	// rewritten is set when a later copy replaced some of the bytes in place.
	rewritten bool
	ack       uint32 // the acknowledgement number of the packet
	// segStart and segEnd are the offsets of the segment that supplied the
	// bytes, as it arrived: overlap policies compare segments, not chunks.
	segStart, segEnd int64

	left, right *chunk
	prio        uint64
	next        *chunk // free-list and kept-list link
}

func (c *chunk) end() int64 { return c.pos + int64(len(c.bytes)) }

// cost is what the chunk is charged against a byte budget.
func (c *chunk) cost() int64 { return int64(cap(c.buf)) + chunkOverhead }

// SafePageCache is the page budget of a pool: it counts, atomically, the
// pages (buffers of up to 1900 bytes) that every assembler sharing the pool
// holds, so that MaxBufferedPagesTotal is one limit for all of them, where
// upstream kept a per-assembler count that drifted when one assembler freed
// another's pages. Each assembler keeps its free pages for reuse and hands
// those unused for a whole flush interval back to the garbage collector.
type SafePageCache struct {
	// held is the chunks in use and their costs in one word (heldWord),
	// so that taking or giving back a chunk is one atomic operation.
	held atomic.Int64
	peak atomic.Int64 // most chunks in use at once
	// queued is the payload bytes waiting in out-of-order queues.
	queued   atomic.Int64
	released atomic.Int64 // free pages handed back to the garbage collector
}

// PageCacheStats is a snapshot of a SafePageCache.
type PageCacheStats struct {
	PagesInUse    int64 // pages holding buffered or kept bytes
	PagesPeak     int64 // most pages in use at once
	BytesInUse    int64 // memory charged for those pages, overhead included
	QueuedBytes   int64 // payload bytes waiting out of order
	PagesReleased int64 // free pages released to the garbage collector
}

// Stats returns the current figures of the cache.
func (b *SafePageCache) Stats() PageCacheStats {
	h := b.held.Load()
	return PageCacheStats{
		PagesInUse:    pagesOf(h),
		PagesPeak:     b.peak.Load(),
		BytesInUse:    costOf(h),
		QueuedBytes:   b.queued.Load(),
		PagesReleased: b.released.Load(),
	}
}

// heldPageBits is how many low bits of SafePageCache.held count chunks;
// the bits above count their costs. 2^26 chunks (127 GB of pages) and
// 2^37 bytes of cost are far beyond any pool a machine holds.
const heldPageBits = 26

// heldWord is the value of SafePageCache.held for pages chunks costing
// cost bytes; the sum of two words is the word of the sums, so deltas,
// negative ones too, add up while the counts themselves stay in range.
func heldWord(pages, cost int64) int64 { return cost<<heldPageBits + pages }

// pagesOf and costOf take a held word apart.
func pagesOf(h int64) int64 { return h & (1<<heldPageBits - 1) }
func costOf(h int64) int64  { return h >> heldPageBits }

// pages returns the chunks in use.
func (b *SafePageCache) pages() int64 { return pagesOf(b.held.Load()) }

func (b *SafePageCache) add(c *chunk) {
	b.notePeak(pagesOf(b.held.Add(heldWord(1, c.cost()))))
}

// notePeak raises peak to n chunks in use.
func (b *SafePageCache) notePeak(n int64) {
	for {
		p := b.peak.Load()
		if n <= p || b.peak.CompareAndSwap(p, n) {
			return
		}
	}
}

func (b *SafePageCache) sub(c *chunk) {
	b.held.Add(-heldWord(1, c.cost()))
}

// pageCache hands out chunks and takes them back. Each assembler owns one, so
// it needs no lock; the counts that must be shared live in the SafePageCache.
// Free chunks that stay unused for a whole trim period are dropped for the
// garbage collector, so a traffic spike does not pin memory for ever.
type pageCache struct {
	budget  *SafePageCache
	free    [numChunkClasses]*chunk
	nfree   [numChunkClasses]int
	minFree [numChunkClasses]int // fewest free chunks since the last trim
}

func newPageCache(b *SafePageCache) *pageCache {
	return &pageCache{budget: b}
}

// classFor returns the smallest class that holds n bytes, the largest for
// more. It counts down from the largest: most chunks hold a whole segment.
func classFor(n int) int {
	i := numChunkClasses - 1
	for i > 0 && n <= chunkClasses[i-1] {
		i--
	}
	return i
}

// get returns a chunk able to hold n (at most pageBytes) bytes.
func (pc *pageCache) get(n int) *chunk {
	c := pc.take(n)
	pc.budget.add(c)
	return c
}

// take returns a chunk able to hold n bytes without charging it.
func (pc *pageCache) take(n int) *chunk {
	cl := classFor(n)
	c := pc.free[cl]
	if c != nil {
		pc.free[cl] = c.next
		pc.nfree[cl]--
		if pc.nfree[cl] < pc.minFree[cl] {
			pc.minFree[cl] = pc.nfree[cl]
		}
		c.next = nil
	} else {
		c = &chunk{buf: make([]byte, chunkClasses[cl]), class: int8(cl)}
	}
	c.bytes = c.buf[:n]
	return c
}

// getReserved is get for a chunk whose page and cost the caller booked
// already (engine.reserve): nothing is charged.
func (pc *pageCache) getReserved(n int) *chunk {
	c := pc.take(n)
	pc.budget.notePeak(pc.budget.pages())
	return c
}

// put takes back a chunk that is no longer referenced.
func (pc *pageCache) put(c *chunk) {
	pc.budget.sub(c)
	c.bytes = nil
	c.ac = nil
	c.left, c.right = nil, nil
	c.packetStart, c.rewritten = false, false
	cl := c.class
	c.next = pc.free[cl]
	pc.free[cl] = c
	pc.nfree[cl]++
}

// trim releases the free chunks that were not needed since the previous
// trim, and returns how many it released.
func (pc *pageCache) trim() int {
	released := 0
	for cl := range pc.free {
		drop := pc.minFree[cl]
		for ; drop > 0 && pc.free[cl] != nil; drop-- {
			c := pc.free[cl]
			pc.free[cl] = c.next
			c.next = nil
			pc.nfree[cl]--
			released++
		}
		pc.minFree[cl] = pc.nfree[cl]
	}
	pc.budget.released.Add(int64(released))
	return released
}

// freeChunks returns how many chunks the cache holds for reuse.
func (pc *pageCache) freeChunks() int {
	n := 0
	for _, f := range pc.nfree {
		n += f
	}
	return n
}

// drop releases every free chunk, when the owner goes away.
func (pc *pageCache) drop() {
	for cl := range pc.free {
		pc.minFree[cl] = pc.nfree[cl]
	}
	pc.trim()
}
