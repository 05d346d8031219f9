package trace

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
)

// The event types: what an Event records. Every publisher uses one of these
// (docs/trace.md says which system publishes which); Publish sets an empty
// Type to Msg.
const (
	// Msg is one protocol message on the wire, from its sender to its
	// receiver (a DNS query, an HTTP response, a BitTorrent piece).
	Msg = "msg"
	// ConnOpen and ConnClose are a transport connection (TCP, QUIC)
	// accepted or dialled and closed: From is the client, To the server.
	ConnOpen  = "conn.open"
	ConnClose = "conn.close"
	// Handshake is a completed TLS or QUIC handshake (Proto "tls" or
	// "quic"), From the client, To the server; the summary names the
	// version, ALPN and cipher suite.
	Handshake = "handshake"
	// CacheHit, CacheMiss and CacheRevalidate are a cache's decision on a
	// request (the web cache, the resolver's reply cache): From is the
	// client that asked, To the cache's own address, Summary the key.
	CacheHit        = "cache.hit"
	CacheMiss       = "cache.miss"
	CacheRevalidate = "cache.revalidate"
	// LinkDrop is a packet or segment a lab link dropped (loss or a full
	// queue): From and To are the endpoints it was travelling between.
	LinkDrop = "link.drop"
	// LinkQueue is a lab link holding a message back (its queue, its
	// rate): From and To as for LinkDrop.
	LinkQueue = "link.queue"
	// State is a decision or state change of one peer rather than a
	// message (a BitTorrent choke round, a piece picked, a video player's
	// bitrate, a mail queue's local delivery): From is the peer that
	// decided (host:port, or a name); To, when set, the peer it concerns.
	State = "state"
)

// Types describes every event type, for documentation and validation.
var Types = map[string]string{
	Msg:             "a protocol message, sender to receiver",
	ConnOpen:        "a transport connection opened (client to server)",
	ConnClose:       "a transport connection closed (client to server)",
	Handshake:       "a TLS or QUIC handshake completed (client to server)",
	CacheHit:        "a cache answered from storage (client to cache)",
	CacheMiss:       "a cache had nothing stored and forwards (client to cache)",
	CacheRevalidate: "a cache validates a stored answer with the origin (client to cache)",
	LinkDrop:        "a lab link dropped a packet (sender to receiver)",
	LinkQueue:       "a lab link delayed a packet in its queue (sender to receiver)",
	State:           "a peer's own decision (From the peer, To optional)",
}

// Protocols are the protocol families an Event's Proto may start with.
// Proto is the family, optionally followed by "/" and a variant: "dns/udp",
// "http/1.1", "http/2", "http/3", "bittorrent/choke".
var Protocols = map[string]string{
	"udp":        "a datagram of the UDP socket examples",
	"tcp":        "a connection or line of the TCP socket examples; HTTP connections",
	"dns":        "DNS over UDP or TCP (dns/udp, dns/tcp)",
	"http":       "HTTP by version (http/1.0, http/1.1, http/2, http/3)",
	"tls":        "a TLS handshake",
	"quic":       "a QUIC handshake or connection",
	"smtp":       "SMTP",
	"imap":       "IMAP",
	"pop3":       "POP3",
	"bittorrent": "the peer wire, tracker announces and swarm decisions",
	"dht":        "the Mainline DHT's KRPC",
	"dash":       "video segments and manifests",
	"cdn":        "CDN request routing",
	"link":       "the lab's links (delay, rate, loss)",
	"mail":       "a mail system's own steps (mail/local: delivery into the store; mail/auth: the checks of received mail)",
}

var protoSyntax = regexp.MustCompile(`^[a-z][a-z0-9]*(/[a-z0-9][a-z0-9.-]*)?$`)

// MaxSummary is the longest summary an event may carry, in bytes.
const MaxSummary = 512

// Validate checks e against the schema (docs/trace.md) and returns every
// violation.
func Validate(e Event) error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if e.Time.IsZero() {
		bad("time is missing")
	}
	if _, ok := Types[e.Type]; !ok {
		bad("type %q is not one of the schema's types", e.Type)
	}
	if !protoSyntax.MatchString(e.Proto) {
		bad("proto %q is not family[/variant] in lower case", e.Proto)
	} else if fam, _, _ := strings.Cut(e.Proto, "/"); Protocols[fam] == "" {
		bad("proto %q: family %q is not one of the schema's protocols", e.Proto, fam)
	}
	switch {
	case e.Type == State:
		// A peer's own decision: From names the peer (host:port or a
		// name), To is optional.
		if e.From == "" {
			bad("from: missing")
		}
		if e.To != "" {
			if err := checkAddr(e.To); err != nil {
				bad("to: %v", err)
			}
		}
	default:
		if err := checkAddr(e.From); err != nil {
			bad("from: %v", err)
		}
		if err := checkAddr(e.To); err != nil {
			bad("to: %v", err)
		}
	}
	switch {
	case e.Summary == "":
		bad("summary is empty")
	case len(e.Summary) > MaxSummary:
		bad("summary is %d bytes, longer than %d", len(e.Summary), MaxSummary)
	case strings.ContainsAny(e.Summary, "\r\n"):
		bad("summary spans lines")
	}
	if e.Bytes < 0 {
		bad("bytes %d is negative", e.Bytes)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("trace: event %s %s %s -> %s %q: %w", e.Type, e.Proto, e.From, e.To, e.Summary, err)
	}
	return nil
}

func checkAddr(a string) error {
	if a == "" {
		return errors.New("missing")
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil || host == "" || port == "" {
		return fmt.Errorf("%q is not host:port", a)
	}
	return nil
}

// HTTPProto returns the trace protocol of an HTTP version as net/http
// spells it: "HTTP/1.1" -> "http/1.1", "HTTP/2.0" -> "http/2", "HTTP/3.0"
// -> "http/3".
func HTTPProto(p string) string {
	switch p {
	case "HTTP/1.1":
		return "http/1.1"
	case "HTTP/1.0":
		return "http/1.0"
	case "HTTP/2.0", "HTTP/2":
		return "http/2"
	case "HTTP/3.0", "HTTP/3":
		return "http/3"
	}
	return "http/" + strings.TrimPrefix(strings.ToLower(p), "http/")
}
