// Package capture reads pcap and pcapng captures (pure Go, through
// gopacket's pcapgo) and decodes each frame down to the TCP segment it
// carries: link layers (Ethernet, Linux cooked capture v1 and v2, BSD
// loopback, raw IP, LINKTYPE_IPV4/IPV6), VLAN/MPLS/PPPoE, IPv4 and IPv6 with
// extension headers, IP fragments (DF set or not) and the common tunnels
// (IP in IP, GRE, ERSPAN, GTP-U, VXLAN).
//
// It is shared by cmd/reassemble and the conformance test of the library,
// so that both see exactly the same segments.
package capture

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// Link types that gopacket v1.1.19 does not name. gopacket's LinkType is a
// uint8, so a link type read from a file is truncated to its low byte:
// LINKTYPE_LINUX_SLL2 (276) arrives as 20, which no other link type uses.
const (
	linkTypeRawAlt1   layers.LinkType = 12 // DLT_RAW on most BSDs
	linkTypeRawAlt2   layers.LinkType = 14 // DLT_RAW on OpenBSD
	linkTypeLinuxSLL2 layers.LinkType = 276 & 0xff
)

// Bounds on what a capture may claim, so a corrupt length field cannot make
// the reader allocate gigabytes.
const (
	minSnaplen = 262144   // what tcpdump and Wireshark accept whatever the file says
	maxSnaplen = 16 << 20 // never trust a file header beyond this
)

var (
	pcapngMagic = []byte{0x0a, 0x0d, 0x0d, 0x0a}
	gzipMagic   = []byte{0x1f, 0x8b}
)

// ErrNotCapture is returned by Open for input that is neither pcap nor pcapng.
var ErrNotCapture = errors.New("not a pcap or pcapng file")

// countingReader counts the bytes read from the file, so that together with
// the bufio buffer we know how far the capture reader has consumed.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// packetReader is what pcapgo's two readers have in common.
type packetReader interface {
	ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error)
}

// readBufferSize is the buffer between the file and the capture reader: a
// read system call per megabyte.
const readBufferSize = 1 << 20

// Reader reads frames from a pcap or pcapng file and names the first
// error by the number of the packet it broke (1-based, as Wireshark counts).
type Reader struct {
	format   string // "pcap" or "pcapng" (with ", gzip" when compressed)
	gzip     bool   // compressed
	link     layers.LinkType
	rd       packetReader
	ng       bool
	src      io.ReaderAt // nil when the size of the input is unknown (gzip)
	size     int64
	counter  *countingReader
	buf      *bufio.Reader
	bigEnd   bool         // byte order of the first pcapng section
	goodEnd  int64        // file offset just after the last packet read whole
	packets  int          // packets returned so far
	lastAt   int64        // goodEnd before the last packet returned: at or before its first byte
	mem      *pcapRecords // the records of a pcap file held in memory (OpenBytes); else nil
	finished bool
}

// Open detects the format by its magic number and opens the reader.
// src and size let the reader tell a capture cut in the middle of a packet
// from a clean end of file; pass nil and 0 when they are not known.
func Open(r io.Reader, src io.ReaderAt, size int64) (*Reader, error) {
	return open(r, src, size, readBufferSize)
}

// OpenBytes opens a capture held whole in memory, such as a file the
// caller mapped. The records of a pcap file are then returned where they
// sit in b, with no read buffer in between: reading copies nothing, and a
// frame's bytes stay valid as long as b does. Other formats (pcapng,
// gzip) are read as Open reads them. Consumed tells how much of the start
// of b the reader is done with.
func OpenBytes(b []byte) (*Reader, error) {
	// A pcap file's header is read through a small buffer, its records
	// from b; anything else is read through the usual one.
	bufSize := readBufferSize
	if len(b) >= 4 && isPcapMagic(b[:4]) {
		bufSize = 4096
	}
	c, err := open(bytes.NewReader(b), bytes.NewReader(b), int64(len(b)), bufSize)
	if err != nil {
		return nil, err
	}
	if pr, ok := c.rd.(*pcapRecords); ok && c.src != nil {
		pos := c.position()
		pr.inMem(b[pos:])
		c.mem, c.buf, c.counter = pr, nil, &countingReader{n: pos}
	}
	return c, nil
}

