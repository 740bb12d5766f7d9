package main

// summary_json.go: the flows of summary.json, encoded by hand. A capture
// of 10k connections spends a fifth of its user CPU time in
// json.MarshalIndent otherwise; appendFlowJSON writes the same bytes
// (TestFlowJSONMatchesMarshalIndent).

import (
	"encoding/json"
	"strconv"
	"time"
)

// flowIndent is the indentation of a flow in the flows array.
const flowIndent = "\n    "

// appendFlowJSON appends what json.MarshalIndent(f, "    ", "  ") returns.
func appendFlowJSON(b []byte, f *flowSummary) ([]byte, error) {
	const in = flowIndent + "  "
	b = append(b, '{')
	b = appendKey(b, in, "id")
	b = strconv.AppendInt(b, int64(f.ID), 10)
	var err error
	b = appendKey(b, ","+in, "first_seen")
	if b, err = appendTime(b, f.FirstSeen); err != nil {
		return nil, err
	}
	b = appendKey(b, ","+in, "last_seen")
	if b, err = appendTime(b, f.LastSeen); err != nil {
		return nil, err
	}
	b = appendKey(b, ","+in, "client_to_server")
	if b, err = appendDirectionJSON(b, &f.ClientToSv, in); err != nil {
		return nil, err
	}
	b = appendKey(b, ","+in, "server_to_client")
	if b, err = appendDirectionJSON(b, &f.SvToClient, in); err != nil {
		return nil, err
	}
	return append(b, flowIndent+"}"...), nil
}

// appendDirectionJSON appends a directionSummary indented one level
// deeper than indent.
func appendDirectionJSON(b []byte, d *directionSummary, indent string) ([]byte, error) {
	in := indent + "  "
	var err error
	b = append(b, '{')
	b = appendKey(b, in, "src")
	if b, err = appendString(b, d.Src); err != nil {
		return nil, err
	}
	b = appendKey(b, ","+in, "sport")
	b = strconv.AppendUint(b, uint64(d.SrcPort), 10)
	b = appendKey(b, ","+in, "dst")
	if b, err = appendString(b, d.Dst); err != nil {
		return nil, err
	}
	b = appendKey(b, ","+in, "dport")
	b = strconv.AppendUint(b, uint64(d.DstPort), 10)
	if d.File != "" {
		b = appendKey(b, ","+in, "file")
		if b, err = appendString(b, d.File); err != nil {
			return nil, err
		}
	}
	b = appendInt(b, ","+in, "bytes", d.Bytes)
	b = appendInt(b, ","+in, "packets", d.Packets)
	b = appendKey(b, ","+in, "gaps")
	switch {
	case d.Gaps == nil:
		b = append(b, "null"...)
	case len(d.Gaps) == 0:
		b = append(b, "[]"...)
	default:
		gin := in + "  "
		b = append(b, '[')
		for i, g := range d.Gaps {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, gin...)
			b = append(b, '{')
			b = appendInt(b, gin+"  ", "offset", g.Offset)
			b = appendInt(b, ","+gin+"  ", "length", g.Length)
			b = append(b, gin...)
			b = append(b, '}')
		}
		b = append(b, in...)
		b = append(b, ']')
	}
	b = appendInt(b, ","+in, "gap_count", d.GapCount)
	b = appendInt(b, ","+in, "gap_bytes", d.GapBytes)
	if d.GapsOmitted != 0 {
		b = appendInt(b, ","+in, "gaps_omitted", d.GapsOmitted)
	}
	b = appendInt(b, ","+in, "overlap_bytes", d.OverlapBytes)
	b = appendInt(b, ","+in, "overlap_packets", d.OverlapPackets)
	b = appendInt(b, ","+in, "retransmitted_bytes", d.Retransmitted)
	b = appendKey(b, ","+in, "end")
	if b, err = appendString(b, d.End); err != nil {
		return nil, err
	}
	b = append(b, indent...)
	return append(b, '}'), nil
}

// appendKey appends sep, the quoted key (plain ASCII) and ": ".
func appendKey(b []byte, sep, key string) []byte {
	b = append(b, sep...)
	b = append(b, '"')
	b = append(b, key...)
	return append(b, `": `...)
}

func appendInt(b []byte, sep, key string, v int64) []byte {
	return strconv.AppendInt(appendKey(b, sep, key), v, 10)
}

// appendString appends s as encoding/json quotes it: directly when every
// byte is printable ASCII that it leaves alone, through json.Marshal
// otherwise.
func appendString(b []byte, s string) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, err := json.Marshal(s)
			return append(b, q...), err
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"'), nil
}

func appendTime(b []byte, t time.Time) ([]byte, error) {
	q, err := t.MarshalJSON()
	return append(b, q...), err
}
