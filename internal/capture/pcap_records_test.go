package capture

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	ct "github.com/safepacket/reassembly/internal/capturetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pcapBytes is a pcap file in either byte order, with nanosecond or
// microsecond timestamps, holding the records given.
func pcapBytes(order binary.ByteOrder, nanos bool, snaplen uint32, records ...[]byte) []byte {
	var b bytes.Buffer
	magic := uint32(0xa1b2c3d4)
	if nanos {
		magic = 0xa1b23c4d
	}
	hdr := make([]byte, 24)
	order.PutUint32(hdr[0:], magic)
	order.PutUint16(hdr[4:], 2)
	order.PutUint16(hdr[6:], 4)
	order.PutUint32(hdr[16:], snaplen)
	order.PutUint32(hdr[20:], 101) // raw IP
	b.Write(hdr)
	for i, r := range records {
		rec := make([]byte, 16)
		order.PutUint32(rec[0:], uint32(1000+i))
		order.PutUint32(rec[4:], 7)
		order.PutUint32(rec[8:], uint32(len(r)))
		order.PutUint32(rec[12:], uint32(len(r)))
		b.Write(rec)
		b.Write(r)
	}
	return b.Bytes()
}

// TestPcapRecords: records are read in both byte orders and timestamp
// resolutions, empty ones too, and whole when they are larger than the
// read buffer.
func TestPcapRecords(t *testing.T) {
	large := bytes.Repeat([]byte{0xab}, readBufferSize+readBufferSize/2)
	small := []byte{1, 2, 3, 4, 5}
	for _, tc := range []struct {
		name  string
		order binary.ByteOrder
		nanos bool
		frac  time.Duration
	}{
		{"little-endian µs", binary.LittleEndian, false, 7 * time.Microsecond},
		{"big-endian ns", binary.BigEndian, true, 7 * time.Nanosecond},
	} {
		for _, mode := range openModes {
			t.Run(tc.name+"/"+mode.name, func(t *testing.T) {
				file := pcapBytes(tc.order, tc.nanos, 4<<20, small, large, small, nil)
				r, err := mode.open(file, true)
				require.NoError(t, err)
				for i, want := range [][]byte{small, large, small, {}} {
					data, ci, _, err := r.Next()
					require.NoError(t, err, "record %d", i)
					assert.True(t, bytes.Equal(want, data), "record %d: %d bytes, want %d", i, len(data), len(want))
					assert.Equal(t, time.Unix(int64(1000+i), 0).Add(tc.frac).UTC(), ci.Timestamp)
					assert.Equal(t, len(want), ci.CaptureLength)
				}
				_, _, _, err = r.Next()
				require.ErrorIs(t, err, io.EOF)
			})
		}
	}
}

// openModes are the two ways of reading a capture: through a read buffer
// (Open; seekable says whether the size of the file is known) and in
// memory (OpenBytes, which always knows it).
var openModes = []struct {
	name string
	open func(file []byte, seekable bool) (*Reader, error)
}{
	{"buffered", func(file []byte, seekable bool) (*Reader, error) {
		var src io.ReaderAt
		if seekable {
			src = bytes.NewReader(file)
		}
		return Open(bytes.NewReader(file), src, int64(len(file)))
	}},
	{"in memory", func(file []byte, _ bool) (*Reader, error) { return OpenBytes(file) }},
}