func open(r io.Reader, src io.ReaderAt, size int64, bufSize int) (*Reader, error) {
	c := &Reader{src: src, size: size}
	c.counter = &countingReader{r: r}
	c.buf = bufio.NewReaderSize(c.counter, bufSize)
	magic, err := c.buf.Peek(4)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: file too short (%d bytes)", ErrNotCapture, len(magic))
		}
		return nil, err
	}
	compressed := ""
	if magic[0] == gzipMagic[0] && magic[1] == gzipMagic[1] {
		zr, err := gzip.NewReader(c.buf)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		// Offsets in the decompressed stream say nothing about the file.
		c.src, c.size = nil, 0
		c.counter = &countingReader{r: zr}
		c.buf = bufio.NewReaderSize(c.counter, readBufferSize)
		compressed, c.gzip = ", gzip", true
		if magic, err = c.buf.Peek(4); err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
	}
	switch {
	case string(magic) == string(pcapngMagic):
		// pcapgo wraps its input in bufio.NewReader, which hands back our
		// *bufio.Reader unchanged: its Buffered() then tells the position.
		if b, err := c.buf.Peek(12); err == nil {
			c.bigEnd = binary.BigEndian.Uint32(b[8:12]) == 0x1a2b3c4d
		}
		opts := pcapgo.DefaultNgReaderOptions
		opts.WantMixedLinkType = true
		ng, err := pcapgo.NewNgReader(c.buf, opts)
		if err != nil {
			return nil, fmt.Errorf("pcapng header: %w", err)
		}
		c.rd, c.ng, c.format = ng, true, "pcapng"+compressed
		if ng.NInterfaces() > 0 {
			if iface, err := ng.Interface(0); err == nil {
				c.link = iface.LinkType
			}
		}
	case isPcapMagic(magic):
		magic = append([]byte(nil), magic...) // Peek's bytes change as the header is read
		pr, err := pcapgo.NewReader(c.buf)
		if err != nil {
			return nil, fmt.Errorf("pcap header: %w", err)
		}
		snap := pr.Snaplen()
		if snap < minSnaplen {
			snap = minSnaplen
		}
		if snap > maxSnaplen {
			snap = maxSnaplen
		}
		c.rd, c.link, c.format = newPcapRecords(c.buf, magic, snap), pr.LinkType(), "pcap"+compressed
	default:
		return nil, fmt.Errorf("%w (magic %x)", ErrNotCapture, magic)
	}
	c.goodEnd = c.position()
	c.lastAt = c.goodEnd
	return c, nil
}

func isPcapMagic(m []byte) bool {
	be := binary.BigEndian.Uint32(m)
	le := binary.LittleEndian.Uint32(m)
	for _, v := range []uint32{0xa1b2c3d4, 0xa1b23c4d} {
		if be == v || le == v {
			return true
		}
	}
	return false
}

// Format is "pcap" or "pcapng", with ", gzip" appended when the file is
// compressed.
func (c *Reader) Format() string { return c.format }

// Compressed reports whether the file is gzip-compressed: Consumed then
// counts bytes of the decompressed stream, not of the file.
func (c *Reader) Compressed() bool { return c.gzip }

// LinkType is the link type of the file (of its first interface for
// pcapng, whose packets may each have another; Next tells).
func (c *Reader) LinkType() layers.LinkType { return c.link }

// position is the offset in the (decompressed) input up to which the
// capture reader has consumed bytes.
func (c *Reader) position() int64 {
	if c.mem != nil {
		return c.counter.n + int64(c.mem.off)
	}
	return c.counter.n - int64(c.buf.Buffered())
}

// Consumed is the offset in the (decompressed) input before which the
// reader is done with every byte: the start of the region that holds the
// frame Next returned last (its record, or the blocks since the one
// before), the end of the file header before the first.
func (c *Reader) Consumed() int64 { return c.lastAt }

// Next returns the next frame and its link type. At the end of the capture
// it returns io.EOF; any other error names the packet number and ends the
// capture (pcap and pcapng have no markers to resynchronise on). The frame's
// bytes are the reader's own and valid until the next call, so that
// reading a capture allocates nothing per packet; ci.AncillaryData is
// always nil (the link type is returned instead).
func (c *Reader) Next() (data []byte, ci gopacket.CaptureInfo, link layers.LinkType, err error) {
	if c.finished {
		return nil, ci, 0, io.EOF
	}
	num := c.packets + 1
	data, ci, err = c.read()
	if err == nil {
		c.packets++
		c.lastAt = c.goodEnd
		c.goodEnd = c.position()
		link = c.link
		if c.ng && len(ci.AncillaryData) > 0 {
			if lt, ok := ci.AncillaryData[0].(layers.LinkType); ok {
				link = lt
			}
		}
		// pcapgo overwrites the slice for the next packet.
		ci.AncillaryData = nil
		return data, ci, link, nil
	}
	c.finished = true
	if errors.Is(err, io.EOF) {
		if terr := c.checkTail(ci); terr != nil {
			return nil, ci, 0, fmt.Errorf("packet %d: %w", num, terr)
		}
		return nil, ci, 0, io.EOF
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, ci, 0, fmt.Errorf("packet %d: capture truncated in the middle of the packet (%v)", num, err)
	}
	return nil, ci, 0, fmt.Errorf("packet %d: corrupt capture: %w", num, err)
}

// read calls the pcapgo reader and turns a panic inside it into an error.
func (c *Reader) read() (data []byte, ci gopacket.CaptureInfo, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("capture reader failed: %v", p)
		}
	}()
	return c.rd.ZeroCopyReadPacketData()
}

