package h2

import (
	"bytes"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// seedFrames returns client frame sequences (after the preface) that
// exercise the connection loop: requests with and without bodies,
// flow control, resets, priorities, header blocks in pieces.
func seedFrames() [][]byte {
	var seeds [][]byte
	build := func(fn func(fr *http2.Framer, block func(path string, extra ...string) []byte)) {
		var b bytes.Buffer
		fr := http2.NewFramer(&b, nil)
		var hb bytes.Buffer
		enc := hpack.NewEncoder(&hb)
		block := func(path string, extra ...string) []byte {
			hb.Reset()
			method := "GET"
			if path == "/echo" {
				method = "POST"
			}
			for _, f := range [][2]string{{":method", method}, {":scheme", "http"}, {":authority", "x"}, {":path", path}} {
				enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
			}
			for i := 0; i+1 < len(extra); i += 2 {
				enc.WriteField(hpack.HeaderField{Name: extra[i], Value: extra[i+1]})
			}
			return bytes.Clone(hb.Bytes())
		}
		fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 100})
		fn(fr, block)
		seeds = append(seeds, b.Bytes())
	}
	build(func(fr *http2.Framer, block func(string, ...string) []byte) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block("/hello"), EndStream: true, EndHeaders: true})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: block("/static/big"), EndStream: true, EndHeaders: true})
		fr.WriteWindowUpdate(3, 1000)
		fr.WriteWindowUpdate(0, 1000)
		fr.WritePing(false, [8]byte{1})
	})
	build(func(fr *http2.Framer, block func(string, ...string) []byte) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block("/echo", "content-length", "5", "trailer", "x-t"), EndHeaders: true})
		fr.WriteData(1, false, []byte("hel"))
		fr.WriteData(1, false, []byte("lo"))
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block("/x", "x-t", "1")[0:0], EndStream: true, EndHeaders: true})
		fr.WriteRSTStream(1, http2.ErrCodeCancel)
	})
	build(func(fr *http2.Framer, block func(string, ...string) []byte) {
		b := block("/slow", "priority", "u=1, i")
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: b[:3], EndStream: true,
			Priority: http2.PriorityParam{StreamDep: 0, Weight: 10}})
		fr.WriteContinuation(1, false, b[3:5])
		fr.WriteContinuation(1, true, b[5:])
		fr.WritePriority(5, http2.PriorityParam{StreamDep: 1})
		fr.WritePriorityUpdate(1, "u=7")
		fr.WriteRSTStream(1, http2.ErrCodeCancel)
		fr.WriteGoAway(1, http2.ErrCodeNo, nil)
	})
	build(func(fr *http2.Framer, block func(string, ...string) []byte) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block("/stream"), EndStream: true, EndHeaders: true})
		fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0}, http2.Setting{ID: http2.SettingMaxFrameSize, Val: 20000})
		fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 65535})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: block("/static/small"), EndStream: true, EndHeaders: true})
	})
	return seeds
}

// FuzzFrames feeds random frame sequences to a connection: it must not
// panic, must end when the peer goes (no goroutine left behind) and
// must not allocate beyond its limits.
func FuzzFrames(f *testing.F) {
	for _, s := range seedFrames() {
		f.Add(s)
	}
	big := bytes.Repeat([]byte("b"), 200_000)
	fast := staticFast{map[string][]byte{"big": big, "small": []byte("small")}}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > 1<<16 {
			return
		}
		before := runtime.NumGoroutine()
		var ms0, ms1 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		s := New(Config{IdleTimeout: 2 * time.Second, MaxConcurrentStreams: 16}, testHandler(), fast)
		cli, srv := net.Pipe()
		done := make(chan struct{})
		go func() { s.ServeConn(srv, false); close(done) }()
		drained := make(chan struct{})
		go func() { io.Copy(io.Discard, cli); close(drained) }()
		cli.SetWriteDeadline(time.Now().Add(5 * time.Second))
		cli.Write([]byte(http2.ClientPreface))
		cli.Write(in)
		time.Sleep(time.Millisecond)
		cli.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("ServeConn did not return after the peer closed")
		}
		<-drained
		deadline := time.Now().Add(3 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			t.Fatalf("%d goroutines left behind", n-before)
		}
		runtime.ReadMemStats(&ms1)
		if grew := ms1.TotalAlloc - ms0.TotalAlloc; grew > 16<<20+uint64(len(in))*64 {
			t.Fatalf("allocated %d bytes for %d bytes of input", grew, len(in))
		}
	})
}
