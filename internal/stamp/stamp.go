// Package stamp holds the capture context that the tcpassembly face hands
// the engine with every packet. Upstream's AssembleWithTimestamp made a new
// context per packet, which cost an allocation per packet because the
// engine may keep the context of a packet it buffers; a Context is instead
// owned by one Assembler of the face and overwritten for each packet, and
// the engine copies it when it keeps it beyond the packet. It also tells
// the engine that the face already serialises the calls. It is internal
// so that no user's context is ever taken for one: the engine keeps a
// user's own context as it was handed in, since a Stream may type-assert
// it or hold on to it.
package stamp

import (
	"sync"
	"time"

	"github.com/google/gopacket"
)

// Context is an AssemblerContext reused packet after packet: valid for
// the packet being assembled only.
type Context struct {
	// Info is the packet's capture metadata.
	Info gopacket.CaptureInfo
	// Gen changes with every packet, so that the engine copies a Context
	// once per packet however many buffers keep it.
	Gen uint64
	// Serialized tells that the caller holds a lock that serialises every
	// call to the Assembler it hands this Context to, so that the
	// Assembler need not take its own: the face's Assembler wraps one of
	// the engine's and locks it already.
	Serialized bool
	// Lock, when set, is that lock: every call of the caller to the
	// Assembler holds it, packets and flushes alike, so that the engine
	// may own an unshared pool under it (the root package's sole.go).
	Lock *sync.Mutex
}

// GetCaptureInfo returns the metadata of the packet being assembled.
func (c *Context) GetCaptureInfo() gopacket.CaptureInfo { return c.Info }

// Stamp makes c the context of the next packet, seen at ts.
func (c *Context) Stamp(ts time.Time) {
	c.Info.Timestamp = ts
	c.Gen++
}

// PartReader is implemented by the engine's deliveries: the tcpassembly
// face reads each part's bytes, skip and capture time through it, where
// building each whole Part (reassembly.PartWalker) cost its packets in
// order an eighth of their time.
type PartReader interface {
	// NumParts returns the number of parts of the delivery.
	NumParts() int
	// PartSeen returns the bytes and skip of part i, 0 <= i < NumParts(),
	// as Part(i) gives them, and the Timestamp of its packet's
	// CaptureInfo (zero when the part has no context).
	PartSeen(i int) (bytes []byte, skip int, seen time.Time)
}

// SteadyAccepter is implemented by a Stream whose Accept, once
// AcceptsAll(dir) reports true for a direction, would accept every later
// packet of that direction and do nothing else: the drop-in engine then
// stops calling Accept for it. The tcpassembly face's per-connection
// Stream is one (its Accept only makes the direction's Stream, once);
// internal, so that no user's Stream is ever taken for one.
type SteadyAccepter interface {
	// AcceptsAll tells whether Accept is now steady for the direction
	// from the server (serverToClient) or from the client.
	AcceptsAll(serverToClient bool) bool
}
