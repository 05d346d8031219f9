// Package msgmeta is what the mail store keeps about a message besides its
// bytes, computed once when the message is stored: its IMAP ENVELOPE
// (RFC 9051 section 7.5.2), parsed from the header and kept in a compact
// binary form, so a FETCH of envelopes reads a few hundred bytes per
// message and parses nothing.
package msgmeta

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"
)

// version is the first byte of an encoded envelope.
const version = 1

// Bounds on what Decode accepts (the stored form is ours, but a database
// is still input).
const (
	maxString    = 1 << 20
	maxListItems = 10000
)

// ErrBadEnvelope is returned by DecodeEnvelope for bytes it did not write.
var ErrBadEnvelope = errors.New("msgmeta: bad envelope encoding")

// HeaderLen returns the length of a message's header, its blank line
// included (the whole message when it has no body).
func HeaderLen(body []byte) int {
	if i := bytes.Index(body, []byte("\r\n\r\n")); i >= 0 {
		return i + 4
	}
	if bytes.HasPrefix(body, []byte("\r\n")) {
		return 2
	}
	return len(body)
}

// ParseEnvelope parses a message's header into its ENVELOPE; a header
// that does not parse gives an empty envelope.
func ParseEnvelope(body []byte) *imap.Envelope {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(body[:HeaderLen(body)])))
	if err != nil {
		return &imap.Envelope{}
	}
	if env := imapserver.ExtractEnvelope(h); env != nil {
		return env
	}
	return &imap.Envelope{}
}

// Envelope returns the stored form of a message's envelope.
func Envelope(body []byte) []byte { return EncodeEnvelope(ParseEnvelope(body)) }

// EncodeEnvelope writes an envelope in the stored form: a version byte,
// the date (a presence byte, then Unix seconds, nanoseconds and the zone
// offset as varints), then subject, the six address lists, In-Reply-To
// and Message-ID, strings and counts as uvarint-prefixed.
func EncodeEnvelope(env *imap.Envelope) []byte {
	b := make([]byte, 0, 256)
	b = append(b, version)
	if env.Date.IsZero() {
		b = append(b, 0)
	} else {
		_, off := env.Date.Zone()
		b = append(b, 1)
		b = binary.AppendVarint(b, env.Date.Unix())
		b = binary.AppendVarint(b, int64(env.Date.Nanosecond()))
		b = binary.AppendVarint(b, int64(off))
	}
	b = appendString(b, env.Subject)
	for _, l := range [][]imap.Address{env.From, env.Sender, env.ReplyTo, env.To, env.Cc, env.Bcc} {
		b = binary.AppendUvarint(b, uint64(len(l)))
		for _, a := range l {
			b = appendString(appendString(appendString(b, a.Name), a.Mailbox), a.Host)
		}
	}
	b = binary.AppendUvarint(b, uint64(len(env.InReplyTo)))
	for _, s := range env.InReplyTo {
		b = appendString(b, s)
	}
	return appendString(b, env.MessageID)
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// decoder reads the stored form; the first error sticks. The strings it
// returns are slices of s, one copy of the whole encoding (one
// allocation per envelope instead of one per field).
type decoder struct {
	b   []byte
	s   string // b as a string
	off int
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = ErrBadEnvelope
	}
	d.off = len(d.b)
}

func (d *decoder) uvarint(limit uint64) uint64 {
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 || v > limit {
		d.fail()
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b[d.off:])
	if n <= 0 {
		d.fail()
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) string() string {
	n := d.uvarint(maxString)
	if uint64(len(d.b)-d.off) < n {
		d.fail()
		return ""
	}
	str := d.s[d.off : d.off+int(n)]
	d.off += int(n)
	return str
}

func (d *decoder) addresses() []imap.Address {
	n := d.uvarint(maxListItems)
	if n == 0 || d.err != nil {
		return nil
	}
	l := make([]imap.Address, 0, min(n, uint64((len(d.b)-d.off)/3+1)))
	for range n {
		l = append(l, imap.Address{Name: d.string(), Mailbox: d.string(), Host: d.string()})
		if d.err != nil {
			return nil
		}
	}
	return l
}

// DecodeEnvelope reads an envelope EncodeEnvelope wrote.
func DecodeEnvelope(b []byte) (*imap.Envelope, error) {
	if len(b) < 2 || b[0] != version {
		return nil, fmt.Errorf("%w: version", ErrBadEnvelope)
	}
	d := &decoder{b: b[2:], s: string(b[2:])}
	env := &imap.Envelope{}
	switch b[1] {
	case 0:
	case 1:
		sec, nsec, off := d.varint(), d.varint(), d.varint()
		if nsec < 0 || nsec >= 1e9 || off < -24*3600 || off > 24*3600 {
			d.fail()
		}
		env.Date = time.Unix(sec, nsec).In(time.FixedZone("", int(off)))
	default:
		d.fail()
	}
	env.Subject = d.string()
	for _, l := range []*[]imap.Address{&env.From, &env.Sender, &env.ReplyTo, &env.To, &env.Cc, &env.Bcc} {
		*l = d.addresses()
	}
	if n := d.uvarint(maxListItems); n > 0 && d.err == nil {
		for range n {
			env.InReplyTo = append(env.InReplyTo, d.string())
			if d.err != nil {
				break
			}
		}
	}
	env.MessageID = d.string()
	if d.err == nil && d.off != len(d.b) {
		d.fail()
	}
	if d.err != nil {
		return nil, d.err
	}
	return env, nil
}
