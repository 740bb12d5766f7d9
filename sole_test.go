package reassembly

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
)

// Property: the only engine that hands packets to an uncapped pool owns
// it (and takes no connection lock) until a second engine makes a call: a
// second Assembler that was only made changes nothing, a Dump leaves the
// owner in place, and the second engine's first call ends the sole use
// for every engine for good. A capped pool, whose eviction locks other
// connections, never has an owner.
func TestSoleOwnerUntilSecondEngine(t *testing.T) {
	f := newKitFactory()
	pool := NewStreamPool(f)
	a := NewAssembler(pool)
	c := kitConnN(1)
	a.AssembleWithContext(c.flow(false), c.segOff(false, "S", 0, nil), kitAt(kitT0))
	require.Same(t, &a.eng, pool.t.sole.owner.Load(), "the pool's only Assembler owns it")
	require.True(t, a.eng.solo)

	b := NewAssembler(pool)
	a.AssembleWithContext(c.flow(true), c.segOff(true, "SA", 0, nil), kitAt(kitT0))
	require.Same(t, &a.eng, pool.t.sole.owner.Load(), "an Assembler that made no call leaves the owner")
	pool.t.dump(kitQuietLogger())
	require.Same(t, &a.eng, pool.t.sole.owner.Load(), "a dump leaves the owner")

	b.FlushWithOptions(FlushOptions{T: kitT0})
	require.Nil(t, pool.t.sole.owner.Load(), "the second engine's first call ends the sole use")
	a.AssembleWithContext(c.flow(false), c.segOff(false, "A", 0, []byte("hello")), kitAt(kitT0))
	require.False(t, a.eng.solo, "the first Assembler locks connections from then on")
	require.Equal(t, "hello", f.stream(c).bytes(0))
	a.FlushAll()
	f.requireSound(t)

	capped := NewSafeStreamPool(newKitFactory(), 10)
	sa := newKitAssembler(t, capped, kitQuietOpts())
	require.NoError(t, c.send(sa, false, "S", 0, "", kitT0))
	require.Nil(t, capped.t.sole.owner.Load(), "a capped pool has no owner")
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

// Property: a second engine's first call waits for the call its pool's
// sole owner is in, which took no connection lock: a second Assembler's
// FlushAll while the owner is inside the factory's New for a new
// connection returns only after that call returned, and then completes
// the connection the owner made, once.
func TestSoleOwnerHandOverWaitsForOwnersCall(t *testing.T) {
	kitNoLeaks(t)
	f := newKitFactory()
	pool := NewStreamPool(f)
	a, b := NewAssembler(pool), NewAssembler(pool)
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
		b.FlushAll()
	}()
	for range 1000 {
		runtime.Gosched() // time for a FlushAll that does not wait to end
	}
	select {
	case <-flushed:
		t.Fatal("the second Assembler's FlushAll went on while the owner was in a call")
	default:
	}
	close(barrier)
	<-owner
	<-flushed
	require.Nil(t, pool.t.sole.owner.Load())
	f.requireSound(t)
	require.Len(t, f.all(), 2)
}
