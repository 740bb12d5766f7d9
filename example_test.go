package reassembly_test

import (
	"bufio"
	"errors"
	"expvar"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/safepacket/reassembly"
)

// ---------------------------------------------------------------------------
// What the examples share: a capture made of real, decoded packets, and an
// upstream-style Stream.

// exampleConn is one TCP conversation of an example capture.
type exampleConn struct {
	client, server string // "10.0.0.1:40000"
	request        string // what the client sends
	response       string // what the server sends
	open           bool   // the capture ends before the connection closes
	lose           int    // the request segment lost by the capture (1-based; 0: none)
}

// exampleCapture returns the packets of the conversations as a capture
// reader would hand them over: serialized, decoded, time-stamped and
// interleaved. Requests go in 32-byte segments, responses in 64-byte ones,
// and the first two request segments arrive swapped.
func exampleCapture(conns ...exampleConn) []gopacket.Packet {
	var queues [][][]gopacket.SerializableLayer
	for i, c := range conns {
		cip, cport := exampleAddr(c.client)
		sip, sport := exampleAddr(c.server)
		cisn, sisn := uint32(1000*(i+1)), uint32(900000*(i+1))
		var q [][]gopacket.SerializableLayer
		add := func(fromServer bool, seq, ack uint32, flags string, payload string) {
			ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: cip, DstIP: sip}
			tcp := &layers.TCP{SrcPort: cport, DstPort: sport, Seq: seq, Ack: ack, Window: 65535,
				SYN: strings.Contains(flags, "S"), ACK: strings.Contains(flags, "A"), FIN: strings.Contains(flags, "F")}
			if fromServer {
				ip.SrcIP, ip.DstIP = sip, cip
				tcp.SrcPort, tcp.DstPort = sport, cport
			}
			_ = tcp.SetNetworkLayerForChecksum(ip)
			q = append(q, []gopacket.SerializableLayer{ip, tcp, gopacket.Payload(payload)})
		}
		add(false, cisn, 0, "S", "")
		add(true, sisn, cisn+1, "SA", "")
		first := len(q)
		for off := 0; off < len(c.request); off += 32 {
			end := min(off+32, len(c.request))
			if (off/32)+1 != c.lose {
				add(false, cisn+1+uint32(off), sisn+1, "A", c.request[off:end])
			}
		}
		if len(q) >= first+2 {
			q[first], q[first+1] = q[first+1], q[first]
		}
		for off := 0; off < len(c.response); off += 64 {
			end := min(off+64, len(c.response))
			add(true, sisn+1+uint32(off), cisn+1+uint32(len(c.request)), "A", c.response[off:end])
		}
		if !c.open {
			cfin, sfin := cisn+1+uint32(len(c.request)), sisn+1+uint32(len(c.response))
			add(false, cfin, sfin, "FA", "")
			add(true, sfin, cfin+1, "FA", "")
			add(false, cfin+1, sfin+1, "A", "")
		}
		queues = append(queues, q)
	}
	var packets []gopacket.Packet
	ts := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	for more := true; more; {
		more = false
		for i := range queues {
			if len(queues[i]) == 0 {
				continue
			}
			more = true
			buf := gopacket.NewSerializeBuffer()
			opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
			if err := gopacket.SerializeLayers(buf, opts, queues[i][0]...); err != nil {
				panic(err)
			}
			queues[i] = queues[i][1:]
			pkt := gopacket.NewPacket(buf.Bytes(), layers.LayerTypeIPv4, gopacket.Default)
			ts = ts.Add(time.Millisecond)
			pkt.Metadata().Timestamp = ts
			pkt.Metadata().CaptureLength = len(buf.Bytes())
			pkt.Metadata().Length = len(buf.Bytes())
			packets = append(packets, pkt)
		}
	}
	return packets
}

func exampleAddr(s string) (net.IP, layers.TCPPort) {
	host, port, _ := net.SplitHostPort(s)
	p, _ := strconv.Atoi(port)
	return net.ParseIP(host).To4(), layers.TCPPort(p)
}

