package config

// The troubleshooting page must name every key the validator reports under
// and every message it can print. This check lives here, not with the other
// docs tests in docs/, because it reads validate.go's own idioms (the
// validator's methods, its receiver v, its constants) and must learn each new
// one, and because whoever adds a message runs this package's tests.

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// validatorReport is one v.add / v.ip / ... call of validate.go.
type validatorReport struct {
	line   int
	key    string // key pattern, "[]" for an index; "" for a forwarded path
	format string // the message format, for v.add; "" otherwise
}

// validatorReports parses validate.go and returns, for each call of a
// validator method, the key it reports under and (for add) its format.
// Keys built from the helper's own parameter are left empty: the callers'
// literal keys are reported instead.
func validatorReports(t *testing.T) []validatorReport {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "validate.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	consts := map[string]string{}
	methods := map[string]bool{}
	for _, d := range f.Decls {
		switch d := d.(type) {
		case *ast.GenDecl:
			for _, s := range d.Specs {
				if vs, ok := s.(*ast.ValueSpec); ok && d.Tok == token.CONST {
					for i, n := range vs.Names {
						if s, ok := stringValue(vs.Values[i], nil); ok {
							consts[n.Name] = s
						}
					}
				}
			}
		case *ast.FuncDecl:
			if d.Recv != nil && len(d.Recv.List) == 1 {
				if star, ok := d.Recv.List[0].Type.(*ast.StarExpr); ok {
					if id, ok := star.X.(*ast.Ident); ok && id.Name == "validator" {
						methods[d.Name.Name] = true
					}
				}
			}
		}
	}
	if !methods["add"] {
		t.Fatal("validate.go: no (*validator).add; this test must follow the validator")
	}

	var out []validatorReport
	for _, d := range f.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || fn.Body == nil {
			continue
		}
		params := map[string]bool{}
		for _, p := range fn.Type.Params.List {
			for _, n := range p.Names {
				params[n.Name] = true
			}
		}
		// Local variables: name -> expression, and range values over a
		// literal list of structs: name -> the list.
		locals := map[string]ast.Expr{}
		ranges := map[string]*ast.CompositeLit{}
		ast.Inspect(fn.Body, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.AssignStmt:
				for i, l := range n.Lhs {
					if id, ok := l.(*ast.Ident); ok && i < len(n.Rhs) {
						locals[id.Name] = n.Rhs[i]
					}
				}
			case *ast.RangeStmt:
				if id, ok := n.Value.(*ast.Ident); ok {
					if cl, ok := n.X.(*ast.CompositeLit); ok {
						ranges[id.Name] = cl
					}
				}
			}
			return true
		})
		var keysOf func(e ast.Expr) ([]string, bool)
		keysOf = func(e ast.Expr) ([]string, bool) {
			switch e := e.(type) {
			case *ast.BasicLit:
				s, ok := stringValue(e, nil)
				return []string{s}, ok
			case *ast.Ident:
				if params[e.Name] {
					return []string{""}, true // forwarded: the callers' keys count
				}
				if x, ok := locals[e.Name]; ok {
					return keysOf(x)
				}
			case *ast.BinaryExpr:
				l, ok1 := keysOf(e.X)
				r, ok2 := keysOf(e.Y)
				if !ok1 || !ok2 || e.Op != token.ADD {
					return nil, false
				}
				var out []string
				for _, a := range l {
					for _, b := range r {
						if a == "" {
							out = append(out, "")
						} else {
							out = append(out, a+b)
						}
					}
				}
				return out, true
			case *ast.CallExpr: // fmt.Sprintf("dns.staticEntries[%d]", i)
				if sel, ok := e.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "Sprintf" && len(e.Args) > 0 {
					s, ok := stringValue(e.Args[0], nil)
					if !ok {
						return nil, false
					}
					if strings.HasPrefix(s, "%s") {
						return []string{""}, true // the helper's path parameter
					}
					return []string{strings.ReplaceAll(s, "[%d]", "[]")}, true
				}
			case *ast.SelectorExpr: // u.key, ranging over []struct{key, raw string}{...}
				id, ok := e.X.(*ast.Ident)
				if !ok || ranges[id.Name] == nil {
					return nil, false
				}
				cl := ranges[id.Name]
				at, ok := cl.Type.(*ast.ArrayType)
				if !ok {
					return nil, false
				}
				st, ok := at.Elt.(*ast.StructType)
				if !ok {
					return nil, false
				}
				idx, i := -1, 0
				for _, fld := range st.Fields.List {
					for _, n := range fld.Names {
						if n.Name == e.Sel.Name {
							idx = i
						}
						i++
					}
				}
				var out []string
				for _, elt := range cl.Elts {
					item, ok := elt.(*ast.CompositeLit)
					if !ok || idx < 0 || idx >= len(item.Elts) {
						return nil, false
					}
					s, ok := stringValue(item.Elts[idx], nil)
					if !ok {
						return nil, false
					}
					out = append(out, s)
				}
				return out, true
			}
			return nil, false
		}

		ast.Inspect(fn.Body, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || !methods[sel.Sel.Name] || len(call.Args) == 0 {
				return true
			}
			if id, ok := sel.X.(*ast.Ident); !ok || id.Name != "v" {
				return true
			}
			line := fset.Position(call.Pos()).Line
			keys, ok := keysOf(call.Args[0])
			if !ok {
				t.Fatalf("validate.go:%d: cannot tell which key v.%s reports; teach validatorReports this form", line, sel.Sel.Name)
			}
			format := ""
			if sel.Sel.Name == "add" {
				if len(call.Args) < 2 {
					t.Fatalf("validate.go:%d: v.add without a format", line)
				}
				var ok bool
				if format, ok = stringValue(call.Args[1], consts); !ok {
					t.Fatalf("validate.go:%d: the format of v.add is not a string literal", line)
				}
				if format == "%s" && len(call.Args) == 3 {
					if s, ok := stringValue(call.Args[2], consts); ok {
						format = s // v.add("", "%s", NoHostnameError)
					}
				}
			}
			for _, k := range keys {
				out = append(out, validatorReport{line: line, key: k, format: format})
			}
			return true
		})
	}
	return out
}

