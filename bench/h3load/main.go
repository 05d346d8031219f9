// Command h3load is the HTTP/3 load generator of bench/web-h3.sh (Debian's
// h2load and curl have no HTTP/3): quic-go's HTTP/3 client on -c
// connections with -m requests in flight on each, -n requests in all, the
// same client for every server. It prints one line:
//
//	requests N ok K failed F seconds S req/s R MB/s M
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

func main() {
	n := flag.Int("n", 20000, "requests in all")
	conns := flag.Int("c", 16, "QUIC connections")
	streams := flag.Int("m", 10, "requests in flight per connection")
	insecure := flag.Bool("k", false, "accept any certificate")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: h3load [-n N] [-c C] [-m M] [-k] https://host:port/path")
		os.Exit(2)
	}
	url := flag.Arg(0)
	var left, ok, failed, bytes atomic.Int64
	left.Store(int64(*n))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var clients []*http.Client
	for range *conns {
		tr := &http3.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: *insecure, NextProtos: []string{http3.NextProtoH3}},
			QUICConfig:      &quic.Config{MaxIncomingStreams: 1000},
		}
		defer tr.Close()
		cl := &http.Client{Transport: tr}
		// Connect before the clock starts (the handshakes are not the load).
		if err := get(ctx, cl, url, nil); err != nil {
			log.Fatalf("h3load: %s: %v", url, err)
		}
		clients = append(clients, cl)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for _, cl := range clients {
		for range *streams {
			wg.Go(func() {
				for left.Add(-1) >= 0 {
					if err := get(ctx, cl, url, &bytes); err != nil {
						failed.Add(1)
						continue
					}
					ok.Add(1)
				}
			})
		}
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	fmt.Printf("requests %d ok %d failed %d seconds %.3f req/s %.0f MB/s %.1f\n",
		*n, ok.Load(), failed.Load(), secs, float64(ok.Load())/secs, float64(bytes.Load())/secs/1e6)
}

// get fetches url and reads the body, counting its bytes into n.
func get(ctx context.Context, cl *http.Client, url string, n *atomic.Int64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := cl.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	k, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	if n != nil {
		n.Add(k)
	}
	return nil
}
