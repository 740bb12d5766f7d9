package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Property: the committed generated packages are exactly what the
// generator writes from the hand-written source; a change to the source
// without go generate fails here.
func TestGeneratedUpToDate(t *testing.T) {
	t.Parallel()
	stale, err := run(filepath.Join("..", "..", ".."), true)
	if err != nil {
		t.Fatal(err)
	}
	if len(stale) > 0 {
		t.Errorf("generated files are stale; run go generate in the module root:\n\t%s", strings.Join(stale, "\n\t"))
	}
}

const sample = `// Package demo is hand-written.
package demo

//go:generate go run ./internal/cmd/flavour

import (
	"github.com/google/gopacket"
	gl "github.com/google/gopacket/layers"
	"github.com/safepacket/reassembly"
	"github.com/safepacket/reassembly/cmd/reassemble"
	"github.com/safepacket/reassembly/internal/capture"
)

// A string that names github.com/google/gopacket is not an import: kept.
const doc = "github.com/google/gopacket"

const forkFlavour = false

var _ = gopacket.Flow{}
`

// Property: the rewrite changes the imports of the google module and of
// generated packages, the flavour constant, the package comment and
// //go:generate lines, and nothing else.
func TestRewrite(t *testing.T) {
	t.Parallel()
	got, err := rewrite("demo.go", []byte(sample), face{".", "gopacket/reassembly"})
	if err != nil {
		t.Fatal(err)
	}
	out := string(got)
	for _, want := range []string{
		headerPrefix + "demo.go; DO NOT EDIT.\n",
		"// Package demo is the github.com/gopacket/gopacket flavour of\n// github.com/safepacket/reassembly, generated",
		"//\n// Package demo is hand-written.\npackage demo",
		`"github.com/gopacket/gopacket"`,
		`gl "github.com/gopacket/gopacket/layers"`,
		`"github.com/safepacket/reassembly/gopacket/reassembly"`,
		`"github.com/safepacket/reassembly/gopacket/internal/capture"`,
		`"github.com/safepacket/reassembly/cmd/reassemble"`, // no face: kept
		`const doc = "github.com/google/gopacket"`,
		"const forkFlavour = true",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the output lacks %q:\n%s", want, out)
		}
	}
	for _, banned := range []string{"go:generate", `"github.com/google/gopacket/layers"`, "forkFlavour = false"} {
		if strings.Contains(out, banned) {
			t.Errorf("the output still holds %q:\n%s", banned, out)
		}
	}
}

// Property: a source whose flavour constant is not a plain false is an
// error, not a silently wrong flavour.
func TestRewriteFlavourConstant(t *testing.T) {
	t.Parallel()
	for _, src := range []string{"package p\nconst forkFlavour = true\n", "package p\nconst forkFlavour = !false\n"} {
		if _, err := rewrite("p.go", []byte(src), face{".", "x"}); err == nil {
			t.Errorf("no error for %q", src)
		}
	}
}

// Property: run writes every face, assembly copied under the header, then
// finds nothing stale; it reports a changed or left-over generated file
// (Go or assembly), removes the left-over, and never
// touches a file without the generated header.
func TestRunStaleness(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range faces {
		write(filepath.Join(f.src, "a.go"), "package a\n")
	}
	write("sum_amd64.s", "//go:build amd64\n\nTEXT ·sum(SB), 0, $0-8\n\tRET\n")
	write("gopacket/reassembly/own.go", "package a\n") // not generated
	if _, err := run(root, false); err != nil {
		t.Fatal(err)
	}
	if stale, err := run(root, true); err != nil || len(stale) > 0 {
		t.Fatalf("stale right after generation: %v %v", stale, err)
	}
	asm, err := os.ReadFile(filepath.Join(root, "gopacket/reassembly/sum_amd64.s"))
	if err != nil {
		t.Fatal(err)
	}
	if want := headerPrefix + "sum_amd64.s; DO NOT EDIT.\n\n//go:build amd64\n\nTEXT ·sum(SB), 0, $0-8\n\tRET\n"; string(asm) != want {
		t.Errorf("the assembly file is not copied under the header:\n%s", asm)
	}
	write("gopacket/reassembly/a.go", headerPrefix+"a.go; DO NOT EDIT.\n\npackage b\n")
	write("gopacket/reassembly/gone.go", headerPrefix+"gone.go; DO NOT EDIT.\n\npackage a\n")
	write("gopacket/reassembly/gone_amd64.s", headerPrefix+"gone_amd64.s; DO NOT EDIT.\n\nRET\n")
	write("gopacket/reassembly/own_amd64.s", "RET\n") // not generated
	stale, err := run(root, true)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(stale, " ") != "gopacket/reassembly/a.go gopacket/reassembly/gone.go gopacket/reassembly/gone_amd64.s" {
		t.Fatalf("stale = %v", stale)
	}
	if _, err := run(root, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "gopacket/reassembly/gone.go")); !os.IsNotExist(err) {
		t.Errorf("the left-over generated file was kept: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "gopacket/reassembly/gone_amd64.s")); !os.IsNotExist(err) {
		t.Errorf("the left-over generated assembly file was kept: %v", err)
	}
	for _, own := range []string{"own.go", "own_amd64.s"} {
		if _, err := os.Stat(filepath.Join(root, "gopacket/reassembly", own)); err != nil {
			t.Errorf("a hand-written file was removed: %v", err)
		}
	}
	if stale, err := run(root, true); err != nil || len(stale) > 0 {
		t.Errorf("stale after regeneration: %v %v", stale, err)
	}
}

// Property: the fork flavour's module carries this module's licence, the
// same text (a module's zip holds only its own folder).
func TestForkModuleLicence(t *testing.T) {
	root, err := os.ReadFile(filepath.Join("..", "..", "..", "LICENSE"))
	if err != nil {
		t.Fatal(err)
	}
	fork, err := os.ReadFile(filepath.Join("..", "..", "..", "gopacket", "LICENSE"))
	if err != nil {
		t.Fatal(err)
	}
	if string(root) != string(fork) {
		t.Fatal("gopacket/LICENSE differs from LICENSE: cp LICENSE gopacket/LICENSE")
	}
}