// stringValue evaluates a string literal, a constant, or their sum.
func stringValue(e ast.Expr, consts map[string]string) (string, bool) {
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind != token.STRING {
			return "", false
		}
		s, err := strconv.Unquote(e.Value)
		return s, err == nil
	case *ast.Ident:
		s, ok := consts[e.Name]
		return s, ok
	case *ast.BinaryExpr:
		l, ok1 := stringValue(e.X, consts)
		r, ok2 := stringValue(e.Y, consts)
		return l + r, ok1 && ok2 && e.Op == token.ADD
	}
	return "", false
}

// fixedText is the longest run of a format without a verb.
func fixedText(format string) string {
	best := ""
	for _, part := range regexp.MustCompile(`%[-+# 0-9.]*[a-zA-Z%]`).Split(format, -1) {
		part = strings.Trim(part, " ;:,()\"")
		if len(part) > len(best) {
			best = part
		}
	}
	return best
}

func TestTroubleshootingCoversValidator(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(moduleRoot, "docs", "operator-guide", "troubleshooting.md"))
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	reports := validatorReports(t)
	if len(reports) < 30 {
		t.Fatalf("found only %d validator reports in validate.go; the parser is missing some", len(reports))
	}
	mentioned := func(key string) bool {
		pat := regexp.QuoteMeta(key)
		pat = strings.ReplaceAll(pat, `\[\]`, `\[[^\]]*\]`)
		return regexp.MustCompile(`(^|[^A-Za-z0-9_.])` + pat + `($|[^A-Za-z0-9_])`).MatchString(page)
	}
	seen := map[string]bool{}
	for _, r := range reports {
		if r.key != "" && !seen[r.key] {
			seen[r.key] = true
			if !mentioned(r.key) {
				t.Errorf("validate.go:%d reports problems under %s; troubleshooting.md never names that key", r.line, r.key)
			}
		}
		if r.format == "" {
			continue
		}
		if fx := fixedText(r.format); len(fx) >= 8 && !strings.Contains(page, fx) {
			t.Errorf("validate.go:%d: troubleshooting.md lacks the message %q (from %q)", r.line, fx, r.format)
		}
	}
	// The helpers' own messages (v.ip, v.port, ...), whatever key they carry.
	for _, d := range []string{"is not an IP address", "is not an IPv4 address", "is not an IPv6 address",
		"must be between 1 and 65535", "must be an https:// URL", "must name a host", "must be host:port such as"} {
		if !strings.Contains(page, d) {
			t.Errorf("troubleshooting.md lacks the validator message %q", d)
		}
	}
}
