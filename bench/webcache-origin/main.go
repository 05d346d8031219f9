// Command webcache-origin is the origin server of bench/web-cache.sh: it
// answers /1k, /100k and /2m (and /1k?anything) with bodies of 1 KiB,
// 100 KiB and 2 MiB that every cache may keep for a day (bench/cdn.sh
// uses /2m and /100k?seg=N as video segments).
package main

import (
	"flag"
	"log"
	"net/http"
	"strconv"
	"strings"
	"time"
)

func main() {
	addr := flag.String("listen", "127.0.0.1:28180", "address to listen on")
	flag.Parse()
	small := []byte(strings.Repeat("a", 1024))
	big := []byte(strings.Repeat("b", 100*1024))
	huge := []byte(strings.Repeat("c", 2<<20))
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		body := small
		switch {
		case strings.HasPrefix(r.URL.Path, "/100k"):
			body = big
		case strings.HasPrefix(r.URL.Path, "/2m"):
			body = huge
		}
		h := w.Header()
		h.Set("Cache-Control", "public, max-age=86400")
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	})
	// Loopback-only bench helper, but still a server: bounded like one.
	srv := &http.Server{
		Addr:              *addr,
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
	}
	log.Fatal(srv.ListenAndServe())
}
