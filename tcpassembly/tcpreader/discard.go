package tcpreader

import "io"

// discardChunk is the size of the buffer the Discard functions read into.
const discardChunk = 4096

// DiscardBytesToFirstError reads r until it returns an error, and returns
// how many bytes it read and that error. Reading a ReaderStream to the
// end lets the Assembler go on with its other connections.
func DiscardBytesToFirstError(r io.Reader) (discarded int, err error) {
	buf := make([]byte, discardChunk)
	for {
		n, e := r.Read(buf)
		discarded += n
		if e != nil {
			return discarded, e
		}
	}
}

// DiscardBytesToEOF reads r until io.EOF, going on past other errors (such
// as DataLost), and returns how many bytes it read.
func DiscardBytesToEOF(r io.Reader) (discarded int) {
	for {
		n, err := DiscardBytesToFirstError(r)
		discarded += n
		if err == io.EOF {
			return discarded
		}
	}
}
