package sockets

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/applayer/applayer/internal/service"
)

// ErrNoAnswer is returned by the clients when the server does not answer in
// time or is not there.
var ErrNoAnswer = errors.New("no answer")

// Client talks to the upper-case servers.
type Client struct {
	// Server is the server's address, host:port.
	Server string
	// Timeout bounds each exchange. Default 3s.
	Timeout time.Duration
	// Dialer opens the connection; nil means a net.Dialer.
	Dialer service.Dialer
}

func (c *Client) timeout() time.Duration {
	if c.Timeout <= 0 {
		return 3 * time.Second
	}
	return c.Timeout
}

func (c *Client) dial(ctx context.Context, network string) (net.Conn, error) {
	d := c.Dialer
	if d == nil {
		d = &net.Dialer{}
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	conn, err := d.DialContext(ctx, network, c.Server)
	if err != nil {
		return nil, c.explain(err)
	}
	return conn, nil
}

// explain turns network errors into a message that says what happened.
func (c *Client) explain(err error) error {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("sockets: %w from %s: connection refused (is the server running?)", ErrNoAnswer, c.Server)
	case isTimeout(err), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("sockets: %w from %s within %s (is the server running?)", ErrNoAnswer, c.Server, c.timeout())
	}
	return fmt.Errorf("sockets: %s: %w", c.Server, err)
}

// UDP sends msg in one datagram and returns the server's reply.
func (c *Client) UDP(ctx context.Context, msg []byte) ([]byte, error) {
	conn, err := c.dial(ctx, "udp")
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	deadline := time.Now().Add(c.timeout())
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	conn.SetDeadline(deadline)
	if _, err := conn.Write(msg); err != nil {
		return nil, c.explain(err)
	}
	buf := make([]byte, 65536)
	n, err := conn.Read(buf)
	if err != nil {
		return nil, c.explain(err)
	}
	return buf[:n], nil
}

// TCP opens a connection, sends each line read from in and writes each
// reply line to out. It returns when in is exhausted and every reply has
// arrived, or when the server stops answering.
func (c *Client) TCP(ctx context.Context, in io.Reader, out io.Writer) error {
	conn, err := c.dial(ctx, "tcp")
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	br := bufio.NewReader(conn)
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 4096), 1<<20)
	for sc.Scan() {
		conn.SetDeadline(time.Now().Add(c.timeout()))
		line := append(sc.Bytes(), '\n')
		if _, err := conn.Write(line); err != nil {
			return c.explain(err)
		}
		reply, err := br.ReadBytes('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("sockets: %s closed the connection", c.Server)
			}
			return c.explain(err)
		}
		if _, err := out.Write(reply); err != nil {
			return err
		}
	}
	return sc.Err()
}
