// Package apipin compares the exported API of two Go packages, for tests
// that pin a face to the upstream package it replaces: every exported
// constant, variable, function and type, each type's exported fields and
// methods (of T and *T), with their types written modulo package paths that
// the caller declares equivalent (the package itself, and for instance
// github.com/google/gopacket against github.com/gopacket/gopacket).
package apipin

import (
	"bytes"
	"fmt"
	"go/constant"
	"go/importer"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
)

// Difference is one exported name whose declaration differs: Got is what
// the first package declares, Want the second; "" where it has none.
type Difference struct {
	Name, Got, Want string
}

func (d Difference) String() string {
	switch {
	case d.Got == "":
		return fmt.Sprintf("%s: missing (want %s)", d.Name, d.Want)
	case d.Want == "":
		return fmt.Sprintf("%s: extra (%s)", d.Name, d.Got)
	}
	return fmt.Sprintf("%s:\n\tgot  %s\n\twant %s", d.Name, d.Got, d.Want)
}

// Diff loads the packages got and want (import paths, from the export data
// the go command builds) and returns their differences, sorted by name.
// same maps an import path prefix used by got to the one want uses in its
// place; the two packages themselves are always the same.
func Diff(got, want string, same map[string]string) ([]Difference, error) {
	exports, err := exportData(got, want)
	if err != nil {
		return nil, err
	}
	imp := importer.ForCompiler(token.NewFileSet(), "gc", func(path string) (io.ReadCloser, error) {
		file, ok := exports[path]
		if !ok {
			return nil, fmt.Errorf("apipin: no export data for %s", path)
		}
		return os.Open(file)
	})
	g, err := imp.Import(got)
	if err != nil {
		return nil, err
	}
	w, err := imp.Import(want)
	if err != nil {
		return nil, err
	}
	return Compare(g, w, same), nil
}

// exportData asks the go command (from the current directory, so in its
// module) to build the packages and their dependencies, and returns the
// export data file of each by import path.
func exportData(paths ...string) (map[string]string, error) {
	args := append([]string{"list", "-export", "-deps", "-f", "{{.ImportPath}} {{.Export}}"}, paths...)
	cmd := exec.Command("go", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("apipin: go list: %v: %s", err, stderr.Bytes())
	}
	files := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if path, file, ok := strings.Cut(line, " "); ok && file != "" {
			files[path] = file
		}
	}
	return files, nil
}

// Compare returns the differences between the exported APIs of got and
// want, sorted by name; same is as for Diff.
func Compare(got, want *types.Package, same map[string]string) []Difference {
	gd := Describe(got, func(p string) string {
		if p == got.Path() {
			return ""
		}
		for from, to := range same {
			if p == from || strings.HasPrefix(p, from+"/") {
				return to + strings.TrimPrefix(p, from)
			}
		}
		return p
	})
	wd := Describe(want, func(p string) string {
		if p == want.Path() {
			return ""
		}
		return p
	})
	var out []Difference
	for name, gs := range gd {
		if ws, ok := wd[name]; !ok || ws != gs {
			out = append(out, Difference{name, gs, ws})
		}
	}
	for name, ws := range wd {
		if _, ok := gd[name]; !ok {
			out = append(out, Difference{name, "", ws})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Describe returns the exported API of pkg, one entry per exported name
// (Type.Field and Type.Method for members), each written with package
// paths passed through path ("" drops the qualifier).
func Describe(pkg *types.Package, path func(string) string) map[string]string {
	qual := func(p *types.Package) string { return path(p.Path()) }
	str := func(t types.Type) string { return types.TypeString(unnamed(t), qual) }
	api := map[string]string{}
	scope := pkg.Scope()
	for _, name := range scope.Names() {
		obj := scope.Lookup(name)
		if !obj.Exported() {
			continue
		}
		switch o := obj.(type) {
		case *types.Const:
			api[name] = "const " + str(o.Type()) + " = " + o.Val().ExactString()
			if o.Val().Kind() == constant.Unknown {
				api[name] = "const " + str(o.Type())
			}
		case *types.Var:
			api[name] = "var " + str(o.Type())
		case *types.Func:
			api[name] = str(o.Type())
		case *types.TypeName:
			describeType(api, name, o, str)
		}
	}
	return api
}

// describeType adds a type: its underlying type (a struct by its exported
// fields, as the unexported ones are the implementation's), and its
// exported methods with their receivers' kind.
func describeType(api map[string]string, name string, o *types.TypeName, str func(types.Type) string) {
	if o.IsAlias() {
		api[name] = "type = " + str(o.Type())
		return
	}
	under := o.Type().Underlying()
	if st, ok := under.(*types.Struct); ok {
		api[name] = "type struct"
		for i := 0; i < st.NumFields(); i++ {
			f := st.Field(i)
			if !f.Exported() {
				continue
			}
			kind := "field "
			if f.Embedded() {
				kind = "embedded "
			}
			api[name+"."+f.Name()] = kind + str(f.Type())
		}
	} else {
		api[name] = "type " + str(under)
	}
	if _, ok := under.(*types.Interface); ok {
		return // its methods are in its type
	}
	for _, recv := range []types.Type{o.Type(), types.NewPointer(o.Type())} {
		ms := types.NewMethodSet(recv)
		for i := 0; i < ms.Len(); i++ {
			m := ms.At(i).Obj()
			if !m.Exported() || len(ms.At(i).Index()) > 1 {
				continue // promoted methods are their embedded type's
			}
			key := name + "." + m.Name()
			if _, seen := api[key]; seen {
				continue // on T, so on *T too
			}
			sig := m.Type().(*types.Signature)
			r := "(" + name + ") "
			if _, ptr := sig.Recv().Type().(*types.Pointer); ptr {
				r = "(*" + name + ") "
			}
			api[key] = "method " + r + str(sig)
		}
	}
}

// unnamed returns t with the parameter and result names of its signatures
// (and of its interface's methods) dropped: they are not part of a type's
// identity, and a face may name them differently from upstream.
func unnamed(t types.Type) types.Type {
	switch t := t.(type) {
	case *types.Signature:
		return types.NewSignatureType(nil, nil, nil, unnamedTuple(t.Params()), unnamedTuple(t.Results()), t.Variadic())
	case *types.Interface:
		methods := make([]*types.Func, t.NumExplicitMethods())
		for i := range methods {
			m := t.ExplicitMethod(i)
			methods[i] = types.NewFunc(m.Pos(), m.Pkg(), m.Name(), unnamed(m.Type()).(*types.Signature))
		}
		embedded := make([]types.Type, t.NumEmbeddeds())
		for i := range embedded {
			embedded[i] = t.EmbeddedType(i)
		}
		return types.NewInterfaceType(methods, embedded)
	}
	return t
}

func unnamedTuple(tu *types.Tuple) *types.Tuple {
	vars := make([]*types.Var, tu.Len())
	for i := range vars {
		v := tu.At(i)
		vars[i] = types.NewParam(v.Pos(), v.Pkg(), "", unnamed(v.Type()))
	}
	return types.NewTuple(vars...)
}

// Pin fails t for every exported name of up that self lacks or declares
// with another type, and returns how many names self has beyond up's:
// the check each face's test makes against its upstream.
func Pin(t testing.TB, self, up string, same map[string]string) (extras int) {
	t.Helper()
	diffs, err := Diff(self, up, same)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffs {
		if d.Want == "" {
			extras++
			continue
		}
		t.Errorf("against %s: %v", up, d)
	}
	return extras
}
