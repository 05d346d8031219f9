package app

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/torrent/metainfo"
	"github.com/applayer/applayer/torrent/swarm"
)

// runApp runs the applayer command line in-process and returns stdout.
func runApp(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := NewRoot(strings.NewReader(""), &out, &errOut)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	if errOut.Len() > 0 {
		t.Logf("stderr: %s", errOut.String())
	}
	return out.String(), err
}

func TestTorrentCreateAndInfo(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "data.bin")
	if err := os.WriteFile(src, bytes.Repeat([]byte("applayer"), 40000), 0o644); err != nil {
		t.Fatal(err)
	}
	tf := filepath.Join(dir, "data.torrent")
	out, err := runApp(t, "torrent", "create", "-a", "http://127.0.0.1:6969/announce,udp://127.0.0.1:6969", "-a", "http://127.0.0.2:6969/announce",
		"--private", "--web-seed", "http://127.0.0.1:8080/data.bin", "-l", "32768", "-o", tf, src)
	if err != nil {
		t.Fatal(err)
	}
	m, err := metainfo.ReadFile(tf)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "info-hash "+m.InfoHash.String()) || !strings.Contains(out, "magnet magnet:?xt=urn:btih:"+m.InfoHash.String()) ||
		!strings.Contains(out, "10 pieces of 32.0 KiB") {
		t.Errorf("create output:\n%s", out)
	}
	if len(m.AnnounceList) != 2 || len(m.AnnounceList[0]) != 2 || !m.Info.Private || m.Info.PieceLength != 32768 {
		t.Errorf("torrent: %+v", m)
	}

	out, err = runApp(t, "torrent", "info", tf)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"name:       data.bin", "info-hash:  " + m.InfoHash.String(), "pieces:     10 of 32.0 KiB", "private:    true",
		"tier 1:     http://127.0.0.1:6969/announce udp://127.0.0.1:6969", "tier 2:     http://127.0.0.2:6969/announce",
		"web seed:   http://127.0.0.1:8080/data.bin", "320000  data.bin"} {
		if !strings.Contains(out, want) {
			t.Errorf("info lacks %q:\n%s", want, out)
		}
	}
	magnet := regexp.MustCompile(`magnet:     (\S+)`).FindStringSubmatch(out)[1]
	out, err = runApp(t, "torrent", "info", magnet)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "info-hash:  "+m.InfoHash.String()) || !strings.Contains(out, "name:       data.bin") ||
		!strings.Contains(out, "tracker:    udp://127.0.0.1:6969") {
		t.Errorf("magnet info:\n%s", out)
	}
	if _, err := runApp(t, "torrent", "info", "magnet:?dn=x"); err == nil {
		t.Error("magnet without info-hash accepted")
	}
	if _, err := runApp(t, "torrent", "info", src); err == nil || !strings.Contains(err.Error(), "metainfo:") {
		t.Errorf("info on a non-torrent: %v", err)
	}
}

// TestTorrentGetCommand downloads with `applayer torrent get` from an
// in-process seed and checks the progress lines and the file.
func TestTorrentGetCommand(t *testing.T) {
	dir := t.TempDir()
	data := bytes.Repeat([]byte("0123456789abcdef"), 50000)
	os.MkdirAll(filepath.Join(dir, "seed"), 0o755)
	os.WriteFile(filepath.Join(dir, "seed", "d.bin"), data, 0o644)
	tf := filepath.Join(dir, "d.torrent")
	if _, err := runApp(t, "torrent", "create", "-o", tf, filepath.Join(dir, "seed", "d.bin")); err != nil {
		t.Fatal(err)
	}
	m, err := metainfo.ReadFile(tf)
	if err != nil {
		t.Fatal(err)
	}
	blk := fmt.Sprintf("127.%d.%d.", 100+rand.IntN(100), rand.IntN(250))
	seed, err := swarm.New(swarm.Config{Torrent: m, Dir: filepath.Join(dir, "seed"), Listen: blk + "2:0", Seed: true}, service.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if err := seed.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer seed.Shutdown(context.Background())
	out, err := runApp(t, "torrent", "get", "--dir", filepath.Join(dir, "got"), "--listen", blk+"3:0", "--peer", seed.Addrs()[0].String(),
		"--status-interval", "100ms", "--verbose", tf)
	if err != nil {
		t.Fatalf("get: %v\n%s", err, out)
	}
	got, _ := os.ReadFile(filepath.Join(dir, "got", "d.bin"))
	if !bytes.Equal(got, data) {
		t.Fatal("downloaded file differs")
	}
	for _, want := range []string{"peer listening on " + blk + "3:", "100.0% 49/49 pieces", "complete: d.bin (781.2 KiB)", "pick piece ", "pieces ####"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