// TestPcapRecordsRejects: a record longer than the snap length, or
// capturing more than the packet's length, is a corrupt capture named by
// its packet number; a record cut short, in its header, in its data or in
// the data of one larger than the read buffer, is a truncated capture.
func TestPcapRecordsRejects(t *testing.T) {
	ok := []byte{1, 2, 3}
	large := bytes.Repeat([]byte{0xcd}, readBufferSize+100)
	for _, tc := range []struct {
		name string
		file func() []byte
		want string
	}{
		{"longer than the snap length", func() []byte {
			// The header's snap length (above minSnaplen, so kept); the
			// record claims one byte more, which it need not hold.
			f := pcapBytes(binary.LittleEndian, false, 1<<20, ok, ok)
			binary.LittleEndian.PutUint32(f[24+16+len(ok)+8:], 1<<20+1)
			binary.LittleEndian.PutUint32(f[24+16+len(ok)+12:], 1<<20+1)
			return f
		}, "packet 2: corrupt capture: capture length exceeds snap length: 1048577 > 1048576"},
		{"more than the packet's length", func() []byte {
			f := pcapBytes(binary.BigEndian, false, 100, ok, make([]byte, 50))
			binary.BigEndian.PutUint32(f[24+16+len(ok)+12:], 49)
			return f
		}, "packet 2: corrupt capture: capture length exceeds original packet length: 50 > 49"},
		{"cut in a record header", func() []byte { f := pcapBytes(binary.LittleEndian, true, 100, ok, ok); return f[:len(f)-len(ok)-5] },
			"packet 2: capture truncated"},
		{"cut in the data", func() []byte { f := pcapBytes(binary.LittleEndian, true, 100, ok, ok); return f[:len(f)-1] },
			"packet 2: capture truncated"},
		{"cut in a record larger than the read buffer", func() []byte {
			f := pcapBytes(binary.LittleEndian, false, 4<<20, ok, large)
			return f[:len(f)-1]
		}, "packet 2: capture truncated"},
	} {
		// Read from a file, and from a stream (a pipe, a gzip member),
		// where the size of the file cannot tell a cut record.
		// In memory, the size is always known.
		for _, mode := range openModes {
			for _, seekable := range []bool{true, false} {
				t.Run(fmt.Sprintf("%s/%s/seekable=%v", tc.name, mode.name, seekable), func(t *testing.T) {
					file := tc.file()
					r, err := mode.open(file, seekable)
					require.NoError(t, err)
					data, _, _, err := r.Next()
					require.NoError(t, err)
					assert.Equal(t, ok, data)
					_, _, _, err = r.Next()
					require.Error(t, err)
					assert.Contains(t, err.Error(), tc.want)
					_, _, _, err = r.Next()
					assert.ErrorIs(t, err, io.EOF, "the capture ends at its first error")
				})
			}
		}
	}
}

// TestOpenBytesSameFrames: on every shipped capture, reading it in memory
// gives the frames, capture information and link types that reading it
// through a read buffer gives, and the same end; the bytes before
// Consumed may change after each frame (the command releases their pages)
// without changing the frame.
func TestOpenBytesSameFrames(t *testing.T) {
	files, err := filepath.Glob(ct.Testdata("captures", "*"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	inMemory := 0
	for _, name := range files {
		t.Run(filepath.Base(name), func(t *testing.T) {
			file, err := os.ReadFile(name)
			require.NoError(t, err)
			want, werr := Open(bytes.NewReader(file), bytes.NewReader(file), int64(len(file)))
			mem := bytes.Clone(file)
			got, gerr := OpenBytes(mem)
			if werr != nil {
				assert.EqualError(t, gerr, werr.Error())
				return
			}
			require.NoError(t, gerr)
			assert.Equal(t, want.Format(), got.Format())
			assert.Equal(t, want.LinkType(), got.LinkType())
			if got.mem != nil {
				inMemory++
			}
			for i := 1; ; i++ {
				wd, wci, wl, werr := want.Next()
				gd, gci, gl, gerr := got.Next()
				clear(mem[:got.Consumed()])
				if werr != nil {
					assert.Equal(t, werr, gerr, "packet %d", i)
					break
				}
				require.NoError(t, gerr, "packet %d", i)
				require.True(t, bytes.Equal(wd, gd), "packet %d: frame differs", i)
				require.Equal(t, wci, gci, "packet %d", i)
				require.Equal(t, wl, gl, "packet %d", i)
			}
		})
	}
	assert.Positive(t, inMemory, "some pcap file was read in memory")
}
