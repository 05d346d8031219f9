package app

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/applayer/applayer/internal/config"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/sockets"
)

func socketsCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sockets",
		Short: "The textbook's socket-programming examples (UDP and TCP upper-case servers and clients)",
		Long: `The socket-programming examples of the chapter: a UDP server that answers each
datagram with its payload upper-cased, a TCP server that serves many clients
at once and upper-cases each line, and their clients. nc works as a peer.`,
		Example: `  applayer sockets udp-server --listen 127.0.0.1:12000 &
  applayer sockets udp-client --server 127.0.0.1:12000 "hello"    # -> HELLO
  echo hello | nc -u -w1 127.0.0.1 12000`,
	}
	cmd.AddCommand(udpServerCommand(g), tcpServerCommand(g), udpClientCommand(g), tcpClientCommand(g))
	return cmd
}

func defaultSocketAddr() string { return "127.0.0.1:" + strconv.Itoa(sockets.DefaultPort) }

func udpServerCommand(g *globals) *cobra.Command {
	var cfg sockets.UDPConfig
	cmd := &cobra.Command{
		Use:     "udp-server",
		Short:   "Run the UDP upper-case server: each datagram is answered, upper-cased, to its sender",
		Example: "  applayer sockets udp-server --listen 127.0.0.1:12000",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return serve(cmd, g, func(d service.Deps) (service.Service, error) { return sockets.NewUDPServer(cfg, d) })
		},
	}
	cmd.Flags().StringVar(&cfg.Addr, "listen", defaultSocketAddr(), "address to listen on")
	cmd.Flags().IntVar(&cfg.MaxDatagram, "max-datagram", 2048, "largest datagram answered, in bytes")
	adminFlags(cmd, g, "")
	return cmd
}

func tcpServerCommand(g *globals) *cobra.Command {
	var cfg sockets.TCPConfig
	var read, idle time.Duration
	cmd := &cobra.Command{
		Use:     "tcp-server",
		Short:   "Run the TCP upper-case server: one connection per client, each line answered upper-cased",
		Example: "  applayer sockets tcp-server --listen 127.0.0.1:12000 --idle-timeout 30s",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.ReadTimeout, cfg.IdleTimeout = config.Duration(read), config.Duration(idle)
			return serve(cmd, g, func(d service.Deps) (service.Service, error) { return sockets.NewTCPServer(cfg, d) })
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Addr, "listen", defaultSocketAddr(), "address to listen on")
	f.DurationVar(&read, "read-timeout", 30*time.Second, "time allowed for a started line to arrive")
	f.DurationVar(&idle, "idle-timeout", 2*time.Minute, "close a connection idle this long")
	f.IntVar(&cfg.MaxLineBytes, "max-line", 4096, "longest line accepted, in bytes")
	f.IntVar(&cfg.MaxConns, "max-conns", 1024, "most concurrent connections")
	adminFlags(cmd, g, "")
	return cmd
}

func socketClient(cmd *cobra.Command) *sockets.Client {
	c := &sockets.Client{}
	cmd.Flags().StringVar(&c.Server, "server", defaultSocketAddr(), "server address, host:port")
	cmd.Flags().DurationVar(&c.Timeout, "timeout", 3*time.Second, "how long to wait for each answer")
	return c
}

func udpClientCommand(g *globals) *cobra.Command {
	var c *sockets.Client
	cmd := &cobra.Command{
		Use:   "udp-client [message...]",
		Short: "Send a line in a UDP datagram and print the server's answer",
		Long: `Sends the message (the arguments joined by spaces) in one datagram, or, with
no arguments, each line of standard input in its own datagram, and prints
each answer.`,
		Example: `  applayer sockets udp-client --server 127.0.0.1:12000 hello world
  printf 'one\ntwo\n' | applayer sockets udp-client --server 127.0.0.1:12000`,
		RunE: func(cmd *cobra.Command, args []string) error {
			lines := [][]byte{[]byte(strings.Join(args, " "))}
			if len(args) == 0 {
				lines = readLines(g)
			}
			for _, l := range lines {
				reply, err := c.UDP(cmd.Context(), l)
				if err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "%s\n", bytes.TrimRight(reply, "\n"))
			}
			return nil
		},
	}
	c = socketClient(cmd)
	return cmd
}

func readLines(g *globals) [][]byte {
	var buf bytes.Buffer
	buf.ReadFrom(g.stdin)
	var out [][]byte
	for _, l := range bytes.Split(bytes.TrimRight(buf.Bytes(), "\n"), []byte("\n")) {
		out = append(out, bytes.TrimRight(l, "\r"))
	}
	return out
}

func tcpClientCommand(g *globals) *cobra.Command {
	var c *sockets.Client
	cmd := &cobra.Command{
		Use:   "tcp-client [message...]",
		Short: "Send lines over one TCP connection and print the server's answers",
		Long: `Opens one connection and sends the message (the arguments joined by spaces),
or, with no arguments, each line of standard input, printing each answer.`,
		Example: `  applayer sockets tcp-client --server 127.0.0.1:12000 hello
  cat notes.txt | applayer sockets tcp-client --server 127.0.0.1:12000`,
		RunE: func(cmd *cobra.Command, args []string) error {
			in := g.stdin
			if len(args) > 0 {
				in = strings.NewReader(strings.Join(args, " ") + "\n")
			}
			return c.TCP(cmd.Context(), in, g.stdout)
		},
	}
	c = socketClient(cmd)
	return cmd
}
