package storage

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/applayer/applayer/torrent/metainfo"
)

func TestStorageMultiFileRoundTrip(t *testing.T) {
	src := filepath.Join(t.TempDir(), "set")
	os.MkdirAll(filepath.Join(src, "d"), 0o755)
	a := bytes.Repeat([]byte("a"), 20000)
	b := bytes.Repeat([]byte("b"), 5)
	c := bytes.Repeat([]byte("c"), 30000)
	os.WriteFile(filepath.Join(src, "a"), a, 0o644)
	os.WriteFile(filepath.Join(src, "d", "b"), b, 0o644)
	os.WriteFile(filepath.Join(src, "e"), c, 0o644)
	m, err := metainfo.Create(src, metainfo.CreateOptions{PieceLength: 16384})
	if err != nil {
		t.Fatal(err)
	}
	seed, err := Open(&m.Info, filepath.Dir(src))
	if err != nil {
		t.Fatal(err)
	}
	defer seed.Close()
	have, err := seed.Scan(nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range have {
		if !h {
			t.Fatalf("seed lacks piece %d", i)
		}
	}
	// Copy piece by piece, in reverse order, to a fresh directory.
	dst := t.TempDir()
	leech, err := Open(&m.Info, dst)
	if err != nil {
		t.Fatal(err)
	}
	defer leech.Close()
	got, _ := leech.Scan(nil)
	for i, h := range got {
		if h {
			t.Fatalf("empty directory has piece %d", i)
		}
	}
	for i := m.Info.NumPieces() - 1; i >= 0; i-- {
		p, err := seed.ReadBlock(i, 0, int(m.Info.PieceSize(i)))
		if err != nil {
			t.Fatal(err)
		}
		if !leech.CheckPiece(i, p) {
			t.Fatalf("piece %d fails its hash", i)
		}
		if i == 1 {
			continue // leave a hole for the resume scan
		}
		if err := leech.WritePiece(i, p); err != nil {
			t.Fatal(err)
		}
	}
	got, _ = leech.Scan(nil)
	for i, h := range got {
		if h != (i != 1) {
			t.Errorf("resume scan: piece %d = %v", i, h)
		}
	}
	p, _ := seed.ReadBlock(1, 0, int(m.Info.PieceSize(1)))
	leech.WritePiece(1, p)
	if err := leech.Complete(); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]byte{"a": a, "d/b": b, "e": c} {
		data, err := os.ReadFile(filepath.Join(dst, "set", name))
		if err != nil || !bytes.Equal(data, want) {
			t.Errorf("%s differs (%v)", name, err)
		}
	}
	if leech.CheckPiece(0, bytes.Repeat([]byte("x"), 16384)) {
		t.Error("wrong data passed the hash check")
	}
	if _, err := seed.ReadBlock(0, 16000, 1000); err == nil {
		t.Error("block past the piece end read")
	}
}
