// Package tracegen writes synthetic pcap captures of TCP traffic,
// deterministic from a seed, for benchmarking capture tools end to end
// (cmd/reassemble against tcpflow): bulk transfers interleaved packet by
// packet with reordering, retransmissions and overlaps, and many short
// HTTP-like connections.
//
// Every byte a connection carries is a function of its number, direction
// and stream offset, and every retransmission or overlap repeats the bytes
// already sent, so whatever overlap policy a reassembler applies, the
// reassembled streams are the same.
package tracegen

import (
	"bufio"
	"encoding/binary"
	"io"
	"math/rand"
	"net/netip"
	"time"
)

// Header sizes of the frames written: Ethernet, IPv4 and TCP without options.
const (
	ethLen   = 14
	ipLen    = 20
	tcpLen   = 20
	hdrLen   = ethLen + ipLen + tcpLen
	snaplen  = 65535
	patLen   = 1 << 16
	tcpFlagF = 0x01
	tcpFlagS = 0x02
	tcpFlagP = 0x08
	tcpFlagA = 0x10
)

// Bulk describes interleaved bulk transfers: Rounds rounds of Conns
// concurrent connections, each sending Segments segments of MSS bytes each
// way, with an ACK every second segment, interleaved packet by packet.
type Bulk struct {
	Seed     int64
	Conns    int     // connections at once
	Rounds   int     // rounds of Conns connections, one after the other
	Segments int     // data segments per direction
	MSS      int     // payload bytes per segment
	Reorder  float64 // share of segments delayed by 1 to 7 segments
	Retrans  float64 // share of segments sent again a few segments later
	Overlap  float64 // share of segments followed by one spanning it and the next
}

// BulkIssue15 is issue 15's bulk capture: 128 × 5 connections, 256
// segments of 1460 bytes each way, 5 % reordered within 8 segments, 1 %
// retransmitted, 0.5 % overlapping (about 500k packets, 520 MB).
func BulkIssue15() Bulk {
	return Bulk{Seed: 15, Conns: 128, Rounds: 5, Segments: 256, MSS: 1460,
		Reorder: 0.05, Retrans: 0.01, Overlap: 0.005}
}

// HTTP describes Conns short connections, all open at once and interleaved
// round robin: handshake, a Request-byte request, Responses segments of
// MSS bytes in return, FINs from both sides.
type HTTP struct {
	Seed      int64
	Conns     int
	Request   int
	Responses int
	MSS       int
}

// HTTPIssue15 is issue 15's 10k-connection capture (20k stream directions).
func HTTPIssue15() HTTP {
	return HTTP{Seed: 15, Conns: 10000, Request: 300, Responses: 4, MSS: 1460}
}

// pkt is one TCP segment of a connection.
type pkt struct {
	dir   int // 0 client to server, 1 server to client
	off   int // stream offset of the first payload byte
	n     int // payload length
	flags uint8
	ack   int // stream offset acknowledged in the other direction
}

// conn is a connection being written.
type conn struct {
	id    int
	ip    [2][4]byte
	port  [2]uint16
	isn   [2]uint32
	salt  [2]int
	pkts  []pkt
	next  int
	total int // packets written so far
}

// writer writes the frames of connections into a pcap file.
type writer struct {
	w       *bufio.Writer
	pat     []byte
	buf     []byte
	ts      time.Time
	n       int
	err     error
	step    time.Duration
	capture Capture
	rec     [16]byte // record header, here so that writing it does not allocate
}

func newWriter(w io.Writer, seed int64) *writer {
	pw := &writer{w: bufio.NewWriterSize(w, 1<<20), buf: make([]byte, hdrLen+snaplen),
		ts: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), step: 10 * time.Microsecond}
	rng := rand.New(rand.NewSource(seed))
	pw.pat = make([]byte, 2*patLen)
	rng.Read(pw.pat[:patLen])
	copy(pw.pat[patLen:], pw.pat[:patLen])
	var hdr [24]byte
	binary.LittleEndian.PutUint32(hdr[0:], 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(hdr[4:], 2)
	binary.LittleEndian.PutUint16(hdr[6:], 4)
	binary.LittleEndian.PutUint32(hdr[16:], snaplen)
	binary.LittleEndian.PutUint32(hdr[20:], 1) // Ethernet
	_, pw.err = pw.w.Write(hdr[:])
	return pw
}