// checkTail decides whether an io.EOF from the reader is a clean end of the
// capture or a file cut in the middle of a packet or block.
func (c *Reader) checkTail(ci gopacket.CaptureInfo) error {
	if !c.ng && ci.CaptureLength > 0 {
		// pcapgo read a whole record header, then found no data.
		return fmt.Errorf("capture truncated: record header promises %d bytes, none present", ci.CaptureLength)
	}
	if c.src == nil {
		return nil
	}
	rest := c.size - c.goodEnd
	if rest <= 0 {
		return nil
	}
	if !c.ng {
		return fmt.Errorf("capture truncated: %d trailing bytes do not form a whole packet record", rest)
	}
	return c.checkNgTail()
}

// checkNgTail walks the pcapng blocks after the last packet read: only whole
// non-packet blocks (statistics, name resolution, ...) may follow it.
func (c *Reader) checkNgTail() error {
	off := c.goodEnd
	bigEnd := c.bigEnd
	var hdr [12]byte
	for off < c.size {
		if c.size-off < 12 {
			return fmt.Errorf("capture truncated: %d trailing bytes at offset %d are not a whole pcapng block", c.size-off, off)
		}
		if _, err := c.src.ReadAt(hdr[:], off); err != nil {
			return fmt.Errorf("reading block at offset %d: %w", off, err)
		}
		if string(hdr[:4]) == string(pcapngMagic) {
			bigEnd = binary.BigEndian.Uint32(hdr[8:12]) == 0x1a2b3c4d
		}
		var typ, length uint32
		if bigEnd {
			typ, length = binary.BigEndian.Uint32(hdr[0:4]), binary.BigEndian.Uint32(hdr[4:8])
		} else {
			typ, length = binary.LittleEndian.Uint32(hdr[0:4]), binary.LittleEndian.Uint32(hdr[4:8])
		}
		if length < 12 || length%4 != 0 {
			return fmt.Errorf("corrupt capture: pcapng block at offset %d has length %d", off, length)
		}
		if int64(length) > c.size-off {
			return fmt.Errorf("capture truncated: pcapng block (type %#x) at offset %d needs %d bytes, only %d present", typ, off, length, c.size-off)
		}
		switch typ {
		case 2, 3, 6: // packet, simple packet, enhanced packet
			return fmt.Errorf("corrupt capture: pcapng packet block at offset %d could not be read", off)
		}
		off += int64(length)
	}
	return nil
}

// Segment is one decoded TCP segment; NetFlow holds the addresses of the
// innermost IP header in front of it.
type Segment struct {
	NetFlow gopacket.Flow
	TCP     *layers.TCP
}

// DecodeStats counts what the decoder saw.
type DecodeStats struct {
	TCPSegments          int64 `json:"tcp_segments"`
	NonTCP               int64 `json:"non_tcp"`
	Undecodable          int64 `json:"undecodable"`
	UnsupportedLinkType  int64 `json:"unsupported_link_type"`
	VLANTags             int64 `json:"vlan_tags"`
	Tunnelled            int64 `json:"tunnelled"`
	IPv4Fragments        int64 `json:"ipv4_fragments"`
	IPv6Fragments        int64 `json:"ipv6_fragments"`
	IPv6AtomicFragments  int64 `json:"ipv6_atomic_fragments"`
	DatagramsReassembled int64 `json:"datagrams_reassembled"`
	DatagramsDropped     int64 `json:"fragment_datagrams_dropped"`
	TCPTruncatedHeader   int64 `json:"tcp_truncated_header"`
	TCPBadOptions        int64 `json:"tcp_bad_options"`
}

// Limits of the IP defragmenter.
const (
	fragTimeout      = 30 * time.Second // capture time, as Linux' ipfrag_time
	fragMaxDatagrams = 1024
	fragMaxBytes     = 64 << 20
	maxEncapDepth    = 8 // nested tunnels followed at most
	maxIPv6Headers   = 16
)

// Decoder turns frames into TCP segments. It is not safe for concurrent use.
type Decoder struct {
	seg   Segment    // the segment Decode returns, reused
	tcpL  layers.TCP // its TCP layer
	stats DecodeStats
	frags *defragmenter
	now   time.Time // latest capture time seen
	held  bool      // the current frame was a fragment kept for later
}

// NewDecoder returns a decoder with its own IP defragmenter.
func NewDecoder() *Decoder {
	d := &Decoder{}
	d.frags = newDefragmenter(fragTimeout, fragMaxDatagrams, fragMaxBytes, &d.stats)
	return d
}

// Stats returns what the decoder counted so far.
func (d *Decoder) Stats() DecodeStats { return d.stats }

