package tcpreader_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/safepacket/reassembly/tcpassembly"
	"github.com/safepacket/reassembly/tcpassembly/tcpreader"
)

// httpFactory makes, as gopacket's httpassembly example did, one
// ReaderStream per direction and a goroutine that reads HTTP requests
// from it.
type httpFactory struct {
	wg  sync.WaitGroup
	mu  sync.Mutex
	out []string
}

func (f *httpFactory) New(netFlow, tcpFlow gopacket.Flow) tcpassembly.Stream {
	r := tcpreader.NewReaderStream()
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		buf := bufio.NewReader(&r)
		for {
			req, err := http.ReadRequest(buf)
			if err != nil {
				// io.EOF at the end; anything else (such as the server's
				// responses) is not a request: read the rest away, so
				// that the Assembler is not held up.
				tcpreader.DiscardBytesToEOF(buf)
				return
			}
			body, _ := io.ReadAll(req.Body)
			req.Body.Close()
			f.mu.Lock()
			f.out = append(f.out, fmt.Sprintf("%v %v: %s %s (%d bytes of body)", netFlow, tcpFlow, req.Method, req.URL, len(body)))
			f.mu.Unlock()
		}
	}()
	return &r
}

// Reading HTTP requests with http.ReadRequest over the tcpassembly face,
// from crafted packets: two requests on one connection, the second sent in
// three segments that arrive out of order.
func Example_readHTTPRequests() {
	client := net.IP{10, 0, 0, 1}
	server := net.IP{10, 0, 0, 2}
	netFlow, _ := gopacket.FlowFromEndpoints(layers.NewIPEndpoint(client), layers.NewIPEndpoint(server))
	f := &httpFactory{}
	a := tcpassembly.NewAssembler(tcpassembly.NewStreamPool(f))

	first := "GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n"
	second := "POST /form HTTP/1.1\r\nHost: example.com\r\nContent-Length: 11\r\n\r\nhello=world"
	ts := time.Date(2021, 6, 1, 12, 0, 0, 0, time.UTC)
	send := func(seq uint32, syn, fin bool, payload string) {
		ts = ts.Add(time.Millisecond)
		a.AssembleWithTimestamp(netFlow, &layers.TCP{
			SrcPort: 50000, DstPort: 80, Seq: seq, SYN: syn, FIN: fin, ACK: !syn,
			BaseLayer: layers.BaseLayer{Payload: []byte(payload)},
		}, ts)
	}
	isn := uint32(1000)
	send(isn, true, false, "")
	send(isn+1, false, false, first)
	at := isn + 1 + uint32(len(first))
	// The second request: its last part first, then its first, then the
	// middle one, which fills the hole and lets both out in order.
	send(at+40, false, false, second[40:])
	send(at, false, false, second[:20])
	send(at+20, false, false, second[20:40])
	send(at+uint32(len(second)), false, true, "")

	a.FlushAll()
	f.wg.Wait()
	for _, line := range f.out {
		fmt.Println(line)
	}
	// Output:
	// 10.0.0.1->10.0.0.2 50000->80: GET /index.html (0 bytes of body)
	// 10.0.0.1->10.0.0.2 50000->80: POST /form (11 bytes of body)
}
