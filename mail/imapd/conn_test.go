package imapd

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// A corked conn holds go-imap's write deadlines with its writes: one in
// the past set while corked stops nothing until the buffer goes out;
// when it fills, the deadline asked for last applies; after uncork, the
// last one asked for is in force.
func TestConnCorkDeadlines(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	nc := <-accepted
	if nc == nil {
		t.Fatal("no connection")
	}
	c := &conn{Conn: nc, release: func() {}, srv: &Server{conns: map[*conn]struct{}{}}}
	defer c.Close()
	got := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(io.Discard, client)
		got <- n
	}()
	past := time.Now().Add(-time.Second)

	c.cork()
	c.SetWriteDeadline(past) // held: nothing is written yet
	if _, err := c.Write([]byte("* 1 FETCH (UID 1)\r\n")); err != nil {
		t.Fatalf("corked write: %v", err)
	}
	c.SetWriteDeadline(time.Now().Add(time.Minute))
	if _, err := c.Write(make([]byte, corkBytes)); err != nil { // fills: goes out under the minute
		t.Fatalf("write filling the buffer: %v", err)
	}
	c.SetWriteDeadline(past)
	c.Write([]byte("* 2 FETCH (UID 2)\r\n"))
	if err := c.uncork(); err != nil { // corkTimeout for the rest
		t.Fatalf("uncork: %v", err)
	}
	// Uncorked: the past deadline asked for last is in force.
	if _, err := c.Write([]byte("x")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("write after uncork with a past deadline: %v, want deadline exceeded", err)
	}
	c.SetWriteDeadline(time.Time{})
	if _, err := c.Write([]byte("y")); err != nil {
		t.Errorf("write without deadline: %v", err)
	}
	nc.Close()
	want := int64(2*len("* 1 FETCH (UID 1)\r\n") + corkBytes + 1)
	if n := <-got; n != want {
		t.Errorf("client read %d bytes, want %d", n, want)
	}
}
