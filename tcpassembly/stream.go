package tcpassembly

import (
	"time"

	"github.com/google/gopacket"
)

// Reassembly is one piece of a direction's bytes, in stream order, as an
// Assembler hands it to Stream.Reassembled: the bytes one packet carried
// (a packet held back out of order comes in pieces of at most 1900 bytes).
// Only tests should need to build one.
type Reassembly struct {
	// Bytes are the next bytes of the stream; they may be empty.
	Bytes []byte
	// Skip is the number of bytes missing between the previous Reassembly
	// and this one, or -1 when the start of the direction was never seen,
	// so what was missed is unknown; 0 when nothing is missing.
	Skip int
	// Start tells that these bytes came with the direction's SYN.
	Start bool
	// End tells that these bytes came with a FIN or RST: the direction
	// ends here.
	End bool
	// Seen is the capture time of the packet the bytes came in.
	Seen time.Time
}

// Stream receives the bytes of one direction of a TCP connection. A
// StreamFactory makes one per direction; the Assembler then calls
// Reassembled zero or more times with the bytes in order, and
// ReassemblyComplete once, after which it forgets the Stream.
type Stream interface {
	// Reassembled receives the next pieces of the direction, in stream
	// order across all calls. The slice and the Bytes in it are reused
	// after the call returns: copy what you keep.
	Reassembled([]Reassembly)
	// ReassemblyComplete tells that no more bytes will come: a FIN or RST
	// was seen, or a flush closed the direction.
	ReassemblyComplete()
}

// StreamFactory makes the Stream of each new direction of a connection.
type StreamFactory interface {
	// New returns the Stream for the direction whose packets go along
	// netFlow and tcpFlow. It may return nil to ignore that direction.
	New(netFlow, tcpFlow gopacket.Flow) Stream
}

// pageBytes is the size of the engine's buffers: a packet held out of
// order reaches its Stream in pieces of at most this many bytes.
const pageBytes = 1900