// Decode returns the TCP segment carried by one frame, valid until the next
// call (the Decoder reuses it, so decoding allocates nothing per packet;
// its bytes are those of data); nil with a nil error
// when the frame carries no TCP (or is a fragment waiting for the rest of its
// datagram); an error when the frame could not be decoded. ts is the frame's
// capture time, which ages the fragments waiting for the rest of their
// datagram.
func (d *Decoder) Decode(data []byte, link layers.LinkType, ts time.Time) (*Segment, error) {
	if ts.After(d.now) {
		d.now = ts
		d.frags.expire(ts)
	}
	d.held = false
	seg, err := d.link(data, link)
	switch {
	case err != nil:
		d.stats.Undecodable++
	case seg != nil:
		d.stats.TCPSegments++
	case !d.held:
		d.stats.NonTCP++
	}
	return seg, err
}

var errUnsupportedLink = errors.New("unsupported link type")

// LinkTypeName names a link type, including those gopacket leaves unnamed.
func LinkTypeName(lt layers.LinkType) string {
	switch lt {
	case layers.LinkTypeIPv4:
		return "IPv4"
	case layers.LinkTypeIPv6:
		return "IPv6"
	case linkTypeLinuxSLL2:
		return "Linux SLL2"
	case linkTypeRawAlt1, linkTypeRawAlt2:
		return "Raw"
	}
	return lt.String()
}

func (d *Decoder) link(p []byte, link layers.LinkType) (*Segment, error) {
	switch link {
	case layers.LinkTypeEthernet:
		return d.ethernet(p, 0)
	case layers.LinkTypeLinuxSLL:
		if len(p) < 16 {
			return nil, fmt.Errorf("linux sll: header truncated (%d bytes)", len(p))
		}
		return d.etherType(binary.BigEndian.Uint16(p[14:16]), p[16:], 0)
	case linkTypeLinuxSLL2:
		if len(p) < 20 {
			return nil, fmt.Errorf("linux sll2: header truncated (%d bytes)", len(p))
		}
		return d.etherType(binary.BigEndian.Uint16(p[0:2]), p[20:], 0)
	case layers.LinkTypeNull, layers.LinkTypeLoop:
		return d.loopback(p, link == layers.LinkTypeLoop)
	case layers.LinkTypeRaw, linkTypeRawAlt1, linkTypeRawAlt2:
		return d.ipAny(p, 0)
	case layers.LinkTypeIPv4:
		return d.ipv4(p, 0)
	case layers.LinkTypeIPv6:
		return d.ipv6(p, 0)
	}
	d.stats.UnsupportedLinkType++
	return nil, fmt.Errorf("%w %d (%s)", errUnsupportedLink, link, LinkTypeName(link))
}

func (d *Decoder) ethernet(p []byte, depth int) (*Segment, error) {
	if len(p) < 14 {
		return nil, fmt.Errorf("ethernet: header truncated (%d bytes)", len(p))
	}
	et := binary.BigEndian.Uint16(p[12:14])
	p = p[14:]
	if et < 0x0600 {
		// IEEE 802.3 length field: only LLC/SNAP can carry IP.
		if len(p) < 8 || p[0] != 0xaa || p[1] != 0xaa || p[2] != 0x03 {
			return nil, nil
		}
		et = binary.BigEndian.Uint16(p[6:8])
		p = p[8:]
	}
	return d.etherType(et, p, depth)
}

// etherType dispatches on an EtherType, peeling VLAN tags, MPLS labels and
// PPPoE on the way.
func (d *Decoder) etherType(et uint16, p []byte, depth int) (*Segment, error) {
	for {
		switch et {
		case 0x8100, 0x88a8, 0x9100, 0x9200, 0x9300: // 802.1Q, 802.1ad and old QinQ tags
			if len(p) < 4 {
				return nil, fmt.Errorf("vlan: tag truncated (%d bytes)", len(p))
			}
			d.stats.VLANTags++
			et = binary.BigEndian.Uint16(p[2:4])
			p = p[4:]
		case 0x0800:
			return d.ipv4(p, depth)
		case 0x86dd:
			return d.ipv6(p, depth)
		case 0x8847, 0x8848:
			return d.mpls(p, depth)
		case 0x8864: // PPPoE session
			if len(p) < 8 {
				return nil, fmt.Errorf("pppoe: header truncated (%d bytes)", len(p))
			}
			switch binary.BigEndian.Uint16(p[6:8]) {
			case 0x0021:
				return d.ipv4(p[8:], depth)
			case 0x0057:
				return d.ipv6(p[8:], depth)
			}
			return nil, nil
		default:
			return nil, nil
		}
	}
}

func (d *Decoder) mpls(p []byte, depth int) (*Segment, error) {
	for {
		if len(p) < 4 {
			return nil, fmt.Errorf("mpls: label truncated (%d bytes)", len(p))
		}
		bottom := p[2]&0x01 != 0
		p = p[4:]
		if bottom {
			break
		}
	}
	if len(p) == 0 {
		return nil, nil
	}
	switch p[0] >> 4 {
	case 4, 6:
		return d.ipAny(p, depth)
	}
	return nil, nil
}

