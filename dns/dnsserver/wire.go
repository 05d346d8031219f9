package dnsserver

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// Truncate returns, appended to out[:0], what a UDP client gets in place
// of a reply too large for it: the reply's header with TC set, its
// question, no records but its OPT record (RFC 2181 section 9, RFC 6891
// section 7). The client retries over TCP.
func Truncate(reply, out []byte) []byte {
	if len(reply) < 12 {
		return nil
	}
	// out may be reply itself: read the counts first.
	qd := int(binary.BigEndian.Uint16(reply[4:]))
	n := int(binary.BigEndian.Uint16(reply[6:])) + int(binary.BigEndian.Uint16(reply[8:]))
	ar := int(binary.BigEndian.Uint16(reply[10:]))
	out = append(out[:0], reply[:12]...)
	out[2] |= 0x02 // TC
	binary.BigEndian.PutUint16(out[6:], 0)
	binary.BigEndian.PutUint16(out[8:], 0)
	binary.BigEndian.PutUint16(out[10:], 0)
	off := 12
	for range qd {
		end, err := SkipName(reply, off)
		if err != nil || end+4 > len(reply) {
			binary.BigEndian.PutUint16(out[4:], 0)
			return out[:12]
		}
		off = end + 4
	}
	out = append(out, reply[12:off]...)
	for i := 0; i < n+ar; i++ {
		start := off
		end, err := SkipName(reply, off)
		if err != nil || end+10 > len(reply) {
			return out
		}
		rdlen := int(binary.BigEndian.Uint16(reply[end+8:]))
		if end+10+rdlen > len(reply) {
			return out
		}
		off = end + 10 + rdlen
		if i >= n && binary.BigEndian.Uint16(reply[end:]) == dns.TypeOPT && end == start+1 {
			out = append(out, reply[start:off]...)
			binary.BigEndian.PutUint16(out[10:], 1)
			return out
		}
	}
	return out
}

// SkipName returns the offset just past the (possibly compressed) name
// that starts at off in the packed message b, without reading it.
func SkipName(b []byte, off int) (int, error) {
	for {
		if off >= len(b) {
			return 0, errShort
		}
		l := int(b[off])
		switch {
		case l == 0:
			return off + 1, nil
		case l&0xC0 == 0xC0:
			return off + 2, nil
		case l&0xC0 != 0:
			return 0, errShort
		}
		off += 1 + l
	}
}

var errShort = fmt.Errorf("dnsserver: short or malformed message")

// ErrorReply returns, appended to out[:0], a reply to the query in req
// with the given rcode and no records: the question, RD and CD as asked,
// RA when ra, and an OPT record (buffer size udp) when the query had one.
// A query that cannot be unpacked gets its header back with FORMERR, or
// nothing when it is not a query at all (fewer than 12 bytes, or QR set).
func ErrorReply(req *Request, rcode int, ra bool, udp uint16, out []byte) []byte {
	b := req.Wire
	m, err := req.Msg()
	if err != nil || m.Response {
		if len(b) < 12 || b[2]&0x80 != 0 {
			return nil
		}
		return HeaderReply(b, dns.RcodeFormatError, out)
	}
	r := new(dns.Msg)
	r.SetRcode(m, rcode)
	r.RecursionAvailable = ra
	if m.IsEdns0() != nil {
		r.SetEdns0(udp, false)
	}
	wire, err := r.PackBuffer(out)
	if err != nil {
		return HeaderReply(b, dns.RcodeServerFailure, out)
	}
	return wire
}

// HeaderReply answers wire (at least 12 bytes) with its header only:
// same ID, opcode and RD, QR set, the given RCODE, no records.
func HeaderReply(wire []byte, rcode int, out []byte) []byte {
	out = append(out[:0], wire[:12]...)
	out[2] = 0x80 | wire[2]&0x79 // QR, keep opcode and RD
	out[3] = byte(rcode & 0xf)
	for i := 4; i < 12; i++ {
		out[i] = 0
	}
	return out
}

// Summary describes a DNS message in one line for traces: "query A
// www.example.com. rd" or "response NOERROR aa A www.example.com. 2/0/1".
// Every DNS server traces its clients' queries and replies with it.
func Summary(m *dns.Msg) string {
	var b strings.Builder
	if m.Response {
		b.WriteString("response ")
		b.WriteString(dns.RcodeToString[m.Rcode])
	} else if m.Opcode != dns.OpcodeQuery {
		b.WriteString(strings.ToLower(dns.OpcodeToString[m.Opcode]))
	} else {
		b.WriteString("query")
	}
	for _, f := range []struct {
		on   bool
		name string
	}{{m.Authoritative, "aa"}, {m.Truncated, "tc"}, {m.RecursionDesired, "rd"}, {m.RecursionAvailable, "ra"}, {m.AuthenticatedData, "ad"}} {
		if f.on {
			b.WriteString(" " + f.name)
		}
	}
	if len(m.Question) > 0 {
		q := m.Question[0]
		fmt.Fprintf(&b, " %s %s", dns.TypeToString[q.Qtype], q.Name)
	}
	if m.Response {
		fmt.Fprintf(&b, " %d/%d/%d", len(m.Answer), len(m.Ns), len(m.Extra))
		summarizeData(&b, m)
	}
	return b.String()
}

// summarizeData adds what a response says to a summary: the answer's
// records (": CNAME www-edge.amazon.com., A 127.1.250.1"; at most four,
// signatures left out) or, for a referral, where it points ("referral to
// edu. (a.edu-servers.net.)").
func summarizeData(b *strings.Builder, m *dns.Msg) {
	n := 0
	for _, rr := range m.Answer {
		t := rr.Header().Rrtype
		if t == dns.TypeRRSIG {
			continue
		}
		if n == 4 {
			b.WriteString(", ...")
			break
		}
		if n == 0 {
			b.WriteString(":")
		} else {
			b.WriteString(",")
		}
		var data string
		switch rr := rr.(type) {
		case *dns.DNSKEY:
			data = "ZSK"
			if rr.Flags&dns.SEP != 0 {
				data = "KSK"
			}
			data += " tag " + strconv.Itoa(int(rr.KeyTag()))
		case *dns.DS:
			data = "tag " + strconv.Itoa(int(rr.KeyTag))
		default:
			data = strings.TrimPrefix(rr.String(), rr.Header().String())
			if len(data) > 60 {
				data = data[:60] + "..."
			}
		}
		b.WriteString(" " + dns.TypeToString[t] + " " + data)
		n++
	}
	if len(m.Answer) == 0 && !m.Authoritative && len(m.Ns) > 0 && m.Ns[0].Header().Rrtype == dns.TypeNS {
		b.WriteString(" referral to " + m.Ns[0].Header().Name)
		if ns, ok := m.Ns[0].(*dns.NS); ok {
			b.WriteString(" (" + ns.Ns + ")")
		}
	}
}

// WireSummary is Summary of a packed message ("malformed message" when
// it does not unpack).
func WireSummary(wire []byte) string {
	m := new(dns.Msg)
	if err := m.Unpack(wire); err != nil {
		return "malformed message"
	}
	return Summary(m)
}
