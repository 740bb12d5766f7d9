// Package upstreamtest runs an upstream package's own test files against
// one of our packages: it copies them out of the module cache, rewrites
// their imports, and runs them with `go test -overlay` as if they were
// files of our package's directory, so that even tests of unexported
// details compile against our code.
package upstreamtest

import (
	"bytes"
	"encoding/json"
	"go/ast"
	"go/format"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// childEnv marks the nested `go test`, so that the test calling Run does
// not run itself again.
const childEnv = "UPSTREAMTEST_CHILD"

// Suite names upstream test files and how to run them against our package.
type Suite struct {
	// Package is the upstream package's import path (taken from one of
	// its types, so that a generated flavour names its own upstream);
	// Files are its test files.
	Package string
	Files   []string
	// Rewrite maps quoted upstream import paths to ours.
	Rewrite map[string]string
	// Omit names upstream test functions left out, each with the reason
	// (a test of upstream's unexported internals, say): they are dropped
	// from the copy, and the reasons logged.
	Omit map[string]string
}

var testName = regexp.MustCompile(`(?m)^func ((?:Test|Example)\w*)\(`)

// Run runs the suite's files as tests of the package in the current
// directory (a test's working directory is its package's). It skips when
// the go command or the module's sources are not available.
func Run(t *testing.T, s Suite) {
	t.Helper()
	if os.Getenv(childEnv) != "" {
		t.Skip("inside the nested run of upstream's tests")
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to run upstream's test files with")
	}
	out, err := exec.Command(goCmd, "list", "-f", "{{.Dir}}", s.Package).Output()
	pkgDir := strings.TrimSpace(string(out))
	if err != nil || pkgDir == "" {
		t.Skipf("package %s is not in the module cache (go mod download): %v", s.Package, err)
	}
	here, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	overlay := map[string]string{}
	var names []string
	for _, f := range s.Files {
		src, err := os.ReadFile(filepath.Join(pkgDir, f))
		if err != nil {
			t.Skipf("upstream test file missing from the module cache: %v", err)
		}
		text := string(src)
		for from, to := range s.Rewrite {
			text = strings.ReplaceAll(text, from, to)
		}
		if text, err = omit(f, text, s.Omit); err != nil {
			t.Fatal(err)
		}
		for _, m := range testName.FindAllStringSubmatch(text, -1) {
			names = append(names, m[1])
		}
		copied := filepath.Join(tmp, f)
		if err := os.WriteFile(copied, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		overlay[filepath.Join(here, "zz_upstream_"+f)] = copied
	}
	js, err := json.Marshal(map[string]any{"Replace": overlay})
	if err != nil {
		t.Fatal(err)
	}
	ovFile := filepath.Join(tmp, "overlay.json")
	if err := os.WriteFile(ovFile, js, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(goCmd, "test", "-count=1", "-overlay", ovFile,
		"-run", "^("+strings.Join(names, "|")+")$", ".")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	res, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("upstream's %v against our package: %v\n%s", s.Files, err, res)
	}
	t.Logf("upstream's tests %v pass:\n%s", names, res)
	for name, why := range s.Omit {
		t.Logf("left out: %s: %s", name, why)
	}
}

// omit drops the named top-level functions from a Go file, and the
// imports that leaves unused.
func omit(name, text string, names map[string]string) (string, error) {
	if len(names) == 0 {
		return text, nil
	}
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, name, text, parser.ParseComments)
	if err != nil {
		return "", err
	}
	kept := f.Decls[:0]
	for _, d := range f.Decls {
		if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv == nil {
			if _, drop := names[fd.Name.Name]; drop {
				continue
			}
		}
		kept = append(kept, d)
	}
	f.Decls = kept
	dropUnusedImports(f)
	// Comments of dropped functions would be printed in their place.
	f.Comments = nil
	var b bytes.Buffer
	if err := format.Node(&b, fset, f); err != nil {
		return "", err
	}
	return b.String(), nil
}

// dropUnusedImports removes the imports no selector of f names any more.
func dropUnusedImports(f *ast.File) {
	used := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		if sel, ok := n.(*ast.SelectorExpr); ok {
			if id, ok := sel.X.(*ast.Ident); ok {
				used[id.Name] = true
			}
		}
		return true
	})
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.IMPORT {
			continue
		}
		specs := gd.Specs[:0]
		for _, sp := range gd.Specs {
			is := sp.(*ast.ImportSpec)
			path := strings.Trim(is.Path.Value, `"`)
			name := path[strings.LastIndex(path, "/")+1:]
			if is.Name != nil {
				name = is.Name.Name
			}
			if name == "_" || name == "." || used[name] {
				specs = append(specs, sp)
			}
		}
		gd.Specs = specs
	}
}
