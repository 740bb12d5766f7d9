//go:build unix

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Property: diffLines reports each line one side printed more often than
// the other, as many times as the counts differ, and nothing else.
func TestDiffLinesCountsRepeats(t *testing.T) {
	up := normalise([]byte("b\na\na\nc\n"), nil)
	ours := normalise([]byte("a\nc\nd\nb\n"), nil)
	assert.Equal(t, []string{"- a", "+ d"}, diffLines(up, ours))
	assert.Empty(t, diffLines(up, up), "a run differs from itself")
}

// Property: an intended difference explains only the lines its reasons
// name: a listed capture with one more kind of differing line fails.
func TestKnownDifferenceExplainsOnlyItsLines(t *testing.T) {
	k := knownDifference{reasons: []reason{startOnce}}
	syn := "- 10.0.0.1->10.0.0.2 1->2(client->server): : SG reassembled packet with 0 bytes (start:true,end:false,skip:0,saved:0,nb:1,1,overlap:0,0)"
	require.True(t, k.matches([]string{syn, "-  total packets:\t\t5", "+  total packets:\t\t4"}),
		"the retransmitted SYN's lines are not explained by start-once")
	data := "+ 10.0.0.1->10.0.0.2 1->2(client->server): : SG reassembled packet with 7 bytes (start:false,end:false,skip:0,saved:0,nb:1,1,overlap:0,0)"
	assert.False(t, k.matches([]string{syn, data}), "start-once explains a delivery of data")
}

// Property: every listed difference names a program run that exists, has
// a reason, and lists a capture at most once per run, so none is dead or
// shadowed.
func TestKnownDifferencesAreReachable(t *testing.T) {
	runs := map[string]bool{}
	for _, p := range programs() {
		for _, r := range p.runs {
			runs[p.name+" "+r.name] = true
		}
	}
	seen := map[string]bool{}
	for _, k := range knownDifferences() {
		id := k.program + " " + k.run + " " + k.capture
		assert.True(t, runs[k.program+" "+k.run], "%s: no such program run", id)
		assert.False(t, seen[id], "%s listed twice: the second is never used", id)
		assert.NotEmpty(t, k.reasons, "%s has no reason", id)
		seen[id] = true
	}
}

// Property: the masks hide only the Dump figures they name.
func TestMasksHideOnlyDumpFigures(t *testing.T) {
	m := programs()[0].masks
	a := normalise([]byte("Final flush: 1 closedpageCache: used: 0, size: 1024, free: 1024"), m)
	b := normalise([]byte("Final flush: 1 closedpageCache: used: 0, peak: 1, free: 1, connections: 1"), m)
	assert.Equal(t, a, b)
	c := normalise([]byte("Final flush: 2 closedpageCache: used: 0, peak: 1, free: 1, connections: 1"), m)
	assert.NotEqual(t, a, c, "the mask hid the number of connections flushed")
}

// Property: a pairing reason explains an upstream line and one of ours
// only as the change it names: fq's has_end turned true, nothing else.
func TestPairingReasonExplainsOnlyItsChange(t *testing.T) {
	k := knownDifference{reasons: []reason{fqFINKept}}
	up := `- ["10.0.0.1",1,"10.0.0.2","http","client",false,false,0,"014b06c19af67a96e17e8d46c9a6df3e"]`
	endSet := `+ ["10.0.0.1",1,"10.0.0.2","http","client",false,true,0,"014b06c19af67a96e17e8d46c9a6df3e"]`
	otherBytes := `+ ["10.0.0.1",1,"10.0.0.2","http","client",false,true,0,"ffd6457b866c97a448299f91e01b9f12"]`
	assert.Empty(t, k.unexplained([]string{up, endSet}))
	assert.Equal(t, []string{up, otherBytes}, k.unexplained([]string{up, otherBytes}), "has_end explained different bytes")
	assert.Equal(t, []string{endSet}, k.unexplained([]string{endSet}), "a line of ours explained without its upstream pair")
}

// Property: a lingering pipe serves the whole file, and its cleanup
// returns even when no program ever opened it.
func TestLingeringPipe(t *testing.T) {
	src := filepath.Join(t.TempDir(), "capture")
	require.NoError(t, os.WriteFile(src, bytes.Repeat([]byte("x"), 200_000), 0o644))
	pipe, done, err := lingeringPipe(src, time.Millisecond)
	require.NoError(t, err)
	got, err := os.ReadFile(pipe)
	require.NoError(t, err)
	done()
	assert.Len(t, got, 200_000)

	_, done, err = lingeringPipe(src, time.Millisecond)
	require.NoError(t, err)
	finished := make(chan struct{})
	go func() { done(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(time.Minute):
		t.Fatal("cleanup of an unopened pipe hangs")
	}
}

// Property: the cleanup's drain outlasts an empty pipe whose writer has
// not opened it yet, so a writer that comes late can still write more
// than the pipe holds (a drain that stopped at the first end of file left
// that writer blocked, and the cleanup waiting for it hung).
func TestDrainUntilWaitsForALateWriter(t *testing.T) {
	pipe := filepath.Join(t.TempDir(), "pipe")
	require.NoError(t, syscall.Mkfifo(pipe, 0o600))
	r, err := os.OpenFile(pipe, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	require.NoError(t, err)
	defer r.Close()
	wrote, drained := make(chan struct{}), make(chan struct{})
	go func() { drainUntil(r, wrote); close(drained) }()
	time.Sleep(20 * time.Millisecond) // the drain meets the empty pipe first (more likely, not needed)
	w, err := os.OpenFile(pipe, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = w.Write(bytes.Repeat([]byte("x"), 200_000)) // more than a pipe holds: blocks unless drained
	require.NoError(t, err)
	require.NoError(t, w.Close())
	close(wrote)
	<-drained
}