// exampleContext is the AssemblerContext of the examples, as in upstream's.
type exampleContext struct{ CaptureInfo gopacket.CaptureInfo }

func (c *exampleContext) GetCaptureInfo() gopacket.CaptureInfo { return c.CaptureInfo }

// exampleCounter is an upstream-style Stream: it counts each direction's
// bytes and reports them when the connection is complete.
type exampleCounter struct {
	name   string
	bytes  [2]int
	report func(s *exampleCounter)
}

func (s *exampleCounter) Accept(*layers.TCP, gopacket.CaptureInfo, reassembly.TCPFlowDirection, reassembly.Sequence, *bool, reassembly.AssemblerContext) bool {
	return true
}

func (s *exampleCounter) ReassembledSG(sg reassembly.ScatterGather, _ reassembly.AssemblerContext) {
	dir, _, _, _ := sg.Info()
	n, _ := sg.Lengths()
	if dir == reassembly.TCPDirClientToServer {
		s.bytes[0] += n
	} else {
		s.bytes[1] += n
	}
}

func (s *exampleCounter) ReassemblyComplete(reassembly.AssemblerContext) bool {
	s.report(s)
	return true
}

func (s *exampleCounter) String() string {
	return fmt.Sprintf("%s: client sent %d bytes, server %d", s.name, s.bytes[0], s.bytes[1])
}

// exampleCounterFactory makes exampleCounters that call report when done.
type exampleCounterFactory struct{ report func(s *exampleCounter) }

func (f exampleCounterFactory) New(netFlow, tcpFlow gopacket.Flow, _ *layers.TCP, _ reassembly.AssemblerContext) reassembly.Stream {
	src, dst := netFlow.Endpoints()
	sp, dp := tcpFlow.Endpoints()
	return &exampleCounter{name: fmt.Sprintf("%v:%v->%v:%v", src, sp, dst, dp), report: f.report}
}

func examplePrint(s *exampleCounter) { fmt.Println(s) }

// ---------------------------------------------------------------------------
// Examples

// Code written for github.com/google/gopacket/reassembly compiles and
// behaves the same with only the import path changed: the drop-in face.
func Example_dropIn() {
	packets := exampleCapture(
		exampleConn{client: "10.0.0.1:40000", server: "10.0.0.9:80", request: strings.Repeat("q", 70), response: strings.Repeat("r", 150)},
		exampleConn{client: "10.0.0.2:40001", server: "10.0.0.9:80", request: strings.Repeat("q", 10), response: strings.Repeat("r", 20)},
	)

	streamFactory := exampleCounterFactory{report: examplePrint}
	streamPool := reassembly.NewStreamPool(streamFactory)
	assembler := reassembly.NewAssembler(streamPool)
	assembler.MaxBufferedPagesTotal = 10000
	assembler.MaxBufferedPagesPerConnection = 100

	for _, packet := range packets {
		tcp := packet.Layer(layers.LayerTypeTCP).(*layers.TCP)
		c := exampleContext{CaptureInfo: packet.Metadata().CaptureInfo}
		assembler.AssembleWithContext(packet.NetworkLayer().NetworkFlow(), tcp, &c)
	}
	assembler.FlushAll()
	// Output:
	// 10.0.0.2:40001->10.0.0.9:80: client sent 10 bytes, server 20
	// 10.0.0.1:40000->10.0.0.9:80: client sent 70 bytes, server 150
}

