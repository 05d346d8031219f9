package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/internal/trace"
	"github.com/applayer/applayer/stream/abr"
	"github.com/applayer/applayer/stream/mpd"
	"github.com/applayer/applayer/stream/origin"
	"github.com/applayer/applayer/stream/packager"
	"github.com/applayer/applayer/stream/player"
	"github.com/applayer/applayer/web/client"
	"github.com/applayer/applayer/web/server"
)

func TestMain(m *testing.M) {
	testkit.VerifyNoLeaks(m, goleak.Cleanup(func(code int) {
		if tinyDir != "" {
			os.RemoveAll(tinyDir)
		}
		os.Exit(code)
	}))
}

var (
	tinyOnce sync.Once
	tinyDir  string
	tinyErr  error
	tinyRes  *packager.Result
)

// tinyVideo packages, once per test binary, a 6 s 320x180 synthetic video
// into two rungs (144p at 150 kbit/s, 180p at 300 kbit/s) of 2 s segments.
func tinyVideo(t *testing.T) (string, *packager.Result) {
	t.Helper()
	testkit.Peer(t, "ffmpeg")
	testkit.Peer(t, "ffprobe")
	tinyOnce.Do(func() {
		dir, err := os.MkdirTemp("", "applayer-stream-test-")
		if err != nil {
			tinyErr = err
			return
		}
		tinyDir = dir
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		src := filepath.Join(dir, "src.mp4")
		if tinyErr = (packager.Synthetic{Duration: 6 * time.Second, Width: 320, Height: 180}).Make(ctx, "", src); tinyErr != nil {
			return
		}
		ladder, _ := packager.ParseLadder("144:150k,180:300k")
		tinyRes, tinyErr = packager.Package(ctx, packager.Options{Input: src, OutDir: filepath.Join(dir, "video"), Ladder: ladder, Preset: "ultrafast"})
	})
	if tinyErr != nil {
		t.Fatal(tinyErr)
	}
	return filepath.Join(tinyDir, "video"), tinyRes
}

