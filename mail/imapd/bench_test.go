package imapd

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/applayer/applayer/mail/mailtest"
)

// BenchmarkFetch drives the real server on loopback with the corpus of
// bench/mail-access.sh: one FETCH of 1,000 messages per iteration, full
// (BODY.PEEK[]) and envelopes, as the benchmark's client asks. Profile
// with -cpuprofile / -memprofile.
func BenchmarkFetch(b *testing.B) {
	e := newEnv(b, nil)
	ctx := context.Background()
	const n = 1000
	for i := range n {
		if _, err := e.st.Append(ctx, "bob@hamburger.edu", "INBOX", mailtest.BenchMessage(i, 0), nil, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
	for _, bc := range []struct{ name, items string }{
		{"full", "BODY.PEEK[]"},
		{"envelope", "(UID ENVELOPE FLAGS RFC822.SIZE)"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := benchDial(b, e.plain)
			c.run("LOGIN bob@hamburger.edu s3cret")
			c.run("EXAMINE INBOX")
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if got := c.run("FETCH 1:%d %s", n, bc.items); got != n {
					b.Fatalf("%d FETCH responses, want %d", got, n)
				}
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "msg/s")
		})
	}
}

// benchClient is a minimal IMAP client that counts untagged lines and
// skips literals, cheap enough not to hide the server in a profile.
type benchClient struct {
	tb  testing.TB
	c   net.Conn
	r   *bufio.Reader
	w   *bufio.Writer
	tag int
}

func benchDial(tb testing.TB, addr string) *benchClient {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { nc.Close() })
	c := &benchClient{tb: tb, c: nc, r: bufio.NewReaderSize(nc, 64<<10), w: bufio.NewWriter(nc)}
	c.r.ReadString('\n') // greeting
	return c
}

// run sends a command and reads to its tagged OK, returning the number of
// untagged responses.
func (c *benchClient) run(format string, args ...any) int {
	c.tag++
	tag := "b" + strconv.Itoa(c.tag) + " "
	fmt.Fprintf(c.w, tag+format+"\r\n", args...)
	c.w.Flush()
	untagged := 0
	for {
		l, err := c.r.ReadSlice('\n')
		if err != nil {
			c.tb.Fatal(err)
		}
		if strings.HasPrefix(string(l), tag) {
			if !strings.HasPrefix(string(l), tag+"OK") {
				c.tb.Fatalf("%s: %s", fmt.Sprintf(format, args...), l)
			}
			return untagged
		}
		if l[0] == '*' {
			untagged++
		}
		// A literal: {n}\r\n at the end of the line.
		for len(l) > 3 && l[len(l)-3] == '}' {
			i := strings.LastIndexByte(string(l), '{')
			size, err := strconv.Atoi(string(l[i+1 : len(l)-3]))
			if err != nil {
				break
			}
			if _, err := io.CopyN(io.Discard, c.r, int64(size)); err != nil {
				c.tb.Fatal(err)
			}
			if l, err = c.r.ReadSlice('\n'); err != nil {
				c.tb.Fatal(err)
			}
		}
	}
}
