package metainfo

import (
	"bytes"
	"crypto/sha1"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/applayer/applayer/torrent/bencode"
)

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	x := uint32(seed) + 1
	for i := range b {
		x = x*1664525 + 1013904223
		b[i] = byte(x >> 24)
	}
	return b
}

func TestCreateSingleFile(t *testing.T) {
	dir := t.TempDir()
	data := pattern(100000, 1)
	p := filepath.Join(dir, "sample.bin")
	writeFile(t, p, data)
	m, err := Create(p, CreateOptions{
		Trackers:     [][]string{{"http://127.0.0.1:6969/announce"}, {"udp://127.0.0.1:6969"}},
		PieceLength:  32 << 10,
		Private:      true,
		WebSeeds:     []string{"http://127.0.0.1:8080/sample.bin"},
		Comment:      "test",
		CreationDate: time.Unix(1700000000, 0),
	})
	if err != nil {
		t.Fatal(err)
	}
	if m.Info.NumPieces() != 4 || m.Info.PieceSize(3) != 100000-3*32768 {
		t.Fatalf("pieces = %d, last = %d", m.Info.NumPieces(), m.Info.PieceSize(3))
	}
	for i := range 4 {
		end := min((i+1)*32768, len(data))
		if m.Info.Pieces[i] != sha1.Sum(data[i*32768:end]) {
			t.Errorf("piece %d hash wrong", i)
		}
	}
	back, err := Parse(m.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if back.InfoHash != m.InfoHash || !bytes.Equal(back.InfoBytes, m.InfoBytes) {
		t.Error("info-hash changed through a round trip")
	}
	if back.InfoHash != sha1.Sum(m.InfoBytes) {
		t.Error("info-hash is not the SHA-1 of the info dictionary")
	}
	if !back.Info.Private || back.Announce != "http://127.0.0.1:6969/announce" || len(back.AnnounceList) != 2 ||
		!reflect.DeepEqual(back.URLList, []string{"http://127.0.0.1:8080/sample.bin"}) || back.Comment != "test" || back.CreationDate != 1700000000 {
		t.Errorf("round trip lost fields: %+v", back)
	}
	if got := back.Trackers(); !reflect.DeepEqual(got, []string{"http://127.0.0.1:6969/announce", "udp://127.0.0.1:6969"}) {
		t.Errorf("Trackers = %v", got)
	}
}

func TestCreateDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "album")
	writeFile(t, filepath.Join(dir, "b.txt"), pattern(20000, 2))
	writeFile(t, filepath.Join(dir, "a", "z.txt"), pattern(30000, 3))
	writeFile(t, filepath.Join(dir, "a", "y.txt"), pattern(5, 4))
	m, err := Create(dir, CreateOptions{PieceLength: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, f := range m.Info.Files {
		paths = append(paths, strings.Join(f.Path, "/"))
	}
	if !reflect.DeepEqual(paths, []string{"a/y.txt", "a/z.txt", "b.txt"}) || m.Info.Name != "album" {
		t.Fatalf("files = %v, name %q", paths, m.Info.Name)
	}
	all := append(append(pattern(5, 4), pattern(30000, 3)...), pattern(20000, 2)...)
	if m.Info.NumPieces() != 4 {
		t.Fatalf("pieces = %d", m.Info.NumPieces())
	}
	for i := range 4 {
		end := min((i+1)*16384, len(all))
		if m.Info.Pieces[i] != sha1.Sum(all[i*16384:end]) {
			t.Errorf("piece %d (spanning files) hash wrong", i)
		}
	}
	if _, err := Parse(m.Bytes()); err != nil {
		t.Fatal(err)
	}
}

func TestPieceLengthFor(t *testing.T) {
	tests := []struct{ total, want int64 }{
		{1, 16 << 10},
		{16 << 20, 16 << 10},
		{64 << 20, 64 << 10},
		{1 << 30, 1 << 20},
		{1 << 40, 16 << 20},
	}
	for _, tt := range tests {
		if got := PieceLengthFor(tt.total); got != tt.want {
			t.Errorf("PieceLengthFor(%d) = %d, want %d", tt.total, got, tt.want)
		}
	}
}

func info(fields map[string]bencode.Value) []byte {
	base := map[string]bencode.Value{
		"name":         bencode.String("x"),
		"piece length": bencode.Int(16384),
		"pieces":       bencode.Bytes(make([]byte, 20)),
		"length":       bencode.Int(100),
	}
	for k, v := range fields {
		if v.Kind == bencode.KindInvalid {
			delete(base, k)
		} else {
			base[k] = v
		}
	}
	return bencode.MustEncode(bencode.Dict(map[string]bencode.Value{"info": bencode.Dict(base)}))
}

func TestParseRejects(t *testing.T) {
	files := func(paths ...string) bencode.Value {
		var l []bencode.Value
		for _, p := range paths {
			var comps []bencode.Value
			for _, c := range strings.Split(p, "/") {
				comps = append(comps, bencode.String(c))
			}
			l = append(l, bencode.Dict(map[string]bencode.Value{"length": bencode.Int(10), "path": bencode.List(comps...)}))
		}
		return bencode.List(l...)
	}
	none := bencode.Value{}
	tests := []struct {
		name string
		in   []byte
		msg  string
	}{
		{"not a dict", []byte("i1e"), "not a dictionary"},
		{"no info", []byte("d8:announce1:xe"), "no info"},
		{"no name", info(map[string]bencode.Value{"name": none}), "no name"},
		{"dotdot name", info(map[string]bencode.Value{"name": bencode.String("..")}), "bad path element"},
		{"slash name", info(map[string]bencode.Value{"name": bencode.String("a/b")}), "separator"},
		{"small piece", info(map[string]bencode.Value{"piece length": bencode.Int(100)}), "piece length"},
		{"pieces not 20n", info(map[string]bencode.Value{"pieces": bencode.Bytes(make([]byte, 21))}), "multiple of 20"},
		{"too many pieces", info(map[string]bencode.Value{"pieces": bencode.Bytes(make([]byte, 40))}), "want 1"},
		{"negative length", info(map[string]bencode.Value{"length": bencode.Int(-1)}), "negative"},
		{"both", info(map[string]bencode.Value{"files": files("a")}), "both"},
		{"neither", info(map[string]bencode.Value{"length": none}), "neither"},
		{"traversal", info(map[string]bencode.Value{"length": none, "files": files("../etc/passwd")}), "bad path element"},
		{"duplicate file", info(map[string]bencode.Value{"length": none, "files": files("a", "a")}), "twice"},
		{"non-canonical", []byte("d4:infod6:lengthi01eee"), "leading zero"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("Parse = %v, want error containing %q", err, tt.msg)
			}
		})
	}
	if _, err := Parse(info(nil)); err != nil {
		t.Fatalf("base case refused: %v", err)
	}
}

