package transport_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/applayer/applayer/internal/transport"
)

// A line protocol on a StreamServer: the handler marks the connection idle
// while it waits for a line, so Shutdown (and a full server with
// DropIdleWhenFull) can close it, and busy while it answers.
func ExampleStreamServer() {
	ln, err := transport.ListenConfig{}.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := transport.NewStreamServer(transport.StreamConfig{
		MaxConns:      100,
		MaxConnsPerIP: 10,
		IdleTimeout:   time.Minute,
		ReadTimeout:   10 * time.Second,
		OnReject:      func(c net.Conn, why transport.RejectReason) { fmt.Fprintf(c, "421 %s\n", why) },
		OnPanic:       func(c net.Conn, _ any) { io.WriteString(c, "500 internal error\n") },
	}, transport.HandlerFunc(func(ctx context.Context, c *transport.Conn) {
		r := bufio.NewReader(c)
		for c.SetIdle() {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			c.SetBusy()
			io.WriteString(c, strings.ToUpper(line))
		}
	}))
	srv.Start(ln)
	defer srv.Shutdown(context.Background())

	c, _ := net.Dial("tcp", ln.Addr().String())
	defer c.Close()
	io.WriteString(c, "hello\n")
	reply, _ := bufio.NewReader(c).ReadString('\n')
	fmt.Print(reply)
	// Output: HELLO
}

// A UDP echo on a PacketServer: one handler per reader, replies queued
// per datagram and sent in one batch.
func ExamplePacketServer() {
	conns, err := transport.ListenUDPGroup(context.Background(), "udp", "127.0.0.1:0", 2)
	if err != nil {
		panic(err)
	}
	srv := transport.NewPacketServer(transport.PacketConfig{}, func() transport.PacketHandler {
		out := make([][]byte, transport.DefaultBatchSize) // one reply buffer per datagram
		return transport.PacketHandlerFunc(func(b *transport.Batch) {
			for i := 0; i < b.Len(); i++ {
				if b.Truncated(i) || !b.From(i).IsValid() {
					continue
				}
				out[i] = append(out[i][:0], "echo: "...)
				out[i] = append(out[i], b.Data(i)...)
				b.Reply(i, out[i])
			}
		})
	})
	srv.Start(conns...)
	defer srv.Shutdown(context.Background())

	c, _ := net.Dial("udp", conns[0].LocalAddr().String())
	defer c.Close()
	c.Write([]byte("ping"))
	buf := make([]byte, 64)
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, _ := c.Read(buf)
	fmt.Println(string(buf[:n]))
	// Output: echo: ping
}

// Two protocols on one port: a Sniffer reads the first bytes and hands
// each connection, bytes replayed, to the server behind one Handoff.
func ExampleSniffer() {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	greet, other := transport.NewHandoff(ln.Addr()), transport.NewHandoff(ln.Addr())
	sn := transport.NewSniffer(transport.SniffConfig{
		Timeout: time.Second,
		Classify: func(b []byte, full bool) int {
			switch {
			case len(b) < 5 && !full:
				return transport.SniffMore
			case string(b[:5]) == "HELO ":
				return 0
			}
			return 1
		},
	}, greet, other)
	srv := transport.NewStreamServer(transport.StreamConfig{}, sn)
	srv.Start(ln)
	defer srv.Close()
	defer other.Close()
	defer greet.Close()

	c, _ := net.Dial("tcp", ln.Addr().String())
	defer c.Close()
	io.WriteString(c, "HELO world\n")
	hc, _ := greet.Accept() // the first consumer gets it, first bytes included
	defer hc.Close()
	line, _ := bufio.NewReader(hc).ReadString('\n')
	fmt.Print(line)
	// Output: HELO world
}
