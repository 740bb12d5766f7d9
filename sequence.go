package reassembly

// Sequence is a TCP sequence number held in an int64; only its low 32 bits
// are meaningful, the type is wider so that upstream code keeps compiling.
type Sequence int64

// invalidSequence marks a half-connection whose first byte is not known yet.
const invalidSequence Sequence = -1

const seqMask = 0xFFFFFFFF

// Difference returns how far t lies after s in modulo-2^32 serial arithmetic
// (RFC 1982): positive when t comes after s, negative when before, so that
// Sequence(4).Difference(8) is 4 and Sequence(0xFFFFFFFF).Difference(0) is 1.
func (s Sequence) Difference(t Sequence) int {
	return int(int32(uint32(t) - uint32(s)))
}

// Add returns s advanced by t bytes, wrapped into the 32-bit sequence space.
func (s Sequence) Add(t int) Sequence {
	return (s + Sequence(t)) & seqMask
}

// TCPFlowDirection tells the two halves of a connection apart.
//
// TCPDirClientToServer is the direction of the first packet seen for the
// connection, which is the client's only when packets arrive in order; a
// Stream may reinterpret it in Accept.
type TCPFlowDirection bool

// The two directions of a connection.
const (
	TCPDirClientToServer TCPFlowDirection = false
	TCPDirServerToClient TCPFlowDirection = true
)

// String returns "client->server" or "server->client".
func (dir TCPFlowDirection) String() string {
	if dir == TCPDirClientToServer {
		return "client->server"
	}
	return "server->client"
}

// Reverse returns the opposite direction.
func (dir TCPFlowDirection) Reverse() TCPFlowDirection {
	return !dir
}