// The Safe face: validated options with limits, a connection cap, and
// errors to handle instead of panics.
func ExampleNewSafeAssembler() {
	// At most 2 live connections; beyond them, refuse (the default evicts).
	pool, err := reassembly.NewSafeStreamPoolWithOptions(exampleCounterFactory{report: examplePrint},
		reassembly.SafeStreamPoolOptions{MaxConnections: 2, RefuseAtLimit: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pool.Close()

	_, err = reassembly.NewSafeAssembler(pool, reassembly.SafeAssemblerOptions{
		MaxBufferedPagesTotal:         100,
		MaxBufferedPagesPerConnection: 1000, // more than the total: refused
	})
	fmt.Println("invalid options:", errors.Is(err, reassembly.ErrInvalidOptions))

	a, err := reassembly.NewSafeAssembler(pool, reassembly.SafeAssemblerOptions{
		MaxBufferedPagesTotal:         50000, // pool-wide, about 100 MB
		MaxBufferedPagesPerConnection: 1000,  // per direction
		ConnectionTimeout:             2 * time.Minute,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer a.Close()

	packets := exampleCapture(
		exampleConn{client: "10.0.0.1:40000", server: "10.0.0.9:80", request: "one", response: "1"},
		exampleConn{client: "10.0.0.2:40000", server: "10.0.0.9:80", request: "two", response: "2"},
		exampleConn{client: "10.0.0.3:40000", server: "10.0.0.9:80", request: "three", response: "3"},
	)
	refused := map[uint64]bool{}
	for _, packet := range packets {
		netFlow := packet.NetworkLayer().NetworkFlow()
		tcp := packet.Layer(layers.LayerTypeTCP).(*layers.TCP)
		err := a.AssembleWithTimestamp(netFlow, tcp, packet.Metadata().Timestamp)
		switch {
		case err == nil:
		case errors.Is(err, reassembly.ErrConnectionLimit):
			// Counted in pool.Stats().ConnectionsRefused; the packet is dropped.
			if h := netFlow.FastHash() ^ tcp.TransportFlow().FastHash(); !refused[h] {
				refused[h] = true
				fmt.Println("refused a new connection:", netFlow, tcp.TransportFlow())
			}
		default:
			// ErrStreamPanic, ErrNilPacket, ...: counted in a.Stats().Errors.
			fmt.Println("error:", err)
		}
	}
	// Output:
	// invalid options: true
	// refused a new connection: 10.0.0.3->10.0.0.9 40000->80
	// 10.0.0.1:40000->10.0.0.9:80: client sent 3 bytes, server 1
	// 10.0.0.2:40000->10.0.0.9:80: client sent 3 bytes, server 1
}

// A ReaderFactory turns each connection into two io.Readers, as tcpreader
// did for tcpassembly: here HTTP requests are parsed from reassembled
// packets with net/http.
func ExampleReaderFactory() {
	var wg sync.WaitGroup
	factory := &reassembly.ReaderFactory{
		Options: reassembly.ReaderOptions{MaxBuffered: 1 << 20},
		OnConnection: func(conn *reassembly.ReaderPair) {
			conn.Server.Close() // responses are not read: discard them
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := bufio.NewReader(conn.Client)
				for {
					req, err := http.ReadRequest(buf)
					if err == io.EOF {
						return
					}
					if err != nil {
						// A gap (errors.Is(err, reassembly.ErrGap)) or a
						// malformed request: look for the next one.
						fmt.Println("skipping:", err)
						continue
					}
					body, err := io.ReadAll(req.Body)
					if err != nil {
						fmt.Println("body:", err)
					}
					fmt.Printf("%v %v %s %s %q\n", conn.NetFlow, conn.TCPFlow, req.Method, req.URL, body)
				}
			}()
		},
	}
	pool := reassembly.NewSafeStreamPool(factory, 0)
	a, err := reassembly.NewSafeAssembler(pool, reassembly.SafeAssemblerOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}

	packets := exampleCapture(exampleConn{
		client: "10.0.0.1:40000", server: "10.0.0.9:80",
		request: "GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n" +
			"POST /login HTTP/1.1\r\nHost: example.com\r\nContent-Length: 13\r\n\r\nuser=gopher&x",
		response: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
	})
	for _, packet := range packets {
		tcp := packet.Layer(layers.LayerTypeTCP).(*layers.TCP)
		_ = a.AssembleWithTimestamp(packet.NetworkLayer().NetworkFlow(), tcp, packet.Metadata().Timestamp)
	}
	a.Close()
	pool.Close() // every reader gets io.EOF
	wg.Wait()
	fmt.Println(factory.Stats().BytesDiscarded, "response bytes discarded")
	// Output:
	// 10.0.0.1->10.0.0.9 40000->80 GET /index.html ""
	// 10.0.0.1->10.0.0.9 40000->80 POST /login "user=gopher&x"
	// 38 response bytes discarded
}

// Where bytes are missing, Read returns a *GapError between the bytes before
// and after the hole, then goes on.
func ExampleGapError() {
	var wg sync.WaitGroup
	factory := &reassembly.ReaderFactory{OnConnection: func(conn *reassembly.ReaderPair) {
		conn.Server.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1024)
			for {
				n, err := conn.Client.Read(buf)
				if n > 0 {
					fmt.Printf("read %q\n", buf[:n])
				}
				var gap *reassembly.GapError
				switch {
				case errors.As(err, &gap):
					fmt.Println("gap of", gap.Bytes, "bytes:", errors.Is(err, reassembly.ErrGap))
				case err == io.EOF:
					fmt.Println("end")
					return
				}
			}
		}()
	}}
	pool := reassembly.NewSafeStreamPool(factory, 0)
	a, _ := reassembly.NewSafeAssembler(pool, reassembly.SafeAssemblerOptions{})
	packets := exampleCapture(exampleConn{
		client: "10.0.0.1:40000", server: "10.0.0.9:80",
		request: "0123456789abcdefghijklmnopqrstuv" + "lost lost lost lost lost lost !!" + "the rest",
		lose:    2, // the capture missed the second segment
	})
	for _, packet := range packets {
		tcp := packet.Layer(layers.LayerTypeTCP).(*layers.TCP)
		_ = a.AssembleWithTimestamp(packet.NetworkLayer().NetworkFlow(), tcp, packet.Metadata().Timestamp)
	}
	a.Close() // flushes: the hole is skipped
	pool.Close()
	wg.Wait()
	// Output:
	// read "0123456789abcdefghijklmnopqrstuv"
	// gap of 32 bytes: true
	// read "the rest"
	// end
}

// Stats gives the assembler's counters and pool.Stats the pool's; byte
// counts add up (see AssemblerStats).
func ExampleSafeAssembler_Stats() {
	pool := reassembly.NewSafeStreamPool(exampleCounterFactory{report: func(*exampleCounter) {}}, 1000)
	a, _ := reassembly.NewSafeAssembler(pool, reassembly.SafeAssemblerOptions{})
	packets := exampleCapture(
		exampleConn{client: "10.0.0.1:40000", server: "10.0.0.9:80", request: strings.Repeat("a", 100), response: strings.Repeat("b", 300)},
		exampleConn{client: "10.0.0.2:40000", server: "10.0.0.9:80", request: strings.Repeat("c", 100), open: true, lose: 2},
	)
	for _, packet := range packets {
		tcp := packet.Layer(layers.LayerTypeTCP).(*layers.TCP)
		_ = a.AssembleWithTimestamp(packet.NetworkLayer().NetworkFlow(), tcp, packet.Metadata().Timestamp)
	}

	s := a.Stats()
	fmt.Println("packets:", s.PacketsProcessed, "payload bytes:", s.BytesProcessed)
	fmt.Println("delivered:", s.BytesDelivered, "waiting out of order:", s.PageCache.QueuedBytes)
	p := pool.Stats()
	fmt.Println("connections: active", p.ActiveConnections, "created", p.TotalCreated)

	a.Close() // flushes what waits behind the hole
	s = a.Stats()
	fmt.Println("after Close: delivered", s.BytesDelivered, "gaps", s.Gaps, "gap bytes", s.GapBytes)
	pool.Close()
	// Output:
	// packets: 19 payload bytes: 468
	// delivered: 432 waiting out of order: 36
	// connections: active 1 created 2
	// after Close: delivered 468 gaps 1 gap bytes 32
}

// Close the assemblers, then the pool: every Stream is completed once,
// readers get io.EOF, and no goroutine of the package is left.
func ExampleSafeAssembler_Close() {
	var wg sync.WaitGroup
	factory := &reassembly.ReaderFactory{OnConnection: func(conn *reassembly.ReaderPair) {
		for _, r := range []*reassembly.ReaderStream{conn.Client, conn.Server} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n, err := io.Copy(io.Discard, r) // blocks until the connection ends
				_ = n
				if err != nil {
					fmt.Println(err)
				}
			}()
		}
	}}
	pool := reassembly.NewSafeStreamPool(factory, 0)
	a, _ := reassembly.NewSafeAssembler(pool, reassembly.SafeAssemblerOptions{})
	packets := exampleCapture(
		// Both connections are still open when the capture ends.
		exampleConn{client: "10.0.0.1:40000", server: "10.0.0.9:80", request: "ping", response: "pong", open: true},
		exampleConn{client: "10.0.0.2:40000", server: "10.0.0.9:80", request: "ping", response: "pong", open: true},
	)
	for _, packet := range packets {
		tcp := packet.Layer(layers.LayerTypeTCP).(*layers.TCP)
		_ = a.AssembleWithTimestamp(packet.NetworkLayer().NetworkFlow(), tcp, packet.Metadata().Timestamp)
	}
	fmt.Println("open connections:", pool.Stats().ActiveConnections)

	a.Close()    // stops the background flusher; the last assembler flushes the pool
	pool.Close() // completes what remains (here nothing), idempotent
	wg.Wait()    // the four readers got io.EOF
	fmt.Println("open connections:", pool.Stats().ActiveConnections, "read:", factory.Stats().BytesRead)

	err := a.Assemble(packets[0].NetworkLayer().NetworkFlow(), packets[0].Layer(layers.LayerTypeTCP).(*layers.TCP))
	fmt.Println("after Close:", errors.Is(err, reassembly.ErrAssemblerClosed))
	// Output:
	// open connections: 2
	// open connections: 0 read: 16
	// after Close: true
}

