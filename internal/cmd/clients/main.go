//go:build unix

// Command clients builds real programs written against upstream gopacket
// twice — unchanged, and with the reassembly import swapped to this module —
// runs both builds on every capture it is given and prints every difference
// in their output. Differences that are intended (an upstream fault this
// module fixes) are listed by name and reason in known.go; any other
// difference fails the run.
//
// Usage (from the repository root; scripts/clients.sh does this):
//
//	go run ./internal/cmd/clients [-work DIR] [-v] CAPTURE_DIR...
//
// The programs come from the Go module cache and the module proxy only:
// their sources are copied into a scratch module at run time, never into this
// repository.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

func main() {
	work := flag.String("work", "", "scratch directory for the client modules (default: a temporary one, removed at the end)")
	verbose := flag.Bool("v", false, "print the intended differences too")
	only := flag.String("only", "", "run only the client runs whose name contains this")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: clients [-work DIR] [-v] CAPTURE_DIR...")
		os.Exit(2)
	}
	repo, err := os.Getwd()
	if err != nil {
		fatal(err)
	}
	if _, err := os.Stat(filepath.Join(repo, "go.mod")); err != nil {
		fatal(fmt.Errorf("run from the repository root: %w", err))
	}
	dir := *work
	if dir == "" {
		if dir, err = os.MkdirTemp("", "clients-"); err != nil {
			fatal(err)
		}
		defer os.RemoveAll(dir)
	}
	captures, err := listCaptures(flag.Args())
	if err != nil {
		fatal(err)
	}
	r := &runner{repo: repo, work: dir, verbose: *verbose, out: os.Stdout}
	ok := r.runAll(programs(), captures, *only)
	if !ok {
		os.Exit(1)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "clients:", err)
	os.Exit(1)
}

// listCaptures returns the capture files of the given directories, by base
// name: a capture present in two directories (testdata and the shared corpus)
// is run once.
func listCaptures(dirs []string) (map[string]string, error) {
	found := map[string]string{}
	for _, d := range dirs {
		entries, err := os.ReadDir(d)
		if os.IsNotExist(err) {
			fmt.Printf("%s: absent, skipped\n", d)
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			name := e.Name()
			if e.IsDir() || !(strings.HasSuffix(name, ".pcap") || strings.HasSuffix(name, ".pcapng")) {
				continue
			}
			if _, dup := found[name]; !dup {
				found[name] = filepath.Join(d, name)
			}
		}
	}
	if len(found) == 0 {
		return nil, fmt.Errorf("no captures in %v", dirs)
	}
	return found, nil
}

type runner struct {
	repo    string
	work    string
	verbose bool
	out     io.Writer
}

// runAll builds every program both ways and compares each of its runs on
// every capture; it reports whether nothing but intended differences showed.
func (r *runner) runAll(progs []program, captures map[string]string, only string) bool {
	names := make([]string, 0, len(captures))
	for n := range captures {
		names = append(names, n)
	}
	sort.Strings(names)
	passed, failed := 0, 0
	for _, p := range progs {
		up, ours, err := r.build(p)
		if err != nil {
			fmt.Fprintf(r.out, "FAIL %s: build: %v\n", p.name, err)
			failed++
			continue
		}
		if p.whole {
			if err := r.ownTests(p, filepath.Dir(up), filepath.Dir(ours)); err != nil {
				fmt.Fprintf(r.out, "FAIL %s: %v\n", p.name, err)
				failed++
			} else {
				passed++
			}
		}
		for _, run := range p.runs {
			id := p.name + " " + run.name
			if only != "" && !strings.Contains(id, only) {
				continue
			}
			for _, c := range names {
				if r.compare(p, run, c, captures[c], up, ours) {
					passed++
				} else {
					failed++
				}
			}
		}
	}
	fmt.Fprintf(r.out, "%d passed, %d failed\n", passed, failed)
	return failed == 0
}

// compare runs one program run on one capture with both builds.
func (r *runner) compare(p program, run programRun, capture, path, up, ours string) bool {
	id := fmt.Sprintf("%s %s %s", p.name, run.name, capture)
	args := run.args(path)
	upOut, upErr := runNormalised(up, args, p)
	ourOut, ourErr := runNormalised(ours, args, p)
	if (upErr == nil) != (ourErr == nil) {
		fmt.Fprintf(r.out, "FAIL %s: upstream exit %v, ours exit %v\n", id, upErr, ourErr)
		return false
	}
	d := diffLines(upOut, ourOut)
	known, isKnown := lookupKnown(p.knownAs(), run.name, capture)
	switch {
	case len(d) == 0 && !isKnown:
		return true
	case len(d) == 0 && isKnown:
		fmt.Fprintf(r.out, "FAIL %s: listed as an intended difference (%v) but both outputs agree: remove it from known.go\n", id, known)
		return false
	case isKnown && known.matches(d):
		if r.verbose {
			fmt.Fprintf(r.out, "ok   %s: intended: %s\n", id, known)
			printDiff(r.out, d)
		}
		return true
	}
	fmt.Fprintf(r.out, "FAIL %s: outputs differ\n", id)
	if isKnown {
		fmt.Fprintf(r.out, "     (intended differences are listed, %v, but these lines are not explained by them)\n", known)
		d = known.unexplained(d)
	}
	printDiff(r.out, d)
	return false
}

func printDiff(w io.Writer, d []string) {
	const most = 40
	for i, l := range d {
		if i == most {
			fmt.Fprintf(w, "     ... %d more lines\n", len(d)-most)
			break
		}
		fmt.Fprintf(w, "     %s\n", l)
	}
}

// execute runs a built program and returns its standard output (standard
// error carries timings and progress, which differ from run to run), or
// its standard error for a program that logs its results there.
func execute(bin string, args []string, p program) ([]byte, error) {
	if p.linger > 0 {
		pipe, done, err := lingeringPipe(args[len(args)-1], p.linger)
		if err != nil {
			return nil, err
		}
		defer done()
		args = append(append([]string(nil), args[:len(args)-1]...), pipe)
	}
	cmd := exec.Command(bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, io.Discard
	if p.stderr {
		// A program that logs its results: standard output is unused.
		cmd.Stdout, cmd.Stderr = io.Discard, &out
	}
	err := cmd.Run()
	return out.Bytes(), err
}

// runNormalised runs a build and returns its normalised lines.
func runNormalised(bin string, args []string, p program) ([]string, error) {
	out, err := execute(bin, args, p)
	if err != nil {
		return nil, err
	}
	return normalise(out, p.masks), nil
}

// normalise splits output into lines, applies the program's masks and
// sorts the lines: the programs print per-connection results while walking
// Go maps, so their order carries no meaning.
func normalise(out []byte, masks []mask) []string {
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	for i, l := range lines {
		for _, m := range masks {
			l = m.re.ReplaceAllString(l, m.repl)
		}
		lines[i] = l
	}
	sort.Strings(lines)
	return lines
}

// diffLines returns the lines only upstream printed ("-") and only ours
// printed ("+"), counting repeats, both in sorted order.
func diffLines(up, ours []string) []string {
	var d []string
	i, j := 0, 0
	for i < len(up) || j < len(ours) {
		switch {
		case j == len(ours) || (i < len(up) && up[i] < ours[j]):
			d = append(d, "- "+up[i])
			i++
		case i == len(up) || ours[j] < up[i]:
			d = append(d, "+ "+ours[j])
			j++
		default:
			i++
			j++
		}
	}
	return d
}
