package apipin

import (
	"go/token"
	"go/types"
	"strings"
	"testing"
)

// Property: a package compared with itself has no difference, and one
// compared with another reports names on both sides with their types.
func TestDiff(t *testing.T) {
	t.Parallel()
	d, err := Diff("bufio", "bufio", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(d) != 0 {
		t.Fatalf("bufio differs from itself: %v", d)
	}
	d, err = Diff("container/list", "container/ring", nil)
	if err != nil {
		t.Fatal(err)
	}
	text := ""
	for _, x := range d {
		text += x.String() + "\n"
	}
	for _, want := range []string{
		"List.PushBack: extra (method (*List) func(interface{}) *Element)",
		"Ring.Next: missing (want method (*Ring) func() *Ring)",
		"New:\n\tgot  func() *List\n\twant func(int) *Ring",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("no %q in:\n%s", want, text)
		}
	}
}

// Property: an equivalent path prefix makes types of the two modules
// compare equal; without it they differ.
// Property: parameter names are not part of the API: two signatures that
// differ only by them compare equal, and a different parameter type does
// not.
func TestParameterNamesIgnored(t *testing.T) {
	t.Parallel()
	pkg := func(path, param string, typ types.Type) *types.Package {
		p := types.NewPackage(path, "p")
		sig := types.NewSignatureType(nil, nil, nil, types.NewTuple(types.NewParam(token.NoPos, p, param, typ)), nil, false)
		p.Scope().Insert(types.NewFunc(token.NoPos, p, "F", sig))
		return p
	}
	intT, strT := types.Typ[types.Int], types.Typ[types.String]
	if d := Compare(pkg("a", "x", intT), pkg("b", "y", intT), nil); len(d) != 0 {
		t.Errorf("parameter names made a difference: %v", d)
	}
	if d := Compare(pkg("a", "x", intT), pkg("b", "x", strT), nil); len(d) != 1 {
		t.Errorf("a parameter type made no difference: %v", d)
	}
}

func TestCompareSame(t *testing.T) {
	t.Parallel()
	// face builds package path whose var Flow has the type Flow of dep.
	face := func(path, dep string) *types.Package {
		d := types.NewPackage(dep, "gopacket")
		flow := types.NewNamed(types.NewTypeName(token.NoPos, d, "Flow", nil), types.NewStruct(nil, nil), nil)
		p := types.NewPackage(path, "reassembly")
		p.Scope().Insert(types.NewVar(token.NoPos, p, "Flow", flow))
		return p
	}
	ours := face("example.com/ours", "github.com/google/gopacket")
	fork := face("github.com/gopacket/gopacket/reassembly", "github.com/gopacket/gopacket")
	if d := Compare(ours, fork, map[string]string{"github.com/google": "github.com/gopacket"}); len(d) != 0 {
		t.Errorf("differences with the mapping: %v", d)
	}
	d := Compare(ours, fork, nil)
	if len(d) != 1 || d[0].Got != "var github.com/google/gopacket.Flow" || d[0].Want != "var github.com/gopacket/gopacket.Flow" {
		t.Errorf("without the mapping: %v", d)
	}
}
