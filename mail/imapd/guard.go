package imapd

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
)

// guard sits between a client's connection and go-imap's reader and does
// what go-imap v2.0.0-beta.8's server cannot be told to do. It follows
// the command framing (lines and literals) and:
//
//   - answers ID (RFC 2971) itself, which go-imap does not know (it
//     answers BAD, and before login BYE and closes), and adds ID to the
//     capabilities go-imap writes;
//   - answers BAD to a command line longer than MaxLine and drops it
//     (go-imap's decoder gives up past 50 KiB and closes the connection,
//     or closes at once when the tag is that long);
//   - answers BAD to a literal beyond the limit and drops it with the rest
//     of its command: a non-synchronizing one ({n+}) is read and thrown
//     away (go-imap answers NO without reading it and then runs the
//     literal's lines as commands), a synchronizing one is never asked for
//     (go-imap loses its place in LOGIN's).
//
// Its own answers are written when go-imap asks for the next command, so
// every answer to an earlier command has been written by then. After
// STARTTLS the bytes are TLS records and the guard steps aside: its
// checks cover plain connections, implicit TLS (993), and what comes
// before STARTTLS on 143 (see docs/ARCHITECTURE.md).
type guard struct {
	net.Conn
	in          *bufio.Reader
	log         *slog.Logger
	appendLimit int64

	pending []byte // ready for go-imap
	lit     int64  // literal bytes to pass to go-imap
	inCmd   bool   // the next line continues a command (after a literal)
	// A synchronizing literal was passed on: go-imap either asks for it
	// ("+", seen by Write) or refuses the command.
	syncSize  int64
	waitSync  bool
	sawCont   bool
	through   bool // after STARTTLS: bytes pass untouched
	startTLS  bool // STARTTLS was passed on; tlsOK: go-imap said OK
	tlsOK     bool
	lastCmd   string // the last command passed to go-imap, upper case
	wmu       sync.Mutex
	lineLimit int
}

// MaxLine bounds a command line (literals excluded), below go-imap's own
// limit so the guard answers first.
const MaxLine = 32 << 10

// maxBufferedLiteral is the largest literal of a command other than
// APPEND (go-imap buffers those; its limit).
const maxBufferedLiteral = 4096

func newGuard(c net.Conn, log *slog.Logger, appendLimit int64) *guard {
	return &guard{Conn: c, in: bufio.NewReaderSize(c, 16<<10), log: log, appendLimit: appendLimit, lineLimit: MaxLine}
}

// errTooLong is a line past the limit (its rest is consumed).
var errTooLong = errors.New("imapd: command line too long")

// readLine reads one line, LF included. A line past the limit is read to
// its end and thrown away but for its first and last bytes (the tag, and
// a literal marker).
func (g *guard) readLine() ([]byte, error) {
	var line []byte
	n := 0
	for {
		chunk, err := g.in.ReadSlice('\n')
		n += len(chunk)
		line = append(line, chunk...)
		if n > g.lineLimit && len(line) > 256 {
			line = append(line[:128:128], line[len(line)-64:]...)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if len(line) > 0 && n <= g.lineLimit {
				return line, nil // the end without LF: go-imap sees the EOF next
			}
			return nil, err
		}
		if n > g.lineLimit {
			return line, errTooLong
		}
		return line, nil
	}
}

// literalAt returns the size of the literal announced at the end of a
// line ({n} or {n+}, CRLF or LF), and whether it is non-synchronizing.
func literalAt(line []byte) (size int64, nonSync, ok bool) {
	l := bytes.TrimRight(line, "\r\n")
	if len(l) < 3 || l[len(l)-1] != '}' {
		return 0, false, false
	}
	i := bytes.LastIndexByte(l, '{')
	if i < 0 {
		return 0, false, false
	}
	num := l[i+1 : len(l)-1]
	if n := len(num); n > 0 && num[n-1] == '+' {
		nonSync, num = true, num[:n-1]
	}
	size, err := strconv.ParseInt(string(num), 10, 64)
	if err != nil || size < 0 || len(num) == 0 || num[0] == '+' {
		return 0, false, false
	}
	return size, nonSync, true
}

// tagOf returns a line's tag when it is a valid one (an atom without
// '+'), or "*".
func tagOf(line []byte) string {
	tag, _, _ := bytes.Cut(bytes.TrimRight(line, "\r\n"), []byte(" "))
	if len(tag) == 0 || len(tag) > 64 {
		return "*"
	}
	for _, c := range tag {
		if c <= ' ' || c >= 0x7f || bytes.IndexByte([]byte(`(){%*"\]+`), c) >= 0 {
			return "*"
		}
	}
	return string(tag)
}

