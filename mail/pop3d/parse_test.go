package pop3d

import (
	"bufio"
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseCommand(t *testing.T) {
	for _, tc := range []struct {
		line string
		name string
		args []string
		err  error
	}{
		{"STAT", "STAT", nil, nil},
		{"stat", "STAT", nil, nil},
		{"LIST 1", "LIST", []string{"1"}, nil},
		{"TOP 1 10", "TOP", []string{"1", "10"}, nil},
		{"TOP  1  10", "TOP", []string{"1", "10"}, nil},
		{"PASS my secret pw", "PASS", []string{"my secret pw"}, nil},
		{"USER bob@hamburger.edu", "USER", []string{"bob@hamburger.edu"}, nil},
		{"", "", nil, ErrEmpty},
		{"TOP 1 2 3", "", nil, ErrArgs},
		{"USER " + strings.Repeat("a", 41), "", nil, ErrArgs},
		{"ST", "", nil, ErrKeyword},
		{"STATS", "", nil, ErrKeyword},
		{"ST4T", "", nil, ErrKeyword},
		{" STAT", "", nil, ErrKeyword},
		{"STAT\x00", "", nil, ErrBadChars},
		{"RETR 1\r", "", nil, ErrBadChars},
		{"NOOP " + strings.Repeat("x", 300), "", nil, ErrTooLong},
	} {
		cmd, err := ParseCommand(tc.line)
		if !errors.Is(err, tc.err) || cmd.Name != tc.name || !slices.Equal(cmd.Args, tc.args) {
			t.Errorf("ParseCommand(%q) = %+v, %v; want %s %q, %v", tc.line, cmd, err, tc.name, tc.args, tc.err)
		}
	}
}

// FuzzParseCommand: any line parses or fails cleanly; a parsed command has
// a 3-4 letter upper-case keyword, at most 2 arguments (1 for PASS), no
// control characters, and fits the line limit.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"STAT", "LIST 1", "TOP 1 10", "PASS a b c", "USER x", "", "\x00", "RETR 99999999999999999999", "CAPA", "STLS", "UIDL 1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		cmd, err := ParseCommand(line)
		if err != nil {
			return
		}
		if len(line)+2 > MaxLine || strings.ContainsAny(line, "\r\n\x00") {
			t.Fatalf("accepted %q", line)
		}
		if len(cmd.Name) < 3 || len(cmd.Name) > 4 || strings.ToUpper(cmd.Name) != cmd.Name || !utf8.ValidString(cmd.Name) {
			t.Fatalf("keyword %q from %q", cmd.Name, line)
		}
		if len(cmd.Args) > 2 || (cmd.Name == "PASS" && len(cmd.Args) > 1) {
			t.Fatalf("args %q from %q", cmd.Args, line)
		}
	})
}

// The one-piece write of a message gives the same bytes as the line by
// line one.
func TestWriteDotStuffed(t *testing.T) {
	for _, body := range []string{
		"", "a", "a\r\n", ".a\r\n", "a\r\n.b\r\n", "a\nb\n", "a\r\nb", "a\rb\r\n", "a\r\r\n", "\r\n", "x\r\n\r\n..\r\n",
		"From: a\r\nSubject: b\r\n\r\nline\r\nline 2\r\n",
	} {
		var fast, slow bytes.Buffer
		fw, sw := bufio.NewWriter(&fast), bufio.NewWriter(&slow)
		writeDotStuffed(fw, []byte(body), -1)
		writeLines(sw, []byte(body), -1)
		fw.Flush()
		sw.Flush()
		if fast.String() != slow.String() {
			t.Errorf("%q: %q, line by line %q", body, fast.String(), slow.String())
		}
		if body != "" && !strings.HasSuffix(fast.String(), "\r\n.\r\n") || strings.Contains(fast.String()[:fast.Len()-3], "\r\n.\r\n") {
			t.Errorf("%q: badly terminated %q", body, fast.String())
		}
	}
}

func FuzzWriteDotStuffed(f *testing.F) {
	f.Add([]byte("a\r\n.b\r\n"))
	f.Add([]byte("From: a\r\n\r\nbody\r\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		var fast, slow bytes.Buffer
		fw, sw := bufio.NewWriter(&fast), bufio.NewWriter(&slow)
		writeDotStuffed(fw, body, -1)
		writeLines(sw, body, -1)
		fw.Flush()
		sw.Flush()
		if !bytes.Equal(fast.Bytes(), slow.Bytes()) {
			t.Fatalf("%q: %q, line by line %q", body, fast.Bytes(), slow.Bytes())
		}
	})
}
