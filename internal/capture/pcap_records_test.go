package capture

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"
	"time"

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
		t.Run(tc.name, func(t *testing.T) {
			file := pcapBytes(tc.order, tc.nanos, 4<<20, small, large, small, nil)
			r, err := Open(bytes.NewReader(file), bytes.NewReader(file), int64(len(file)))
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
