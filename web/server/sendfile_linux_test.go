//go:build linux

package server

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/testkit"
)

// bigSize is larger than a loopback socket's send buffer can grow to
// (4 MiB) plus the small receive window of slowDial's sockets: the
// server is still sending when a test changes the file or the client.
const bigSize = 8 << 20

// slowDial connects with a 32 KiB receive buffer (no autotuning), so
// the client's reads pace the server's sending.
func slowDial(t *testing.T, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 32<<10)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return c
}

// getHead sends a GET for p on c and reads the response's header.
func getHead(t *testing.T, c net.Conn, br *bufio.Reader, p string) *http.Response {
	t.Helper()
	if _, err := io.WriteString(c, "GET "+p+" HTTP/1.1\r\nHost: localhost\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// readPaced reads r in steps of step bytes with a pause after each, up to
// n bytes, and returns what it read and the error that ended it.
func readPaced(r io.Reader, n, step int, pause time.Duration) ([]byte, error) {
	var out bytes.Buffer
	for out.Len() < n {
		m, err := io.CopyN(&out, r, int64(min(step, n-out.Len())))
		if err != nil {
			return out.Bytes(), err
		}
		if m > 0 {
			time.Sleep(pause)
		}
	}
	return out.Bytes(), nil
}

// writeBig writes a bigSize file under the root and returns its content.
func writeBig(t *testing.T, e *env, name string) []byte {
	t.Helper()
	b := []byte(pattern(bigSize))
	if err := os.WriteFile(filepath.Join(e.root, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

// fileRefs reports the references on the open file of the default
// site's entry for the URL path p (the entry's own and one per batch
// sending from it; 0 without one) and how many files the site has open.
func fileRefs(e *env, p string) (refs, open int32) {
	c := e.srv.fastDeflt.cache
	c.mu.RLock()
	ent := c.m[p]
	c.mu.RUnlock()
	if ent != nil {
		if sf := ent.file.Load(); sf != nil {
			refs = sf.refs.Load()
		}
	}
	return refs, c.open.Load()
}

// TestSendFileSlowReader: a client that reads a large file for longer
// than the idle timeout, but keeps reading, gets all of it (the write
// deadline bounds a stall, not the response), and the connection serves
// its next request. (The client reads faster than it drains a third of
// the server's send buffer, 4 MiB at most, within the timeout: the
// kernel wakes a writer only then.)
func TestSendFileSlowReader(t *testing.T) {
	e := start(t, func(c *Config) { c.IdleTimeout = 1500 * 1e6 })
	want := []byte(pattern(2 * bigSize))
	if err := os.WriteFile(filepath.Join(e.root, "slow.bin"), want, 0o644); err != nil {
		t.Fatal(err)
	}
	c := slowDial(t, e.plain)
	br := bufio.NewReader(c)
	res := getHead(t, c, br, "/slow.bin")
	if res.StatusCode != 200 || res.ContentLength != int64(len(want)) {
		t.Fatalf("status %d, length %d", res.StatusCode, res.ContentLength)
	}
	start := time.Now()
	got, err := readPaced(res.Body, len(want), 256<<10, 40*time.Millisecond)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %d of %d bytes in %s: %v", len(got), len(want), time.Since(start), err)
	}
	if d := time.Since(start); d < 1600*time.Millisecond {
		t.Errorf("download took %s: not longer than the idle timeout, the test proves nothing", d)
	}
	if refs, _ := fileRefs(e, "/slow.bin"); refs != 1 {
		t.Errorf("file references after the download: %d, want 1 (the cache entry's)", refs)
	}
	res = getHead(t, c, br, "/hello.txt")
	if b, _ := io.ReadAll(res.Body); res.StatusCode != 200 || string(b) != "hello, world\n" {
		t.Errorf("next request on the connection: %d %q", res.StatusCode, b)
	}
}

// TestSendFileClientGone: a client that disconnects in the middle of a
// large file ends that send (its reference on the file is released) and
// the server goes on serving the file to others.
func TestSendFileClientGone(t *testing.T) {
	e := start(t, nil)
	want := writeBig(t, e, "gone.bin")
	for range 3 {
		c := slowDial(t, e.plain)
		res := getHead(t, c, bufio.NewReader(c), "/gone.bin")
		if _, err := io.CopyN(io.Discard, res.Body, 100<<10); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	testkit.WaitFor(t, "sends to departed clients released the file", func() bool {
		refs, open := fileRefs(e, "/gone.bin")
		return refs == 1 && open == 1
	})
	res, err := http.Get("http://" + e.plain + "/gone.bin")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if b, err := io.ReadAll(res.Body); err != nil || !bytes.Equal(b, want) {
		t.Fatalf("after the departures: %d bytes, %v", len(b), err)
	}
}

// TestSendFileShrinks: a file truncated while it is being sent ends the
// response short and closes the connection (its length was promised),
// without a hang; the next request gets the file's new length and bytes.
func TestSendFileShrinks(t *testing.T) {
	e := start(t, nil)
	orig := writeBig(t, e, "shrink.bin")
	c := slowDial(t, e.plain)
	res := getHead(t, c, bufio.NewReader(c), "/shrink.bin")
	if _, err := io.CopyN(io.Discard, res.Body, 256<<10); err != nil {
		t.Fatal(err)
	}
	const newSize = 1 << 20
	if err := os.Truncate(filepath.Join(e.root, "shrink.bin"), newSize); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(res.Body)
	if !errors.Is(err, io.ErrUnexpectedEOF) || 256<<10+len(rest) >= bigSize {
		t.Fatalf("after truncation: read %d more bytes, %v; want a short body and the connection closed", len(rest), err)
	}
	testkit.WaitFor(t, "the truncated file's new length served", func() bool {
		res, err := http.Get("http://" + e.plain + "/shrink.bin")
		if err != nil {
			return false
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		return err == nil && res.ContentLength == newSize && bytes.Equal(b, orig[:newSize])
	})
}

// TestSendFileReplaced: a file replaced (renamed over) while being sent
// is sent whole as it was (the open descriptor keeps the old file); the
// next requests get the new file, and the old one's descriptor is closed.
func TestSendFileReplaced(t *testing.T) {
	e := start(t, nil)
	orig := writeBig(t, e, "swap.bin")
	c := slowDial(t, e.plain)
	res := getHead(t, c, bufio.NewReader(c), "/swap.bin")
	first := make([]byte, 256<<10)
	if _, err := io.ReadFull(res.Body, first); err != nil {
		t.Fatal(err)
	}
	repl := bytes.Repeat([]byte("new!"), (bigSize+4096)/4)
	tmp := filepath.Join(e.root, "swap.tmp")
	if err := os.WriteFile(tmp, repl, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(e.root, "swap.bin")); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(res.Body)
	if err != nil || !bytes.Equal(append(first, rest...), orig) {
		t.Fatalf("in-flight download: %d bytes, %v; want the old file whole", len(first)+len(rest), err)
	}
	testkit.WaitFor(t, "the new file served", func() bool {
		res, err := http.Get("http://" + e.plain + "/swap.bin")
		if err != nil {
			return false
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		return err == nil && bytes.Equal(b, repl)
	})
	testkit.WaitFor(t, "only the new file open", func() bool {
		refs, open := fileRefs(e, "/swap.bin")
		return refs == 1 && open == 1
	})
}

// TestSendFilePipelined: responses sent from files and from memory,
// pipelined on one connection, arrive whole and in order.
func TestSendFilePipelined(t *testing.T) {
	e := start(t, nil)
	get := func(p, extra string) string { return "GET " + p + " HTTP/1.1\r\nHost: localhost\r\n" + extra + "\r\n" }
	large, medium := files["large.bin"], files["medium.bin"]
	stream := get("/large.bin", "") + get("/hello.txt", "") + get("/medium.bin", "Range: bytes=10-"+strconv.Itoa(len(medium)-11)+"\r\n") +
		get("/large.bin", "Range: bytes=-5\r\n") + get("/medium.bin", "") + get("/hello.txt", "")
	c, err := net.Dial("tcp", e.plain)
	if err != nil {
		t.Fatal(err)
	}
	got := exchangeOn(t, c, stream, false, 6)
	want := []struct {
		code int
		body string
	}{{200, large}, {200, "hello, world\n"}, {206, medium[10 : len(medium)-10]}, {206, large[len(large)-5:]}, {200, medium}, {200, "hello, world\n"}}
	if len(got) != len(want) {
		t.Fatalf("%d responses, want %d", len(got), len(want))
	}
	for i, w := range want {
		if got[i].status != w.code || got[i].body != w.body {
			t.Errorf("response %d: %d, %d bytes; want %d, %d bytes", i, got[i].status, len(got[i].body), w.code, len(w.body))
		}
		if cl := got[i].header.Get("Content-Length"); cl != strconv.Itoa(len(w.body)) {
			t.Errorf("response %d: Content-Length %q, want %d", i, cl, len(w.body))
		}
	}
	if refs, open := fileRefs(e, "/large.bin"); refs != 1 || open != 2 {
		t.Errorf("large.bin's file references %d, site's open files %d; want 1 and 2 (sent with sendfile, released)", refs, open)
	}
}

// TestSendFileGzipHandedOver: a large compressible file asked for with
// gzip goes to net/http, which compresses it (with Vary); without gzip
// the fast path sends it, with Vary too.
func TestSendFileGzipHandedOver(t *testing.T) {
	e := start(t, nil)
	for _, gz := range []bool{false, true} {
		req, _ := http.NewRequest("GET", "http://"+e.plain+"/large.txt", nil)
		if gz {
			req.Header.Set("Accept-Encoding", "gzip")
		}
		tr := &http.Transport{DisableCompression: true}
		res, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		var body io.Reader = res.Body
		if gz {
			if res.Header.Get("Content-Encoding") != "gzip" {
				t.Fatalf("gzip asked: Content-Encoding %q", res.Header.Get("Content-Encoding"))
			}
			if body, err = gzip.NewReader(res.Body); err != nil {
				t.Fatal(err)
			}
		}
		b, err := io.ReadAll(body)
		res.Body.Close()
		tr.CloseIdleConnections()
		if err != nil || string(b) != files["large.txt"] || res.Header.Get("Vary") != "Accept-Encoding" {
			t.Errorf("gzip %v: %d bytes (%v), Vary %q", gz, len(b), err, res.Header.Get("Vary"))
		}
	}
}
