package reassembly

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestReadmePipelineMatchesCode pins the README's "How it works" diagram
// to the code: every file it names exists, and engine.packet calls the
// stage functions of rows 2 to 6 in the order the diagram lists them.
func TestReadmePipelineMatchesCode(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile(moduleReadme(t))
	if err != nil {
		t.Fatal(err)
	}
	text := string(readme)
	i := strings.Index(text, "## How it works")
	if i < 0 {
		t.Fatal("README.md has no \"How it works\" section")
	}
	text = text[i:]
	from := strings.Index(text, "```\n")
	to := strings.Index(text[from+4:], "```")
	if from < 0 || to < 0 {
		t.Fatal("the \"How it works\" section has no diagram")
	}
	diagram := text[from+4 : from+4+to]

	for _, f := range regexp.MustCompile(`[a-z_]+\.go`).FindAllString(diagram, -1) {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("the diagram names %s: %v", f, err)
		}
	}

	// The stage functions: the second column of the rows after
	// engine.packet (a numbered row, or the row that goes on from one).
	var stages []string
	row := regexp.MustCompile(`^\s*│\s+(?:\d \S.*?\s{2,})?([a-z][A-Za-z]+)(?:\s{2,}|$)`)
	inPacket := false
	for _, line := range strings.Split(diagram, "\n") {
		if strings.Contains(line, "engine.packet") {
			inPacket = true
			continue
		}
		if m := row.FindStringSubmatch(line); inPacket && m != nil {
			stages = append(stages, m[1])
		}
	}
	calls := packetCalls(t)
	if len(stages) == 0 {
		t.Fatal("no stage functions found in the diagram")
	}
	at := 0
	for _, s := range stages {
		for at < len(calls) && calls[at] != s {
			at++
		}
		if at == len(calls) {
			t.Fatalf("engine.packet does not call %s after the stages before it (diagram %v, calls %v)", s, stages, calls)
		}
		at++
	}
}

// moduleReadme returns the path of the repository's README.md, the first
// one above the package: the package is also generated into a module below
// the root (internal/cmd/flavour), whose files the diagram names as well.
func moduleReadme(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if p := filepath.Join(dir, "README.md"); fileExists(p) {
			return p
		}
		up := filepath.Dir(dir)
		if up == dir {
			t.Fatal("no README.md above the package")
		}
		dir = up
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// packetCalls returns the methods of the engine that engine.packet calls,
// in the order of the source.
func packetCalls(t *testing.T) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "engine.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var calls []string
	for _, d := range f.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || fn.Name.Name != "packet" || fn.Recv == nil {
			continue
		}
		ast.Inspect(fn.Body, func(n ast.Node) bool {
			if c, ok := n.(*ast.CallExpr); ok {
				if sel, ok := c.Fun.(*ast.SelectorExpr); ok {
					if id, ok := sel.X.(*ast.Ident); ok && id.Name == "e" {
						calls = append(calls, sel.Sel.Name)
					}
				}
			}
			return true
		})
	}
	if len(calls) == 0 {
		t.Fatal("engine.packet not found in engine.go")
	}
	return calls
}
