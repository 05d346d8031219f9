package server

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// demoModTime is the modification time of every demo file. A fixed date in
// the past keeps Last-Modified and ETags stable across lab restarts, and
// gives caches the heuristic freshness (RFC 9111 4.2.2) a real, unchanging
// site would get: with files rewritten as "now", a cache would revalidate
// every object instead of serving hits.
var demoModTime = time.Date(2026, time.January, 1, 0, 0, 0, 0, time.UTC)

func writeDemoFile(path string, data []byte) error {
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return err
	}
	return os.Chtimes(path, demoModTime, demoModTime)
}

// WriteDemoSite writes the chapter's example page into dir: index.html
// referencing a style sheet, a script and n images (img01.png ...), plus a
// form page. Existing files are overwritten.
func WriteDemoSite(dir string, n int) error {
	if err := os.MkdirAll(filepath.Join(dir, "images"), 0o755); err != nil {
		return fmt.Errorf("server: demo: %w", err)
	}
	var b strings.Builder
	b.WriteString(`<!doctype html>
<html><head><meta charset="utf-8"><title>gaia.cs.umass.edu</title>
<link rel="stylesheet" href="/style.css">
<script src="/app.js"></script>
</head><body>
<h1>A web page with referenced objects</h1>
<p>This base HTML file references a style sheet, a script and the images below;
load it with <code>applayer http get --page</code> to compare persistent and
non-persistent HTTP.</p>
<p><a href="/form.html">A form</a></p>
`)
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("images/img%02d.png", i)
		fmt.Fprintf(&b, "<img src=\"/%s\" alt=\"image %d\">\n", name, i)
		if err := writeDemoFile(filepath.Join(dir, name), demoPNG(i)); err != nil {
			return fmt.Errorf("server: demo: %w", err)
		}
	}
	b.WriteString("</body></html>\n")
	files := map[string]string{
		"index.html": b.String(),
		"style.css":  "body { font-family: sans-serif; margin: 2em; }\nimg { width: 64px; height: 64px; margin: 4px; }\n" + strings.Repeat("/* padding so gzip has something to do */\n", 20),
		"app.js":     "document.addEventListener('DOMContentLoaded', function () { console.log('loaded'); });\n",
		"form.html": `<!doctype html>
<html><body><form method="post" action="/form">
<input name="name" value="alice"> <input name="course" value="networking">
<button>Send</button></form></body></html>
`,
	}
	for name, body := range files {
		if err := writeDemoFile(filepath.Join(dir, name), []byte(body)); err != nil {
			return fmt.Errorf("server: demo: %w", err)
		}
	}
	return nil
}

func demoPNG(i int) []byte {
	const size = 64
	img := image.NewRGBA(image.Rect(0, 0, size, size))
	for y := 0; y < size; y++ {
		for x := 0; x < size; x++ {
			img.Set(x, y, color.RGBA{uint8(i * 23), uint8(x * 4), uint8(y * 4), 255})
		}
	}
	var buf bytes.Buffer
	png.Encode(&buf, img)
	return buf.Bytes()
}
