package reassembly

import (
	"errors"
	"time"

	"github.com/google/gopacket/layers"
)

// graveTTL is how long, in capture time, a completed connection is
// remembered: late copies of its packets are dropped instead of opening a
// phantom connection. TCP's TIME_WAIT lasts 2 MSL, 60 s on Linux.
const graveTTL = 60 * time.Second

// maxGravesPerShard bounds that memory whatever the traffic: the
// oldest grave goes first.
const maxGravesPerShard = 1024

// minGraveRing is the ring a shard's first grave gets.
const minGraveRing = 16

// graveWindow bounds the final window of each direction that a grave
// remembers: a late copy is a retransmission of the last bytes the sender
// had in flight, and the smaller the window, the less likely a new
// conversation's random sequence numbers fall in it by chance (for both
// directions' windows at once, 2^-16 at most).
const graveWindow = 16 << 20

// grave is what a completed connection leaves behind for graveTTL:
// enough to tell a late copy of its packets from a new connection on the
// same 4-tuple, in a few dozen bytes instead of a whole connection.
type grave struct {
	key  connKey
	hash uint64 // 0: the slot holds no grave
	// retired is the capture time of the last packet (ns), its lowest bit
	// set when an RST the host accepted ended the connection
	// (connection.resetEnded): what follows, but a SYN, is then data after
	// the RST (afterReset). A nanosecond off costs a 60 s TTL nothing, and
	// a field of its own would grow every grave by 8 bytes.
	retired int64
	// next is, per sender (0: the key's lower endpoint), the sequence
	// number after the last byte delivered (and the FIN), invalidSequence
	// if that direction never started; from is where its final window
	// begins: its first byte, or graveWindow before next.
	next, from [2]Sequence
}

// retiredAt returns the retired field of a grave for a connection last
// seen at ns, ended by an accepted RST when reset is set.
func retiredAt(ns int64, reset bool) int64 {
	ns &^= 1
	if reset {
		ns |= 1
	}
	return ns
}

// errAfterReset is what a lookup meets for a packet that afterReset
// catches: counted apart from late copies, reported to the caller as
// ErrConnectionClosed.
var errAfterReset = errors.New("reassembly: data after an RST")

// afterReset reports whether a packet on the 4-tuple of a connection an
// RST ended (with CheckWindow) is one its host never accepts: any segment
// but a SYN within graveTTL, since after an RST the host has no
// connection, and only a SYN makes one (RFC 9293 §3.10.7.1: such a
// segment is answered with an RST). A new conversation whose SYN the
// capture missed is lost with it, for graveTTL.
func (g *grave) afterReset(fromLo bool, tcp *layers.TCP, ts time.Time) bool {
	_, _, ok := g.sides(fromLo, ts)
	return ok && g.retired&1 != 0 && !tcp.SYN
}

// lateCopy reports whether a packet of a completed connection is a late
// copy of its traffic, to be dropped, rather than the start of a new
// conversation on the 4-tuple. A copy lies within the sender's final
// window (a SYN: is the sender's own SYN again), and acknowledges within
// the peer's; anything else, and any packet after graveTTL, starts anew:
// a new conversation's sequence numbers are unrelated to the old ones.
// A direction that never sent has nothing to copy.
func (g *grave) lateCopy(fromLo bool, tcp *layers.TCP, ts time.Time) bool {
	s, p, ok := g.sides(fromLo, ts)
	if !ok || g.next[s] == invalidSequence {
		return false
	}
	seq := Sequence(tcp.Seq)
	if tcp.SYN {
		if seq.Add(1) != g.from[s] {
			return false
		}
	} else if !g.within(s, seq, seq.Add(len(tcp.Payload))) {
		return false
	}
	return !tcp.ACK || g.next[p] == invalidSequence || g.within(p, Sequence(tcp.Ack), Sequence(tcp.Ack))
}

