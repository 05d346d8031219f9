package testkit

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// TestNoDirectSkips walks the module's test files and fails on any direct
// call of Skip, Skipf or SkipNow: tests skip through testkit.Skip or
// testkit.Peer, which fail instead when APPLAYER_REQUIRE_PEERS is set, so
// that under the variable a run with any skipped test fails (whatever the
// package). Only this package may call the testing methods.
func TestNoDirectSkips(t *testing.T) {
	root := moduleRoot(t)
	fset := token.NewFileSet()
	var bad []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != root && (strings.HasPrefix(n, ".") || n == "testdata" || n == "vendor" || n == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		// Test files, and helper files that import testing.
		if !strings.HasSuffix(path, ".go") || filepath.Dir(path) == filepath.Join(root, "internal", "testkit") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		if !strings.HasSuffix(path, "_test.go") && !importsTesting(f) {
			return nil
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			switch sel.Sel.Name {
			case "Skip", "Skipf", "SkipNow":
				if id, ok := sel.X.(*ast.Ident); ok && id.Name == "testkit" {
					return true
				}
				rel, _ := filepath.Rel(root, path)
				bad = append(bad, rel+":"+itoa(fset.Position(call.Pos()).Line)+": "+sel.Sel.Name)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bad {
		t.Errorf("%s called directly: use testkit.Skip (fails under %s) or testkit.Peer", b, RequirePeersEnv)
	}
}

// TestSkipFailsWhenRequired runs testkit.Skip in a child test with and
// without the variable.
func TestSkipFailsWhenRequired(t *testing.T) {
	for _, req := range []string{"", "1"} {
		t.Run("required="+req, func(t *testing.T) {
			t.Setenv(RequirePeersEnv, req)
			ft := &fakeTB{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				Skip(ft, "no %s", "thing")
			}()
			<-done
			if req == "" && (!ft.skipped || ft.failed) {
				t.Errorf("without the variable: skipped %v failed %v, want a skip", ft.skipped, ft.failed)
			}
			if req != "" && (ft.skipped || !ft.failed || !strings.Contains(ft.msg, "no thing")) {
				t.Errorf("with the variable: skipped %v failed %v (%q), want a failure", ft.skipped, ft.failed, ft.msg)
			}
		})
	}
}

// fakeTB records Skip and Fatal instead of acting on them (both end the
// goroutine, as the testing package's do).
type fakeTB struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Skip(args ...any) {
	f.skipped = true
	runtimeGoexit()
}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed = true
	f.msg = sprintf(format, args...)
	runtimeGoexit()
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the package")
		}
		dir = parent
	}
}

func itoa(n int) string                 { return strconv.Itoa(n) }
func sprintf(f string, a ...any) string { return fmt.Sprintf(f, a...) }
func runtimeGoexit()                    { runtime.Goexit() }

func importsTesting(f *ast.File) bool {
	for _, i := range f.Imports {
		if i.Path.Value == `"testing"` {
			return true
		}
	}
	return false
}
