package mua

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message/mail"
)

func TestCompose(t *testing.T) {
	date := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name   string
		m      Message
		parts  []string // content types, in order
		attach string   // an attachment's name
	}{
		{"text", Message{From: "Alice <alice@crepes.fr>", To: []string{"bob@hamburger.edu"}, Subject: "héllo", Text: "line 1\nline 2 é\n", Date: date}, []string{"text/plain"}, ""},
		{"attachment", Message{From: "alice@crepes.fr", To: []string{"bob@hamburger.edu", "Carol <carol@hamburger.edu>"}, Cc: []string{"dave@x.org"}, Subject: "report", Text: "see attached\n",
			Attachments: []Attachment{{Name: "r.pdf", Data: []byte("%PDF-1.4 \x00\x01\x02")}, {Name: "notes", Data: []byte("x")}}, Date: date},
			[]string{"text/plain", "application/pdf", "application/octet-stream"}, "r.pdf"},
	} {
		t.Run(c.name, func(t *testing.T) {
			raw, err := Compose(c.m)
			if err != nil {
				t.Fatal(err)
			}
			for i, b := range raw {
				if b == '\n' && (i == 0 || raw[i-1] != '\r') {
					t.Fatalf("bare LF at %d", i)
				}
			}
			r, err := mail.CreateReader(bytes.NewReader(raw))
			if err != nil {
				t.Fatal(err)
			}
			if s, _ := r.Header.Subject(); s != c.m.Subject {
				t.Errorf("Subject %q", s)
			}
			if d, _ := r.Header.Date(); !d.Equal(date) {
				t.Errorf("Date %v", d)
			}
			if id, _ := r.Header.MessageID(); id == "" {
				t.Error("no Message-ID")
			}
			to, _ := r.Header.AddressList("To")
			if len(to) != len(c.m.To) {
				t.Errorf("To %v", to)
			}
			var types []string
			var text string
			attached := ""
			for {
				p, err := r.NextPart()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(p.Body)
				switch h := p.Header.(type) {
				case *mail.InlineHeader:
					ct, _, _ := h.ContentType()
					types = append(types, ct)
					text = string(b)
				case *mail.AttachmentHeader:
					ct, _, _ := h.ContentType()
					types = append(types, ct)
					if name, _ := h.Filename(); name == c.attach {
						attached = string(b)
						if !bytes.Equal(b, c.m.Attachments[0].Data) {
							t.Errorf("attachment %q = %q", name, b)
						}
					}
				}
			}
			if strings.Join(types, ",") != strings.Join(c.parts, ",") {
				t.Errorf("parts %v, want %v", types, c.parts)
			}
			if text != strings.ReplaceAll(c.m.Text, "\n", "\r\n") {
				t.Errorf("text %q", text)
			}
			if c.attach != "" && attached == "" {
				t.Errorf("no attachment %s", c.attach)
			}
		})
	}
	if _, err := Compose(Message{From: "not an address"}); err == nil {
		t.Error("bad From accepted")
	}
}

// The transcript shows each direction with its arrow and masks AUTH.
func TestTranscript(t *testing.T) {
	var out bytes.Buffer
	tr := &transcript{w: &out}
	tr.feed(true, []byte("220 mx ESMTP\r\n"))
	tr.feed(false, []byte("EHLO c\r\n"))
	tr.feed(true, []byte("250-mx\r\n250 STARTTLS\r\n"))
	tr.feed(false, []byte("STARTTLS\r\n"))
	tr.feed(true, []byte("220 go ahead\r\n"))
	tr.feed(false, []byte("AUTH PLAIN AGJvYgBwdw==\r\n"))
	tr.feed(true, []byte("235 ok\r\n"))
	tr.feed(false, []byte("AUTH LOGIN\r\n"))
	tr.feed(true, []byte("334 VXNlcm5hbWU6\r\n"))
	tr.feed(false, []byte("Ym9i\r\n"))
	tr.feed(false, []byte("DA"))
	tr.feed(false, []byte("TA\r\n"))
	want := "<-  220 mx ESMTP\n -> EHLO c\n<-  250-mx\n<-  250 STARTTLS\n -> STARTTLS\n<-  220 go ahead\n ~> AUTH PLAIN ****\n<~  235 ok\n ~> AUTH LOGIN\n<~  334 VXNlcm5hbWU6\n ~> ****\n ~> DATA\n"
	if out.String() != want {
		t.Errorf("transcript:\n%s\nwant:\n%s", out.String(), want)
	}
}
