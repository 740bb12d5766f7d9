package reassembly

import (
	"log/slog"
	"reflect"
	"strings"
	"unicode"
)

// This file exports the statistics snapshots to monitoring systems without
// a dependency: Map for expvar and JSON, Metrics for anything with named,
// typed series (a Prometheus collector wraps it in a few lines), and
// LogValue for log/slog.
//
// Names are derived from the field names, in snake_case ("BytesInUse" is
// "bytes_in_use"), and nested snapshots are prefixed with their field
// ("page_cache_pages_in_use"). Fields added to the snapshots later appear
// without further work; the tests insist that each has a help text here.

// MetricKind tells how a Metric's value behaves over time.
type MetricKind int

const (
	// MetricCounter is a total that only grows while its source lives.
	MetricCounter MetricKind = iota
	// MetricGauge is a level that goes up and down.
	MetricGauge
)

// String returns "counter" or "gauge".
func (k MetricKind) String() string {
	if k == MetricCounter {
		return "counter"
	}
	return "gauge"
}

// Metric is one figure of a statistics snapshot, named and described for a
// monitoring system.
type Metric struct {
	// Name is the field's name in snake_case, prefixed by the nested
	// snapshot's ("page_cache_pages_in_use"); add your own namespace.
	Name string
	// Help is a one-line description.
	Help string
	// Kind tells a counter from a gauge.
	Kind MetricKind
	// Value is the figure; booleans are 0 or 1.
	Value float64
}

// metricInfo documents one field of a snapshot.
type metricInfo struct {
	help string
	kind MetricKind
}

func counterInfo(help string) metricInfo { return metricInfo{help, MetricCounter} }
func gaugeInfo(help string) metricInfo   { return metricInfo{help, MetricGauge} }