// Past one core: one pool and assembler per worker goroutine, fed by a
// symmetric flow hash so that both directions of a connection reach the
// same worker. Nothing is shared between workers, so they scale with the
// cores; the stats of each are read separately, or summed.
func Example_scaleOut() {
	const workers = 4
	var mu sync.Mutex
	var done []string
	factory := exampleCounterFactory{report: func(s *exampleCounter) {
		mu.Lock()
		defer mu.Unlock()
		done = append(done, s.String())
	}}

	var wg sync.WaitGroup
	queues := make([]chan gopacket.Packet, workers)
	var delivered [workers]int64
	for w := range workers {
		queues[w] = make(chan gopacket.Packet, 64)
		pool := reassembly.NewSafeStreamPool(factory, 10000)
		a, err := reassembly.NewSafeAssembler(pool, reassembly.SafeAssemblerOptions{})
		if err != nil {
			panic(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for packet := range queues[w] {
				tcp := packet.Layer(layers.LayerTypeTCP).(*layers.TCP)
				_ = a.AssembleWithTimestamp(packet.NetworkLayer().NetworkFlow(), tcp, packet.Metadata().Timestamp)
			}
			a.Close()
			pool.Close()
			delivered[w] = a.Stats().BytesDelivered
		}()
	}

	var conns []exampleConn
	for i := range 8 {
		conns = append(conns, exampleConn{
			client:  fmt.Sprintf("10.0.0.%d:%d", i+1, 40000+i),
			server:  "10.0.0.9:80",
			request: strings.Repeat("q", 10*(i+1)), response: strings.Repeat("r", 100*(i+1)),
		})
	}
	for _, packet := range exampleCapture(conns...) {
		tcp := packet.Layer(layers.LayerTypeTCP).(*layers.TCP)
		// FastHash is the same for both directions of a flow.
		h := packet.NetworkLayer().NetworkFlow().FastHash() ^ tcp.TransportFlow().FastHash()
		queues[h%workers] <- packet
	}
	for _, q := range queues {
		close(q)
	}
	wg.Wait()

	slices.Sort(done)
	for _, s := range done {
		fmt.Println(s)
	}
	var total int64
	for _, n := range delivered {
		total += n
	}
	fmt.Println("streams:", len(done), "bytes delivered:", total)
	// Output:
	// 10.0.0.1:40000->10.0.0.9:80: client sent 10 bytes, server 100
	// 10.0.0.2:40001->10.0.0.9:80: client sent 20 bytes, server 200
	// 10.0.0.3:40002->10.0.0.9:80: client sent 30 bytes, server 300
	// 10.0.0.4:40003->10.0.0.9:80: client sent 40 bytes, server 400
	// 10.0.0.5:40004->10.0.0.9:80: client sent 50 bytes, server 500
	// 10.0.0.6:40005->10.0.0.9:80: client sent 60 bytes, server 600
	// 10.0.0.7:40006->10.0.0.9:80: client sent 70 bytes, server 700
	// 10.0.0.8:40007->10.0.0.9:80: client sent 80 bytes, server 800
	// streams: 8 bytes delivered: 3960
}

// The snapshots export without extra dependencies: Map for expvar (served
// as JSON at /debug/vars), Metrics for a monitoring system's collector,
// LogValue for log/slog.
//
// A Prometheus collector is a few lines around Metrics:
//
//	type collector struct{ a *reassembly.SafeAssembler }
//
//	func (c collector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }
//
//	func (c collector) Collect(ch chan<- prometheus.Metric) {
//		for _, m := range c.a.Stats().Metrics() {
//			name, kind := "reassembly_"+m.Name, prometheus.GaugeValue
//			if m.Kind == reassembly.MetricCounter {
//				name, kind = name+"_total", prometheus.CounterValue
//			}
//			ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(name, m.Help, nil, nil), kind, m.Value)
//		}
//	}
func ExampleAssemblerStats_Metrics() {
	pool := reassembly.NewSafeStreamPool(exampleCounterFactory{report: func(*exampleCounter) {}}, 0)
	a, _ := reassembly.NewSafeAssembler(pool, reassembly.SafeAssemblerOptions{})
	defer pool.Close()
	defer a.Close()

	// expvar: publish once per process (Publish panics on a name used twice).
	if expvar.Get("reassembly") == nil {
		expvar.Publish("reassembly", expvar.Func(func() any {
			return map[string]any{"assembler": a.Stats().Map(), "pool": pool.Stats().Map()}
		}))
	}

	for _, packet := range exampleCapture(exampleConn{client: "10.0.0.1:40000", server: "10.0.0.9:80", request: "hello", response: "world!"}) {
		tcp := packet.Layer(layers.LayerTypeTCP).(*layers.TCP)
		_ = a.AssembleWithTimestamp(packet.NetworkLayer().NetworkFlow(), tcp, packet.Metadata().Timestamp)
	}

	// What a collector sees, in the Prometheus text format.
	for _, m := range a.Stats().Metrics() {
		switch m.Name {
		case "packets_processed", "bytes_delivered", "page_cache_pages_in_use":
			name := "reassembly_" + m.Name
			if m.Kind == reassembly.MetricCounter {
				name += "_total"
			}
			fmt.Printf("# HELP %s %s\n# TYPE %s %v\n%s %v\n", name, m.Help, name, m.Kind, name, m.Value)
		}
	}
	fmt.Println("pool map:", pool.Stats().Map()["total_created"])
	// Output:
	// # HELP reassembly_packets_processed_total Packets handed to the assembler.
	// # TYPE reassembly_packets_processed_total counter
	// reassembly_packets_processed_total 7
	// # HELP reassembly_bytes_delivered_total Payload bytes delivered to Streams, each once.
	// # TYPE reassembly_bytes_delivered_total counter
	// reassembly_bytes_delivered_total 11
	// # HELP reassembly_page_cache_pages_in_use Pages holding buffered bytes.
	// # TYPE reassembly_page_cache_pages_in_use gauge
	// reassembly_page_cache_pages_in_use 0
	// pool map: 1
}

// exampleWho is a Stream that prints each packet's contribution to the
// deliveries: who sent which bytes when.
type exampleWho struct{}

func (exampleWho) Accept(*layers.TCP, gopacket.CaptureInfo, reassembly.TCPFlowDirection, reassembly.Sequence, *bool, reassembly.AssemblerContext) bool {
	return true
}

func (exampleWho) ReassembledSG(sg reassembly.ScatterGather, _ reassembly.AssemblerContext) {
	parts, ok := sg.(reassembly.PartWalker)
	if !ok {
		return
	}
	dir, _, _, _ := sg.Info()
	for i := 0; i < parts.NumParts(); i++ {
		p := parts.Part(i)
		if len(p.Bytes) == 0 {
			continue // a SYN's or a FIN's
		}
		at := p.CaptureInfo().Timestamp.Format("15:04:05.000")
		fmt.Printf("%v part %d/%d: %s seq %d ack %d %v %q\n", dir, i+1, parts.NumParts(), at, p.Seq, p.Ack, p.Flags, p.Bytes)
	}
}

func (exampleWho) ReassemblyComplete(reassembly.AssemblerContext) bool { return true }

func (exampleWho) New(gopacket.Flow, gopacket.Flow, *layers.TCP, reassembly.AssemblerContext) reassembly.Stream {
	return exampleWho{}
}

// A delivery taken apart: each part is one packet's bytes, with that
// packet's capture time, sequence and acknowledgement numbers and flags.
// The request's two segments arrive swapped, so its delivery holds both:
// the one buffered out of order, captured first, and the one that filled
// the hole before it.
func ExamplePartWalker() {
	a := reassembly.NewAssembler(reassembly.NewStreamPool(exampleWho{}))
	packets := exampleCapture(exampleConn{
		client: "10.0.0.1:40000", server: "10.0.0.9:80",
		request:  "GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n",
		response: "HTTP/1.1 204 No Content\r\n\r\n",
	})
	for _, packet := range packets {
		tcp := packet.Layer(layers.LayerTypeTCP).(*layers.TCP)
		a.AssembleWithContext(packet.NetworkLayer().NetworkFlow(), tcp, &exampleContext{CaptureInfo: packet.Metadata().CaptureInfo})
	}
	a.FlushAll()
	// Output:
	// client->server part 1/2: 12:00:00.004 seq 1001 ack 900001 ACK "GET /index.html HTTP/1.1\r\nHost: "
	// client->server part 2/2: 12:00:00.003 seq 1033 ack 900001 ACK "example.com\r\n\r\n"
	// server->client part 1/1: 12:00:00.005 seq 900001 ack 1048 ACK "HTTP/1.1 204 No Content\r\n\r\n"
}

// exampleReplay reassembles packets with a SafeAssembler and closes it and
// its pool: every Stream is completed, every ReaderStream ends.
func exampleReplay(f reassembly.StreamFactory, packets []gopacket.Packet) {
	pool := reassembly.NewSafeStreamPool(f, 0)
	a, err := reassembly.NewSafeAssembler(pool, reassembly.SafeAssemblerOptions{})
	if err != nil {
		panic(err)
	}
	for _, packet := range packets {
		tcp := packet.Layer(layers.LayerTypeTCP).(*layers.TCP)
		_ = a.AssembleWithContext(packet.NetworkLayer().NetworkFlow(), tcp, &exampleContext{CaptureInfo: packet.Metadata().CaptureInfo})
	}
	a.Close()
	pool.Close()
}

// exampleTimed is an io.Reader over a ReaderStream read with
// SplitReadsByTime: it remembers the capture time of every Read, so that
// the time of any byte read so far can be looked up by its offset.
type exampleTimed struct {
	r     *reassembly.ReaderStream
	n     int64       // bytes read so far
	ends  []int64     // ends[i]: the offset where Read i ended
	times []time.Time // times[i]: the capture time of the bytes of Read i
}

func (t *exampleTimed) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 {
		at, _ := t.r.ReadTimes() // one time per Read: first == last
		t.n += int64(n)
		t.ends, t.times = append(t.ends, t.n), append(t.times, at)
	}
	return n, err
}

