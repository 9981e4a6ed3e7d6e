package pryvtls_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// maxParams keeps calls readable (issue 13, then issue 17 for the whole
// tree): a function that needs more takes a struct of its own, or becomes a
// method of a value that already carries the context.
const maxParams = 4

// TestFewParameters fails when a function, method or function literal of
// the code under internal/ takes more than maxParams parameters, the
// receiver not counted. A literal passed straight to a call is left out:
// its signature is the callee's (lego's pre-check hook, f.Fuzz's
// arguments), not ours to choose. Test files are not checked yet: about 25
// test helpers take more (see issue 17's report).
func TestFewParameters(t *testing.T) {
	fset := token.NewFileSet()
	checked := 0
	err := filepath.WalkDir("internal", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		callees := map[*ast.FuncLit]bool{}
		ast.Inspect(f, func(n ast.Node) bool {
			if call, ok := n.(*ast.CallExpr); ok {
				for _, a := range call.Args {
					if lit, ok := a.(*ast.FuncLit); ok {
						callees[lit] = true
					}
				}
			}
			return true
		})
		ast.Inspect(f, func(n ast.Node) bool {
			var ft *ast.FuncType
			name := "func literal"
			switch fn := n.(type) {
			case *ast.FuncDecl:
				ft, name = fn.Type, fn.Name.Name
			case *ast.FuncLit:
				if callees[fn] {
					return true
				}
				ft = fn.Type
			default:
				return true
			}
			checked++
			if n := countParams(ft); n > maxParams {
				t.Errorf("%s: %s takes %d parameters, want at most %d (group them in a struct, or make it a method of what carries them)",
					fset.Position(ft.Pos()), name, n, maxParams)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 500 {
		t.Fatalf("checked only %d functions: the walk did not see internal/", checked)
	}
}

func countParams(ft *ast.FuncType) int {
	n := 0
	for _, p := range ft.Params.List {
		n += max(1, len(p.Names))
	}
	return n
}
