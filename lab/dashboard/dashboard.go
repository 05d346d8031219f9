// Package dashboard is the lab's web dashboard: the mini-Internet drawn
// live on the lab's admin listener (http://127.0.0.1:9900/ by default). It
// shows the topology (hosts grouped like the chapter's pictures, their
// services, status and key metrics), a live sequence diagram of the trace
// bus, and pages that systems add for themselves (Viewer).
//
// Pages are server-rendered HTML with a little plain JavaScript and SVG,
// embedded with go:embed: nothing to build, nothing fetched from elsewhere.
// The event stream is server-sent events with backpressure: publishers
// never wait for a browser, a slow browser skips events and is told how
// many (see StreamConfig).
package dashboard

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"net/netip"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/applayer/applayer/internal/trace"
	"github.com/applayer/applayer/lab"
)

//go:embed assets
var assets embed.FS

// View is a page a system adds to the dashboard: its Handler serves
// /views/HOST-NAME/ (and below; HOST-NAME with the host's dots as
// dashes), listed under Title.
type View struct {
	Name    string // one URL segment, unique within the host
	Title   string
	Host    string // the lab host it belongs to (set by the dashboard)
	Handler http.Handler
}

// Viewer is implemented by services with dashboard pages of their own: the
// dashboard asks every service of the lab, with the name of the host it
// runs on, when the dashboard is made. This is the whole registration
// interface: a system adds a page by implementing it.
type Viewer interface {
	DashboardViews(host string) []View
}

// Config configures a Dashboard.
type Config struct {
	Stream StreamConfig
	// Runs are the scenarios and experiments the page offers.
	Runs []Run
	// RunDir keeps the runs' outputs (plots); default a directory under
	// the lab's state directory.
	RunDir string
	// RunTimeout bounds one run. Default 10 minutes.
	RunTimeout time.Duration
}

// Dashboard serves the lab's pages. It is a service.Service so the lab's
// group stops its event streams when the lab stops (an admin listener's
// graceful shutdown would otherwise wait for them).
type Dashboard struct {
	r     *lab.Running
	reg   prometheus.Gatherer
	hub   *hub
	runs  *runs
	topo  topology
	mux   *http.ServeMux
	mu    sync.Mutex
	views []View
}

// New returns the dashboard of a built lab. bus is the lab's trace bus
// (events are streamed from it while a browser watches); reg is the lab's
// metrics registry (nil for none).
func New(r *lab.Running, bus *trace.Bus, reg prometheus.Gatherer, cfg Config) *Dashboard {
	hosts := map[netip.Addr]string{}
	for _, h := range r.Plan.Hosts {
		hosts[h.Addr] = h.Name
	}
	d := &Dashboard{r: r, reg: reg, hub: newHub(cfg.Stream, bus, hosts), mux: http.NewServeMux()}
	d.topo = buildTopology(r)
	if cfg.RunDir == "" {
		cfg.RunDir = filepath.Join(r.Plan.StateDir, "dashboard", "runs")
	}
	if cfg.RunTimeout <= 0 {
		cfg.RunTimeout = 10 * time.Minute
	}
	d.runs = &runs{list: cfg.Runs, dir: cfg.RunDir, timeout: cfg.RunTimeout}
	for _, e := range r.Entries {
		if v, ok := e.Service.(Viewer); ok {
			for _, view := range v.DashboardViews(e.Host) {
				view.Host = e.Host
				view.Name = strings.ReplaceAll(e.Host, ".", "-") + "-" + view.Name
				d.AddView(view)
			}
		}
	}
	static, _ := fs.Sub(assets, "assets")
	d.mux.HandleFunc("GET /{$}", d.serveIndex)
	d.mux.Handle("GET /ui/", http.StripPrefix("/ui/", http.FileServerFS(static)))
	d.mux.HandleFunc("GET /api/topology", d.serveTopology)
	d.mux.HandleFunc("GET /api/events", d.hub.serveEvents)
	d.mux.HandleFunc("GET /api/views", d.serveViews)
	d.mux.HandleFunc("/views/{name}/", d.serveView)
	d.mux.HandleFunc("GET /api/runs", d.runs.serveList)
	d.mux.HandleFunc("POST /api/runs/{kind}/{name}", d.runs.serveRun)
	d.mux.HandleFunc("GET /api/runs/files/{id}/{file}", d.runs.serveFile)
	return d
}

// Mount adds the dashboard's routes to the lab's admin listener (before
// it starts): /, /ui/, /api/ and /views/. It does nothing when the lab has
// no admin listener.
func (d *Dashboard) Mount() {
	if d.r.Admin == nil {
		return
	}
	for _, p := range []string{"GET /{$}", "GET /ui/", "/api/", "/views/"} {
		d.r.Admin.Handle(p, d.mux)
	}
}

// ServeHTTP serves the dashboard (for tests and other muxes).
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) { d.mux.ServeHTTP(w, r) }

// AddView adds a page; a view with the name of an earlier one replaces it.
func (d *Dashboard) AddView(v View) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range d.views {
		if d.views[i].Name == v.Name {
			d.views[i] = v
			return
		}
	}
	d.views = append(d.views, v)
}

// Name implements service.Service.
func (d *Dashboard) Name() string { return "dashboard" }

// Start implements service.Service: the admin listener serves the pages.
func (d *Dashboard) Start(context.Context) error { return nil }

// Shutdown ends the event streams.
func (d *Dashboard) Shutdown(context.Context) error {
	d.hub.close()
	return nil
}

func (d *Dashboard) serveIndex(w http.ResponseWriter, r *http.Request) {
	b, err := assets.ReadFile("assets/index.html")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Write(b)
}

func (d *Dashboard) serveTopology(w http.ResponseWriter, r *http.Request) {
	t := d.topo
	t.Hosts = append([]hostView(nil), t.Hosts...)
	metrics := hostMetrics(d.reg)
	for i := range t.Hosts {
		t.Hosts[i].Metrics = metrics[t.Hosts[i].Name]
		// A copy, and [] (not null) for a host without services (the
		// page reads services.every).
		t.Hosts[i].Services = append(make([]serviceView, 0, len(t.Hosts[i].Services)), t.Hosts[i].Services...)
		for k := range t.Hosts[i].Services {
			t.Hosts[i].Services[k].Listen, t.Hosts[i].Services[k].Ready = d.listening(t.Hosts[i].Services[k].entry)
		}
	}
	writeJSON(w, t)
}

func (d *Dashboard) listening(i int) ([]string, bool) {
	if i < 0 || i >= len(d.r.Entries) {
		return nil, false
	}
	return listenOf(d.r.Entries[i].Service)
}

type viewInfo struct {
	Name  string `json:"name"`
	Title string `json:"title"`
	Host  string `json:"host,omitempty"`
	URL   string `json:"url"`
}

func (d *Dashboard) serveViews(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	out := make([]viewInfo, 0, len(d.views))
	for _, v := range d.views {
		out = append(out, viewInfo{Name: v.Name, Title: v.Title, Host: v.Host, URL: "/views/" + v.Name + "/"})
	}
	d.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Title < out[j].Title })
	writeJSON(w, out)
}

func (d *Dashboard) serveView(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	d.mu.Lock()
	var h http.Handler
	for _, v := range d.views {
		if v.Name == name {
			h = v.Handler
		}
	}
	d.mu.Unlock()
	if h == nil {
		http.NotFound(w, r)
		return
	}
	http.StripPrefix("/views/"+name, h).ServeHTTP(w, r)
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, fmt.Sprintf("dashboard: %v", err), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b)
}