// span returns the earliest and the latest capture time of the bytes
// [from, to). A long-lived reader would also forget the Reads before from.
func (t *exampleTimed) span(from, to int64) (first, last time.Time) {
	start := int64(0)
	for i, end := range t.ends {
		if end > from && start < to {
			if first.IsZero() || t.times[i].Before(first) {
				first = t.times[i]
			}
			if t.times[i].After(last) {
				last = t.times[i]
			}
		}
		start = end
	}
	return first, last
}

// Who sent what when: the requests and responses of an HTTP connection
// with the capture times of their bytes, from ReaderStream.ReadTimes. The
// offset of a message in its direction is what the reader read minus what
// bufio still buffers; SplitReadsByTime makes each Read one packet's
// bytes, so the times are exact. (The request's first two segments were
// captured swapped.)
func ExampleReaderStream_ReadTimes() {
	type event struct {
		first, last time.Time
		what        string
	}
	var (
		mu     sync.Mutex
		events []event
		wg     sync.WaitGroup
	)
	read := func(r *reassembly.ReaderStream, who string, parse func(*bufio.Reader) (string, error)) {
		defer wg.Done()
		t := &exampleTimed{r: r}
		buf := bufio.NewReader(t)
		for {
			from := t.n - int64(buf.Buffered())
			what, err := parse(buf)
			if err != nil {
				return // io.EOF at the end; a gap or garbage ends this example too
			}
			first, last := t.span(from, t.n-int64(buf.Buffered()))
			mu.Lock()
			events = append(events, event{first, last, who + " " + what})
			mu.Unlock()
		}
	}
	request := func(b *bufio.Reader) (string, error) {
		req, err := http.ReadRequest(b)
		if err != nil {
			return "", err
		}
		_, err = io.Copy(io.Discard, req.Body)
		return req.Method + " " + req.URL.String(), err
	}
	response := func(b *bufio.Reader) (string, error) {
		resp, err := http.ReadResponse(b, nil)
		if err != nil {
			return "", err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		return resp.Status, err
	}
	factory := &reassembly.ReaderFactory{
		Options: reassembly.ReaderOptions{SplitReadsByTime: true},
		OnConnection: func(conn *reassembly.ReaderPair) {
			wg.Add(2)
			go read(conn.Client, "client", request)
			go read(conn.Server, "server", response)
		},
	}
	exampleReplay(factory, exampleCapture(exampleConn{
		client: "10.0.0.1:40000", server: "10.0.0.9:80",
		request: "GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n" +
			"GET /style.css HTTP/1.1\r\nHost: example.com\r\n\r\n",
		response: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi" +
			"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
	}))
	wg.Wait()
	slices.SortStableFunc(events, func(x, y event) int { return x.first.Compare(y.first) })
	for _, e := range events {
		fmt.Println(e.first.Format("15:04:05.000"), "to", e.last.Format("15:04:05.000"), e.what)
	}
	// Output:
	// 12:00:00.003 to 12:00:00.004 client GET /index.html
	// 12:00:00.003 to 12:00:00.005 client GET /style.css
	// 12:00:00.006 to 12:00:00.006 server 200 OK
	// 12:00:00.006 to 12:00:00.007 server 404 Not Found
}