// payload is the bytes of direction d of c at stream offset off.
func (pw *writer) payload(c *conn, d, off, n int) []byte {
	s := (off + c.salt[d]) % patLen
	return pw.pat[s : s+n]
}

func (pw *writer) write(c *conn, p pkt) {
	if pw.err != nil {
		return
	}
	src, dst := p.dir, 1-p.dir
	b := pw.buf[:hdrLen+p.n]
	// Ethernet: locally administered MACs, EtherType IPv4.
	b[0], b[1], b[2], b[3], b[4], b[5] = 0x02, 0, 0, 0, 0, byte(dst+1)
	b[6], b[7], b[8], b[9], b[10], b[11] = 0x02, 0, 0, 0, 0, byte(src+1)
	b[12], b[13] = 0x08, 0x00
	ip := b[ethLen : ethLen+ipLen]
	ip[0], ip[1] = 0x45, 0
	binary.BigEndian.PutUint16(ip[2:], uint16(ipLen+tcpLen+p.n))
	binary.BigEndian.PutUint16(ip[4:], uint16(c.total))
	binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF
	ip[8], ip[9] = 64, 6
	ip[10], ip[11] = 0, 0
	copy(ip[12:16], c.ip[src][:])
	copy(ip[16:20], c.ip[dst][:])
	binary.BigEndian.PutUint16(ip[10:], checksum(ip, 0))
	tcp := b[ethLen+ipLen : hdrLen]
	binary.BigEndian.PutUint16(tcp[0:], c.port[src])
	binary.BigEndian.PutUint16(tcp[2:], c.port[dst])
	// Offsets count from the byte after the SYN.
	seq := c.isn[src] + 1 + uint32(p.off)
	if p.flags&tcpFlagS != 0 {
		seq = c.isn[src]
	}
	binary.BigEndian.PutUint32(tcp[4:], seq)
	var ack uint32
	if p.flags&tcpFlagA != 0 {
		ack = c.isn[dst] + 1 + uint32(p.ack)
	}
	binary.BigEndian.PutUint32(tcp[8:], ack)
	tcp[12], tcp[13] = 5<<4, p.flags
	binary.BigEndian.PutUint16(tcp[14:], 65535)
	tcp[16], tcp[17], tcp[18], tcp[19] = 0, 0, 0, 0
	copy(b[hdrLen:], pw.payload(c, src, p.off, p.n))
	// TCP checksum over the pseudo-header and the segment.
	var pseudo uint32
	for i := 0; i < 8; i += 2 {
		pseudo += uint32(binary.BigEndian.Uint16(ip[12+i:]))
	}
	pseudo += 6 + uint32(tcpLen+p.n)
	binary.BigEndian.PutUint16(tcp[16:], checksum(b[ethLen+ipLen:], pseudo))

	rec := pw.rec[:]
	binary.LittleEndian.PutUint32(rec[0:], uint32(pw.ts.Unix()))
	binary.LittleEndian.PutUint32(rec[4:], uint32(pw.ts.Nanosecond()/1000))
	binary.LittleEndian.PutUint32(rec[8:], uint32(len(b)))
	binary.LittleEndian.PutUint32(rec[12:], uint32(len(b)))
	pw.w.Write(rec)
	_, pw.err = pw.w.Write(b)
	pw.ts = pw.ts.Add(pw.step)
	pw.n++
	c.total++
}

