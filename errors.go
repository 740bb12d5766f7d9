package reassembly

import "errors"

// Errors returned by the Safe face, matchable with errors.Is.
var (
	// ErrNilStream means the StreamFactory returned a nil Stream. In the
	// github.com/gopacket/gopacket flavour (gopacket/reassembly) a nil
	// Stream is how a factory declines a connection, as in that module:
	// the packet is dropped and counted in PoolStats.ConnectionsDeclined,
	// and no error is returned.
	ErrNilStream = errors.New("reassembly: stream factory returned a nil Stream")
	// ErrInvalidOptions means SafeAssemblerOptions failed validation.
	ErrInvalidOptions = errors.New("reassembly: invalid options")
	// ErrPoolClosed means the SafeStreamPool was closed.
	ErrPoolClosed = errors.New("reassembly: stream pool closed")
	// ErrConnectionClosed means the packet belongs to a connection that was
	// already completed.
	ErrConnectionClosed = errors.New("reassembly: connection closed")
	// ErrAssemblerClosed means the SafeAssembler was closed.
	ErrAssemblerClosed = errors.New("reassembly: assembler closed")
	// ErrConnectionLimit means a new connection was refused because the
	// pool holds its maximum number of connections: with RefuseAtLimit,
	// or when no connection could be evicted.
	ErrConnectionLimit = errors.New("reassembly: connection limit reached")
	// ErrNilPacket means the TCP layer passed in was nil.
	ErrNilPacket = errors.New("reassembly: nil TCP packet")
	// ErrStreamPanic means a Stream or StreamFactory callback panicked; the
	// panic was recovered and the connection closed.
	ErrStreamPanic = errors.New("reassembly: stream callback panicked")
)
