// Command flavour writes the github.com/gopacket/gopacket flavour of the
// module's packages from their one hand-written source, the
// github.com/google/gopacket flavour, as the Go toolchain writes go/types
// from types2. The root package runs it (go generate):
//
//	go run ./internal/cmd/flavour          # rewrite the generated packages
//	go run ./internal/cmd/flavour -check   # list stale files, exit 1 if any
//
// Each package of the faces table is copied file by file, tests and
// examples included (assembly files are copied as they are, under the
// generated header: they name no import path), with three edits made on the parsed file and nothing
// else: import paths of github.com/google/gopacket become those of
// github.com/gopacket/gopacket and imports of a generated package become
// its counterpart; the constant forkFlavour becomes true, so that the few
// places where the fork's semantics differ read it instead of holding a
// second copy of the logic; the package comment gains a paragraph naming
// the source, and //go:generate lines are dropped.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// module is the import path of the module the generator serves.
const module = "github.com/safepacket/reassembly"

// face maps a hand-written package directory to the directory of its
// generated fork flavour, both relative to the module root.
type face struct{ src, dst string }

// faces is every package generated, in dependency order for the reader.
// The fork flavour mirrors the fork's own paths under gopacket/, so that a
// user swaps github.com/gopacket/gopacket/X for
// github.com/safepacket/reassembly/gopacket/X. Internal packages whose API
// carries gopacket types are generated too (under gopacket/internal), since
// a package holding both flavours' types would need the fork in every
// client's build.
var faces = []face{
	{"internal/stamp", "gopacket/internal/stamp"},
	{".", "gopacket/reassembly"},
	{"internal/capturetest", "gopacket/internal/capturetest"},
	{"internal/capture", "gopacket/internal/capture"},
	{"tcpassembly", "gopacket/tcpassembly"},
	{"tcpassembly/tcpreader", "gopacket/tcpassembly/tcpreader"},
	// Flavour-neutral test helpers, copied so that the fork flavour's
	// module needs nothing of this one.
	{"internal/apipin", "gopacket/internal/apipin"},
	{"internal/upstreamtest", "gopacket/internal/upstreamtest"},
}

func main() {
	root := flag.String("root", ".", "the module root")
	check := flag.Bool("check", false, "report stale generated files instead of writing them")
	flag.Parse()
	stale, err := run(*root, *check)
	if err != nil {
		fmt.Fprintln(os.Stderr, "flavour:", err)
		os.Exit(2)
	}
	if *check && len(stale) > 0 {
		fmt.Fprintln(os.Stderr, "flavour: generated files are stale; run go generate in the module root:")
		for _, s := range stale {
			fmt.Fprintln(os.Stderr, "\t"+s)
		}
		os.Exit(1)
	}
}

// run generates every face under root. With check it writes nothing and
// returns the generated files that differ from what generation would write
// (missing, changed, or left over from a removed source); otherwise it
// writes them and removes the left-overs.
func run(root string, check bool) ([]string, error) {
	want, err := generate(root)
	if err != nil {
		return nil, err
	}
	var stale []string
	for _, f := range faces {
		old, err := generatedFiles(root, f.dst)
		if err != nil {
			return nil, err
		}
		for _, name := range old {
			if _, ok := want[name]; !ok {
				stale = append(stale, name)
				if !check {
					if err := os.Remove(filepath.Join(root, name)); err != nil {
						return nil, err
					}
				}
			}
		}
	}
	names := make([]string, 0, len(want))
	for name := range want {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		path := filepath.Join(root, name)
		if got, err := os.ReadFile(path); err == nil && bytes.Equal(got, want[name]) {
			continue
		}
		stale = append(stale, name)
		if check {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, want[name], 0o644); err != nil {
			return nil, err
		}
	}
	sort.Strings(stale)
	return stale, nil
}

// generate returns the content of every generated file by its path
// relative to root (slash-separated).
func generate(root string) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, f := range faces {
		entries, err := os.ReadDir(filepath.Join(root, f.src))
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if e.IsDir() || !generatedKind(e.Name()) {
				continue
			}
			src := filepath.ToSlash(filepath.Join(f.src, e.Name()))
			text, err := os.ReadFile(filepath.Join(root, src))
			if err != nil {
				return nil, err
			}
			var gen []byte
			if strings.HasSuffix(e.Name(), ".s") {
				gen = copyAssembly(src, text)
			} else if gen, err = rewrite(src, text, f); err != nil {
				return nil, err
			}
			out[f.dst+"/"+e.Name()] = gen
		}
	}
	return out, nil
}

// generatedKind reports whether a file named name is generated in the
// fork flavour: Go source, rewritten, and assembly, copied.
func generatedKind(name string) bool {
	return strings.HasSuffix(name, ".go") || strings.HasSuffix(name, ".s")
}

// generatedFiles lists the Go and assembly files of dir (relative to root, as the names
// returned are) that carry the generated header: the only files the
// generator may replace or remove.
func generatedFiles(root, dir string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(root, dir))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() || !generatedKind(e.Name()) {
			continue
		}
		name := dir + "/" + e.Name()
		text, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			return nil, err
		}
		if bytes.HasPrefix(text, []byte(headerPrefix)) {
			names = append(names, name)
		}
	}
	return names, nil
}
