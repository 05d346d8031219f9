package dashboard

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Run is a scenario or an experiment the page can start: the same run as
// the command line's `applayer lab scenario NAME` or `applayer lab
// experiment NAME`.
type Run struct {
	Kind        string // "scenario" or "experiment"
	Name        string
	Description string
	// Do runs it: its narration or table goes to w, its plots into dir
	// (returned as file names inside dir). quick asks for the short mode
	// experiments have.
	Do func(ctx context.Context, w io.Writer, dir string, quick bool) (plots []string, err error)
}

// runs runs one thing at a time (a run drives the lab's clients, or a lab
// of its own) and keeps each run's plots to serve.
type runs struct {
	list    []Run
	dir     string // where run directories go
	timeout time.Duration

	mu   sync.Mutex
	busy bool
	seq  int
}

type runInfo struct {
	Kind        string `json:"kind"`
	Name        string `json:"name"`
	Description string `json:"description"`
}

type runResult struct {
	Output string   `json:"output"`
	Plots  []string `json:"plots,omitempty"`
	Error  string   `json:"error,omitempty"`
	Took   string   `json:"took"`
}

func (rs *runs) serveList(w http.ResponseWriter, r *http.Request) {
	out := make([]runInfo, 0, len(rs.list))
	for _, x := range rs.list {
		out = append(out, runInfo{x.Kind, x.Name, x.Description})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return out[i].Kind > out[j].Kind // scenarios first
		}
		return out[i].Name < out[j].Name
	})
	writeJSON(w, out)
}

// maxOutput caps what a run's narration keeps for the page.
const maxOutput = 1 << 20

// serveRun runs POST /api/runs/{kind}/{name}[?quick=1] and answers with
// its output and plot URLs when it ends; 409 while another run is going.
func (rs *runs) serveRun(w http.ResponseWriter, r *http.Request) {
	// A cross-site form cannot set this header (it would need a CORS
	// preflight, which is never granted): only the dashboard's own page
	// starts runs.
	if r.Header.Get("X-Applayer-Dashboard") != "1" {
		http.Error(w, "runs are started from the dashboard page (X-Applayer-Dashboard: 1)", http.StatusForbidden)
		return
	}
	kind, name := r.PathValue("kind"), r.PathValue("name")
	var run *Run
	for i := range rs.list {
		if rs.list[i].Kind == kind && rs.list[i].Name == name {
			run = &rs.list[i]
		}
	}
	if run == nil {
		http.Error(w, "no such "+kind, http.StatusNotFound)
		return
	}
	rs.mu.Lock()
	if rs.busy {
		rs.mu.Unlock()
		w.Header().Set("Retry-After", "5")
		http.Error(w, "another run is in progress", http.StatusConflict)
		return
	}
	rs.busy = true
	rs.seq++
	id := rs.seq
	rs.mu.Unlock()
	defer func() {
		rs.mu.Lock()
		rs.busy = false
		rs.mu.Unlock()
	}()
	rc := http.NewResponseController(w)
	rc.SetWriteDeadline(time.Now().Add(rs.timeout + 10*time.Second))
	dir := filepath.Join(rs.dir, strconv.Itoa(id))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		http.Error(w, fmt.Sprintf("run directory: %v", err), http.StatusInternalServerError)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), rs.timeout)
	defer cancel()
	var out limitedBuffer
	start := time.Now()
	plots, err := run.Do(ctx, &out, dir, r.URL.Query().Get("quick") != "")
	res := runResult{Output: out.String(), Took: time.Since(start).Round(time.Millisecond).String()}
	// One picture per plot: the PNG, or the SVG when there is no PNG of
	// that name.
	png := map[string]bool{}
	for _, p := range plots {
		if filepath.Ext(p) == ".png" {
			png[strings.TrimSuffix(filepath.Base(p), ".png")] = true
		}
	}
	for _, p := range plots {
		base := filepath.Base(p)
		switch filepath.Ext(base) {
		case ".png":
		case ".svg":
			if png[strings.TrimSuffix(base, ".svg")] {
				continue
			}
		default:
			continue
		}
		res.Plots = append(res.Plots, fmt.Sprintf("/api/runs/files/%d/%s", id, base))
	}
	if err != nil {
		res.Error = err.Error()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
	}
	writeJSON(w, res)
}

// serveFile serves a run's plot.
func (rs *runs) serveFile(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.Atoi(r.PathValue("id"))
	file := filepath.Base(r.PathValue("file"))
	if err != nil || id <= 0 || file == "." || file == "/" {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if filepath.Ext(file) == ".svg" {
		// SVG from our plots only, but never run as a document.
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	}
	http.ServeFile(w, r, filepath.Join(rs.dir, strconv.Itoa(id), file))
}

// limitedBuffer keeps the first maxOutput bytes written to it.
type limitedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	cut bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := maxOutput - b.buf.Len(); room < len(p) {
		b.buf.Write(p[:max(room, 0)])
		b.cut = true
		return len(p), nil
	}
	return b.buf.Write(p)
}

func (b *limitedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cut {
		return b.buf.String() + "\n[output cut at 1 MiB]"
	}
	return b.buf.String()
}
