//go:build unix

package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// program is a real client of upstream gopacket: a main package inside an
// upstream module, and the runs to compare on each capture.
type program struct {
	name    string            // short name used in the output and in known.go
	module  string            // the upstream module holding the program
	version string            // its version, as the module proxy serves it
	dir     string            // the program's directory inside the module
	swap    map[string]string // upstream import path → this module's
	runs    []programRun
	// masks hide what both builds print differently by design, on every
	// capture: each replaces what its pattern matches before comparing.
	masks []mask
	// whole is set for a program that is its module's main package (dir
	// "."): the whole module is copied, with its own go.mod, and its own
	// tests, run with the go test arguments in tests, must pass with
	// the import swapped as they pass without.
	whole bool
	tests []string
	// stderr is set for a program that logs its results on standard
	// error (with the log package: masks hide the timestamps).
	stderr bool
	// linger, when set, hands the capture to the program through a pipe
	// held open that long after its last byte: a program that exits at
	// the end of the file without waiting for its goroutines then
	// reaches the end only once they have had time to print.
	linger time.Duration
	// known names the program whose intended differences apply, when
	// they are another's (the fork's copy of a google/gopacket example).
	known string
}

func (p program) knownAs() string {
	if p.known != "" {
		return p.known
	}
	return p.name
}

// mask is one such rewrite, with the reason it is not a difference.
type mask struct {
	re     *regexp.Regexp
	repl   string
	reason string
}

// programRun is one command line to run on every capture.
type programRun struct {
	name string
	args func(capture string) []string
}

// clientGoVersion is the go directive of the scratch client modules: the
// newest this module may demand of a client (DESIGN.md §1), so that a swap
// which raised it would show as a go.mod difference.
const clientGoVersion = "1.22"

// ourModule is this repository's module path.
const ourModule = "github.com/safepacket/reassembly"

// build makes the two scratch modules of a program (upstream's, and the same
// sources with the imports swapped), tidies and builds both, and checks that
// the swap changed nothing in go.mod but this module's own lines.
func (r *runner) build(p program) (up, ours string, err error) {
	src, err := r.moduleDir(p.module, p.version)
	if err != nil {
		return "", "", err
	}
	base := filepath.Join(r.work, p.name)
	upDir, ourDir := filepath.Join(base, "upstream"), filepath.Join(base, "ours")
	for _, d := range []string{upDir, ourDir} {
		if err := os.RemoveAll(d); err != nil {
			return "", "", err
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", "", err
		}
	}
	if p.whole {
		err = copyModule(src, upDir, ourDir, p.swap)
	} else {
		err = copyExample(filepath.Join(src, p.dir), upDir, ourDir, p)
	}
	if err != nil {
		return "", "", err
	}
	// The module of this repository that the swapped imports name: the
	// root one for google/gopacket's packages, the nested gopacket one for
	// the fork's.
	mod, dir := ourModule, r.repo
	for _, to := range p.swap {
		if strings.HasPrefix(to, ourModule+"/gopacket/") {
			mod, dir = ourModule+"/gopacket", filepath.Join(r.repo, "gopacket")
		}
	}
	lines := fmt.Sprintf("\nrequire %s v0.0.0\n\nreplace %s => %s\n", mod, mod, dir)
	if err := appendFile(filepath.Join(ourDir, "go.mod"), lines); err != nil {
		return "", "", err
	}
	for _, d := range []string{upDir, ourDir} {
		if out, err := goCmd(d, "mod", "tidy"); err != nil {
			return "", "", fmt.Errorf("go mod tidy in %s: %v\n%s", d, err, out)
		}
		if out, err := goCmd(d, "build", "-o", "prog", "."); err != nil {
			return "", "", fmt.Errorf("go build in %s: %v\n%s", d, err, out)
		}
	}
	if err := r.sameModFile(p.name, upDir, ourDir); err != nil {
		return "", "", err
	}
	return filepath.Join(upDir, "prog"), filepath.Join(ourDir, "prog"), nil
}

