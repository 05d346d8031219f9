//go:build linux

package udpbatch

import (
	"bytes"
	"fmt"
	"net"
	"testing"
	"time"
)

// echo answers every datagram with its own bytes reversed until n have
// been answered, using recv and send on b.
func echo(t *testing.T, b *Batch, recv func() int, send func(), n int) {
	t.Helper()
	for done := 0; done < n; {
		k := recv()
		for i := 0; i < k; i++ {
			d, cut := b.Datagram(i)
			if cut {
				t.Errorf("datagram %d reported cut", i)
			}
			if _, ok := b.From(i); !ok {
				t.Errorf("datagram %d: no sender", i)
			}
			r := append([]byte("re:"), d...)
			b.Reply(i, r)
		}
		send()
		done += k
	}
}

func roundTrip(t *testing.T, server *net.UDPConn, serve func(n int)) {
	t.Helper()
	client, err := net.DialUDP("udp", nil, server.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	const n = 100 // more than one batch
	done := make(chan struct{})
	go func() { defer close(done); serve(n) }()
	for i := range n {
		if _, err := fmt.Fprintf(client, "q%d", i); err != nil {
			t.Fatal(err)
		}
	}
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := map[string]bool{}
	buf := make([]byte, 100)
	for range n {
		m, err := client.Read(buf)
		if err != nil {
			t.Fatalf("after %d replies: %v", len(got), err)
		}
		got[string(buf[:m])] = true
	}
	<-done
	for i := range n {
		if !got[fmt.Sprintf("re:q%d", i)] {
			t.Errorf("no reply to q%d", i)
		}
	}
}

func listen(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	// Room for a burst of 100 datagrams.
	c.SetReadBuffer(1 << 20)
	return c
}

func TestPoller(t *testing.T) {
	c := listen(t)
	b := NewBatch()
	p, err := NewPoller(c, b)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, func(n int) {
		echo(t, b, func() int {
			k, err := p.Recv()
			if err != nil {
				t.Error(err)
			}
			return k
		}, p.Send, n)
	})
	// Closing the conn ends a waiting Recv with an error.
	errc := make(chan error, 1)
	go func() { _, err := p.Recv(); errc <- err }()
	c.Close()
	select {
	case err := <-errc:
		if err == nil {
			t.Error("Recv after Close: no error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Recv still blocked after Close")
	}
}

func TestSock(t *testing.T) {
	c := listen(t)
	defer c.Close()
	s, err := Open(c)
	if err != nil {
		t.Fatal(err)
	}
	b := NewBatch()
	roundTrip(t, c, func(n int) {
		echo(t, b, func() int { return b.Recv(s) }, func() { b.Send(s) }, n)
	})
	// Wake ends a blocked Recv with nothing.
	got := make(chan int, 1)
	go func() { got <- b.Recv(s) }()
	for {
		s.Wake()
		select {
		case k := <-got:
			// The kernel reports the shut-down socket as one empty datagram.
			if d, _ := b.Datagram(0); k > 1 || k == 1 && len(d) != 0 {
				t.Errorf("Recv after Wake = %d datagrams (first %q), want none or an empty one", k, d)
			}
			s.Close()
			s.Close()
			s.Wake() // safe after Close
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestCut(t *testing.T) {
	c := listen(t)
	defer c.Close()
	b := NewBatch()
	p, err := NewPoller(c, b)
	if err != nil {
		t.Fatal(err)
	}
	client, err := net.DialUDP("udp", nil, c.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	big := bytes.Repeat([]byte{1}, InBuf+100)
	if _, err := client.Write(big); err != nil {
		t.Fatal(err)
	}
	k, err := p.Recv()
	if err != nil || k != 1 {
		t.Fatalf("Recv = %d, %v", k, err)
	}
	d, cut := b.Datagram(0)
	if !cut || len(d) != InBuf {
		t.Errorf("big datagram: %d bytes, cut %v; want %d, true", len(d), cut, InBuf)
	}
}