// startOrigin serves dir on 127.0.0.1:0 (and, with tls, TLS and HTTP/3
// with a lab CA); it returns the server, its cleartext address and the CA
// directory.
func startOrigin(t *testing.T, dir string, tls bool) (*Server, string, string) {
	t.Helper()
	cfg := server.Config{Addr: "127.0.0.1:0"}
	if tls {
		cfg.TLSAddr, cfg.HTTP3, cfg.TLS = "127.0.0.1:0", true, server.TLSConfig{CADir: t.TempDir()}
	}
	s, err := NewServer(cfg, origin.Config{Dir: dir}, service.Deps{Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Start(t, s)
	return s, s.Addrs()[0].String(), cfg.TLS.CADir
}

// TestPackageLadder: the MPD we write parses, names both rungs with the
// codecs the encoder wrote, aligns their segments, and each rung's
// segments carry its advertised bandwidth (CBR, within 25%).
func TestPackageLadder(t *testing.T) {
	dir, res := tinyVideo(t)
	data, err := os.ReadFile(filepath.Join(dir, packager.ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	m, err := mpd.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	v := m.Video()
	if v == nil || len(v.Representations) != 2 || m.Audio() == nil {
		t.Fatalf("video set %+v, audio %v", v, m.Audio() != nil)
	}
	if res.Segments != 3 {
		t.Errorf("%d segments per rung, want 3 (6 s in 2 s segments)", res.Segments)
	}
	for i, r := range v.Representations {
		if !strings.HasPrefix(r.Codecs, "avc1.") || r.Codecs != res.Codecs[i] {
			t.Errorf("rung %d codecs %q", i, r.Codecs)
		}
		if r.Height != []int{144, 180}[i] {
			t.Errorf("rung %d height %d", i, r.Height)
		}
		var total int64
		files, _ := filepath.Glob(filepath.Join(dir, fmt.Sprintf("seg-%s-*.m4s", r.ID)))
		for _, f := range files {
			fi, _ := os.Stat(f)
			total += fi.Size()
		}
		rate := float64(total) * 8 / 6
		if lo, hi := 0.75*float64(r.Bandwidth), 1.25*float64(r.Bandwidth); rate < lo || rate > hi {
			t.Errorf("rung %d carries %.0f bit/s, advertises %d", i, rate, r.Bandwidth)
		}
	}
	if a := m.Audio().Representations[0]; a.Codecs != "mp4a.40.2" {
		t.Errorf("audio codecs %q", a.Codecs)
	}
}

// TestLadderChoice: never above the source.
func TestLadderChoice(t *testing.T) {
	for _, c := range []struct {
		h    int
		want string
	}{{1080, "[240p@300k 360p@800k 480p@1.4M 720p@2.5M 1080p@5M]"}, {720, "[240p@300k 360p@800k 480p@1.4M 720p@2.5M]"}, {360, "[240p@300k 360p@800k]"}, {180, "[180p@300k]"}} {
		if got := fmt.Sprint(packager.ChooseLadder(packager.DefaultLadder, c.h)); got != c.want {
			t.Errorf("source %dp: %s, want %s", c.h, got, c.want)
		}
	}
}

// TestPackageErrors: a missing ffmpeg, an unreadable input and a full
// disk each give their own clear error.
func TestPackageErrors(t *testing.T) {
	testkit.Peer(t, "ffmpeg")
	ctx := testkit.Context(t, time.Minute)
	_, err := packager.Package(ctx, packager.Options{Input: "x.mp4", OutDir: t.TempDir(), FFmpeg: "/nonexistent/ffmpeg"})
	if !errors.Is(err, packager.ErrNoFFmpeg) {
		t.Errorf("missing ffmpeg: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "notes.mp4")
	os.WriteFile(bad, []byte("this is not a video"), 0o644)
	_, err = packager.Package(ctx, packager.Options{Input: bad, OutDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "not a readable media file") {
		t.Errorf("unreadable input: %v", err)
	}
	// /dev/full answers every write with ENOSPC.
	if _, serr := os.Stat("/dev/full"); serr == nil {
		err = (packager.Synthetic{Duration: time.Second, Width: 64, Height: 64}).Make(ctx, "", "/dev/full")
		if !errors.Is(err, packager.ErrDiskFull) {
			t.Errorf("full disk: %v", err)
		}
	}
}

// TestOriginHeaders: content types, strong validators and conditional
// GET, byte ranges, caching headers and CORS.
func TestOriginHeaders(t *testing.T) {
	dir, _ := tinyVideo(t)
	_, addr, _ := startOrigin(t, dir, false)
	base := "http://" + addr
	get := func(method, path string, hdr map[string]string) *http.Response {
		req, _ := http.NewRequest(method, base+path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	mpdResp := get("GET", "/manifest.mpd", nil)
	if ct := mpdResp.Header.Get("Content-Type"); ct != "application/dash+xml" {
		t.Errorf("MPD Content-Type %q", ct)
	}
	if cc := mpdResp.Header.Get("Cache-Control"); cc != "public, max-age=2" {
		t.Errorf("MPD Cache-Control %q", cc)
	}
	seg := get("GET", "/seg-v0-00001.m4s", nil)
	etag := seg.Header.Get("ETag")
	if seg.StatusCode != 200 || seg.Header.Get("Content-Type") != "video/iso.segment" || !strings.HasPrefix(etag, `"`) ||
		seg.Header.Get("Cache-Control") != "public, max-age=31536000, immutable" || seg.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("segment: %d %v", seg.StatusCode, seg.Header)
	}
	if ct := get("GET", "/init-v0.m4s", nil).Header.Get("Content-Type"); ct != "video/mp4" {
		t.Errorf("init Content-Type %q", ct)
	}
	if r := get("GET", "/seg-v0-00001.m4s", map[string]string{"If-None-Match": etag}); r.StatusCode != 304 {
		t.Errorf("If-None-Match: %d", r.StatusCode)
	}
	r := get("GET", "/seg-v0-00001.m4s", map[string]string{"Range": "bytes=100-199"})
	if r.StatusCode != 206 || r.ContentLength != 100 || !strings.HasPrefix(r.Header.Get("Content-Range"), "bytes 100-199/") {
		t.Errorf("range: %d %d %q", r.StatusCode, r.ContentLength, r.Header.Get("Content-Range"))
	}
	var many []string
	for i := range server.MaxRanges + 1 {
		many = append(many, fmt.Sprintf("%d-%d", 2*i, 2*i))
	}
	if r := get("GET", "/seg-v0-00001.m4s", map[string]string{"Range": "bytes=" + strings.Join(many, ",")}); r.StatusCode != 200 {
		t.Errorf("%d ranges: %d, want the whole segment (200)", len(many), r.StatusCode)
	}
	if r := get("GET", "/seg-v0-00001.m4s", map[string]string{"Range": "bytes=" + strings.Join(many[:server.MaxRanges], ",")}); r.StatusCode != 206 {
		t.Errorf("%d ranges: %d, want 206", server.MaxRanges, r.StatusCode)
	}
	if r := get("GET", "/seg-v0-00001.m4s", map[string]string{"Range": "bytes=99999999-"}); r.StatusCode != 416 {
		t.Errorf("unsatisfiable range: %d", r.StatusCode)
	}
	if r := get("GET", "/seg-v0-00001.m4s", map[string]string{"Range": "bytes=0-9", "If-Range": `"stale"`}); r.StatusCode != 200 {
		t.Errorf("If-Range with an old ETag: %d, want the whole 200", r.StatusCode)
	}
	pre := get("OPTIONS", "/seg-v0-00001.m4s", map[string]string{"Origin": "http://player.test", "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "range"})
	if pre.StatusCode != 204 || !strings.Contains(pre.Header.Get("Access-Control-Allow-Headers"), "Range") {
		t.Errorf("preflight: %d %v", pre.StatusCode, pre.Header)
	}
	for _, p := range []string{"/../../etc/passwd", "/nope.m4s", "/.packaging-x/"} {
		if r := get("GET", p, nil); r.StatusCode != 404 {
			t.Errorf("%s: %d", p, r.StatusCode)
		}
	}
	if r := get("POST", "/manifest.mpd", nil); r.StatusCode != 405 {
		t.Errorf("POST: %d", r.StatusCode)
	}
}

// TestPlayOverEachProtocol: our player plays our packaging from our origin
// over HTTP/1.1, h2 and h3, the segments decode (ffmpeg counts 50 frames a
// 2 s segment at 25 fps), and every segment request is on the trace bus.
func TestPlayOverEachProtocol(t *testing.T) {
	dir, _ := tinyVideo(t)
	srv, _, cadir := startOrigin(t, dir, true)
	addrs := srv.Addrs()
	ca := filepath.Join(cadir, "ca.pem")
	for _, c := range []struct{ proto, url string }{
		{client.ProtoH1, "http://" + addrs[0].String()},
		{client.ProtoH2, "https://" + addrs[1].String()},
		{client.ProtoH3, "https://" + addrs[2].String()},
	} {
		t.Run("HTTP/"+c.proto, func(t *testing.T) {
			cl, err := client.New(client.Options{Proto: c.proto, CAFile: ca})
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			bus := trace.NewBus(nil)
			var mu sync.Mutex
			var events []string
			bus.Subscribe(trace.SinkFunc(func(e trace.Event) { mu.Lock(); events = append(events, e.Summary); mu.Unlock() }))
			inits, segs := map[int][]byte{}, map[int][][]byte{}
			rep, err := player.Play(testkit.Context(t, time.Minute), c.url+"/manifest.mpd", player.Options{
				Fetcher: &player.HTTPFetcher{Client: cl, Keep: true}, Algorithm: &abr.Throughput{}, Trace: bus, Host: "client",
				Keep: func(kind string, rung, _ int, b []byte) {
					switch kind {
					case "video-init":
						inits[rung] = b
					case "video":
						segs[rung] = append(segs[rung], b)
					}
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Segments) != 3 || rep.Stalls != 0 {
				t.Fatalf("%d segments, %d stalls", len(rep.Segments), rep.Stalls)
			}
			frames := 0
			for r, ss := range segs {
				n, err := player.DecodeCheck(context.Background(), "", inits[r], ss)
				if err != nil {
					t.Fatal(err)
				}
				frames += n
			}
			if frames != 150 {
				t.Errorf("%d frames decoded, want 150", frames)
			}
			mu.Lock()
			defer mu.Unlock()
			var gets, choices int
			for _, e := range events {
				if strings.HasPrefix(e, "GET ") {
					gets++
				}
				if strings.Contains(e, " chose rung ") {
					choices++
				}
			}
			if gets != 3 || choices != 3 {
				t.Errorf("trace: %d segment requests and %d decisions, want 3 and 3: %q", gets, choices, events)
			}
		})
	}
}

// TestFFprobeReadsOurMPD: ffprobe's DASH demuxer opens our MPD from our
// origin and finds both video rungs and the audio.
func TestFFprobeReadsOurMPD(t *testing.T) {
	dir, _ := tinyVideo(t)
	ffprobe := testkit.Peer(t, "ffprobe")
	_, addr, _ := startOrigin(t, dir, false)
	out, err := exec.Command(ffprobe, "-v", "error", "-show_streams", "-of", "json", "http://"+addr+"/manifest.mpd").Output()
	if err != nil {
		t.Fatalf("ffprobe: %v", err)
	}
	var p struct {
		Streams []struct {
			CodecName string `json:"codec_name"`
			Height    int    `json:"height"`
		} `json:"streams"`
	}
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range p.Streams {
		got = append(got, fmt.Sprintf("%s/%d", s.CodecName, s.Height))
	}
	if fmt.Sprint(got) != "[h264/144 h264/180 aac/0]" {
		t.Errorf("ffprobe sees %v", got)
	}
}

// TestPlayFFmpegDash: our player plays what ffmpeg's own dash muxer
// writes (a rung per AdaptationSet, its own names and MPD).
func TestPlayFFmpegDash(t *testing.T) {
	_, _ = tinyVideo(t)
	ffmpeg := testkit.Peer(t, "ffmpeg")
	dir := t.TempDir()
	cmd := exec.Command(ffmpeg, "-hide_banner", "-v", "error", "-i", filepath.Join(tinyDir, "src.mp4"),
		"-map", "0:v", "-map", "0:v", "-map", "0:a", "-c:v", "libx264", "-preset", "ultrafast",
		"-b:v:0", "150k", "-s:v:0", "256x144", "-b:v:1", "300k", "-c:a", "aac",
		"-g", "50", "-keyint_min", "50", "-sc_threshold", "0",
		"-f", "dash", "-seg_duration", "2", filepath.Join(dir, "ff.mpd"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	_, addr, _ := startOrigin(t, dir, false)
	cl, _ := client.New(client.Options{})
	defer cl.Close()
	rep, err := player.Play(testkit.Context(t, time.Minute), "http://"+addr+"/ff.mpd", player.Options{Fetcher: &player.HTTPFetcher{Client: cl}, Algorithm: &abr.BOLA{}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Bitrates) != 2 || len(rep.Segments) != 3 || rep.Bytes == 0 {
		t.Fatalf("bitrates %v, %d segments, %d bytes", rep.Bitrates, len(rep.Segments), rep.Bytes)
	}
}
