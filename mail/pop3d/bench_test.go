package pop3d

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/applayer/applayer/mail/mailtest"
)

// BenchmarkRETR drives the real server on loopback as bench/mail-access.sh
// does: per iteration, RETR of 2,000 messages of its corpus in one
// session, 50 commands in flight. Profile with -cpuprofile / -memprofile.
func BenchmarkRETR(b *testing.B) {
	e := newEnv(b, true, 0)
	ctx := context.Background()
	const n = 2000
	for i := range n {
		if _, err := e.st.Append(ctx, "bob@hamburger.edu", "INBOX", mailtest.BenchMessage(i, 0), nil, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
	nc, err := net.Dial("tcp", e.plain)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	r, w := bufio.NewReaderSize(nc, 64<<10), bufio.NewWriter(nc)
	status := func() {
		l, err := r.ReadString('\n')
		if err != nil || !strings.HasPrefix(l, "+OK") {
			b.Fatalf("status %q, %v", l, err)
		}
	}
	status()
	for _, c := range []string{"USER bob@hamburger.edu", "PASS s3cret"} {
		fmt.Fprintf(w, "%s\r\n", c)
		w.Flush()
		status()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		const window = 50
		sent, got := 0, 0
		for got < n {
			for sent < n && sent-got < window {
				sent++
				fmt.Fprintf(w, "RETR %d\r\n", sent)
			}
			w.Flush()
			status()
			for {
				l, err := r.ReadSlice('\n')
				if err != nil && err != bufio.ErrBufferFull {
					b.Fatal(err)
				}
				if string(l) == ".\r\n" {
					break
				}
			}
			got++
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "msg/s")
}