// command returns a line's command name, upper case ("UID FETCH" as
// "UID").
func command(line []byte) string {
	f := bytes.Fields(line)
	if len(f) < 2 {
		return ""
	}
	return strings.ToUpper(string(f[1]))
}

// Read gives go-imap the client's bytes, minus what the guard answered.
func (g *guard) Read(p []byte) (int, error) {
	for len(g.pending) == 0 {
		if g.startTLS {
			g.wmu.Lock()
			g.startTLS, g.through = false, g.tlsOK
			g.wmu.Unlock()
		}
		if g.through {
			return g.in.Read(p)
		}
		if g.lit > 0 {
			n, err := g.in.Read(p[:min(int64(len(p)), g.lit)])
			g.lit -= int64(n)
			return n, err
		}
		if g.waitSync {
			g.wmu.Lock()
			g.waitSync = false
			cont := g.sawCont
			g.wmu.Unlock()
			if cont {
				g.lit = g.syncSize
				continue
			}
			g.inCmd = false // go-imap refused the command
		}
		if err := g.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, g.pending)
	g.pending = g.pending[n:]
	return n, nil
}

// next reads a line and either queues it for go-imap or answers it.
func (g *guard) next() error {
	line, err := g.readLine()
	if g.inCmd {
		if errors.Is(err, errTooLong) {
			// Part of a command go-imap has begun: it cannot be
			// answered alone.
			g.reply("* BYE Command line too long\r\n")
			return err
		}
		if err != nil {
			return err
		}
		return g.pass(line)
	}
	tag := tagOf(line)
	if errors.Is(err, errTooLong) {
		g.reply(fmt.Sprintf("%s BAD [TOOBIG] Command line too long (over %d bytes)\r\n", tag, g.lineLimit))
		return g.drop(line)
	}
	if err != nil {
		return err
	}
	cmd := command(line)
	// A line without tag and command is go-imap's to close the
	// connection on; the lines AUTHENTICATE and IDLE read are not
	// commands.
	if (tag == "*" || cmd == "") && g.lastCmd != "AUTHENTICATE" && g.lastCmd != "IDLE" {
		g.reply("* BAD [CLIENTBUG] Expected a tag and a command\r\n")
		return g.drop(line)
	}
	size, nonSync, isLit := literalAt(line)
	if isLit {
		limit := int64(maxBufferedLiteral)
		if cmd == "APPEND" {
			limit = g.appendLimit
		}
		// A synchronizing APPEND past the limit is go-imap's to refuse
		// (NO [TOOBIG], the client sends nothing).
		if size > limit && (nonSync || cmd != "APPEND") {
			g.reply(fmt.Sprintf("%s BAD [TOOBIG] Literal of %d bytes is over the limit of %d\r\n", tag, size, limit))
			return g.drop(line)
		}
	}
	if cmd == "ID" && !isLit && tag != "*" {
		return g.id(tag, line)
	}
	g.wmu.Lock() // Write reads these (IDLE writes from another goroutine)
	g.lastCmd = cmd
	if cmd == "STARTTLS" {
		// When go-imap agrees, its TLS handshake reads what follows.
		g.startTLS, g.tlsOK = true, false
	}
	g.wmu.Unlock()
	return g.pass(line)
}

// pass queues a line for go-imap and notes a literal at its end.
func (g *guard) pass(line []byte) error {
	g.pending = append(g.pending[:0], line...)
	size, nonSync, isLit := literalAt(line)
	g.inCmd = isLit
	if isLit && nonSync {
		g.lit = size
	} else if isLit {
		g.wmu.Lock()
		g.syncSize, g.waitSync, g.sawCont = size, true, false
		g.wmu.Unlock()
	}
	return nil
}

// drop throws away the rest of a refused command: the non-synchronizing
// literal its line announced, and the lines (and literals) after it.
// A synchronizing literal is not coming: the client was refused.
func (g *guard) drop(line []byte) error {
	for {
		size, nonSync, isLit := literalAt(line)
		if !isLit || !nonSync {
			return nil
		}
		if _, err := g.in.Discard(int(min(size, 1<<62))); err != nil {
			return err
		}
		var err error
		if line, err = g.readLine(); err != nil && !errors.Is(err, errTooLong) {
			return err
		}
	}
}

// reply writes the guard's own answer.
func (g *guard) reply(s string) error {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	_, err := g.Conn.Write([]byte(s))
	return err
}

