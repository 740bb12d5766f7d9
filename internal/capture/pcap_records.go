package capture

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/google/gopacket"
)

// pcapRecords reads the packet records of a pcap file (after its header,
// which pcapgo reads) in place: a record's bytes are returned as they sit
// in the bufio buffer, valid until the next read, or in the file's bytes
// when the whole file is in memory (inMem), instead of being copied out
// first. It reports what pcapgo's reader reports, errors included.
type pcapRecords struct {
	buf     *bufio.Reader // nil when mem holds the records
	mem     []byte        // the records, when in memory
	off     int           // bytes of mem taken
	order   binary.ByteOrder
	nanos   uint32 // nanoseconds per unit of the timestamp's fraction
	snaplen int
	large   []byte // for the rare record larger than the bufio buffer
}

// newPcapRecords reads the records after a pcap header whose first four
// bytes are magic.
func newPcapRecords(buf *bufio.Reader, magic []byte, snaplen uint32) *pcapRecords {
	p := &pcapRecords{buf: buf, order: binary.LittleEndian, nanos: 1000, snaplen: int(snaplen)}
	m := binary.LittleEndian.Uint32(magic)
	if m != 0xa1b2c3d4 && m != 0xa1b23c4d {
		p.order = binary.BigEndian
		m = binary.BigEndian.Uint32(magic)
	}
	if m == 0xa1b23c4d {
		p.nanos = 1
	}
	return p
}

// take returns the next n bytes and consumes them; like io.ReadFull it
// returns io.EOF when none are left and io.ErrUnexpectedEOF when fewer
// than n are.
func (p *pcapRecords) take(n int) ([]byte, error) {
	if p.buf == nil {
		return p.takeMem(n)
	}
	if n > p.buf.Size() {
		if cap(p.large) < n {
			p.large = make([]byte, n)
		}
		b := p.large[:n]
		_, err := io.ReadFull(p.buf, b)
		return b, err
	}
	b, err := p.buf.Peek(n)
	if len(b) < n {
		if _, derr := p.buf.Discard(len(b)); derr != nil {
			return nil, derr
		}
		switch {
		case err != nil && !errors.Is(err, io.EOF):
			return nil, err
		case len(b) == 0:
			return nil, io.EOF
		}
		return nil, io.ErrUnexpectedEOF
	}
	if _, err := p.buf.Discard(n); err != nil {
		return nil, err
	}
	return b, nil
}

// inMem makes the records be taken from mem, the rest of the file after
// what was read through the buffer.
func (p *pcapRecords) inMem(mem []byte) {
	p.buf, p.mem, p.off = nil, mem, 0
}

// takeMem is take on records in memory; what it returns cannot be
// appended to in place.
func (p *pcapRecords) takeMem(n int) ([]byte, error) {
	switch rest := len(p.mem) - p.off; {
	case rest >= n:
	case rest == 0:
		return nil, io.EOF
	default:
		p.off = len(p.mem)
		return nil, io.ErrUnexpectedEOF
	}
	b := p.mem[p.off : p.off+n : p.off+n]
	p.off += n
	return b, nil
}

// ZeroCopyReadPacketData returns the next record's bytes, valid until the
// next call.
func (p *pcapRecords) ZeroCopyReadPacketData() (data []byte, ci gopacket.CaptureInfo, err error) {
	hdr, err := p.take(16)
	if err != nil {
		return nil, ci, err
	}
	// The fraction is scaled in 32 bits, as pcapgo does.
	ci.Timestamp = time.Unix(int64(p.order.Uint32(hdr[0:4])), int64(p.order.Uint32(hdr[4:8])*p.nanos)).UTC()
	ci.CaptureLength = int(p.order.Uint32(hdr[8:12]))
	ci.Length = int(p.order.Uint32(hdr[12:16]))
	if ci.CaptureLength > p.snaplen {
		return nil, ci, fmt.Errorf("capture length exceeds snap length: %d > %d", ci.CaptureLength, p.snaplen)
	}
	if ci.CaptureLength > ci.Length {
		return nil, ci, fmt.Errorf("capture length exceeds original packet length: %d > %d", ci.CaptureLength, ci.Length)
	}
	data, err = p.take(ci.CaptureLength)
	return data, ci, err
}