// copyExample makes the scratch modules of a program that lives in a
// directory of an upstream module: its files, and a go.mod requiring that
// module.
func copyExample(from, upDir, ourDir string, p program) error {
	if err := copyProgram(from, upDir, nil); err != nil {
		return err
	}
	if err := copyProgram(from, ourDir, p.swap); err != nil {
		return err
	}
	require := fmt.Sprintf("module example.com/client\n\ngo %s\n\nrequire %s %s\n", clientGoVersion, p.module, p.version)
	for _, d := range []string{upDir, ourDir} {
		if err := os.WriteFile(filepath.Join(d, "go.mod"), []byte(require), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// copyModule copies a whole module twice, rewriting the swapped imports in
// the second copy's Go files.
func copyModule(from, upDir, ourDir string, swap map[string]string) error {
	return filepath.WalkDir(from, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(from, path)
		if err != nil {
			return err
		}
		if d.IsDir() {
			for _, dir := range []string{upDir, ourDir} {
				if err := os.MkdirAll(filepath.Join(dir, rel), 0o755); err != nil {
					return err
				}
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(upDir, rel), b, 0o644); err != nil {
			return err
		}
		if strings.HasSuffix(rel, ".go") {
			b = swapImports(b, swap)
		}
		return os.WriteFile(filepath.Join(ourDir, rel), b, 0o644)
	})
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ownTests runs a whole-module program's own tests in both copies: ours
// must pass wherever upstream's does.
func (r *runner) ownTests(p program, upDir, ourDir string) error {
	up, upErr := goCmd(upDir, append([]string{"test", "-count=1"}, p.tests...)...)
	if upErr != nil {
		return fmt.Errorf("upstream's own tests fail unswapped (nothing to compare): %v\n%s", upErr, up)
	}
	ours, err := goCmd(ourDir, append([]string{"test", "-count=1"}, p.tests...)...)
	if err != nil {
		return fmt.Errorf("its own tests fail with the import swapped: %v\n%s", err, ours)
	}
	return nil
}

// moduleDir downloads an upstream module (module cache, else the proxy) and
// returns its directory.
func (r *runner) moduleDir(module, version string) (string, error) {
	out, err := goCmd(r.repo, "mod", "download", "-json", module+"@"+version)
	if err != nil {
		return "", fmt.Errorf("go mod download %s@%s: %v\n%s", module, version, err, out)
	}
	const key = `"Dir": "`
	i := bytes.Index(out, []byte(key))
	if i < 0 {
		return "", fmt.Errorf("go mod download %s@%s: no Dir in %s", module, version, out)
	}
	rest := out[i+len(key):]
	return string(rest[:bytes.IndexByte(rest, '"')]), nil
}

// copyProgram copies the non-test Go files of a program's directory,
// rewriting the quoted import paths named in swap.
func copyProgram(from, to string, swap map[string]string) error {
	entries, err := os.ReadDir(from)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(from, name))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(to, name), swapImports(b, swap), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// swapImports rewrites the quoted import paths named in swap.
func swapImports(b []byte, swap map[string]string) []byte {
	for old, repl := range swap {
		b = bytes.ReplaceAll(b, []byte(`"`+old+`"`), []byte(`"`+repl+`"`))
	}
	return b
}

// sameModFile checks the no-friction promise: after go mod tidy, the swapped
// client's go.mod differs from upstream's only in lines naming this module,
// and in a go directive raised at most to clientGoVersion (said, as a note).
func (r *runner) sameModFile(name, upDir, ourDir string) error {
	up, err := modLines(upDir)
	if err != nil {
		return err
	}
	ours, err := modLines(ourDir)
	if err != nil {
		return err
	}
	var kept []string
	for _, l := range ours {
		if !strings.Contains(l, ourModule) {
			kept = append(kept, l)
		}
	}
	upGo, ourGo := goLine(up), goLine(kept)
	if upGo != ourGo && ourGo == "go "+clientGoVersion {
		fmt.Fprintf(r.out, "note %s: the swap raises the client's %q to %q, this module's minimum\n", name, upGo, ourGo)
		kept = replaceLine(kept, ourGo, upGo)
	}
	if d := diffLines(up, kept); len(d) > 0 {
		return fmt.Errorf("the swap changes the client's go.mod beyond this module's lines:\n     %s", strings.Join(d, "\n     "))
	}
	return nil
}

func modLines(dir string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return nil, err
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || l == ")" || strings.HasSuffix(l, "(") {
			continue
		}
		lines = append(lines, strings.TrimPrefix(l, "require "))
	}
	sort.Strings(lines)
	return lines, nil
}

func goCmd(dir string, args ...string) ([]byte, error) {
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	// The scratch modules must resolve like a user's: no workspace, and
	// modules from the proxy.
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	return cmd.CombinedOutput()
}

func goLine(lines []string) string {
	for _, l := range lines {
		if strings.HasPrefix(l, "go ") {
			return l
		}
	}
	return ""
}

func replaceLine(lines []string, old, repl string) []string {
	out := make([]string, 0, len(lines))
	for _, l := range lines {
		if l == old {
			l = repl
		}
		out = append(out, l)
	}
	sort.Strings(out)
	return out
}
