package reassembly

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
)

// Property: the only engine that hands packets to a pool, capped or not,
// owns it (and takes no connection lock) until a second engine is made: a
// Dump leaves the owner in place, and making a second Assembler ends the
// sole use for every engine for good.
func TestSoleOwnerUntilSecondEngine(t *testing.T) {
	f := newKitFactory()
	pool := NewStreamPool(f)
	a := NewAssembler(pool)
	c := kitConnN(1)
	a.AssembleWithContext(c.flow(false), c.segOff(false, "S", 0, nil), kitAt(kitT0))
	require.Same(t, &a.eng, pool.t.sole.owner.Load(), "the pool's only Assembler owns it")
	require.True(t, a.eng.solo)

	a.AssembleWithContext(c.flow(true), c.segOff(true, "SA", 0, nil), kitAt(kitT0))
	pool.t.dump(kitQuietLogger())
	require.Same(t, &a.eng, pool.t.sole.owner.Load(), "a dump leaves the owner")

	b := NewAssembler(pool)
	require.Nil(t, pool.t.sole.owner.Load(), "a second engine, once made, ends the sole use")
	b.FlushWithOptions(FlushOptions{T: kitT0})
	require.Nil(t, pool.t.sole.owner.Load())
	a.AssembleWithContext(c.flow(false), c.segOff(false, "A", 0, []byte("hello")), kitAt(kitT0))
	require.False(t, a.eng.solo, "the first Assembler locks connections from then on")
	require.Equal(t, "hello", f.stream(c).bytes(0))
	a.FlushAll()
	f.requireSound(t)

	capped := NewSafeStreamPool(newKitFactory(), 10)
	sa := newKitAssembler(t, capped, kitQuietOpts())
	require.NoError(t, c.send(sa, false, "S", 0, "", kitT0))
	require.Same(t, &sa.eng, capped.t.sole.owner.Load(), "a capped pool's only SafeAssembler owns it")
	require.NoError(t, sa.Close())
	require.NoError(t, capped.Close())

	uncapped := NewSafeStreamPool(newKitFactory(), 0)
	su := newKitAssembler(t, uncapped, kitQuietOpts())
	require.NoError(t, c.send(su, false, "S", 0, "", kitT0))
	require.Same(t, &su.eng, uncapped.t.sole.owner.Load(), "an uncapped Safe pool's only SafeAssembler owns it")
	require.NoError(t, uncapped.Close())
	require.Nil(t, uncapped.t.sole.owner.Load(), "the pool's Close ends the sole use")
	require.NoError(t, su.Close())
}

// Property: a second engine, when made, waits for the call its pool's
// sole owner is in, which took no connection lock: a second Assembler
// made (and flushed) while the owner is inside the factory's New for a
// new connection is done only after that call returned, and then
// completes the connection the owner made, once.
func TestSoleOwnerHandOverWaitsForOwnersCall(t *testing.T) {
	kitNoLeaks(t)
	f := newKitFactory()
	pool := NewStreamPool(f)
	a := NewAssembler(pool)
	c := kitConnN(1)
	a.AssembleWithContext(c.flow(false), c.segOff(false, "S", 0, nil), kitAt(kitT0))
	require.Same(t, &a.eng, pool.t.sole.owner.Load())

	entered, barrier := make(chan struct{}), make(chan struct{})
	f.setGate(entered, barrier)
	owner, flushed := make(chan struct{}), make(chan struct{})
	d := kitConnN(2)
	go func() {
		defer close(owner)
		a.AssembleWithContext(d.flow(false), d.segOff(false, "S", 0, nil), kitAt(kitT0))
	}()
	<-entered // the owner is in its call, inside New
	f.setGate(nil, nil)
	go func() {
		defer close(flushed)
		b := NewAssembler(pool) // joins the pool: waits for the owner's call
		b.FlushAll()
	}()
	for range 1000 {
		runtime.Gosched() // time for a FlushAll that does not wait to end
	}
	select {
	case <-flushed:
		t.Fatal("a second Assembler was made and flushed while the owner was in a call")
	default:
	}
	close(barrier)
	<-owner
	<-flushed
	require.Nil(t, pool.t.sole.owner.Load())
	f.requireSound(t)
	require.Len(t, f.all(), 2)
}

// Property: an Assembler made before traffic can be used from a Stream
// callback of another Assembler on the same pool: it joined the pool when
// made, so its first call, inside the callback, waits for nothing (had it
// joined at that call, it would wait for the call the callback is in:
// for ever).
func TestSecondAssemblerUsableFromACallback(t *testing.T) {
	r := &trRec{forceStart: true}
	pool := NewStreamPool(r.ours(t))
	a, b := NewAssembler(pool), NewAssembler(pool)
	// Pinned here, before any traffic: an Assembler that joined only at
	// its first call would make the callback below wait for ever.
	require.True(t, b.eng.joined, "the second Assembler joined the pool when made")
	require.True(t, pool.t.sole.shared.Load(), "its joining ended the sole use before any call")
	outer, inner := kitConnN(1), kitConnN(2)
	called := false
	r.onSG = func(*trStream, trSG, *trDelivery) {
		if !called {
			called = true
			// A bare ACK: b's first call, which opens no connection.
			b.AssembleWithContext(inner.flow(false), inner.segOff(false, "A", 0, nil), kitAt(kitT0))
		}
	}
	a.AssembleWithContext(outer.flow(false), outer.segOff(false, "A", 0, []byte("hello")), kitAt(kitT0))
	require.True(t, called, "the callback ran")
	require.Equal(t, "hello", r.stream(0).data(false))
	require.Equal(t, 1, r.news, "the bare ACK made no connection")
	a.FlushAll()
	b.FlushAll()
}
