package policy

import (
	"context"
	"strings"
)

// JunkField marks a message for the Junk folder: the receiver adds it,
// local delivery reads it (IsJunk). A sender who forges it only sends
// its own mail to Junk.
const JunkField = "X-Spam-Flag: YES\r\n"

// Inbound checks an incoming message and returns the header fields to
// prepend to it (Authentication-Results, and JunkField for a Junk
// verdict), each ending in CRLF, with the results: what a receiver's
// hook that cannot rewrite the message wants. Process also removes
// forged Authentication-Results. In ModeOff it returns "".
func (v *Verifier) Inbound(ctx context.Context, m Message) (string, Results) {
	if v.mode() == ModeOff {
		return "", Results{}
	}
	r := v.Check(ctx, m)
	hdr := r.Header(v.AuthServID)
	if r.Verdict == Junk {
		hdr += JunkField
	}
	return hdr, r
}

// Process checks an incoming message and returns it as it is to be
// queued: any Authentication-Results field claiming this server removed
// (RFC 8601 5: those are forgeries), ours prepended, and JunkField when
// the verdict is Junk. A Reject verdict is for the caller to answer
// 550 5.7.1. In ModeOff the message is returned unchanged.
func (v *Verifier) Process(ctx context.Context, m Message) ([]byte, Results) {
	hdr, r := v.Inbound(ctx, m)
	if v.mode() == ModeOff {
		return m.Body, r
	}
	body := v.StripForged(m.Body)
	out := make([]byte, 0, len(hdr)+len(body))
	return append(append(out, hdr...), body...), r
}

// RejectText is the 550 5.7.1 reply text for a rejected message.
func (r Results) RejectText() string {
	return "message from " + r.From + " failed DMARC (p=" + string(r.DMARCPolicy) + "): neither an aligned SPF pass nor an aligned DKIM signature"
}

// StripForged returns msg without the Authentication-Results fields that
// claim v's AuthServID (RFC 8601 5); msg itself when it has none.
func (v *Verifier) StripForged(msg []byte) []byte { return stripForged(msg, v.AuthServID) }

// stripForged removes Authentication-Results fields whose authserv-id is
// id.
func stripForged(msg []byte, id string) []byte {
	h, _, err := parseHeader(msg)
	if err != nil {
		return msg
	}
	id = sanitizeID(id)
	var out []byte
	last := 0
	for _, f := range h {
		if !strings.EqualFold(f.name, "Authentication-Results") {
			continue
		}
		serv, _, _ := strings.Cut(f.value, ";")
		if fs := strings.Fields(serv); len(fs) > 0 && strings.EqualFold(fs[0], id) {
			if out == nil {
				out = make([]byte, 0, len(msg))
			}
			out = append(out, msg[last:f.start]...)
			last = f.end
		}
	}
	if out == nil {
		return msg
	}
	return append(out, msg[last:]...)
}

// IsJunk reports whether the message's header holds JunkField: local
// delivery files it into Junk instead of INBOX.
func IsJunk(msg []byte) bool {
	h, _, err := parseHeader(msg)
	if err != nil {
		return false
	}
	for _, f := range h {
		if strings.EqualFold(f.name, "X-Spam-Flag") && strings.EqualFold(f.value, "YES") {
			return true
		}
	}
	return false
}