// answeredSYN returns where the peer's data starts when the packet is a
// SYN-ACK answering the SYN of a connection the sender never answered
// before (refused by an RST, or ended by a timeout or an eviction while
// only the SYN was seen): the host went on with the conversation after
// all, as a Windows host does after an RST to its SYN (suricata-verify
// bug-3286), so the new connection takes over the peer's direction where
// its SYN left it instead of losing its bytes.
func (g *grave) answeredSYN(fromLo bool, tcp *layers.TCP, ts time.Time) (Sequence, bool) {
	s, p, ok := g.sides(fromLo, ts)
	if !ok || g.next[s] != invalidSequence || g.next[p] == invalidSequence ||
		!tcp.SYN || !tcp.ACK || Sequence(tcp.Ack) != g.from[p] || g.next[p] != g.from[p] {
		return 0, false
	}
	return g.from[p], true
}

// sides returns the sender's and the peer's index, and whether the grave
// still speaks for the 4-tuple at ts.
func (g *grave) sides(fromLo bool, ts time.Time) (s, p int, ok bool) {
	// The difference is taken unsigned: it cannot overflow however odd
	// the capture's timestamps.
	if ns := nanos(ts); ns > g.retired && uint64(ns)-uint64(g.retired) > uint64(graveTTL) {
		return 0, 0, false
	}
	if fromLo {
		return 0, 1, true
	}
	return 1, 0, true
}

// within reports whether [from, to] lies in the final window of sender i.
func (g *grave) within(i int, from, to Sequence) bool {
	return g.from[i].Difference(from) >= 0 && to.Difference(g.next[i]) >= 0 && from.Difference(to) >= 0
}

// graveyard holds a shard's graves oldest first in a ring, found through
// an open-addressing index by key hash. Both are flat arrays: burying and
// forgetting allocate nothing once the ring has grown, the index keeps no
// deletion markers to slow later probes, and the ring never holds more than
// maxGravesPerShard graves. A grave reopened by a new connection leaves an
// empty slot in the ring, skipped when its turn to go comes.
type graveyard struct {
	ring []grave // len a power of two; the i-th oldest is ring[(head+i)&mask]
	head int
	used int // ring slots from head on, empty ones included
	live int // graves that can be found
	// quiet is set by a trim and cleared by a burial: a ring empty at two
	// trims in a row, with no burial between them, is released.
	quiet bool
	// index has twice as many slots as ring; each is 0 (empty) or the
	// position in ring plus one, tagged with bits of the grave's hash so
	// that most mismatches are told without reading the ring.
	index []uint32
}

// Index slots pack a 16-bit tag above the ring position plus one.
const (
	graveTagShift = 16
	gravePosMask  = 1<<graveTagShift - 1
)

// A ring position plus one must fit below the tag.
var _ [gravePosMask - maxGravesPerShard]struct{}

// graveTag is the tag of hash h: its bits 32 to 47, which neither the
// shard (the top bits) nor the home slot (the bottom ones) depend on.
func graveTag(h uint64) uint32 { return uint32(h>>16) &^ gravePosMask }

// find returns the ring position of the grave of k, or -1.
func (y *graveyard) find(h uint64, k *connKey) int {
	if y.live == 0 {
		return -1
	}
	mask := uint64(len(y.index) - 1)
	tag := graveTag(h)
	for i := h & mask; ; i = (i + 1) & mask {
		s := y.index[i]
		if s == 0 {
			return -1
		}
		if s&^gravePosMask == tag {
			pos := int(s&gravePosMask) - 1
			if g := &y.ring[pos]; g.hash == h && g.key == *k {
				return pos
			}
		}
	}
}

// bury records g, which must not be in the graveyard already; beyond the
// cap the oldest grave goes.
func (y *graveyard) bury(g grave) {
	y.quiet = false
	if y.used == len(y.ring) {
		switch {
		case y.used > 0 && 2*y.live <= y.used:
			// Mostly empty slots: squeezing them out costs one pass over
			// the ring per half ring of burials.
			y.compact()
		case len(y.ring) < maxGravesPerShard:
			y.resize(max(2*len(y.ring), minGraveRing))
		default:
			y.forgetOldest()
		}
	}
	pos := (y.head + y.used) & (len(y.ring) - 1)
	y.ring[pos] = g
	y.used++
	y.live++
	y.link(g.hash, pos)
}