// metricInfos documents the fields of each snapshot type.
var metricInfos = map[reflect.Type]map[string]metricInfo{
	reflect.TypeFor[AssemblerStats](): {
		"PacketsProcessed":      counterInfo("Packets handed to the assembler."),
		"BytesProcessed":        counterInfo("Payload bytes handed to the assembler."),
		"Errors":                counterInfo("Assembler calls that returned an error."),
		"BytesDelivered":        counterInfo("Payload bytes delivered to Streams, each once."),
		"BytesOverlap":          counterInfo("Retransmitted copies of bytes already delivered."),
		"BytesOverwritten":      counterInfo("Copies of buffered bytes that lost an overlap to another copy."),
		"BytesDiscarded":        counterInfo("Payload bytes dropped, for any reason."),
		"BytesRejected":         counterInfo("Payload bytes in packets that Stream.Accept refused."),
		"BytesAfterClose":       counterInfo("Payload bytes for a closed direction or a refused connection."),
		"BytesBeforeStart":      counterInfo("Payload bytes buffered before the start of their direction."),
		"BytesAfterEnd":         counterInfo("Payload bytes buffered when their direction ended."),
		"BytesBeyondDepth":      counterInfo("Payload bytes past their direction's reassembly depth."),
		"BytesOnReset":          counterInfo("Payload bytes carried by RST segments, never part of a stream."),
		"BytesBadChecksum":      counterInfo("Payload bytes in segments dropped for a wrong TCP checksum."),
		"BytesOutOfWindow":      counterInfo("Payload bytes in segments beyond the window their receiver advertised."),
		"BytesAfterReset":       counterInfo("Payload bytes in segments sent after an RST the host accepted ended their connection."),
		"BadChecksums":          counterInfo("Segments whose TCP checksum was wrong."),
		"UnverifiedChecksums":   counterInfo("Segments whose TCP checksum could not be verified (no header bytes, truncated, not IP)."),
		"OutOfWindow":           counterInfo("Segments with data entirely beyond the window their receiver advertised."),
		"ResetsOutOfWindow":     counterInfo("RST segments outside their receiver's window, which end nothing."),
		"ResetsNotExact":        counterInfo("RST segments inside their receiver's window but not at its next byte, which end nothing."),
		"OverlapConflicts":      counterInfo("Overlaps whose bytes differed from the copy held, each reported to OnConflict."),
		"ConflictBytes":         counterInfo("Bytes in the overlaps whose content differed from the copy held."),
		"DepthReached":          counterInfo("Connection directions that reached their reassembly depth."),
		"Gaps":                  counterInfo("Holes skipped in a stream, each reported to its Stream."),
		"GapBytes":              counterInfo("Bytes in the holes skipped."),
		"ForcedSkips":           counterInfo("Holes skipped because a buffer limit was reached."),
		"ForcedGapBytes":        counterInfo("Bytes in the holes skipped because a buffer limit was reached."),
		"AckedGaps":             counterInfo("Holes skipped because the peer acknowledged bytes past them."),
		"AckedGapBytes":         counterInfo("Bytes in the holes skipped because the peer acknowledged bytes past them."),
		"Deliveries":            counterInfo("Stream.ReassembledSG calls."),
		"StreamsCompleted":      counterInfo("Stream.ReassemblyComplete calls."),
		"ConnectionsFlush":      counterInfo("Connection directions a flush pushed over a hole."),
		"ConnectionsClosed":     counterInfo("Connection directions a flush closed."),
		"ConnectionTimeouts":    counterInfo("Connection directions closed for being idle past the connection timeout."),
		"ConnectionsReused":     counterInfo("Connections completed because a SYN opened a new conversation on their 4-tuple."),
		"PanicsRecovered":       counterInfo("Panics of Stream or StreamFactory code recovered by the assembler."),
		"KeptBytesDropped":      counterInfo("Bytes kept with KeepFrom that the limits did not leave room for (delivered already)."),
		"BytesDeliveredAcked":   counterInfo("Bytes delivered once the other side acknowledged them (AckedDelivery)."),
		"BytesDeliveredUnacked": counterInfo("Bytes delivered before the other side acknowledged them (AckedDelivery), for any reason."),
		"BytesUnackedAtEnd":     counterInfo("Unacknowledged bytes delivered when their connection ended (RST, both FINs, FlushAll, Close)."),
		"BytesUnackedAtLimit":   counterInfo("Unacknowledged bytes delivered because a buffer limit or an eviction forced them."),
		"BytesUnackedByFlush":   counterInfo("Unacknowledged bytes delivered because a flush or a connection timeout forced them."),
		"BytesUnackedOneSided":  counterInfo("Unacknowledged bytes delivered in directions whose other side never acknowledged anything."),
		"OneSidedFallbacks":     counterInfo("Connection directions that stopped waiting for acknowledgements (one-sided capture)."),
		"EvictedUnanswered":     counterInfo("Connections evicted at the connection limit that never heard from the other side."),
		"EvictedIdle":           counterInfo("Answered connections evicted at the connection limit, the least recently seen first."),
		"EmergencyTimeouts":     counterInfo("Unanswered connections closed after the emergency timeout in emergency mode."),
	},
	reflect.TypeFor[PoolStats](): {
		"ActiveConnections":   gaugeInfo("Connections in the pool."),
		"TotalCreated":        counterInfo("Connections created, each with one Stream."),
		"ConnectionsRefused":  counterInfo("Packets refused because their new connection would pass the connection limit."),
		"ConnectionsDeclined": counterInfo("Packets whose new connection the StreamFactory declined (a nil Stream)."),
		"ConnectionsRemoved":  counterInfo("Connections that left the pool."),
		"RecentlyClosed":      gaugeInfo("Completed connections remembered so that late copies of their packets are dropped."),
		"MaxConnections":      gaugeInfo("The pool's connection limit, 0 when there is none."),
		"PoolClosed":          gaugeInfo("1 once the pool was closed."),
		"PanicsRecovered":     counterInfo("Panics of Stream code recovered while the pool closed."),
		"EvictedUnanswered":   counterInfo("Connections evicted at the connection limit that never heard from the other side."),
		"EvictedIdle":         counterInfo("Answered connections evicted at the connection limit, the least recently seen first."),
		"EmergencyTimeouts":   counterInfo("Unanswered connections closed after the emergency timeout in emergency mode."),
		"Emergency":           gaugeInfo("1 while the pool is in emergency mode (between its high-water and low-water marks)."),
		"Emergencies":         counterInfo("Times the pool entered emergency mode."),
		"HighWaterMark":       gaugeInfo("Live connections at which the pool enters emergency mode, 0 without a limit."),
		"LowWaterMark":        gaugeInfo("Live connections at which the pool leaves emergency mode."),
	},
	reflect.TypeFor[PageCacheStats](): {
		"PagesInUse":    gaugeInfo("Pages holding buffered bytes."),
		"PagesPeak":     gaugeInfo("Most pages in use at once."),
		"BytesInUse":    gaugeInfo("Memory charged for the pages in use, overhead included."),
		"QueuedBytes":   gaugeInfo("Payload bytes buffered out of order."),
		"PagesReleased": counterInfo("Free pages released to the garbage collector."),
	},
	reflect.TypeFor[ReaderStats](): {
		"Buffered":       gaugeInfo("Bytes waiting in ReaderStreams to be read."),
		"PeakBuffered":   gaugeInfo("Most bytes one ReaderStream held at once."),
		"BytesIn":        counterInfo("Bytes delivered to ReaderStreams."),
		"BytesRead":      counterInfo("Bytes returned by ReaderStream.Read."),
		"BytesDropped":   counterInfo("Bytes dropped because a ReaderStream's buffer was full."),
		"BytesDiscarded": counterInfo("Bytes discarded because the reader closed its ReaderStream."),
		"Gaps":           counterInfo("Gaps reported to readers."),
		"BytesSkipped":   counterInfo("Bytes the assembler skipped over before delivering to a ReaderStream."),
		"Stalls":         counterInfo("Waits for a reader to make room that expired."),
	},
}