// loopback decodes BSD loopback encapsulation: a 4-byte address family, in
// host byte order for NULL (either order is accepted) and network order for LOOP.
func (d *Decoder) loopback(p []byte, network bool) (*Segment, error) {
	if len(p) < 4 {
		return nil, fmt.Errorf("loopback: header truncated (%d bytes)", len(p))
	}
	fam := binary.BigEndian.Uint32(p[:4])
	if !network {
		if le := binary.LittleEndian.Uint32(p[:4]); le <= 0xffff {
			fam = le
		}
	}
	switch fam {
	case 2: // AF_INET everywhere
		return d.ipv4(p[4:], 0)
	case 10, 23, 24, 28, 30: // AF_INET6: Linux, Windows, Net/OpenBSD, FreeBSD, Darwin
		return d.ipv6(p[4:], 0)
	}
	return nil, nil
}

// ipAny decodes an IP packet whose version is only known from its first nibble.
func (d *Decoder) ipAny(p []byte, depth int) (*Segment, error) {
	if len(p) == 0 {
		return nil, errors.New("ip: empty packet")
	}
	switch p[0] >> 4 {
	case 4:
		return d.ipv4(p, depth)
	case 6:
		return d.ipv6(p, depth)
	}
	return nil, fmt.Errorf("ip: version %d", p[0]>>4)
}

func (d *Decoder) ipv4(p []byte, depth int) (*Segment, error) {
	if len(p) < 20 {
		return nil, fmt.Errorf("ipv4: header truncated (%d bytes)", len(p))
	}
	if v := p[0] >> 4; v != 4 {
		return nil, fmt.Errorf("ipv4: version %d", v)
	}
	hl := int(p[0]&0x0f) * 4
	if hl < 20 {
		return nil, fmt.Errorf("ipv4: header length %d", hl)
	}
	if len(p) < hl {
		return nil, fmt.Errorf("ipv4: options truncated (%d of %d header bytes)", len(p), hl)
	}
	end := len(p)
	// A total length of 0 is what segmentation offload leaves in captures:
	// then the captured length is all we have.
	if total := int(binary.BigEndian.Uint16(p[2:4])); total != 0 {
		if total < hl {
			return nil, fmt.Errorf("ipv4: total length %d shorter than header %d", total, hl)
		}
		if total < end {
			end = total // drop link-layer padding
		}
	}
	proto := p[9]
	src, dst := p[12:16], p[16:20]
	body := p[hl:end]
	frag := binary.BigEndian.Uint16(p[6:8])
	more := frag&0x2000 != 0
	off := int(frag&0x1fff) * 8
	if more || off != 0 {
		// Fragments are reassembled whatever the DF bit says: gopacket's
		// ip4defrag skips DF packets, Wireshark and the kernels do not.
		d.stats.IPv4Fragments++
		var key fragKey
		copy(key.src[:], src)
		copy(key.dst[:], dst)
		key.id = uint32(binary.BigEndian.Uint16(p[4:6]))
		key.proto = proto
		whole, _, done, err := d.frags.add(key, off, more, proto, body, d.now)
		if err != nil {
			return nil, fmt.Errorf("ipv4 fragment: %w", err)
		}
		if !done {
			d.held = true
			return nil, nil
		}
		body = whole
	}
	flow := gopacket.NewFlow(layers.EndpointIPv4, src, dst)
	return d.transport(proto, body, flow, depth)
}

