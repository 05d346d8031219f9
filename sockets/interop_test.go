package sockets

import (
	"bufio"
	"bytes"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
)

// These tests use OpenBSD netcat as the peer in both directions.

func TestInteropNetcatClient(t *testing.T) {
	nc := testkit.Peer(t, "nc")
	udp := startUDP(t, UDPConfig{}, service.Deps{})
	tcp := startTCP(t, TCPConfig{})
	tests := []struct {
		name string
		args []string
		in   string
		want string
	}{
		{"udp", []string{"-u", "-w1", "127.0.0.1", port(udp.Addrs()[0].String())}, "hello from nc\n", "HELLO FROM NC\n"},
		{"tcp", []string{"-N", "-w5", "127.0.0.1", port(tcp.Addrs()[0].String())}, "one\ntwo\nthree\n", "ONE\nTWO\nTHREE\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testkit.Context(t, 20*time.Second)
			cmd := exec.CommandContext(ctx, nc, tt.args...)
			cmd.Stdin = strings.NewReader(tt.in)
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("nc %v: %v (output %q)", tt.args, err, out)
			}
			if string(out) != tt.want {
				t.Fatalf("nc got %q, want %q", out, tt.want)
			}
		})
	}
}

func TestInteropNetcatServer(t *testing.T) {
	nc := testkit.Peer(t, "nc")
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			ctx := testkit.Context(t, 20*time.Second)
			p := testkit.FreePort(t, network, "127.0.0.1")
			args := []string{"-l", "127.0.0.1", strconv.Itoa(p)}
			if network == "udp" {
				args = append([]string{"-u"}, args...)
			}
			cmd := exec.CommandContext(ctx, nc, args...)
			stdin, _ := cmd.StdinPipe()
			stdout, _ := cmd.StdoutPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

			// nc plays the server: when our line arrives it answers by hand.
			got := make(chan string, 1)
			go func() {
				line, _ := bufio.NewReader(stdout).ReadString('\n')
				got <- line
				io.WriteString(stdin, "ANSWER FROM NC\n")
			}()

			c := &Client{Server: "127.0.0.1:" + strconv.Itoa(p), Timeout: 5 * time.Second}
			var reply string
			// nc -l may not be listening yet: retry until it is.
			deadline := time.Now().Add(10 * time.Second)
			for {
				var err error
				if network == "udp" {
					var b []byte
					b, err = c.UDP(ctx, []byte("hello nc\n"))
					reply = string(b)
				} else {
					var out bytes.Buffer
					err = c.TCP(ctx, strings.NewReader("hello nc\n"), &out)
					reply = out.String()
				}
				if err == nil || time.Now().After(deadline) {
					if err != nil {
						t.Fatalf("client: %v", err)
					}
					break
				}
				select {
				case <-ctx.Done():
					t.Fatal(ctx.Err())
				case <-time.After(50 * time.Millisecond):
				}
			}
			if l := <-got; l != "hello nc\n" {
				t.Errorf("nc received %q, want %q", l, "hello nc\n")
			}
			if reply != "ANSWER FROM NC\n" {
				t.Errorf("client got %q, want the answer typed into nc", reply)
			}
		})
	}
}

func port(addr string) string {
	_, p, _ := strings.Cut(addr, "127.0.0.1:")
	return p
}
