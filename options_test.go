package reassembly

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// kitNumericOptionFields lists the int and time.Duration fields of
// SafeAssemblerOptions, found by reflection so that fields added later are
// covered too.
func kitNumericOptionFields(t *testing.T) []string {
	t.Helper()
	var names []string
	typ := reflect.TypeFor[SafeAssemblerOptions]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		if f.IsExported() && (f.Type.Kind() == reflect.Int || f.Type == reflect.TypeFor[time.Duration]()) {
			names = append(names, f.Name)
		}
	}
	require.Contains(t, names, "MaxBufferedPagesTotal")
	require.Contains(t, names, "MaxBufferedPagesPerConnection")
	require.Contains(t, names, "ConnectionTimeout")
	require.Contains(t, names, "FlushInterval")
	return names
}

// kitOffByDefault are the numeric options whose zero value is their
// documented default, meaning off: no delivered bytes kept, no depth.
var kitOffByDefault = map[string]bool{"ConflictWindow": true, "ReassemblyDepth": true, "ChecksumPolicy": true}

func kitSetField(o *SafeAssemblerOptions, name string, v int64) {
	reflect.ValueOf(o).Elem().FieldByName(name).SetInt(v)
}

func kitGetField(o SafeAssemblerOptions, name string) int64 {
	return reflect.ValueOf(o).FieldByName(name).Int()
}

// Property: every numeric option set negative — alone, or among valid
// values — is rejected by Validate and by NewSafeAssembler with an error
// wrapping ErrInvalidOptions whose message names that field, and no
// assembler is returned.
func TestSafeOptionsNegative(t *testing.T) {
	t.Parallel()
	for _, name := range kitNumericOptionFields(t) {
		for _, base := range []SafeAssemblerOptions{
			{},
			{MaxBufferedPagesTotal: 10, MaxBufferedPagesPerConnection: 5, ConnectionTimeout: time.Minute, FlushInterval: time.Second},
		} {
			for _, v := range []int64{-1, -1 << 40} {
				o := base
				kitSetField(&o, name, v)
				err := o.Validate()
				require.Error(t, err, "%s = %d", name, v)
				require.True(t, errors.Is(err, ErrInvalidOptions), "%s: error %q does not wrap ErrInvalidOptions", name, err)
				require.Contains(t, err.Error(), name, "the message names the field")

				o = base
				kitSetField(&o, name, v)
				pool := NewSafeStreamPool(newKitFactory(), 0)
				a, err := NewSafeAssembler(pool, o)
				require.ErrorIs(t, err, ErrInvalidOptions, "%s", name)
				require.Contains(t, err.Error(), name)
				require.Nil(t, a)
			}
		}
	}
}

// Property: contradictory options — more pages per connection than in
// total, a flush interval longer than the connection timeout, also when
// the other side of the comparison is a default — are rejected with an
// error wrapping ErrInvalidOptions that names the field.
func TestSafeOptionsContradictions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		opts  SafeAssemblerOptions
		field string
	}{
		{"per connection above total", SafeAssemblerOptions{MaxBufferedPagesTotal: 5, MaxBufferedPagesPerConnection: 10}, "MaxBufferedPagesPerConnection"},
		{"per connection above default total", SafeAssemblerOptions{MaxBufferedPagesPerConnection: DefaultMaxBufferedPagesTotal + 1}, "MaxBufferedPagesPerConnection"},
		{"flush interval above timeout", SafeAssemblerOptions{ConnectionTimeout: time.Minute, FlushInterval: 2 * time.Minute}, "FlushInterval"},
		{"flush interval above default timeout", SafeAssemblerOptions{FlushInterval: DefaultConnectionTimeout + time.Second}, "FlushInterval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := tc.opts
			err := o.Validate()
			require.Error(t, err)
			require.True(t, errors.Is(err, ErrInvalidOptions), "error %q does not wrap ErrInvalidOptions", err)
			require.Contains(t, err.Error(), tc.field, "the message names the field")

			pool := NewSafeStreamPool(newKitFactory(), 0)
			a, err := NewSafeAssembler(pool, tc.opts)
			require.ErrorIs(t, err, ErrInvalidOptions)
			require.Contains(t, err.Error(), tc.field)
			require.Nil(t, a)
		})
	}
}

// Property: a nil pool is invalid too, with an error wrapping
// ErrInvalidOptions, and no panic.
func TestSafeOptionsNilPool(t *testing.T) {
	t.Parallel()
	var a *SafeAssembler
	var err error
	require.NotPanics(t, func() { a, err = NewSafeAssembler(nil, SafeAssemblerOptions{}) })
	require.ErrorIs(t, err, ErrInvalidOptions)
	require.Nil(t, a)
}

