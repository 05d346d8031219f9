package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRuns(t *testing.T) {
	release := make(chan struct{})
	rs := &runs{dir: t.TempDir(), timeout: time.Minute, list: []Run{
		{Kind: "experiment", Name: "demo", Description: "writes a table and a plot",
			Do: func(ctx context.Context, w io.Writer, dir string, quick bool) ([]string, error) {
				fmt.Fprintf(w, "quick=%v\n", quick)
				os.WriteFile(filepath.Join(dir, "demo.svg"), []byte("<svg xmlns='http://www.w3.org/2000/svg'/>"), 0o644)
				return []string{"demo.svg", "demo.txt"}, nil
			}},
		{Kind: "scenario", Name: "slow", Description: "waits",
			Do: func(ctx context.Context, w io.Writer, dir string, quick bool) ([]string, error) {
				<-release
				return nil, fmt.Errorf("stopped")
			}},
	}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/runs", rs.serveList)
	mux.HandleFunc("POST /api/runs/{kind}/{name}", rs.serveRun)
	mux.HandleFunc("GET /api/runs/files/{id}/{file}", rs.serveFile)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	post := func(path string, header bool) (*http.Response, runResult) {
		req, _ := http.NewRequest("POST", srv.URL+path, nil)
		if header {
			req.Header.Set("X-Applayer-Dashboard", "1")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var res runResult
		json.NewDecoder(resp.Body).Decode(&res)
		return resp, res
	}

	resp, err := http.Get(srv.URL + "/api/runs")
	if err != nil {
		t.Fatal(err)
	}
	var list []runInfo
	json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if len(list) != 2 || list[0].Kind != "scenario" || list[1].Name != "demo" {
		t.Fatalf("list = %+v, want the scenario first, then the experiment", list)
	}

	if resp, _ := post("/api/runs/experiment/demo", false); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a POST without the dashboard's header: %s, want 403 (cross-site requests)", resp.Status)
	}
	if resp, _ := post("/api/runs/experiment/nope", true); resp.StatusCode != http.StatusNotFound {
		t.Errorf("an unknown run: %s, want 404", resp.Status)
	}
	resp, res := post("/api/runs/experiment/demo?quick=1", true)
	if resp.StatusCode != http.StatusOK || res.Output != "quick=true\n" || len(res.Plots) != 1 {
		t.Fatalf("run: %s %+v", resp.Status, res)
	}
	plot, err := http.Get(srv.URL + res.Plots[0])
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(plot.Body)
	plot.Body.Close()
	if plot.StatusCode != 200 || !strings.Contains(string(body), "<svg") || plot.Header.Get("Content-Security-Policy") == "" {
		t.Errorf("plot %s: %s %q CSP %q", res.Plots[0], plot.Status, body, plot.Header.Get("Content-Security-Policy"))
	}
	if r, _ := http.Get(srv.URL + "/api/runs/files/1/..%2f..%2fetc%2fpasswd"); r != nil {
		if r.StatusCode == 200 {
			t.Errorf("a path outside the run directory was served")
		}
		r.Body.Close()
	}

	// One run at a time.
	done := make(chan runResult)
	go func() { _, r := post("/api/runs/scenario/slow", true); done <- r }()
	for deadline := time.Now().Add(5 * time.Second); ; {
		rs.mu.Lock()
		busy := rs.busy
		rs.mu.Unlock()
		if busy {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the slow run did not start")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if resp, _ := post("/api/runs/experiment/demo", true); resp.StatusCode != http.StatusConflict {
		t.Errorf("a second run while one is going: %s, want 409", resp.Status)
	}
	close(release)
	if r := <-done; r.Error != "stopped" {
		t.Errorf("the slow run's error: %q", r.Error)
	}
}