func checksum(b []byte, sum uint32) uint16 {
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

func (pw *writer) finish() (*Capture, error) {
	if pw.err == nil {
		pw.err = pw.w.Flush()
	}
	pw.capture.Packets, pw.capture.pat = pw.n, pw.pat
	return &pw.capture, pw.err
}

func newConn(id int, rng *rand.Rand) *conn {
	c := &conn{id: id}
	c.ip[0] = [4]byte{10, byte(id >> 16), byte(id >> 8), byte(id)}
	c.ip[1] = [4]byte{192, 168, byte(id >> 8 & 0x0f), byte(id&0xff) | 1}
	c.port[0] = uint16(10000 + id%50000)
	c.port[1] = 80
	c.isn[0], c.isn[1] = rng.Uint32(), rng.Uint32()
	c.salt[0], c.salt[1] = rng.Intn(patLen), rng.Intn(patLen)
	return c
}

// handshake returns SYN, SYN-ACK, ACK.
func handshake() []pkt {
	return []pkt{{dir: 0, flags: tcpFlagS}, {dir: 1, flags: tcpFlagS | tcpFlagA}, {dir: 0, flags: tcpFlagA}}
}

// closing returns FIN, ACK from both sides after len0 and len1 bytes.
func closing(len0, len1 int) []pkt {
	return []pkt{
		{dir: 0, off: len0, flags: tcpFlagF | tcpFlagA, ack: len1},
		{dir: 1, off: len1, flags: tcpFlagF | tcpFlagA, ack: len0 + 1},
		{dir: 0, off: len0 + 1, flags: tcpFlagA, ack: len1 + 1},
	}
}

// dataSegments returns one direction's segments, perturbed as b asks.
func (b Bulk) dataSegments(rng *rand.Rand, dir int) []pkt {
	segs := make([]pkt, 0, b.Segments+b.Segments/20)
	for i := 0; i < b.Segments; i++ {
		segs = append(segs, pkt{dir: dir, off: i * b.MSS, n: b.MSS, flags: tcpFlagA | tcpFlagP})
	}
	out := make([]pkt, 0, len(segs)+len(segs)/16)
	var delayed []struct {
		p  pkt
		at int
	}
	for i, s := range segs {
		switch r := rng.Float64(); {
		case r < b.Reorder:
			delayed = append(delayed, struct {
				p  pkt
				at int
			}{s, i + 1 + rng.Intn(7)})
		default:
			out = append(out, s)
		}
		if rng.Float64() < b.Retrans {
			delayed = append(delayed, struct {
				p  pkt
				at int
			}{s, i + 1 + rng.Intn(7)})
		}
		if i+1 < len(segs) && rng.Float64() < b.Overlap {
			// Half of this segment and half of the next, the same bytes.
			half := b.MSS / 2
			delayed = append(delayed, struct {
				p  pkt
				at int
			}{pkt{dir: dir, off: s.off + half, n: b.MSS, flags: tcpFlagA | tcpFlagP}, i + 2})
		}
		kept := delayed[:0]
		for _, d := range delayed {
			if d.at <= i {
				out = append(out, d.p)
			} else {
				kept = append(kept, d)
			}
		}
		delayed = kept
	}
	for _, d := range delayed {
		out = append(out, d.p)
	}
	return out
}

// packets lays out one bulk connection: handshake, both directions' data
// alternating with an ACK of each direction every second segment, FINs.
// Every ACK acknowledges what its receiver holds without a hole, as a
// receiver would: a reordered segment is not acknowledged before it arrives.
func (b Bulk) packets(rng *rand.Rand) []pkt {
	d0, d1 := b.dataSegments(rng, 0), b.dataSegments(rng, 1)
	ps := handshake()
	var got [2][]bool
	var acked [2]int // segments received in order, per sending direction
	var high [2]int  // stream offset after the last byte sent, per direction
	for d := range got {
		got[d] = make([]bool, b.Segments+1)
	}
	n := max(len(d0), len(d1))
	for i := 0; i < n; i++ {
		for d, segs := range [2][]pkt{d0, d1} {
			if i < len(segs) {
				s := segs[i]
				s.ack = acked[1-d] * b.MSS
				high[d] = max(high[d], s.off+s.n)
				if s.off%b.MSS == 0 {
					got[d][s.off/b.MSS] = true
					for got[d][acked[d]] {
						acked[d]++
					}
				}
				ps = append(ps, s)
			}
		}
		if i%2 == 1 {
			ps = append(ps, pkt{dir: 0, off: high[0], flags: tcpFlagA, ack: acked[1] * b.MSS},
				pkt{dir: 1, off: high[1], flags: tcpFlagA, ack: acked[0] * b.MSS})
		}
	}
	total := b.Segments * b.MSS
	return append(ps, closing(total, total)...)
}

// Capture tells what a capture written holds.
type Capture struct {
	// Packets is the number of packets written.
	Packets int
	pat     []byte
	dirs    []direction
}

// direction is one direction of a connection as sent.
type direction struct {
	src, dst netip.AddrPort
	salt, n  int
}

// Streams calls fn with every direction that carried bytes, in the order
// the connections started: its endpoints and the bytes it sent, which a
// reassembler should give back whole.
func (c *Capture) Streams(fn func(src, dst netip.AddrPort, data []byte)) {
	for _, d := range c.dirs {
		data := make([]byte, 0, d.n)
		for len(data) < d.n {
			s := (len(data) + d.salt) % patLen
			data = append(data, c.pat[s:s+min(patLen, d.n-len(data))]...)
		}
		fn(d.src, d.dst, data)
	}
}

// record notes the two directions of c, which send n0 and n1 bytes.
func (pw *writer) record(c *conn, n0, n1 int) {
	for d, n := range [2]int{n0, n1} {
		if n > 0 {
			pw.capture.dirs = append(pw.capture.dirs, direction{
				src:  netip.AddrPortFrom(netip.AddrFrom4(c.ip[d]), c.port[d]),
				dst:  netip.AddrPortFrom(netip.AddrFrom4(c.ip[1-d]), c.port[1-d]),
				salt: c.salt[d], n: n,
			})
		}
	}
}

// WriteBulk writes the bulk capture to w.
func WriteBulk(w io.Writer, b Bulk) (*Capture, error) {
	pw := newWriter(w, b.Seed)
	rng := rand.New(rand.NewSource(b.Seed))
	for r := 0; r < b.Rounds; r++ {
		conns := make([]*conn, b.Conns)
		for i := range conns {
			conns[i] = newConn(r*b.Conns+i, rng)
			conns[i].pkts = b.packets(rng)
			pw.record(conns[i], b.Segments*b.MSS, b.Segments*b.MSS)
		}
		interleave(pw, conns)
	}
	return pw.finish()
}

// WriteHTTP writes the HTTP-like capture to w.
func WriteHTTP(w io.Writer, h HTTP) (*Capture, error) {
	pw := newWriter(w, h.Seed)
	rng := rand.New(rand.NewSource(h.Seed))
	conns := make([]*conn, h.Conns)
	for i := range conns {
		c := newConn(i, rng)
		ps := handshake()
		ps = append(ps, pkt{dir: 0, n: h.Request, flags: tcpFlagA | tcpFlagP},
			pkt{dir: 1, flags: tcpFlagA, ack: h.Request})
		for s := 0; s < h.Responses; s++ {
			ps = append(ps, pkt{dir: 1, off: s * h.MSS, n: h.MSS, flags: tcpFlagA | tcpFlagP, ack: h.Request})
			if s%2 == 1 {
				ps = append(ps, pkt{dir: 0, off: h.Request, flags: tcpFlagA, ack: (s + 1) * h.MSS})
			}
		}
		c.pkts = append(ps, closing(h.Request, h.Responses*h.MSS)...)
		pw.record(c, h.Request, h.Responses*h.MSS)
		conns[i] = c
	}
	interleave(pw, conns)
	return pw.finish()
}

// interleave writes one packet of each connection in turn until all are done.
func interleave(pw *writer, conns []*conn) {
	for live := conns; len(live) > 0; {
		kept := live[:0]
		for _, c := range live {
			pw.write(c, c.pkts[c.next])
			c.next++
			if c.next < len(c.pkts) {
				kept = append(kept, c)
			}
		}
		live = kept
	}
}
