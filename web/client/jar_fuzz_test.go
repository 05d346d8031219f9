package client

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// FuzzJarRead: a cookies.txt file (written by curl, a browser export or
// anyone) is read without a crash, and what the jar writes back reads in
// as the same jar: Write(Read(Write(Read(in)))) == Write(Read(in)).
func FuzzJarRead(f *testing.F) {
	f.Add("# Netscape HTTP Cookie File\n.example.com\tTRUE\t/\tFALSE\t0\tsid\tabc\n")
	f.Add("#HttpOnly_shop.example\tFALSE\t/cart\tTRUE\t4102444800\tid\t1\n")
	f.Add("host\tFALSE\t/\tFALSE\t0\tname\n..x\tFALSE\t/\tFALSE\t0\ta\tb\r\n")
	// A domain starting with "#" was written back as a comment line and
	// lost on the next read.
	f.Add(".#x\tFALSE\t/\tFALSE\t0\ta\tb\n")
	f.Add("..#HttpOnly_x\tFALSE\t/\tFALSE\t0\ta\tb\n")
	now := time.Unix(1_800_000_000, 0)
	write := func(t *testing.T, in string) string {
		j := &Jar{now: func() time.Time { return now }}
		if err := j.Read(strings.NewReader(in)); err != nil {
			return "" // a line too long for the scanner: refused, not crashed
		}
		var b bytes.Buffer
		if err := j.Write(&b); err != nil {
			t.Fatalf("Write: %v", err)
		}
		return b.String()
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := write(t, in)
		if again := write(t, out); again != out {
			t.Fatalf("round trip of %q changed the jar:\n%q\n%q", in, out, again)
		}
	})
}