func TestMagnet(t *testing.T) {
	h, _ := ParseHash("c12fe1c06bba254a9dc9f519b335aa7c1367a88a")
	tests := []struct {
		in   string
		want Magnet
	}{
		{"magnet:?xt=urn:btih:c12fe1c06bba254a9dc9f519b335aa7c1367a88a", Magnet{InfoHash: h}},
		{"magnet:?xt=urn:btih:C12FE1C06BBA254A9DC9F519B335AA7C1367A88A&dn=a+b&tr=http%3A%2F%2F127.0.0.1%3A6969%2Fannounce&tr=udp://t:1&x.pe=127.0.0.2:6881",
			Magnet{InfoHash: h, Name: "a b", Trackers: []string{"http://127.0.0.1:6969/announce", "udp://t:1"}, Peers: []string{"127.0.0.2:6881"}}},
		{"magnet:?xt=urn:btih:YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK", Magnet{InfoHash: h}},
	}
	for _, tt := range tests {
		m, err := ParseMagnet(tt.in)
		if err != nil {
			t.Fatalf("%s: %v", tt.in, err)
		}
		if !reflect.DeepEqual(*m, tt.want) {
			t.Errorf("%s: got %+v want %+v", tt.in, *m, tt.want)
		}
		again, err := ParseMagnet(m.String())
		if err != nil || !reflect.DeepEqual(again, m) {
			t.Errorf("%s: print/parse round trip: %v %+v", m.String(), err, again)
		}
	}
	for _, bad := range []string{"http://x", "magnet:?dn=x", "magnet:?xt=urn:btih:123", "magnet:?xt=urn:btmh:1220abcd", "magnet:?xt=urn:btih:zz2fe1c06bba254a9dc9f519b335aa7c1367a88a"} {
		if _, err := ParseMagnet(bad); err == nil {
			t.Errorf("ParseMagnet(%q) accepted", bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(info(nil))
	f.Add([]byte("d8:announce5:http:4:infod5:filesld6:lengthi1e4:pathl1:aeee4:name1:x12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaaee"))
	f.Add([]byte("d4:infod6:lengthi01eee"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			return
		}
		if m.InfoHash != sha1.Sum(m.InfoBytes) {
			t.Fatal("info-hash does not match info bytes")
		}
		if int64(m.Info.NumPieces()) != (m.Info.TotalLength()+m.Info.PieceLength-1)/m.Info.PieceLength {
			t.Fatal("piece count inconsistent with length")
		}
		back, err := Parse(m.Bytes())
		if err != nil || back.InfoHash != m.InfoHash {
			t.Fatalf("re-encoded torrent: %v", err)
		}
		for _, fl := range m.Info.FileList() {
			for _, c := range fl.Path {
				if c == ".." || strings.ContainsAny(c, "/\\") {
					t.Fatalf("unsafe path element %q accepted", c)
				}
			}
		}
	})
}

func FuzzParseMagnet(f *testing.F) {
	f.Add("magnet:?xt=urn:btih:c12fe1c06bba254a9dc9f519b335aa7c1367a88a&dn=x&tr=udp://a:1")
	f.Add("magnet:?xt=urn:btih:YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMagnet(s)
		if err != nil {
			return
		}
		again, err := ParseMagnet(m.String())
		if err != nil || again.InfoHash != m.InfoHash || again.Name != m.Name || len(again.Trackers) != len(m.Trackers) {
			t.Fatalf("round trip of %q: %v", s, err)
		}
	})
}
