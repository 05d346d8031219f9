package imapd

import (
	"bufio"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"
)

// rawDial connects to the plain or the implicit-TLS listener, with a
// 10 s deadline on the whole exchange.
func rawDial(t *testing.T, e *env, useTLS bool) net.Conn {
	t.Helper()
	var nc net.Conn
	var err error
	if useTLS {
		nc, err = tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", e.tl, &tls.Config{RootCAs: e.ca.Pool(), ServerName: "imap.hamburger.edu"})
	} else {
		nc, err = net.DialTimeout("tcp", e.plain, 5*time.Second)
	}
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	return nc
}

// rawSession dials (plain or implicit TLS), logs in when asked, writes
// in, then NOOP, and returns the lines answered until NOOP's.
func rawSession(t *testing.T, e *env, useTLS, login bool, in string) []string {
	t.Helper()
	nc := rawDial(t, e, useTLS)
	defer nc.Close()
	r := bufio.NewReader(nc)
	read := func() string {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("after %q: %v (connection closed?)", truncate(in), err)
		}
		return strings.TrimRight(l, "\r\n")
	}
	read() // greeting
	if login {
		nc.Write([]byte("l LOGIN bob@hamburger.edu s3cret\r\n"))
		for !strings.HasPrefix(read(), "l OK") {
		}
	}
	go func() {
		nc.Write([]byte(in))
		nc.Write([]byte("zz NOOP\r\n"))
	}()
	var out []string
	for {
		l := read()
		if strings.HasPrefix(l, "zz ") {
			if !strings.HasPrefix(l, "zz OK") {
				t.Errorf("after %q: NOOP answered %q", truncate(in), l)
			}
			return out
		}
		out = append(out, l)
	}
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// Overlong lines, literals over the limit and lines without a command
// are answered (BAD, or NO [TOOBIG] for a synchronizing APPEND, as
// RFC 7889 has it), what came with them is read and dropped, never run,
// and the session goes on; before and after login, plain and over TLS.
func TestOverlongInput(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxMessageBytes = 1000 })
	long := strings.Repeat("x", 60<<10)
	injected := strings.Repeat("x3 CREATE Injected\r\n", 100)[:2000]
	for _, tc := range []struct {
		name  string
		login bool
		in    string
		want  []string // answers, in order (prefixes)
	}{
		{"line over the limit", true, "a1 NOOP " + long + "\r\n", []string{"a1 BAD [TOOBIG]"}},
		{"line over the limit before login", false, "a1 LOGIN " + long + " x\r\n", []string{"a1 BAD [TOOBIG]"}},
		{"line just over our limit, under go-imap's", true, "a1 SEARCH TEXT " + long[:MaxLine] + "\r\n", []string{"a1 BAD [TOOBIG]"}},
		{"tag over the limit", true, long + " NOOP\r\n", []string{"* BAD [TOOBIG]"}},
		{"long line within the limit", true, "a1 NOOP " + long[:20<<10] + "\r\n", []string{"a1 BAD [CLIENTBUG]"}},
		{"synchronizing literal over the limit", false, "a1 LOGIN {5000}\r\n", []string{"a1 BAD [TOOBIG]"}},
		{"synchronizing APPEND over the limit", true, "a1 APPEND INBOX {2000}\r\n", []string{"a1 NO [TOOBIG]"}},
		{"non-synchronizing APPEND over the limit", true, "a1 APPEND INBOX {2000+}\r\n" + injected + "\r\n", []string{"a1 BAD [TOOBIG]"}},
		{"non-synchronizing literal over the limit, then another", true, "a1 LOGIN {5000+}\r\n" + long[:5000] + " {3+}\r\nabc\r\n", []string{"a1 BAD [TOOBIG]"}},
		{"over the limit in a later line", true, "a1 APPEND INBOX {3+}\r\nabc " + long + "\r\n", []string{"* BYE"}},
		{"empty line", true, "\r\n", []string{"* BAD [CLIENTBUG]"}},
		{"tag alone", false, "a1\r\n", []string{"* BAD [CLIENTBUG]"}},
		{"good literal after all that", true, "a1 APPEND INBOX {5+}\r\nhello\r\n", []string{"a1 OK [APPENDUID"}},
	} {
		for _, useTLS := range []bool{false, true} {
			name := tc.name
			if useTLS {
				name += " (TLS)"
			}
			t.Run(name, func(t *testing.T) {
				if tc.want[0] == "* BYE" {
					// go-imap has begun the command: the guard can
					// only end the session.
					out := rawSessionBye(t, e, useTLS, tc.in)
					if !strings.HasPrefix(out, "* BYE") {
						t.Errorf("got %q, want * BYE", out)
					}
					return
				}
				out := rawSession(t, e, useTLS, tc.login, tc.in)
				if len(out) != len(tc.want) {
					t.Fatalf("answers %q, want %q", out, tc.want)
				}
				for i, w := range tc.want {
					if !strings.HasPrefix(out[i], w) {
						t.Errorf("answer %d: %q, want %q", i, out[i], w)
					}
				}
			})
		}
	}
	mb, err := e.st.Mailboxes(t.Context(), "bob@hamburger.edu")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mb {
		if m.Name == "Injected" {
			t.Error("a dropped literal's lines ran as commands")
		}
	}
}