// snakeCase turns a Go field name into snake_case: "BytesInUse" is
// "bytes_in_use", "TCPFlows" is "tcp_flows".
func snakeCase(s string) string {
	rs := []rune(s)
	var b strings.Builder
	for i, r := range rs {
		if unicode.IsUpper(r) {
			if i > 0 && (!unicode.IsUpper(rs[i-1]) || (i+1 < len(rs) && unicode.IsLower(rs[i+1]))) {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// walkStats calls fn for every numeric or boolean field of the snapshot v,
// descending into nested snapshots.
func walkStats(v reflect.Value, prefix string, fn func(name string, info metricInfo, value int64)) {
	t := v.Type()
	infos := metricInfos[t]
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		fv := v.Field(i)
		name := prefix + snakeCase(f.Name)
		info, ok := infos[f.Name]
		if !ok {
			info = gaugeInfo(strings.ReplaceAll(snakeCase(f.Name), "_", " ") + ".")
		}
		switch fv.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			fn(name, info, fv.Int())
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
			fn(name, info, int64(fv.Uint()))
		case reflect.Bool:
			var b int64
			if fv.Bool() {
				b = 1
			}
			fn(name, info, b)
		case reflect.Struct:
			walkStats(fv, name+"_", fn)
		}
	}
}

func statsMap(v any) map[string]int64 {
	m := make(map[string]int64)
	walkStats(reflect.ValueOf(v), "", func(name string, _ metricInfo, value int64) {
		m[name] = value
	})
	return m
}

func statsMetrics(v any) []Metric {
	var ms []Metric
	walkStats(reflect.ValueOf(v), "", func(name string, info metricInfo, value int64) {
		ms = append(ms, Metric{Name: name, Help: info.help, Kind: info.kind, Value: float64(value)})
	})
	return ms
}

func statsLogValue(v any) slog.Value {
	var attrs []slog.Attr
	walkStats(reflect.ValueOf(v), "", func(name string, _ metricInfo, value int64) {
		attrs = append(attrs, slog.Int64(name, value))
	})
	return slog.GroupValue(attrs...)
}

// Map returns the snapshot as name → value, ready for expvar.Func or JSON;
// the names are those of Metrics.
func (s AssemblerStats) Map() map[string]int64 { return statsMap(s) }

// Metrics returns the snapshot's figures in field order, with help texts
// and kinds, for a monitoring system's collector.
func (s AssemblerStats) Metrics() []Metric { return statsMetrics(s) }

// LogValue makes the snapshot log through log/slog as a group of its
// figures.
func (s AssemblerStats) LogValue() slog.Value { return statsLogValue(s) }

// Map returns the snapshot as name → value, ready for expvar.Func or JSON;
// the names are those of Metrics.
func (s PoolStats) Map() map[string]int64 { return statsMap(s) }

// Metrics returns the snapshot's figures in field order, with help texts
// and kinds, for a monitoring system's collector.
func (s PoolStats) Metrics() []Metric { return statsMetrics(s) }

// LogValue makes the snapshot log through log/slog as a group of its
// figures.
func (s PoolStats) LogValue() slog.Value { return statsLogValue(s) }

// Map returns the snapshot as name → value, ready for expvar.Func or JSON;
// the names are those of Metrics.
func (s ReaderStats) Map() map[string]int64 { return statsMap(s) }

// Metrics returns the snapshot's figures in field order, with help texts
// and kinds, for a monitoring system's collector.
func (s ReaderStats) Metrics() []Metric { return statsMetrics(s) }

// LogValue makes the snapshot log through log/slog as a group of its
// figures.
func (s ReaderStats) LogValue() slog.Value { return statsLogValue(s) }

// Map returns the snapshot as name → value, ready for expvar.Func or JSON;
// the names are those of Metrics.
func (s PageCacheStats) Map() map[string]int64 { return statsMap(s) }

// Metrics returns the snapshot's figures in field order, with help texts
// and kinds, for a monitoring system's collector.
func (s PageCacheStats) Metrics() []Metric { return statsMetrics(s) }

// LogValue makes the snapshot log through log/slog as a group of its
// figures.
func (s PageCacheStats) LogValue() slog.Value { return statsLogValue(s) }
