package reassembly

// Tests of the statistics export (stats_export.go): every field of every
// snapshot is exported with a help text and the right kind, names are
// stable snake_case, values are the fields', and the snapshots work with
// expvar and log/slog. Helpers are prefixed se.

import (
	"bytes"
	"encoding/json"
	"expvar"
	"log/slog"
	"reflect"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSnakeCase(t *testing.T) {
	for in, want := range map[string]string{
		"Errors":           "errors",
		"BytesInUse":       "bytes_in_use",
		"PacketsProcessed": "packets_processed",
		"TCPFlows":         "tcp_flows",
		"MaxTCP":           "max_tcp",
		"PageCache":        "page_cache",
		"A":                "a",
	} {
		assert.Equal(t, want, snakeCase(in), in)
	}
}

// seFields lists the exported numeric and boolean leaf fields of a
// snapshot type, with their Go paths.
func seFields(typ reflect.Type, prefix string) []string {
	var out []string
	for i := range typ.NumField() {
		f := typ.Field(i)
		if !f.IsExported() {
			continue
		}
		if f.Type.Kind() == reflect.Struct {
			out = append(out, seFields(f.Type, prefix+f.Name+".")...)
			continue
		}
		out = append(out, prefix+f.Name)
	}
	return out
}

func TestEveryStatsFieldIsDocumented(t *testing.T) {
	for _, typ := range []reflect.Type{
		reflect.TypeFor[AssemblerStats](), reflect.TypeFor[PoolStats](),
		reflect.TypeFor[PageCacheStats](), reflect.TypeFor[ReaderStats](),
	} {
		infos, ok := metricInfos[typ]
		require.True(t, ok, "no metric descriptions for %v", typ)
		for i := range typ.NumField() {
			f := typ.Field(i)
			switch f.Type.Kind() {
			case reflect.Struct:
				assert.Contains(t, metricInfos, f.Type, "%v.%s: nested snapshot without descriptions", typ, f.Name)
			case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
				reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Bool:
				info, ok := infos[f.Name]
				if assert.True(t, ok, "%v.%s has no help text in stats_export.go's metricInfos", typ, f.Name) {
					assert.NotEmpty(t, info.help)
				}
			default:
				t.Errorf("%v.%s: a %v field cannot be exported as a metric", typ, f.Name, f.Type)
			}
		}
		for name := range infos {
			_, ok := typ.FieldByName(name)
			assert.True(t, ok, "metricInfos describes %v.%s, which does not exist", typ, name)
		}
	}
}

var seNameRE = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

func TestMetricsMatchFields(t *testing.T) {
	// Give every field a distinct value, and find it under its name.
	var s AssemblerStats
	v := reflect.ValueOf(&s).Elem()
	n := int64(1)
	var fill func(v reflect.Value)
	fill = func(v reflect.Value) {
		for i := range v.NumField() {
			switch f := v.Field(i); f.Kind() {
			case reflect.Int64:
				f.SetInt(n)
				n++
			case reflect.Struct:
				fill(f)
			}
		}
	}
	fill(v)
	m := s.Map()
	ms := s.Metrics()
	fields := seFields(reflect.TypeFor[AssemblerStats](), "")
	require.Len(t, m, len(fields))
	require.Len(t, ms, len(fields))
	for i, path := range fields {
		metric := ms[i]
		assert.Regexp(t, seNameRE, metric.Name)
		want := v.FieldByIndex(seIndex(reflect.TypeFor[AssemblerStats](), path)).Int()
		assert.Equal(t, float64(want), metric.Value, path)
		assert.Equal(t, want, m[metric.Name], path)
		assert.NotEmpty(t, metric.Help)
	}
	assert.Equal(t, s.PacketsProcessed, m["packets_processed"])
	assert.Equal(t, s.PageCache.PagesInUse, m["page_cache_pages_in_use"])
	kinds := map[string]MetricKind{}
	for _, metric := range ms {
		kinds[metric.Name] = metric.Kind
	}
	assert.Equal(t, MetricCounter, kinds["packets_processed"])
	assert.Equal(t, MetricGauge, kinds["page_cache_pages_in_use"])
	assert.Equal(t, "counter", MetricCounter.String())
	assert.Equal(t, "gauge", MetricGauge.String())

	ps := PoolStats{ActiveConnections: 3, PoolClosed: true, MaxConnections: 10}
	pm := ps.Map()
	assert.Equal(t, int64(1), pm["pool_closed"], "booleans are 0 or 1")
	assert.Equal(t, int64(3), pm["active_connections"])
	for _, metric := range ps.Metrics() {
		assert.Regexp(t, seNameRE, metric.Name)
		if metric.Name == "active_connections" {
			assert.Equal(t, MetricGauge, metric.Kind)
		}
	}
	rs := ReaderStats{BytesDropped: 7}
	assert.Equal(t, int64(7), rs.Map()["bytes_dropped"])
	assert.Len(t, rs.Metrics(), reflect.TypeFor[ReaderStats]().NumField())
	assert.Equal(t, int64(0), PageCacheStats{}.Map()["pages_in_use"])
	assert.Len(t, PageCacheStats{}.Metrics(), reflect.TypeFor[PageCacheStats]().NumField())
}

func seIndex(typ reflect.Type, path string) []int {
	var idx []int
	for _, name := range regexp.MustCompile(`\.`).Split(path, -1) {
		f, _ := typ.FieldByName(name)
		idx = append(idx, f.Index...)
		typ = f.Type
	}
	return idx
}

// seTraffic runs two packets of one connection (a SYN and 5 bytes)
// through a SafeAssembler.
func seTraffic(t *testing.T) (*SafeAssembler, *SafeStreamPool) {
	t.Helper()
	a, pool, fd := rdSetup(t, &ReaderFactory{})
	c := kitConnN(1)
	fd.send(c, false, "S", 0, nil)
	fd.send(c, false, "A", 0, []byte("hello"))
	return a, pool
}

func TestStatsWithExpvar(t *testing.T) {
	a, pool := seTraffic(t)
	// expvar.Publish panics on a name used twice, so -count=2 needs a
	// fresh name per run.
	name := "reassembly_test_" + t.Name() + "_" + time.Now().Format("150405.000000000")
	expvar.Publish(name, expvar.Func(func() any {
		return map[string]any{"assembler": a.Stats().Map(), "pool": pool.Stats().Map()}
	}))
	var got struct {
		Assembler map[string]int64 `json:"assembler"`
		Pool      map[string]int64 `json:"pool"`
	}
	require.NoError(t, json.Unmarshal([]byte(expvar.Get(name).String()), &got))
	assert.Equal(t, int64(2), got.Assembler["packets_processed"])
	assert.Equal(t, int64(5), got.Assembler["bytes_processed"])
	assert.Equal(t, int64(1), got.Pool["active_connections"])
	assert.Equal(t, int64(0), got.Pool["pool_closed"])
}

func TestStatsLogThroughSlog(t *testing.T) {
	a, pool := seTraffic(t)
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	logger.Info("reassembly stats", "assembler", a.Stats(), "pool", pool.Stats())
	var rec map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &rec))
	asm, ok := rec["assembler"].(map[string]any)
	require.True(t, ok, "the snapshot logs as a group: %s", buf.String())
	assert.InDelta(t, 2, asm["packets_processed"], 0)
	assert.InDelta(t, 5, asm["bytes_processed"], 0)
	pc, ok := asm["page_cache"]
	assert.False(t, ok, "nested figures are flattened, not grouped: %v", pc)
	assert.Contains(t, asm, "page_cache_pages_in_use")
	pl, ok := rec["pool"].(map[string]any)
	require.True(t, ok)
	assert.InDelta(t, 1, pl["total_created"], 0)
	var rbuf bytes.Buffer
	slog.New(slog.NewTextHandler(&rbuf, nil)).Info("readers", "readers", ReaderStats{BytesRead: 9})
	assert.Contains(t, rbuf.String(), "readers.bytes_read=9")
}
