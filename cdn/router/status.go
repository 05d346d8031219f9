package router

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/applayer/applayer/cdn/edge"
)

// Status is the router's view of the CDN (GET /cdn/status).
type Status struct {
	Domain   string          `json:"domain"`
	Clusters []ClusterStatus `json:"clusters"`
	Recent   []Decision      `json:"recent"`
}

// ClusterStatus is one cluster's edges.
type ClusterStatus struct {
	Name    string       `json:"name"`
	MaxLoad float64      `json:"max_load"`
	Edges   []EdgeStatus `json:"edges"`
}

// EdgeStatus is one edge as the health checks see it.
type EdgeStatus struct {
	Name    string       `json:"name"`
	Addr    string       `json:"addr"`
	Control string       `json:"control,omitempty"`
	Up      bool         `json:"up"`
	Load    float64      `json:"load"`
	Checked time.Time    `json:"checked,omitzero"`
	Error   string       `json:"error,omitempty"`
	Clients int64        `json:"clients"` // answers that sent clients here
	Report  *edge.Report `json:"report,omitempty"`
}

// Status returns the clusters' health and load and the recent decisions.
func (s *Server) Status() Status {
	st := Status{Domain: s.cfg.Domain, Recent: s.recent.list()}
	for _, c := range s.t.clusters {
		cs := ClusterStatus{Name: c.name, MaxLoad: c.maxLoad}
		for _, e := range c.edges {
			es := EdgeStatus{Name: e.name, Addr: e.addr.String(), Control: e.control, Up: e.up.Load(), Load: e.loadValue(),
				Clients: e.answered.Load(), Report: e.report.Load()}
			if n := e.checked.Load(); n > 0 {
				es.Checked = time.Unix(0, n)
			}
			if p := e.lastErr.Load(); p != nil {
				es.Error = *p
			}
			cs.Edges = append(cs.Edges, es)
		}
		st.Clusters = append(st.Clusters, cs)
	}
	return st
}

// PurgeResult is one cache's answer to a purge.
type PurgeResult struct {
	Cache   string `json:"cache"`
	Removed int    `json:"removed"`
	Error   string `json:"error,omitempty"`
}

// Purge removes a URL (prefix false) or every URL under a prefix from
// every edge and shield, in parallel, and says what each removed.
func (s *Server) Purge(ctx context.Context, target string, prefix bool) []PurgeResult {
	type dst struct{ name, control string }
	var dsts []dst
	for _, c := range s.t.clusters {
		for _, e := range c.edges {
			if e.control != "" {
				dsts = append(dsts, dst{e.name, e.control})
			}
		}
	}
	for _, sh := range s.cfg.Map.Shields {
		dsts = append(dsts, dst{sh.Name, sh.Control})
	}
	out := make([]PurgeResult, len(dsts))
	var wg sync.WaitGroup
	for i, d := range dsts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = PurgeResult{Cache: d.name}
			n, err := s.purgeOne(ctx, d.control, target, prefix)
			out[i].Removed = n
			if err != nil {
				out[i].Error = err.Error()
			}
		}()
	}
	wg.Wait()
	return out
}

func (s *Server) purgeOne(ctx context.Context, control, target string, prefix bool) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*s.cfg.CheckTimeout.D())
	defer cancel()
	q := url.Values{}
	if prefix {
		q.Set("prefix", target)
	} else {
		q.Set("url", target)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+control+"/cdn/purge?"+q.Encode(), nil)
	if err != nil {
		return 0, err
	}
	res, err := s.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	var r struct {
		Removed int `json:"removed"`
	}
	if res.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("purge: status %d", res.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, maxReport)).Decode(&r); err != nil {
		return 0, fmt.Errorf("purge: %w", err)
	}
	return r.Removed, nil
}

// Handler serves the router's control endpoints: GET /cdn/status (JSON
// Status), POST /cdn/check (one round of health checks now) and
// POST /cdn/purge?url=U or ?prefix=P (propagated to every edge and
// shield; JSON list of PurgeResult).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /cdn/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, s.Status())
	})
	mux.HandleFunc("POST /cdn/check", func(w http.ResponseWriter, r *http.Request) {
		s.CheckNow(r.Context())
		writeJSON(w, s.Status().Clusters)
	})
	mux.HandleFunc("POST /cdn/purge", func(w http.ResponseWriter, r *http.Request) {
		u, p := r.URL.Query().Get("url"), r.URL.Query().Get("prefix")
		if (u == "") == (p == "") {
			http.Error(w, "purge: give url= or prefix=", http.StatusBadRequest)
			return
		}
		res := s.Purge(r.Context(), u+p, p != "")
		writeJSON(w, res)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