// rawSessionBye logs in, writes in and returns the last line the server
// wrote before closing.
func rawSessionBye(t *testing.T, e *env, useTLS bool, in string) string {
	t.Helper()
	nc := rawDial(t, e, useTLS)
	defer nc.Close()
	go nc.Write([]byte("l LOGIN bob@hamburger.edu s3cret\r\n" + in))
	r := bufio.NewReader(nc)
	last := ""
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			return last
		}
		last = strings.TrimRight(l, "\r\n")
	}
}

// ID (RFC 2971) is answered before and after login, plain and over TLS,
// and advertised.
func TestID(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct {
		in   string
		want string
	}{
		{"a1 ID NIL\r\n", "a1 OK ID completed"},
		{"a1 id (\"name\" \"test\" \"version\" NIL)\r\n", "a1 OK ID completed"},
		{"a1 ID (\"name\")\r\n", "a1 BAD [CLIENTBUG] ID: expected at most 30"},
		{"a1 ID (\"name\" \"x)\r\n", "a1 BAD [CLIENTBUG] ID: unterminated"},
		{"a1 ID\r\n", "a1 BAD [CLIENTBUG] ID: expected SP"},
	} {
		for _, useTLS := range []bool{false, true} {
			for _, login := range []bool{false, true} {
				out := rawSession(t, e, useTLS, login, tc.in)
				want := []string{`* ID ("name" "applayer" "vendor" "applayer")`, tc.want}
				if strings.Contains(tc.want, "BAD") {
					want = want[1:]
				}
				if len(out) != len(want) || !strings.HasPrefix(out[len(out)-1], tc.want) || (len(want) == 2 && out[0] != want[0]) {
					t.Errorf("%q (TLS %v, login %v): %q, want %q", tc.in, useTLS, login, out, want)
				}
			}
		}
	}
	c := dial(t, e.plain)
	contains(t, "capabilities before login", c.must("CAPABILITY"), " ID ")
	c.must("LOGIN bob@hamburger.edu s3cret")
	contains(t, "capabilities after login", c.must("CAPABILITY"), " ID ")
	tc := dialTLS(t, e)
	contains(t, "capabilities over TLS", tc.must("CAPABILITY"), " ID ")
}

func TestParseID(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want map[string]string
		ok   bool
	}{
		{" NIL", nil, true},
		{" nil", nil, true},
		{` ("name" "x" "os" NIL)`, map[string]string{"name": "x", "os": ""}, true},
		{` ("a\"b" "c\\d")`, map[string]string{`a"b`: `c\d`}, true},
		{` ()`, map[string]string{}, true},
		{` (NIL "x")`, nil, false},
		{` ("` + strings.Repeat("f", 31) + `" "x")`, nil, false},
		{` ("f" "` + strings.Repeat("v", 1025) + `")`, nil, false},
		{` ("f" "v"` + strings.Repeat(` "f" "v"`, 30) + `)`, nil, false},
		{` ("f""v")`, nil, false},
		{` ("f" "v\x")`, nil, false},
		{` "f"`, nil, false},
		{``, nil, false},
	} {
		got, err := parseID([]byte(tc.in))
		if (err == nil) != tc.ok || (tc.ok && len(got) != len(tc.want)) {
			t.Errorf("parseID(%q) = %v, %v", tc.in, got, err)
			continue
		}
		for k, v := range tc.want {
			if got[k] != v {
				t.Errorf("parseID(%q)[%q] = %q, want %q", tc.in, k, got[k], v)
			}
		}
	}
}

func TestLiteralAt(t *testing.T) {
	for _, tc := range []struct {
		line          string
		size          int64
		nonSync, isIt bool
	}{
		{"a APPEND INBOX {12}\r\n", 12, false, true},
		{"a APPEND INBOX {12+}\r\n", 12, true, true},
		{"a APPEND INBOX ~{0}\n", 0, false, true},
		{"a APPEND INBOX {+}\r\n", 0, false, false},
		{"a APPEND INBOX {-1}\r\n", 0, false, false},
		{"a APPEND INBOX {1x}\r\n", 0, false, false},
		{"a NOOP }\r\n", 0, false, false},
		{"a NOOP\r\n", 0, false, false},
		{"a X {99999999999999999999}\r\n", 0, false, false},
	} {
		size, nonSync, ok := literalAt([]byte(tc.line))
		if size != tc.size || nonSync != tc.nonSync || ok != tc.isIt {
			t.Errorf("literalAt(%q) = %d %v %v", tc.line, size, nonSync, ok)
		}
	}
}

// STARTTLS refused (after login) leaves the guard on; STARTTLS done
// hands the bytes to go-imap's TLS.
func TestGuardStartTLS(t *testing.T) {
	e := newEnv(t, nil)
	out := rawSession(t, e, false, true, "a1 STARTTLS\r\na2 NOOP "+strings.Repeat("x", 60<<10)+"\r\n")
	if len(out) != 2 || !strings.HasPrefix(out[0], "a1 BAD") || !strings.HasPrefix(out[1], "a2 BAD [TOOBIG]") {
		t.Errorf("refused STARTTLS, then an overlong line: %q", out)
	}
	c := dial(t, e.plain)
	c.startTLS(e.ca)
	c.must("LOGIN bob@hamburger.edu s3cret")
	c.must("SELECT INBOX")
}
