package transport

import (
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// classifyAB wants 4 bytes: "AAAA" goes to consumer 0, "BBBB" to 1,
// anything else is rejected.
func classifyAB(b []byte, full bool) int {
	if len(b) < 4 {
		if full {
			return SniffReject
		}
		return SniffMore
	}
	switch string(b[:4]) {
	case "AAAA":
		return 0
	case "BBBB":
		return 1
	}
	return SniffReject
}

func TestSniffer(t *testing.T) {
	tests := []struct {
		name      string
		maxBytes  int
		send      string
		halfClose bool   // the client closes its side after sending
		consumer  int    // -1: closed without a consumer
		replayed  string // what the consumer reads first
		minWait   time.Duration
	}{
		{"first consumer", 0, "AAAA hello", false, 0, "AAAA hello", 0},
		{"second consumer", 0, "BBBB", false, 1, "BBBB", 0},
		{"unknown bytes are closed", 0, "CCCC", false, -1, "", 0},
		{"a client that sends nothing is closed at the deadline", 0, "", false, -1, "", 150 * time.Millisecond},
		{"fewer bytes than wanted, then silence: closed at the deadline", 0, "AA", false, -1, "", 150 * time.Millisecond},
		{"fewer bytes than wanted, then end of file: closed at once", 0, "AA", true, -1, "", 0},
		{"the size cap ends the wait", 3, "AAA", false, -1, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			outs := []*Handoff{NewHandoff(ln.Addr()), NewHandoff(ln.Addr())}
			got := make(chan struct {
				i int
				c net.Conn
			}, 2)
			done := make(chan struct{})
			for i, h := range outs {
				go func() {
					for {
						c, err := h.Accept()
						if err != nil {
							done <- struct{}{}
							return
						}
						got <- struct {
							i int
							c net.Conn
						}{i, c}
					}
				}()
			}
			sn := NewSniffer(SniffConfig{Classify: classifyAB, Timeout: 200 * time.Millisecond, MaxBytes: tt.maxBytes}, outs...)
			s := NewStreamServer(StreamConfig{}, sn)
			s.Start(ln)
			defer func() {
				s.Close()
				for _, h := range outs {
					h.Close()
				}
				<-done
				<-done
			}()
			c := dialFrom(t, ln.Addr().String(), "")
			start := time.Now()
			io.WriteString(c, tt.send)
			if tt.halfClose {
				c.(*net.TCPConn).CloseWrite()
			}
			if tt.consumer < 0 {
				closedByServer(t, c, 2*time.Second)
				if d := time.Since(start); d < tt.minWait {
					t.Errorf("closed after %v, before the deadline", d)
				}
				if tt.minWait == 0 && time.Since(start) > 150*time.Millisecond {
					t.Errorf("closed after %v, want at once", time.Since(start))
				}
				select {
				case g := <-got:
					t.Fatalf("consumer %d got the connection", g.i)
				default:
				}
				return
			}
			var g struct {
				i int
				c net.Conn
			}
			select {
			case g = <-got:
			case <-time.After(3 * time.Second):
				t.Fatal("no consumer got the connection")
			}
			defer g.c.Close()
			if g.i != tt.consumer {
				t.Fatalf("consumer %d, want %d", g.i, tt.consumer)
			}
			buf := make([]byte, len(tt.replayed))
			g.c.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, err := io.ReadFull(g.c, buf); err != nil || string(buf) != tt.replayed {
				t.Fatalf("replayed %q, %v; want %q", buf, err, tt.replayed)
			}
			// The rest of the stream follows, both ways.
			io.WriteString(c, " more")
			buf = make([]byte, 5)
			if _, err := io.ReadFull(g.c, buf); err != nil || string(buf) != " more" {
				t.Fatalf("after the prefix: %q, %v", buf, err)
			}
			io.WriteString(g.c, "answer\n")
			if line, _ := readLine(t, c); line != "answer" {
				t.Fatalf("client read %q", line)
			}
			if _, ok := g.c.(io.ReaderFrom); !ok {
				t.Error("the handed-off TCP connection lost ReadFrom (sendfile)")
			}
			if _, ok := g.c.(interface{ CloseWrite() error }); !ok {
				t.Error("the handed-off TCP connection lost CloseWrite")
			}
		})
	}
}

