package daemon

import (
	"go/ast"
	"go/parser"
	"go/token"
	"testing"
)

// maxParams keeps the wiring readable (issue 13): a function that needs
// more takes a deps struct of its own.
const maxParams = 4

// TestFewParameters fails when a function or method of this package (tests
// included) takes more than maxParams parameters, the receiver not counted.
func TestFewParameters(t *testing.T) {
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, ".", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, pkg := range pkgs {
		for _, f := range pkg.Files {
			ast.Inspect(f, func(n ast.Node) bool {
				var ft *ast.FuncType
				name := "func literal"
				switch fn := n.(type) {
				case *ast.FuncDecl:
					ft, name = fn.Type, fn.Name.Name
				case *ast.FuncLit:
					ft = fn.Type
				default:
					return true
				}
				checked++
				n2 := 0
				for _, p := range ft.Params.List {
					n2 += max(1, len(p.Names))
				}
				if n2 > maxParams {
					t.Errorf("%s: %s takes %d parameters, want at most %d (group them in a struct)", fset.Position(ft.Pos()), name, n2, maxParams)
				}
				return true
			})
		}
	}
	if checked < 50 {
		t.Fatalf("checked only %d functions: the parse did not see the package", checked)
	}
}

// TestSubsystemsInOrder: the core is the list of subsystems, control
// socket first and front last, and nothing else starts it.
func TestSubsystemsInOrder(t *testing.T) {
	cfg := mustConfig(t, "http:\n  port: 0\n  ip: 127.0.0.1\n")
	c, err := newCore(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.stop()
	var names []string
	for _, s := range c.subs {
		names = append(names, s.Name())
	}
	want := []string{"opening the control socket", "loading the certificates", "starting the metrics listener",
		"loading the materialised certificates", "starting the DNS server", "preparing ACME",
		"checking the node certificate", "opening PlatformDB", "checking for a certificate to serve", "starting the front"}
	if len(names) != len(want) {
		t.Fatalf("subsystems %q, want %q", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Fatalf("subsystem %d is %q, want %q (all: %q)", i, names[i], want[i], names)
		}
	}
}
