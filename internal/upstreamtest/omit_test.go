package upstreamtest

import (
	"strings"
	"testing"
)

// Property: omit drops exactly the named functions, and the imports only
// they used; the rest of the file is kept.
func TestOmitDropsNamedFunctionsAndTheirImports(t *testing.T) {
	src := `package p

import (
	"bytes"
	"strings"
)

func TestKept(t *T) { _ = strings.ToUpper("a") }

func TestDropped(t *T) { _ = bytes.Repeat(nil, 1) }
`
	got, err := omit("p_test.go", src, map[string]string{"TestDropped": "why"})
	if err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{"TestDropped", `"bytes"`} {
		if strings.Contains(got, gone) {
			t.Errorf("%s is still there:\n%s", gone, got)
		}
	}
	for _, kept := range []string{"TestKept", `"strings"`} {
		if !strings.Contains(got, kept) {
			t.Errorf("%s was dropped:\n%s", kept, got)
		}
	}
}