// TestSnifferSlotHeldUntilClose: a handed-off connection keeps its slot
// of the StreamServer until its new owner closes it.
func TestSnifferSlotHeldUntilClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := NewHandoff(ln.Addr())
	defer h.Close()
	s := NewStreamServer(StreamConfig{MaxConns: 1, OnReject: rejectReply}, NewSniffer(SniffConfig{Classify: classifyAB}, h))
	s.Start(ln)
	defer s.Close()
	a := dialFrom(t, ln.Addr().String(), "")
	io.WriteString(a, "AAAA")
	hc, err := h.Accept()
	if err != nil {
		t.Fatal(err)
	}
	b := dialFrom(t, ln.Addr().String(), "")
	if line, _ := readLine(t, b); line != "BUSY full" {
		t.Fatalf("second client while the first is handed off: %q", line)
	}
	hc.Close()
	hc.Close()
	waitConns(t, s, 0)
	c := dialFrom(t, ln.Addr().String(), "")
	io.WriteString(c, "AAAA")
	hc, err = h.Accept()
	if err != nil {
		t.Fatal(err)
	}
	hc.Close()
}

func TestReplayConn(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client := dialFrom(t, ln.Addr().String(), "")
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	pipeA, pipeB := net.Pipe()
	defer pipeB.Close()
	tests := []struct {
		name    string
		conn    net.Conn
		isTCP   bool
		prefix  string
		read    func(c net.Conn) (string, error)
		feed    func()
		wantAll string
	}{
		{"tcp, Read", server, true, "pre-", func(c net.Conn) (string, error) {
			buf := make([]byte, 8)
			_, err := io.ReadFull(c, buf)
			return string(buf), err
		}, func() { io.WriteString(client, "fix!") }, "pre-fix!"},
		{"pipe, Read", pipeA, false, "pre-", func(c net.Conn) (string, error) {
			buf := make([]byte, 8)
			_, err := io.ReadFull(c, buf)
			return string(buf), err
		}, func() { go io.WriteString(pipeB, "fix!") }, "pre-fix!"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var consumed, closed atomic.Int32
			rc := ReplayConn(tt.conn, Replay{Prefix: []byte(tt.prefix),
				Consumed: func() { consumed.Add(1) }, Closed: func() { closed.Add(1) }})
			if _, ok := rc.(*replayTCP); ok != tt.isTCP {
				t.Errorf("embeds *net.TCPConn: %v, want %v", ok, tt.isTCP)
			}
			tt.feed()
			got, err := tt.read(rc)
			if err != nil || got != tt.wantAll {
				t.Fatalf("read %q, %v; want %q", got, err, tt.wantAll)
			}
			if consumed.Load() != 1 {
				t.Errorf("Consumed ran %d times, want 1", consumed.Load())
			}
			rc.Close()
			rc.Close()
			if closed.Load() != 1 {
				t.Errorf("Closed ran %d times, want 1", closed.Load())
			}
		})
	}
}

func TestReplayConnWriteTo(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client := dialFrom(t, ln.Addr().String(), "")
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	rc := ReplayConn(server, Replay{Prefix: []byte("head|")})
	defer rc.Close()
	io.WriteString(client, "body")
	client.(*net.TCPConn).CloseWrite()
	var sb strings.Builder
	if _, err := rc.(io.WriterTo).WriteTo(&sb); err != nil {
		t.Fatal(err)
	}
	if sb.String() != "head|body" {
		t.Fatalf("WriteTo: %q", sb.String())
	}
}

func TestHandoffClose(t *testing.T) {
	h := NewHandoff(&net.TCPAddr{})
	h.Close()
	h.Close()
	if _, err := h.Accept(); err != net.ErrClosed {
		t.Fatalf("Accept after Close: %v", err)
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if h.Deliver(a) {
		t.Fatal("Deliver after Close succeeded")
	}
}