// forget takes the grave at pos out; its slot stays until its turn.
func (y *graveyard) forget(pos int) {
	y.unlink(y.ring[pos].hash, pos)
	y.ring[pos] = grave{}
	y.live--
}

// forgetOldest takes the oldest slot out of the ring, with its grave if it
// holds one.
func (y *graveyard) forgetOldest() {
	if y.ring[y.head].hash != 0 {
		y.forget(y.head)
	}
	y.head = (y.head + 1) & (len(y.ring) - 1)
	y.used--
}

// reap forgets the graves retired before cutoffNs (all of them when all
// is set), oldest first, so that the cost is per expired grave.
func (y *graveyard) reap(cutoffNs int64, all bool) {
	for y.used > 0 {
		if g := &y.ring[y.head]; g.hash != 0 && !all && g.retired >= cutoffNs {
			break
		}
		y.forgetOldest()
	}
}

// trim shrinks a ring left mostly empty by a burst of completions, and
// releases one that stayed empty since the previous trim: a ring emptied by
// reaps but still in use is kept, so that it is not made again and again.
func (y *graveyard) trim() {
	switch {
	case y.live == 0 && y.quiet:
		*y = graveyard{}
	case len(y.ring) > minGraveRing && 8*y.live < len(y.ring):
		y.resize(max(minGraveRing, len(y.ring)/4))
	}
	y.quiet = true
}

// compact moves the graves together, oldest first, in place, and rebuilds
// the index.
func (y *graveyard) compact() {
	mask := len(y.ring) - 1
	kept := 0
	for i := range y.used {
		from := (y.head + i) & mask
		if y.ring[from].hash == 0 {
			continue
		}
		// Graves only move back, into slots already read.
		if to := (y.head + kept) & mask; to != from {
			y.ring[to] = y.ring[from]
			y.ring[from] = grave{}
		}
		kept++
	}
	y.used = kept
	clear(y.index)
	for i := range kept {
		pos := (y.head + i) & mask
		y.link(y.ring[pos].hash, pos)
	}
}

// resize moves the graves, oldest first, into a ring of n slots (n a power
// of two holding them all) and rebuilds the index.
func (y *graveyard) resize(n int) {
	ring := make([]grave, n)
	kept := 0
	for i := range y.used {
		if g := &y.ring[(y.head+i)&(len(y.ring)-1)]; g.hash != 0 {
			ring[kept] = *g
			kept++
		}
	}
	y.ring, y.head, y.used, y.live = ring, 0, kept, kept
	y.index = make([]uint32, 2*n)
	for pos := range kept {
		y.link(ring[pos].hash, pos)
	}
}

// link enters ring position pos into the index under hash h.
func (y *graveyard) link(h uint64, pos int) {
	mask := uint64(len(y.index) - 1)
	i := h & mask
	for y.index[i] != 0 {
		i = (i + 1) & mask
	}
	y.index[i] = graveTag(h) | uint32(pos+1)
}

// unlink takes ring position pos, entered under hash h, out of the index,
// shifting later entries of its probe run back so that no lookup needs a
// deletion marker.
func (y *graveyard) unlink(h uint64, pos int) {
	mask := uint64(len(y.index) - 1)
	want := uint32(pos + 1)
	i := h & mask
	for y.index[i]&gravePosMask != want {
		i = (i + 1) & mask
	}
	for j := (i + 1) & mask; y.index[j] != 0; j = (j + 1) & mask {
		home := y.ring[int(y.index[j]&gravePosMask)-1].hash & mask
		// The entry at j may move to the hole at i if its home is not in
		// the cyclic range (i, j].
		if (j-home)&mask >= (j-i)&mask {
			y.index[i] = y.index[j]
			i = j
		}
	}
	y.index[i] = 0
}