// Property: Validate fills every zero numeric field with a positive
// default, except ConflictWindow and ReassemblyDepth, whose zero means
// off — the documented ones for the four limits of the design, a
// per-connection default never above the total, a flush interval never
// above the timeout — and a logger; it keeps the fields set, accepts the
// boundary cases (equal limits, interval equal to the timeout), and is
// idempotent.
func TestSafeOptionsDefaults(t *testing.T) {
	t.Parallel()
	fields := kitNumericOptionFields(t)
	for _, tc := range []struct {
		name string
		in   SafeAssemblerOptions
		want map[string]int64
	}{
		{"all zero", SafeAssemblerOptions{}, map[string]int64{
			"MaxBufferedPagesTotal":         DefaultMaxBufferedPagesTotal,
			"MaxBufferedPagesPerConnection": DefaultMaxBufferedPagesPerConnection,
			"ConnectionTimeout":             int64(DefaultConnectionTimeout),
			"FlushInterval":                 int64(DefaultFlushInterval),
		}},
		{"small total caps the per-connection default", SafeAssemblerOptions{MaxBufferedPagesTotal: 300}, map[string]int64{
			"MaxBufferedPagesTotal":         300,
			"MaxBufferedPagesPerConnection": 300,
		}},
		{"short timeout caps the interval default", SafeAssemblerOptions{ConnectionTimeout: time.Second}, map[string]int64{
			"ConnectionTimeout": int64(time.Second),
			"FlushInterval":     int64(time.Second),
		}},
		{"boundaries are valid and kept", SafeAssemblerOptions{
			MaxBufferedPagesTotal: 7, MaxBufferedPagesPerConnection: 7,
			ConnectionTimeout: time.Minute, FlushInterval: time.Minute, DisableBackgroundFlush: true,
		}, map[string]int64{
			"MaxBufferedPagesTotal": 7, "MaxBufferedPagesPerConnection": 7,
			"ConnectionTimeout": int64(time.Minute), "FlushInterval": int64(time.Minute),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := tc.in
			require.NoError(t, o.Validate())
			require.NotNil(t, o.Logger, "a logger is filled in")
			require.Equal(t, tc.in.DisableBackgroundFlush, o.DisableBackgroundFlush)
			for _, name := range fields {
				if kitOffByDefault[name] {
					require.Equal(t, kitGetField(tc.in, name), kitGetField(o, name), "%s is off at zero and kept", name)
					continue
				}
				require.Positive(t, kitGetField(o, name), "%s left without a default", name)
				if want, ok := tc.want[name]; ok {
					require.Equal(t, want, kitGetField(o, name), name)
				}
			}
			again := o
			require.NoError(t, again.Validate(), "Validate is idempotent")
			require.Equal(t, o, again)
		})
	}
}

// Property: the defaults are the documented ones: limits on, a 2-minute
// timeout, a 10-second flush interval.
func TestSafeOptionsDefaultValues(t *testing.T) {
	t.Parallel()
	require.Equal(t, 50000, DefaultMaxBufferedPagesTotal)
	require.Equal(t, 1000, DefaultMaxBufferedPagesPerConnection)
	require.Equal(t, 2*time.Minute, DefaultConnectionTimeout)
	require.Equal(t, 10*time.Second, DefaultFlushInterval)
}

// Property: SafeStreamPoolOptions.Validate fills the water marks from the
// cap and rejects negatives, marks above the cap or crossed, and pressure
// settings without a cap, naming the field.
func TestSafeStreamPoolOptionsValidate(t *testing.T) {
	t.Parallel()
	o := SafeStreamPoolOptions{MaxConnections: 1000}
	require.NoError(t, o.Validate())
	assert.Equal(t, 900, o.HighWaterMark)
	assert.Equal(t, 700, o.LowWaterMark)
	p, err := NewSafeStreamPoolWithOptions(nil, SafeStreamPoolOptions{MaxConnections: 1000, HighWaterMark: 500})
	require.NoError(t, err)
	ps := p.Stats()
	assert.EqualValues(t, 500, ps.HighWaterMark)
	assert.EqualValues(t, 500, ps.LowWaterMark, "the default low-water mark is at most the high one")
	for _, c := range []struct {
		o     SafeStreamPoolOptions
		field string
	}{
		{SafeStreamPoolOptions{MaxConnections: -1}, "MaxConnections"},
		{SafeStreamPoolOptions{MaxConnections: 10, HighWaterMark: -1}, "HighWaterMark"},
		{SafeStreamPoolOptions{MaxConnections: 10, LowWaterMark: -1}, "LowWaterMark"},
		{SafeStreamPoolOptions{MaxConnections: 10, HighWaterMark: 11}, "HighWaterMark"},
		{SafeStreamPoolOptions{MaxConnections: 10, HighWaterMark: 5, LowWaterMark: 6}, "LowWaterMark"},
		{SafeStreamPoolOptions{RefuseAtLimit: true}, "MaxConnections"},
	} {
		_, err := NewSafeStreamPoolWithOptions(nil, c.o)
		require.ErrorIs(t, err, ErrInvalidOptions, "%+v", c.o)
		assert.Contains(t, err.Error(), c.field)
	}
	bad := SafeAssemblerOptions{ConnectionTimeout: time.Second, EmergencyTimeout: 2 * time.Second}
	require.ErrorIs(t, bad.Validate(), ErrInvalidOptions)
	neg := SafeAssemblerOptions{EmergencyTimeout: -1}
	require.ErrorIs(t, neg.Validate(), ErrInvalidOptions)
	def := SafeAssemblerOptions{ConnectionTimeout: 30 * time.Second}
	require.NoError(t, def.Validate())
	assert.Equal(t, 3*time.Second, def.EmergencyTimeout)
}
