package fastpath

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/internal/transport"
)

// echoHandler answers GET /x with a body naming x; GET /big/N with N
// bytes ('b') appended straight to the batch buffer.
type echoHandler struct{}

func (echoHandler) ServeFast(r *Request, w *Writer) bool {
	body := []byte("path " + string(r.Path))
	if n, ok := strings.CutPrefix(string(r.Path), "/big/"); ok {
		size, err := strconv.Atoi(n)
		if err != nil {
			return false
		}
		body = bytes.Repeat([]byte{'b'}, size)
	}
	w.B = fmt.Appendf(w.B, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n", len(body))
	w.B = w.AppendDate(w.B)
	w.B = append(w.B, "\r\n"...)
	w.B = append(w.B, body...)
	return true
}

// counting counts the handler's runs (a parked connection runs it again
// when woken) and those running now (a parked connection's has returned).
type counting struct {
	s       *Server
	calls   atomic.Int32
	running atomic.Int32
}

func (h *counting) ServeConn(ctx context.Context, c *transport.Conn) {
	h.calls.Add(1)
	h.running.Add(1)
	defer h.running.Add(-1)
	h.s.ServeConn(ctx, c)
}

// startFast serves the fast path with echoHandler on 127.0.0.1:0.
func startFast(t *testing.T, parkAbove int, bareAfter time.Duration) (*Server, *counting, string) {
	t.Helper()
	s := New(Config{IdleTimeout: 5 * time.Second, HandOver: func(net.Conn) bool { return false }}, echoHandler{})
	h := &counting{s: s}
	srv := transport.NewStreamServer(transport.StreamConfig{ParkIdleAbove: parkAbove, ParkBareAfter: bareAfter}, h)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ln); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return s, h, ln.Addr().String()
}

// dial connects to addr, closing the connection when the test ends.
func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func get(path string) string { return "GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n" }

// readEcho reads the responses of echoHandler from c, for paths.
func readEcho(t *testing.T, c net.Conn, paths ...string) {
	t.Helper()
	var want strings.Builder
	for _, p := range paths {
		fmt.Fprintf(&want, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nDate: ", len("path "+p))
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var got []byte
	buf := make([]byte, 64<<10)
	for strings.Count(string(got), "HTTP/1.1") < len(paths) || !strings.HasSuffix(string(got), "path "+paths[len(paths)-1]) {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
	}
	checkEcho(t, got, paths)
}

// checkEcho checks that got is the answers to paths, in order.
func checkEcho(t *testing.T, got []byte, paths []string) {
	t.Helper()
	rest := string(got)
	for _, p := range paths {
		body := "path " + p
		head := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\nDate: ", len(body))
		if !strings.HasPrefix(rest, head) {
			t.Fatalf("answer for %s: got %q", p, rest)
		}
		_, after, ok := strings.Cut(rest, "\r\n\r\n")
		if !ok || !strings.HasPrefix(after, body) {
			t.Fatalf("answer for %s: got %q", p, rest)
		}
		rest = after[len(body):]
	}
	if rest != "" {
		t.Fatalf("trailing bytes %q", rest)
	}
}

// TestPipelinedBatchOneWrite: requests that arrive together are answered
// in order in one write: the first read gets every answer.
func TestPipelinedBatchOneWrite(t *testing.T) {
	_, _, addr := startFast(t, 0, 0)
	c := dial(t, addr)
	var paths []string
	var reqs strings.Builder
	for i := range 40 {
		p := "/" + strconv.Itoa(i)
		paths = append(paths, p)
		reqs.WriteString(get(p))
	}
	if _, err := io.WriteString(c, reqs.String()); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64<<10)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	checkEcho(t, buf[:n], paths)
	// The connection goes on: a request split across segments.
	io.WriteString(c, "GET /late HTTP/1.1\r\n")
	time.Sleep(20 * time.Millisecond)
	io.WriteString(c, "Host: x\r\n\r\n")
	readEcho(t, c, "/late")
}

// TestBatchLargerThanSocketBuffer: a batch the socket cannot take at once
// waits for the reader (the write waits in the poller) and arrives
// whole; the connection then goes on.
func TestBatchLargerThanSocketBuffer(t *testing.T) {
	_, _, addr := startFast(t, 0, 0)
	c := dial(t, addr)
	const size = 16 << 20 // more than the socket buffers on both sides
	io.WriteString(c, get("/big/"+strconv.Itoa(size)))
	time.Sleep(100 * time.Millisecond) // the server's write fills the buffers
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	head := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n", size)
	got := make([]byte, len(head))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != head {
		t.Fatalf("head %q, %v", got, err)
	}
	rest, err := io.ReadAll(io.LimitReader(c, int64(len("Date: Mon, 02 Jan 2006 15:04:05 GMT\r\n\r\n")+size)))
	if err != nil {
		t.Fatalf("after %d bytes: %v", len(rest), err)
	}
	if n := bytes.Count(rest, []byte{'b'}); n != size {
		t.Fatalf("body: %d bytes of %d", n, size)
	}
	io.WriteString(c, get("/after"))
	readEcho(t, c, "/after")
}

// TestIdleConnsHoldNoBuffer: connections waiting for their next request,
// or for their first, hold no read buffer; one with half a request holds
// one.
func TestIdleConnsHoldNoBuffer(t *testing.T) {
	s, h, addr := startFast(t, 0, 0)
	dial(t, addr) // silent
	testkit.WaitFor(t, "the silent connection served", func() bool { return h.calls.Load() == 1 })
	var conns []net.Conn
	for i := range 8 {
		c := dial(t, addr)
		io.WriteString(c, get("/"+strconv.Itoa(i)))
		readEcho(t, c, "/"+strconv.Itoa(i))
		conns = append(conns, c)
	}
	testkit.WaitFor(t, "no buffers held by idle connections", func() bool { return s.Buffers() == 0 })
	io.WriteString(conns[0], "GET /half HTTP/1.1\r\n")
	testkit.WaitFor(t, "one buffer for the half request", func() bool { return s.Buffers() == 1 })
	io.WriteString(conns[0], "Host: x\r\n\r\n")
	readEcho(t, conns[0], "/half")
	testkit.WaitFor(t, "no buffers after it", func() bool { return s.Buffers() == 0 })
}
