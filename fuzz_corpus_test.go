package reassembly

import (
	"fmt"
	"go/ast"
	"go/parser"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/safepacket/reassembly/internal/capturetest"
)

// fzAddCorpus adds the committed seed corpus of target (testdata/fuzz of
// the module root) to f when the package directory has none of its own.
// go test reads only a package's own testdata/fuzz, and the generated
// flavour of this package (gopacket/reassembly) shares the root's testdata
// instead of holding a copy; in the root the corpus is read by go test
// itself and this adds nothing.
func fzAddCorpus(f *testing.F, target string) {
	if _, err := os.Stat(filepath.Join("testdata", "fuzz", target)); err == nil {
		return
	}
	dir := capturetest.Testdata("fuzz", target)
	entries, err := os.ReadDir(dir)
	if err != nil {
		f.Fatalf("the shared corpus of %s: %v", target, err)
	}
	for _, e := range entries {
		text, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			f.Fatal(err)
		}
		args, err := fzParseCorpusFile(string(text))
		if err != nil {
			f.Fatalf("%s: %v", filepath.Join(dir, e.Name()), err)
		}
		f.Add(args...)
	}
}

// fzParseCorpusFile reads a corpus file of go test's format ("go test fuzz
// v1", then one T(literal) a line) for the argument types our targets
// take.
func fzParseCorpusFile(text string) ([]any, error) {
	lines := strings.Split(strings.TrimSpace(text), "\n")
	if lines[0] != "go test fuzz v1" {
		return nil, fmt.Errorf("not a corpus file: %q", lines[0])
	}
	var args []any
	for _, line := range lines[1:] {
		expr, err := parser.ParseExpr(line)
		if err != nil {
			return nil, err
		}
		call, ok := expr.(*ast.CallExpr)
		if !ok || len(call.Args) != 1 {
			return nil, fmt.Errorf("not a conversion: %q", line)
		}
		lit, ok := call.Args[0].(*ast.BasicLit)
		if !ok {
			return nil, fmt.Errorf("not a literal: %q", line)
		}
		typ := ""
		switch fn := call.Fun.(type) {
		case *ast.Ident:
			typ = fn.Name
		case *ast.ArrayType:
			if id, ok := fn.Elt.(*ast.Ident); ok && fn.Len == nil && id.Name == "byte" {
				typ = "[]byte"
			}
		}
		var arg any
		switch typ {
		case "[]byte":
			s, e := strconv.Unquote(lit.Value)
			arg, err = []byte(s), e
		case "uint32":
			n, e := strconv.ParseUint(lit.Value, 0, 32)
			arg, err = uint32(n), e
		case "uint16":
			n, e := strconv.ParseUint(lit.Value, 0, 16)
			arg, err = uint16(n), e
		default:
			return nil, fmt.Errorf("unsupported type: %q", line)
		}
		if err != nil {
			return nil, fmt.Errorf("%q: %v", line, err)
		}
		args = append(args, arg)
	}
	return args, nil
}
