package atomicfile

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestWriteReplacesAndLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "k.private")
	for _, data := range []string{"first", "second, longer"} {
		if err := Write(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(p); string(b) != data {
			t.Fatalf("content %q, want %q", b, data)
		}
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	if names := list(t, dir); !slices.Equal(names, []string{"k.private"}) {
		t.Errorf("directory holds %v", names)
	}
}

func TestWriteFailureKeepsOld(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := Write(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The target is a directory now: the rename fails after the data was
	// written; the temporary file must go.
	q := filepath.Join(dir, "d")
	os.Mkdir(q, 0o755)
	os.WriteFile(filepath.Join(q, "x"), nil, 0o644)
	if err := Write(q, []byte("new"), 0o644); err == nil {
		t.Fatal("write over a non-empty directory succeeded")
	}
	if b, _ := os.ReadFile(p); string(b) != "old" {
		t.Errorf("old file now %q", b)
	}
	if names := list(t, dir); !slices.Equal(names, []string{"d", "f"}) {
		t.Errorf("directory holds %v", names)
	}
}

func TestClean(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{".atomic-Kexample.+013+00001.private-123", ".atomic-Kother.+013+00002.key-9", "Kexample.+013+00001.key", "notes.atomic-x"} {
		os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o644)
	}
	removed, err := Clean(dir, "Kexample.+")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(removed, []string{".atomic-Kexample.+013+00001.private-123"}) {
		t.Errorf("removed %v", removed)
	}
	if names := list(t, dir); !slices.Equal(names, []string{".atomic-Kother.+013+00002.key-9", "Kexample.+013+00001.key", "notes.atomic-x"}) {
		t.Errorf("left %v", names)
	}
	if _, err := Clean(filepath.Join(dir, "missing"), ""); err != nil {
		t.Errorf("missing dir: %v", err)
	}
}

func list(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}