func (d *Decoder) ipv6(p []byte, depth int) (*Segment, error) {
	if len(p) < 40 {
		return nil, fmt.Errorf("ipv6: header truncated (%d bytes)", len(p))
	}
	if v := p[0] >> 4; v != 6 {
		return nil, fmt.Errorf("ipv6: version %d", v)
	}
	end := len(p)
	// A payload length of 0 means a jumbogram or segmentation offload: use
	// what was captured.
	if plen := int(binary.BigEndian.Uint16(p[4:6])); plen != 0 && 40+plen < end {
		end = 40 + plen
	}
	nh := p[6]
	src, dst := p[8:24], p[24:40]
	rest := p[40:end]
	flow := gopacket.NewFlow(layers.EndpointIPv6, src, dst)
	defragged := false
	for i := 0; i < maxIPv6Headers; i++ {
		switch nh {
		case 0, 43, 60, 135, 139, 140: // hop-by-hop, routing, destination, mobility, HIP, shim6
			if len(rest) < 8 {
				return nil, fmt.Errorf("ipv6: extension header %d truncated (%d bytes)", nh, len(rest))
			}
			hl := (int(rest[1]) + 1) * 8
			if hl > len(rest) {
				return nil, fmt.Errorf("ipv6: extension header %d truncated (%d of %d bytes)", nh, len(rest), hl)
			}
			nh, rest = rest[0], rest[hl:]
		case 51: // authentication header
			if len(rest) < 8 {
				return nil, fmt.Errorf("ipv6: authentication header truncated (%d bytes)", len(rest))
			}
			hl := (int(rest[1]) + 2) * 4
			if hl > len(rest) {
				return nil, fmt.Errorf("ipv6: authentication header truncated (%d of %d bytes)", len(rest), hl)
			}
			nh, rest = rest[0], rest[hl:]
		case 44: // fragment
			if len(rest) < 8 {
				return nil, fmt.Errorf("ipv6: fragment header truncated (%d bytes)", len(rest))
			}
			if defragged {
				return nil, errors.New("ipv6: fragment header inside a reassembled datagram")
			}
			fnh := rest[0]
			fo := binary.BigEndian.Uint16(rest[2:4])
			off := int(fo &^ 7)
			more := fo&1 != 0
			id := binary.BigEndian.Uint32(rest[4:8])
			rest = rest[8:]
			d.stats.IPv6Fragments++
			if off == 0 && !more {
				// Atomic fragment (RFC 6946): a whole datagram, just go on.
				d.stats.IPv6AtomicFragments++
				nh = fnh
				continue
			}
			var key fragKey
			copy(key.src[:], src)
			copy(key.dst[:], dst)
			key.id = id
			key.v6 = true
			whole, first, done, err := d.frags.add(key, off, more, fnh, rest, d.now)
			if err != nil {
				return nil, fmt.Errorf("ipv6 fragment: %w", err)
			}
			if !done {
				d.held = true
				return nil, nil
			}
			nh, rest, defragged = first, whole, true
		default:
			return d.transport(nh, rest, flow, depth)
		}
	}
	return nil, errors.New("ipv6: too many extension headers")
}

// transport handles the payload of an IP header: TCP, or a tunnel to follow.
func (d *Decoder) transport(proto uint8, body []byte, flow gopacket.Flow, depth int) (*Segment, error) {
	switch proto {
	case 6:
		return d.tcp(body, flow)
	case 4, 41, 47, 17:
		if depth >= maxEncapDepth {
			return nil, nil
		}
	default:
		return nil, nil
	}
	switch proto {
	case 4: // IPv4 in IP
		d.stats.Tunnelled++
		return d.ipv4(body, depth+1)
	case 41: // IPv6 in IP
		d.stats.Tunnelled++
		return d.ipv6(body, depth+1)
	case 47:
		return d.gre(body, depth+1)
	default: // 17
		return d.udp(body, depth+1)
	}
}

// gre follows GRE version 0 carrying IP, Ethernet or ERSPAN.
func (d *Decoder) gre(p []byte, depth int) (*Segment, error) {
	if len(p) < 4 {
		return nil, fmt.Errorf("gre: header truncated (%d bytes)", len(p))
	}
	flags := binary.BigEndian.Uint16(p[0:2])
	proto := binary.BigEndian.Uint16(p[2:4])
	if flags&0x0007 != 0 || flags&0x4000 != 0 {
		return nil, nil // enhanced GRE (PPTP) or source routing: not followed
	}
	off := 4
	if flags&0x8000 != 0 { // checksum
		off += 4
	}
	if flags&0x2000 != 0 { // key
		off += 4
	}
	seqPresent := flags&0x1000 != 0
	if seqPresent {
		off += 4
	}
	if len(p) < off {
		return nil, fmt.Errorf("gre: header truncated (%d of %d bytes)", len(p), off)
	}
	p = p[off:]
	d.stats.Tunnelled++
	switch proto {
	case 0x6558: // transparent Ethernet bridging
		return d.ethernet(p, depth)
	case 0x88be: // ERSPAN type II has an 8-byte header (and a sequence number); type I has none
		if seqPresent {
			if len(p) < 8 {
				return nil, fmt.Errorf("erspan: header truncated (%d bytes)", len(p))
			}
			p = p[8:]
		}
		return d.ethernet(p, depth)
	case 0x22eb: // ERSPAN type III: 12 bytes, 8 more when the O flag is set
		if len(p) < 12 {
			return nil, fmt.Errorf("erspan3: header truncated (%d bytes)", len(p))
		}
		hl := 12
		if p[11]&0x01 != 0 {
			hl += 8
		}
		if len(p) < hl {
			return nil, fmt.Errorf("erspan3: header truncated (%d of %d bytes)", len(p), hl)
		}
		return d.ethernet(p[hl:], depth)
	}
	return d.etherType(proto, p, depth)
}

// Well-known UDP ports of tunnels that carry IP or Ethernet.
const (
	portGTPU  = 2152
	portVXLAN = 4789
)