// Write passes go-imap's output on, noting the continuation request of a
// synchronizing literal and adding ID to the capabilities. Capabilities
// are only looked for in the greeting and the answers to CAPABILITY,
// LOGIN and AUTHENTICATE, which hold no literal whose text could look
// like them.
func (g *guard) Write(p []byte) (int, error) {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	if g.waitSync && len(p) > 0 && p[0] == '+' {
		g.sawCont = true
	}
	if g.startTLS && bytes.Contains(p, []byte(" OK ")) {
		g.tlsOK = true
	}
	switch g.lastCmd {
	case "", "CAPABILITY", "LOGIN", "AUTHENTICATE":
		if i := bytes.Index(p, []byte("CAPABILITY IMAP4rev")); i >= 0 && !g.through {
			q := make([]byte, 0, len(p)+3)
			q = append(append(append(q, p[:i]...), "CAPABILITY ID"...), p[i+len("CAPABILITY"):]...)
			if _, err := g.Conn.Write(q); err != nil {
				return 0, err
			}
			return len(p), nil
		}
	}
	return g.Conn.Write(p)
}

// ID fields (RFC 2971 section 3.3): at most 30 pairs, fields of at most
// 30 octets, values of at most 1024.
const (
	idMaxPairs = 30
	idMaxField = 30
	idMaxValue = 1024
)

// id answers an ID command: the client's fields are logged, ours sent.
func (g *guard) id(tag string, line []byte) error {
	args := bytes.TrimRight(line, "\r\n")
	args = args[len(tag)+1+len("ID"):]
	fields, err := parseID(args)
	if err != nil {
		return g.reply(fmt.Sprintf("%s BAD [CLIENTBUG] ID: %v\r\n", tag, err))
	}
	if len(fields) > 0 {
		g.log.Debug("imapd: client ID", "remote", g.RemoteAddr().String(), "id", fields)
	}
	return g.reply(fmt.Sprintf("* ID (\"name\" \"applayer\" \"vendor\" \"applayer\")\r\n%s OK ID completed\r\n", tag))
}

// parseID parses ID's argument: SP, then NIL or a list of string pairs
// (quoted strings, or NIL for a value).
func parseID(b []byte) (map[string]string, error) {
	if len(b) == 0 || b[0] != ' ' {
		return nil, errors.New("expected SP")
	}
	b = b[1:]
	if strings.EqualFold(string(b), "NIL") {
		return nil, nil
	}
	if len(b) < 2 || b[0] != '(' || b[len(b)-1] != ')' {
		return nil, errors.New("expected NIL or a list")
	}
	b = b[1 : len(b)-1]
	var items []*string
	for len(b) > 0 {
		if len(items) > 0 {
			if b[0] != ' ' {
				return nil, errors.New("expected SP between items")
			}
			b = b[1:]
		}
		if len(b) >= 3 && strings.EqualFold(string(b[:3]), "NIL") {
			items, b = append(items, nil), b[3:]
			continue
		}
		s, rest, err := quoted(b)
		if err != nil {
			return nil, err
		}
		items, b = append(items, &s), rest
	}
	if len(items)%2 != 0 || len(items)/2 > idMaxPairs {
		return nil, errors.New("expected at most 30 field-value pairs")
	}
	out := map[string]string{}
	for i := 0; i < len(items); i += 2 {
		if items[i] == nil || len(*items[i]) > idMaxField {
			return nil, errors.New("a field is NIL or over 30 octets")
		}
		v := ""
		if items[i+1] != nil {
			v = *items[i+1]
		}
		if len(v) > idMaxValue {
			return nil, errors.New("a value is over 1024 octets")
		}
		out[*items[i]] = v
	}
	return out, nil
}

// quoted reads an IMAP quoted string at the start of b.
func quoted(b []byte) (string, []byte, error) {
	if len(b) == 0 || b[0] != '"' {
		return "", nil, errors.New("expected a quoted string")
	}
	var s []byte
	for i := 1; i < len(b); i++ {
		switch c := b[i]; c {
		case '"':
			return string(s), b[i+1:], nil
		case '\\':
			if i+1 == len(b) || (b[i+1] != '"' && b[i+1] != '\\') {
				return "", nil, errors.New("bad escape in a quoted string")
			}
			i++
			s = append(s, b[i])
		case '\r', '\n', 0:
			return "", nil, errors.New("bad character in a quoted string")
		default:
			s = append(s, c)
		}
	}
	return "", nil, errors.New("unterminated quoted string")
}
