// Package apipin checks that a package declares every exported name of
// another (its upstream) with the identical type, up to the packages'
// paths: the same kind of object, the same constant values, the same
// signatures, the same exported struct fields in the same order, the same
// interface methods, and every exported method. Both packages are
// type-checked from source, as go/importer's "source" importer finds them
// from the current module.
package apipin

import (
	"fmt"
	"go/importer"
	"go/token"
	"go/types"
	"sort"
)

// Check compares ours with upstream and returns one line per difference;
// none means ours is a drop-in for upstream. equiv maps further upstream
// package paths to ours (such as the tcpassembly a tcpreader refers to),
// so that types of those packages compare equal too.
func Check(upstream, ours string, equiv map[string]string) ([]string, error) {
	imp := importer.ForCompiler(token.NewFileSet(), "source", nil).(types.ImporterFrom)
	up, err := imp.ImportFrom(upstream, ".", 0)
	if err != nil {
		return nil, fmt.Errorf("importing %s: %w", upstream, err)
	}
	our, err := imp.ImportFrom(ours, ".", 0)
	if err != nil {
		return nil, fmt.Errorf("importing %s: %w", ours, err)
	}
	same := map[string]string{upstream: ours}
	for k, v := range equiv {
		same[k] = v
	}
	c := checker{same: same}
	for _, name := range up.Scope().Names() {
		uo := up.Scope().Lookup(name)
		if !uo.Exported() {
			continue
		}
		oo := our.Scope().Lookup(name)
		if oo == nil {
			c.add("%s: missing", name)
			continue
		}
		c.object(name, uo, oo)
	}
	sort.Strings(c.diffs)
	return c.diffs, nil
}

type checker struct {
	same  map[string]string
	diffs []string
}

func (c *checker) add(format string, args ...any) {
	c.diffs = append(c.diffs, fmt.Sprintf(format, args...))
}

// qualify names a package by its path, upstream's under ours.
func (c *checker) qualify(p *types.Package) string {
	if o, ok := c.same[p.Path()]; ok {
		return o
	}
	return p.Path()
}

func (c *checker) str(t types.Type) string { return types.TypeString(t, c.qualify) }

func (c *checker) object(name string, uo, oo types.Object) {
	if k1, k2 := kind(uo), kind(oo); k1 != k2 {
		c.add("%s: a %s upstream, a %s here", name, k1, k2)
		return
	}
	switch u := uo.(type) {
	case *types.Const:
		o := oo.(*types.Const)
		if c.str(u.Type()) != c.str(o.Type()) || u.Val().ExactString() != o.Val().ExactString() {
			c.add("%s: const %s = %s upstream, %s = %s here", name, c.str(u.Type()), u.Val(), c.str(o.Type()), o.Val())
		}
	case *types.Func:
		if a, b := c.sig(uo.Type().(*types.Signature)), c.sig(oo.Type().(*types.Signature)); a != b {
			c.add("%s: %s upstream, %s here", name, a, b)
		}
	case *types.Var:
		if a, b := c.str(uo.Type()), c.str(oo.Type()); a != b {
			c.add("%s: %s upstream, %s here", name, a, b)
		}
	case *types.TypeName:
		c.typeName(name, u, oo.(*types.TypeName))
	}
}

func kind(o types.Object) string {
	switch o := o.(type) {
	case *types.Const:
		return "const"
	case *types.Var:
		return "var"
	case *types.Func:
		return "func"
	case *types.TypeName:
		if o.IsAlias() {
			return "alias"
		}
		return "type"
	}
	return fmt.Sprintf("%T", o)
}

func (c *checker) typeName(name string, u, o *types.TypeName) {
	ut, ot := u.Type(), o.Type()
	us, uStruct := ut.Underlying().(*types.Struct)
	os, oStruct := ot.Underlying().(*types.Struct)
	switch {
	case uStruct && oStruct:
		a, b := c.exportedFields(us), c.exportedFields(os)
		if fmt.Sprint(a) != fmt.Sprint(b) {
			c.add("%s: exported fields %v upstream, %v here", name, a, b)
		}
	case isInterface(ut) && isInterface(ot):
		// The methods are compared below, without parameter names; one
		// more method here would break the users' implementations.
		if a, b := ut.Underlying().(*types.Interface).NumMethods(), ot.Underlying().(*types.Interface).NumMethods(); a != b {
			c.add("%s: %d interface methods upstream, %d here", name, a, b)
		}
	case uStruct != oStruct:
		c.add("%s: underlying %s upstream, %s here", name, c.str(ut.Underlying()), c.str(ot.Underlying()))
	default:
		if a, b := c.str(ut.Underlying()), c.str(ot.Underlying()); a != b {
			c.add("%s: underlying %s upstream, %s here", name, a, b)
		}
	}
	// Every exported method, on the value or the pointer as upstream.
	for _, ptr := range []bool{false, true} {
		var uT, oT types.Type = ut, ot
		if ptr {
			uT, oT = types.NewPointer(ut), types.NewPointer(ot)
		}
		ums, oms := types.NewMethodSet(uT), types.NewMethodSet(oT)
		for i := 0; i < ums.Len(); i++ {
			m := ums.At(i).Obj()
			if !m.Exported() {
				continue
			}
			sel := oms.Lookup(m.Pkg(), m.Name())
			if sel == nil {
				sel = lookupByName(oms, m.Name())
			}
			if sel == nil {
				c.add("%s: method %s (receiver pointer %v) missing", name, m.Name(), ptr)
				continue
			}
			a := c.sig(m.Type().(*types.Signature))
			b := c.sig(sel.Obj().Type().(*types.Signature))
			if a != b {
				c.add("%s.%s: %s upstream, %s here", name, m.Name(), a, b)
			}
		}
	}
}

// sig writes a signature without its parameter names, which are not part
// of its type.
func (c *checker) sig(s *types.Signature) string {
	list := func(t *types.Tuple, variadic bool) string {
		out := "("
		for i := 0; i < t.Len(); i++ {
			if i > 0 {
				out += ", "
			}
			ty := t.At(i).Type()
			if variadic && i == t.Len()-1 {
				out += "..." + c.str(ty.(*types.Slice).Elem())
				continue
			}
			out += c.str(ty)
		}
		return out + ")"
	}
	return "func" + list(s.Params(), s.Variadic()) + " " + list(s.Results(), false)
}

func isInterface(t types.Type) bool {
	_, ok := t.Underlying().(*types.Interface)
	return ok
}

func lookupByName(ms *types.MethodSet, name string) *types.Selection {
	for i := 0; i < ms.Len(); i++ {
		if ms.At(i).Obj().Name() == name {
			return ms.At(i)
		}
	}
	return nil
}

// exportedFields lists a struct's exported fields, in order, with their
// types and whether they are embedded.
func (c *checker) exportedFields(s *types.Struct) []string {
	var out []string
	for i := 0; i < s.NumFields(); i++ {
		f := s.Field(i)
		if !f.Exported() {
			continue
		}
		out = append(out, fmt.Sprintf("%s %s embedded=%v", f.Name(), c.str(f.Type()), f.Embedded()))
	}
	return out
}