func (d *Decoder) udp(p []byte, depth int) (*Segment, error) {
	if len(p) < 8 {
		return nil, nil // not TCP, whatever else is wrong with it
	}
	sport := binary.BigEndian.Uint16(p[0:2])
	dport := binary.BigEndian.Uint16(p[2:4])
	if ulen := int(binary.BigEndian.Uint16(p[4:6])); ulen >= 8 && ulen < len(p) {
		p = p[:ulen]
	}
	p = p[8:]
	switch {
	case sport == portGTPU || dport == portGTPU:
		return d.gtpu(p, depth)
	case dport == portVXLAN:
		if len(p) < 8 || p[0]&0x08 == 0 {
			return nil, nil
		}
		d.stats.Tunnelled++
		return d.ethernet(p[8:], depth)
	}
	return nil, nil
}

// gtpu follows GTPv1-U G-PDUs (user plane of mobile networks) to the IP
// packet inside.
func (d *Decoder) gtpu(p []byte, depth int) (*Segment, error) {
	if len(p) < 8 || p[0]>>5 != 1 || p[0]&0x10 == 0 || p[1] != 0xff {
		return nil, nil // not a GTPv1 G-PDU
	}
	flags := p[0]
	off := 8
	if flags&0x07 != 0 { // sequence number, N-PDU number or extension present
		off += 4
		if len(p) < off {
			return nil, fmt.Errorf("gtp-u: header truncated (%d bytes)", len(p))
		}
		next := p[off-1]
		for ext := 0; flags&0x04 != 0 && next != 0; ext++ {
			if len(p) < off+1 || ext > 16 {
				return nil, fmt.Errorf("gtp-u: extension header truncated")
			}
			el := int(p[off]) * 4
			if el == 0 || len(p) < off+el {
				return nil, fmt.Errorf("gtp-u: extension header truncated")
			}
			next = p[off+el-1]
			off += el
		}
	}
	if len(p) <= off {
		return nil, nil
	}
	d.stats.Tunnelled++
	switch p[off] >> 4 {
	case 4, 6:
		return d.ipAny(p[off:], depth)
	}
	return nil, nil
}

// tcp decodes a TCP header leniently: a header cut by the snap length keeps
// its fixed part, and malformed options are ignored rather than losing the
// segment (as Wireshark does).
func (d *Decoder) tcp(p []byte, flow gopacket.Flow) (*Segment, error) {
	if len(p) < 20 {
		return nil, fmt.Errorf("tcp: header truncated (%d bytes)", len(p))
	}
	hl := int(p[12]>>4) * 4
	if hl < 20 {
		return nil, fmt.Errorf("tcp: data offset %d", hl)
	}
	t := &d.tcpL
	if hl <= len(p) {
		if err := t.DecodeFromBytes(p, gopacket.NilDecodeFeedback); err == nil {
			return d.segment(flow), nil
		}
		d.stats.TCPBadOptions++
	} else {
		d.stats.TCPTruncatedHeader++
		hl = len(p)
	}
	// Decode the fixed header alone, then put the payload back.
	fixed := make([]byte, 20, 20+len(p)-hl)
	copy(fixed, p[:20])
	fixed[12] = 5<<4 | fixed[12]&0x0f
	fixed = append(fixed, p[hl:]...)
	if err := t.DecodeFromBytes(fixed, gopacket.NilDecodeFeedback); err != nil {
		return nil, fmt.Errorf("tcp: %w", err)
	}
	t.DataOffset = p[12] >> 4
	return d.segment(flow), nil
}

// segment returns the reused Segment with the TCP layer just decoded.
func (d *Decoder) segment(flow gopacket.Flow) *Segment {
	d.seg = Segment{NetFlow: flow, TCP: &d.tcpL}
	return &d.seg
}

// fragKey identifies the datagram a fragment belongs to.
type fragKey struct {
	src, dst [16]byte
	id       uint32
	proto    uint8 // IPv4 protocol (IPv6 keys by addresses and id only)
	v6       bool
}

type span struct{ start, end int }

type fragDatagram struct {
	buf     []byte
	have    []span // sorted, disjoint, non-adjacent ranges already filled
	total   int    // datagram payload length, -1 until the last fragment arrives
	first   uint8  // protocol/next header of the fragment at offset 0
	seen    time.Time
	holding int // bytes accounted in defragmenter.bytes
}

// defragmenter reassembles IPv4 and IPv6 fragments, first arrival winning
// where fragments overlap. Memory and time are bounded: datagrams older than
// timeout (capture time) are dropped, and so is an arbitrary one when the
// datagram count or byte budget is exhausted.
type defragmenter struct {
	pending      map[fragKey]*fragDatagram
	bytes        int
	timeout      time.Duration
	maxDatagrams int
	maxBytes     int
	stats        *DecodeStats
	lastExpire   time.Time
}

const maxDatagram = 65535

func newDefragmenter(timeout time.Duration, maxDatagrams, maxBytes int, st *DecodeStats) *defragmenter {
	return &defragmenter{
		pending:      make(map[fragKey]*fragDatagram),
		timeout:      timeout,
		maxDatagrams: maxDatagrams,
		maxBytes:     maxBytes,
		stats:        st,
	}
}

