package msgmeta

import (
	"reflect"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

var samples = []string{
	"From: Alice <alice@crepes.fr>\r\nTo: Bob <bob@hamburger.edu>, carol@hamburger.edu\r\nCc: =?utf-8?q?Dan_=C3=A9?= <dan@crepes.fr>\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\nDate: Thu, 03 Dec 2026 12:34:56 +0100\r\nMessage-ID: <1@crepes.fr>\r\nIn-Reply-To: <0@hamburger.edu> <x@y>\r\nReply-To: list@crepes.fr\r\nSender: bounce@crepes.fr\r\nBcc: secret@crepes.fr\r\n\r\nbody\r\n",
	"Subject: no date, no addresses\r\n\r\n",
	"no header at all",
	"",
	"\r\nbody only\r\n",
	"From: broken <<@>\r\nDate: yesterday\r\n\r\nx",
}

func TestEnvelopeRoundTrip(t *testing.T) {
	for _, s := range samples {
		want := ParseEnvelope([]byte(s))
		got, err := DecodeEnvelope(Envelope([]byte(s)))
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		if !sameEnvelope(got, want) {
			t.Errorf("%q:\n got %+v\nwant %+v", s, got, want)
		}
	}
}

func TestEnvelopeFields(t *testing.T) {
	env, err := DecodeEnvelope(Envelope([]byte(samples[0])))
	if err != nil {
		t.Fatal(err)
	}
	if env.Subject != "café" || env.MessageID != "1@crepes.fr" || len(env.InReplyTo) != 2 {
		t.Errorf("subject %q message-id %q in-reply-to %q", env.Subject, env.MessageID, env.InReplyTo)
	}
	if len(env.To) != 2 || env.To[1] != (imap.Address{Mailbox: "carol", Host: "hamburger.edu"}) || env.Cc[0].Name != "Dan é" {
		t.Errorf("to %+v cc %+v", env.To, env.Cc)
	}
	if _, off := env.Date.Zone(); off != 3600 || !env.Date.Equal(time.Date(2026, 12, 3, 11, 34, 56, 0, time.UTC)) {
		t.Errorf("date %v", env.Date)
	}
	if env.Sender[0].Mailbox != "bounce" || env.ReplyTo[0].Mailbox != "list" || env.Bcc[0].Mailbox != "secret" {
		t.Errorf("sender %+v reply-to %+v bcc %+v", env.Sender, env.ReplyTo, env.Bcc)
	}
	// Absent lists stay nil: go-imap writes From for a nil Sender.
	if env, _ := DecodeEnvelope(Envelope([]byte(samples[1]))); env.Sender != nil || env.From != nil || !env.Date.IsZero() {
		t.Errorf("empty envelope %+v", env)
	}
}

func TestDecodeRejects(t *testing.T) {
	good := Envelope([]byte(samples[0]))
	for _, b := range [][]byte{nil, {}, {2, 0}, {version, 7}, good[:len(good)-1], append(append([]byte{}, good...), 0), {version, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}} {
		if _, err := DecodeEnvelope(b); err == nil {
			t.Errorf("DecodeEnvelope(%q) accepted", b)
		}
	}
}

// sameEnvelope compares envelopes as go-imap writes them (dates by
// instant and offset).
func sameEnvelope(a, b *imap.Envelope) bool {
	_, ao := a.Date.Zone()
	_, bo := b.Date.Zone()
	if !a.Date.Equal(b.Date) || ao != bo {
		return false
	}
	a2, b2 := *a, *b
	a2.Date, b2.Date = time.Time{}, time.Time{}
	return reflect.DeepEqual(a2, b2)
}

// FuzzEnvelope: any message's envelope survives the stored form, and
// any bytes given to DecodeEnvelope give an envelope or an error.
func FuzzEnvelope(f *testing.F) {
	for _, s := range samples {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		want := ParseEnvelope(b)
		got, err := DecodeEnvelope(EncodeEnvelope(want))
		if err != nil || !sameEnvelope(got, want) {
			t.Fatalf("round trip: %v\n got %+v\nwant %+v", err, got, want)
		}
		DecodeEnvelope(b)
	})
}
