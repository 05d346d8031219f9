//go:build !race

package server

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
)

// TestFastPathNoAllocs measures a process-wide malloc count, meaningless
// under -race (the race detector allocates, and sync.Pool drops items at
// random): this file is built without it.
//
// TestFastPathNoAllocs: cached GETs on the fast path (keep-alive, with
// Accept-Encoding and a non-matching If-None-Match) allocate nothing in
// the whole process, client included (it writes and reads fixed buffers).
func TestFastPathNoAllocs(t *testing.T) {
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "big.css"), []byte(files["big.css"]), 0o644)
	s, err := New(Config{Addr: "127.0.0.1:0", Sites: []Site{{Root: root}}}, service.Deps{Logger: testkit.Logger(t), Metrics: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	c, err := net.Dial("tcp", s.Addrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	req := []byte("GET /big.css HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: gzip\r\nIf-None-Match: \"x\"\r\n\r\n")
	buf := make([]byte, 64<<10)
	one := func() int {
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		n := 0
		for {
			m, err := c.Read(buf[n:])
			n += m
			if err != nil {
				t.Fatal(err)
			}
			if i := bytes.Index(buf[:n], []byte("\r\n\r\n")); i > 0 && n >= i+4+gzLenOf(buf[:i]) {
				return n
			}
		}
	}
	for range 50 {
		one() // warm: cache, gzip variant, metrics, pools
	}
	const reqs = 2000
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	for range reqs {
		one()
	}
	runtime.ReadMemStats(&m1)
	if per := float64(m1.Mallocs-m0.Mallocs) / reqs; per > 0.1 {
		t.Errorf("%.2f allocations per request", per)
	}
}