// add files one fragment. When it completes its datagram, add returns the
// datagram's payload and the protocol of its first fragment with done=true.
func (f *defragmenter) add(k fragKey, off int, more bool, proto uint8, data []byte, now time.Time) (whole []byte, first uint8, done bool, err error) {
	end := off + len(data)
	if end > maxDatagram {
		f.drop(k)
		return nil, 0, false, fmt.Errorf("fragment at offset %d with %d bytes exceeds 64 KiB", off, len(data))
	}
	dg := f.pending[k]
	if dg == nil {
		for len(f.pending) >= f.maxDatagrams || (f.bytes+len(data) > f.maxBytes && len(f.pending) > 0) {
			for old := range f.pending {
				f.drop(old)
				break
			}
		}
		dg = &fragDatagram{total: -1, seen: now}
		f.pending[k] = dg
	}
	if !more {
		if dg.total >= 0 && dg.total != end {
			f.drop(k)
			return nil, 0, false, fmt.Errorf("two last fragments disagree on the length (%d, %d)", dg.total, end)
		}
		dg.total = end
	}
	if dg.total >= 0 && end > dg.total {
		f.drop(k)
		return nil, 0, false, fmt.Errorf("fragment ends at %d, after the datagram end %d", end, dg.total)
	}
	if off == 0 {
		dg.first = proto
	}
	if len(dg.buf) < end {
		grow := end - len(dg.buf)
		dg.buf = append(dg.buf, make([]byte, grow)...)
		f.bytes += grow
		dg.holding += grow
	}
	dg.fill(off, data)
	if dg.total < 0 || len(dg.have) != 1 || dg.have[0].start != 0 || dg.have[0].end != dg.total {
		return nil, 0, false, nil
	}
	delete(f.pending, k)
	f.bytes -= dg.holding
	f.stats.DatagramsReassembled++
	return dg.buf[:dg.total], dg.first, true, nil
}

// fill copies the bytes of data that land where nothing was placed yet.
func (dg *fragDatagram) fill(off int, data []byte) {
	end := off + len(data)
	if end == off {
		return
	}
	pos := off
	for _, s := range dg.have {
		if s.end <= pos {
			continue
		}
		if s.start >= end {
			break
		}
		if s.start > pos {
			copy(dg.buf[pos:s.start], data[pos-off:s.start-off])
		}
		pos = s.end
		if pos >= end {
			break
		}
	}
	if pos < end {
		copy(dg.buf[pos:end], data[pos-off:])
	}
	// Merge [off,end) into the covered ranges.
	merged := make([]span, 0, len(dg.have)+1)
	ns := span{off, end}
	placed := false
	for _, s := range dg.have {
		switch {
		case s.end < ns.start:
			merged = append(merged, s)
		case s.start > ns.end:
			if !placed {
				merged = append(merged, ns)
				placed = true
			}
			merged = append(merged, s)
		default: // overlapping or adjacent
			if s.start < ns.start {
				ns.start = s.start
			}
			if s.end > ns.end {
				ns.end = s.end
			}
		}
	}
	if !placed {
		merged = append(merged, ns)
	}
	dg.have = merged
}

func (f *defragmenter) drop(k fragKey) {
	if dg, ok := f.pending[k]; ok {
		delete(f.pending, k)
		f.bytes -= dg.holding
		f.stats.DatagramsDropped++
	}
}

// expire drops datagrams that waited longer than the timeout; it scans at
// most once per second of capture time.
func (f *defragmenter) expire(now time.Time) {
	if len(f.pending) == 0 || now.Sub(f.lastExpire) < time.Second {
		return
	}
	f.lastExpire = now
	limit := now.Add(-f.timeout)
	for k, dg := range f.pending {
		if dg.seen.Before(limit) {
			f.drop(k)
		}
	}
}

// ReadFile decodes every frame of the capture at path and calls fn with
// each TCP segment, its 1-based packet number and its capture information.
// Frames that carry no TCP are skipped, and so are frames that cannot be
// decoded (they are counted in the returned statistics). The error is the
// first one that stopped the reading of the file, or the first error fn
// returned.
func ReadFile(path string, fn func(packet int64, seg *Segment, ci gopacket.CaptureInfo) error) (DecodeStats, error) {
	fh, err := os.Open(path)
	if err != nil {
		return DecodeStats{}, err
	}
	defer fh.Close()
	var size int64
	if st, err := fh.Stat(); err == nil && st.Mode().IsRegular() {
		size = st.Size()
	}
	r, err := Open(fh, fh, size)
	if err != nil {
		return DecodeStats{}, err
	}
	d := NewDecoder()
	for n := int64(1); ; n++ {
		data, ci, link, err := r.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			return d.Stats(), err
		}
		seg, err := d.Decode(data, link, ci.Timestamp)
		if err != nil || seg == nil {
			continue
		}
		if err := fn(n, seg, ci); err != nil {
			return d.Stats(), err
		}
	}
}
