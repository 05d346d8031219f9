package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// AdminHandler serves the queue on the admin listener (loopback only):
// GET /mail/queue lists the waiting messages (JSON), POST
// /mail/queue/flush makes them all due now, POST /mail/queue/delete?id=ID
// removes one.
func (q *Queue) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /mail/queue", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(q.List())
	})
	mux.HandleFunc("POST /mail/queue/flush", func(w http.ResponseWriter, r *http.Request) {
		n := q.Len()
		q.Flush()
		fmt.Fprintf(w, "flushed %d\n", n)
	})
	mux.HandleFunc("POST /mail/queue/delete", func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("id")
		if err := q.Delete(id); err != nil {
			code := http.StatusBadRequest
			if errors.Is(err, os.ErrNotExist) {
				code = http.StatusNotFound
			}
			http.Error(w, err.Error(), code)
			return
		}
		fmt.Fprintf(w, "deleted %s\n", id)
	})
	return mux
}

// ReadSpool lists the messages waiting in a spool directory without a
// running queue (attempts and the next try are only known to the queue).
func ReadSpool(dir string) ([]Status, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	var out []Status
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), msgSuffix) || !e.Type().IsRegular() {
			continue
		}
		env, err := readEnvelope(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		st := Status{Envelope: env}
		if fi, err := e.Info(); err == nil {
			st.Size = fi.Size()
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Received.Before(out[j].Received) })
	return out, nil
}

// DeleteSpooled removes a message from a spool directory without a
// running queue; a running queue forgets it at its next attempt.
func DeleteSpooled(dir, id string) error {
	if strings.ContainsAny(id, `/\.`) || id == "" {
		return fmt.Errorf("queue: bad id %q", id)
	}
	if err := os.Remove(filepath.Join(dir, id+msgSuffix)); err != nil {
		return fmt.Errorf("queue: delete: %w", err)
	}
	return syncDir(dir)
}
