package mailtest

import (
	"fmt"
	"strings"
)

// BenchMessage is message i of the mail-access benchmark's corpus (and
// the Go benchmarks of the IMAP and POP3 servers): about 3.3 KB of text
// with headers like real mail; with needle > 0, every needle-th message
// contains the word "xylophone".
func BenchMessage(i, needle int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "Return-Path: <alice@crepes.fr>\r\nReceived: from mx.crepes.fr ([192.0.2.25]) by hamburger.edu with ESMTPS id %08x for <bob@hamburger.edu>; Thu, 03 Dec 2026 12:00:00 +0000\r\n", i)
	fmt.Fprintf(&b, "From: Alice <alice@crepes.fr>\r\nTo: Bob <bob@hamburger.edu>\r\nSubject: Benchmark message %d\r\nDate: Thu, 03 Dec 2026 12:%02d:%02d +0000\r\nMessage-ID: <%d.bench@crepes.fr>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n", i, (i/60)%60, i%60, i)
	for l := 0; l < 40; l++ {
		fmt.Fprintf(&b, "Line %02d of message %d: the quick brown fox jumps over the lazy dog.\r\n", l, i)
	}
	if needle > 0 && i%needle == 0 {
		b.WriteString("The secret word is xylophone.\r\n")
	}
	return []byte(b.String())
}
