package resolver

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// tcpFrom opens a DNS-over-TCP connection to addr from the local address
// ip (any of 127.0.0.0/8 on loopback).
func tcpFrom(t *testing.T, ip, addr string) *dns.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &dns.Conn{Conn: c}
}

// tcpQuery sends one query on c and returns the answer or the error.
func tcpQuery(c *dns.Conn, name string) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if err := c.WriteMsg(m); err != nil {
		return nil, err
	}
	return c.ReadMsg()
}

// closedSoon reports whether the server closes c within d (without
// sending anything).
func closedSoon(c *dns.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	var b [1]byte
	_, err := c.Read(b[:])
	return err != nil && !errors.Is(err, os.ErrDeadlineExceeded) && (errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err))
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && !op.Timeout()
}

func waitConns(t *testing.T, r *testResolver, want int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for r.srv.TCPConns() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%d TCP connections open, want %d", r.srv.TCPConns(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTCPSlots is issue 10 item 5: connections held open by some clients
// locked every allowed client out of TCP, and refused clients held slots.
// As Unbound does: a refused client is closed at once without a slot, one
// client address may hold only so many connections, and when every slot
// is taken the connection idle longest is dropped for the new one.
func TestTCPSlots(t *testing.T) {
	h := newHierarchy(t, 0)
	r := startResolver(t, h, func(c *Config) {
		c.Allow = []string{"127.0.0.0/24"}
		c.MaxTCPConns = 4
		c.MaxTCPConnsPerClient = 2
	})
	ok := func(c *dns.Conn, who string) {
		t.Helper()
		if m, err := tcpQuery(c, "www.example.test"); err != nil || m.Rcode != dns.RcodeSuccess || len(m.Answer) != 2 {
			t.Fatalf("%s: %v %v", who, m, err)
		}
	}
	// A refused client is closed at once and takes no slot.
	if c := tcpFrom(t, "127.0.1.1", r.addr); !closedSoon(c, time.Second) {
		t.Error("refused client not closed at once")
	}
	waitConns(t, r, 0)
	// One address holds at most MaxTCPConnsPerClient connections.
	a1, a2 := tcpFrom(t, "127.0.0.1", r.addr), tcpFrom(t, "127.0.0.1", r.addr)
	ok(a1, "a1")
	ok(a2, "a2")
	if a3 := tcpFrom(t, "127.0.0.1", r.addr); !closedSoon(a3, time.Second) {
		t.Error("third connection of one client not closed")
	}
	waitConns(t, r, 2)
	// Full: the connection idle longest (a1) makes room for a new client.
	b, c := tcpFrom(t, "127.0.0.2", r.addr), tcpFrom(t, "127.0.0.3", r.addr)
	ok(b, "b")
	ok(c, "c")
	waitConns(t, r, 4)
	// a2, b and c are used again, well after a1's last answer, so a1 is
	// the one idle longest however the goroutines were scheduled.
	time.Sleep(50 * time.Millisecond)
	ok(a2, "a2 again")
	ok(b, "b again")
	ok(c, "c again")
	d := tcpFrom(t, "127.0.0.4", r.addr)
	ok(d, "d (server full)")
	if !closedSoon(a1, 3*time.Second) {
		t.Error("the oldest idle connection was not dropped")
	}
	ok(a2, "a2 after the drop")
	waitConns(t, r, 4)
}

// TestTCPTimeouts: a connection waiting for its next query is closed
// after TCPIdleTimeout; a query that starts and stalls after
// TCPQueryTimeout, however long the idle timeout.
func TestTCPTimeouts(t *testing.T) {
	h := newHierarchy(t, 0)
	r := startResolver(t, h, func(c *Config) {
		c.TCPIdleTimeout = 300 * 1e6
		c.TCPQueryTimeout = 300 * 1e6
	})
	c := tcpFrom(t, "127.0.0.1", r.addr)
	if m, err := tcpQuery(c, "www.example.test"); err != nil || m.Rcode != dns.RcodeSuccess {
		t.Fatalf("query: %v %v", m, err)
	}
	start := time.Now()
	if !closedSoon(c, 3*time.Second) || time.Since(start) < 200*time.Millisecond {
		t.Errorf("idle connection closed after %v, want about 300ms", time.Since(start))
	}

	r2 := startResolver(t, h, func(c *Config) {
		c.TCPIdleTimeout = 10 * 1e9
		c.TCPQueryTimeout = 300 * 1e6
	})
	stalled, idle := tcpFrom(t, "127.0.0.1", r2.addr), tcpFrom(t, "127.0.0.1", r2.addr)
	if _, err := stalled.Write([]byte{0}); err != nil { // half a length prefix
		t.Fatal(err)
	}
	if !closedSoon(stalled, 3*time.Second) {
		t.Error("stalled query not timed out")
	}
	if closedSoon(idle, time.Second) {
		t.Error("idle connection closed before its idle timeout")
	}
}
