package dig

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Display chooses the parts of the answer Print shows, as dig's +[no]cmd,
// +[no]comments, +[no]question, +[no]answer, +[no]authority,
// +[no]additional and +[no]stats do. The zero value shows everything;
// "+noall +answer" is Display{all true but NoAnswer}.
type Display struct {
	NoCmd, NoComments, NoQuestion, NoAnswer, NoAuthority, NoAdditional, NoStats bool
}

// SetAll shows (on) or hides every part, as +all / +noall.
func (d *Display) SetAll(on bool) {
	*d = Display{NoCmd: !on, NoComments: !on, NoQuestion: !on, NoAnswer: !on, NoAuthority: !on, NoAdditional: !on, NoStats: !on}
}

// Set turns the part named as dig names it (cmd, comments, question,
// answer, authority, additional, stats; all) on or off. It reports whether
// the name is one of them.
func (d *Display) Set(name string, on bool) bool {
	var p *bool
	switch name {
	case "all":
		d.SetAll(on)
		return true
	case "cmd":
		p = &d.NoCmd
	case "comments":
		p = &d.NoComments
	case "question":
		p = &d.NoQuestion
	case "answer":
		p = &d.NoAnswer
	case "authority":
		p = &d.NoAuthority
	case "additional":
		p = &d.NoAdditional
	case "stats":
		p = &d.NoStats
	default:
		return false
	}
	*p = !on
	return true
}

// Print writes r the way dig does.
func Print(w io.Writer, r *Result) { PrintWith(w, r, Display{}, false) }

// PrintWith writes the parts of r that d shows, records over several lines
// when multi (+multi).
func PrintWith(w io.Writer, r *Result, d Display, multi bool) {
	m := r.Msg
	if !d.NoComments {
		fmt.Fprintf(w, ";; Got answer:\n;; ->>HEADER<<- opcode: %s, status: %s, id: %d\n", dns.OpcodeToString[m.Opcode], rcodeString(m), m.Id)
		fmt.Fprintf(w, ";; flags: %s; QUERY: %d, ANSWER: %d, AUTHORITY: %d, ADDITIONAL: %d\n", strings.Join(flags(m), " "), len(m.Question), len(m.Answer), len(m.Ns), len(m.Extra))
		if opt := m.IsEdns0(); opt != nil {
			fmt.Fprintf(w, "\n;; OPT PSEUDOSECTION:\n; EDNS: version: %d, flags:", opt.Version())
			if opt.Do() {
				fmt.Fprint(w, " do")
			}
			fmt.Fprintf(w, "; udp: %d\n", opt.UDPSize())
			for _, o := range opt.Option {
				switch o := o.(type) {
				case *dns.EDNS0_NSID:
					fmt.Fprintf(w, "; NSID: %s\n", nsidString(o.Nsid))
				case *dns.EDNS0_COOKIE:
					fmt.Fprintf(w, "; COOKIE: %s\n", o.Cookie)
				default:
					// Option text (an EDE's extra text) is the server's:
					// escaped, so it cannot drive the terminal.
					fmt.Fprintf(w, "; %s\n", printable(o.String()))
				}
			}
		}
	}
	if !d.NoQuestion {
		if !d.NoComments {
			fmt.Fprint(w, "\n;; QUESTION SECTION:\n")
		}
		for _, q := range m.Question {
			fmt.Fprintf(w, ";%s\t\t%s\t%s\n", q.Name, dns.ClassToString[q.Qclass], dns.TypeToString[q.Qtype])
		}
	}
	section := func(title string, rrs []dns.RR) {
		var lines []string
		for _, rr := range rrs {
			if rr.Header().Rrtype == dns.TypeOPT {
				continue
			}
			if multi {
				lines = append(lines, multiline(rr))
			} else {
				lines = append(lines, printable(rr.String()))
			}
		}
		if len(lines) == 0 {
			return
		}
		if !d.NoComments {
			fmt.Fprintf(w, "\n;; %s SECTION:\n", title)
		}
		fmt.Fprintln(w, strings.Join(lines, "\n"))
	}
	if !d.NoAnswer {
		section("ANSWER", m.Answer)
	}
	if !d.NoAuthority {
		section("AUTHORITY", m.Ns)
	}
	if !d.NoAdditional {
		section("ADDITIONAL", m.Extra)
	}
	if !d.NoStats {
		host, port := serverParts(r.Server)
		fmt.Fprintf(w, "\n;; Query time: %d msec\n;; SERVER: %s#%s(%s) (%s)\n;; WHEN: %s\n;; MSG SIZE  rcvd: %d\n\n",
			r.RTT.Milliseconds(), host, port, host, r.Proto, time.Now().Format("Mon Jan 02 15:04:05 MST 2006"), r.Size)
	}
}

func serverParts(server string) (host, port string) {
	host, port, err := net.SplitHostPort(server)
	if err != nil {
		return server, "53"
	}
	return host, port
}

func flags(m *dns.Msg) []string {
	var out []string
	for _, f := range []struct {
		on   bool
		name string
	}{{m.Response, "qr"}, {m.Authoritative, "aa"}, {m.Truncated, "tc"}, {m.RecursionDesired, "rd"}, {m.RecursionAvailable, "ra"}, {m.AuthenticatedData, "ad"}, {m.CheckingDisabled, "cd"}} {
		if f.on {
			out = append(out, f.name)
		}
	}
	return out
}

// nsidString prints an NSID as dig does: its hex bytes, then the text in
// parentheses.
func nsidString(h string) string {
	b, err := hex.DecodeString(h)
	if err != nil {
		return h
	}
	var parts []string
	for _, c := range b {
		parts = append(parts, fmt.Sprintf("%02x", c))
	}
	return fmt.Sprintf("%s (%q)", strings.Join(parts, " "), string(b))
}

// printable escapes control characters but tab (and DEL) as \DDD, as dig
// and miekg/dns do inside names and TXT strings: text a server chose (an
// EDE's extra text, an unknown record's presentation) cannot drive the
// terminal or forge output lines.
func printable(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' || c == 0x7f {
			fmt.Fprintf(&b, "\\%03d", c)
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func rcodeString(m *dns.Msg) string {
	if s, ok := dns.RcodeToString[m.Rcode]; ok {
		return s
	}
	return "RESERVED" + strconv.Itoa(m.Rcode)
}

// PrintShort writes only the data of the answer records (+short).
func PrintShort(w io.Writer, m *dns.Msg) {
	for _, rr := range m.Answer {
		if rr.Header().Rrtype == dns.TypeOPT {
			continue // not data, wherever a server puts it
		}
		fmt.Fprintln(w, printable(rdata(rr)))
	}
}

func rdata(rr dns.RR) string {
	return strings.TrimPrefix(rr.String(), rr.Header().String())
}

// multiline formats rr as dig +multi does for the long types; other types
// stay on one line.
func multiline(rr dns.RR) string {
	h := rr.Header()
	head := fmt.Sprintf("%s\t%d %s %s", h.Name, h.Ttl, dns.ClassToString[h.Class], dns.TypeToString[h.Rrtype])
	const ind = "\t\t\t\t"
	wrap := func(s string) string { // base64 in lines of 44 as dig prints
		var parts []string
		for len(s) > 44 {
			parts = append(parts, s[:44])
			s = s[44:]
		}
		parts = append(parts, s)
		return ind + strings.Join(parts, "\n"+ind)
	}
	switch r := rr.(type) {
	case *dns.SOA:
		return fmt.Sprintf("%s %s %s (\n%s%-10d ; serial\n%s%-10d ; refresh (%s)\n%s%-10d ; retry (%s)\n%s%-10d ; expire (%s)\n%s%-10d ; minimum (%s)\n%s)",
			head, r.Ns, r.Mbox, ind, r.Serial, ind, r.Refresh, human(r.Refresh), ind, r.Retry, human(r.Retry),
			ind, r.Expire, human(r.Expire), ind, r.Minttl, human(r.Minttl), ind)
	case *dns.DNSKEY:
		role := "ZSK"
		if r.Flags&dns.SEP != 0 {
			role = "KSK"
		}
		return fmt.Sprintf("%s %d %d %d (\n%s\n%s) ; %s; alg = %s ; key id = %d",
			head, r.Flags, r.Protocol, r.Algorithm, wrap(r.PublicKey), ind, role, dns.AlgorithmToString[r.Algorithm], r.KeyTag())
	case *dns.RRSIG:
		return fmt.Sprintf("%s %s %d %d %d (\n%s%s %s %d %s\n%s )",
			head, dns.TypeToString[r.TypeCovered], r.Algorithm, r.Labels, r.OrigTtl,
			ind, dns.TimeToString(r.Expiration), dns.TimeToString(r.Inception), r.KeyTag, r.SignerName, wrap(r.Signature))
	case *dns.DS:
		return fmt.Sprintf("%s %d %d %d (\n%s )", head, r.KeyTag, r.Algorithm, r.DigestType, wrap(strings.ToUpper(r.Digest)))
	}
	return printable(rr.String())
}

// human writes seconds as dig's comments do: "1 hour", "2 weeks 1 day".
func human(secs uint32) string {
	units := []struct {
		n    uint32
		name string
	}{{7 * 86400, "week"}, {86400, "day"}, {3600, "hour"}, {60, "minute"}, {1, "second"}}
	if secs == 0 {
		return "0 seconds"
	}
	var parts []string
	for _, u := range units {
		if k := secs / u.n; k > 0 {
			s := fmt.Sprintf("%d %s", k, u.name)
			if k > 1 {
				s += "s"
			}
			parts = append(parts, s)
			secs %= u.n
		}
	}
	return strings.Join(parts, " ")
}

// JSONRecord is one resource record of the JSON output.
type JSONRecord struct {
	Name  string `json:"name"`
	TTL   uint32 `json:"ttl"`
	Class string `json:"class"`
	Type  string `json:"type"`
	Data  string `json:"data"`
}

// JSONMessage is dig --json's output: the answer's header, sections and
// EDNS, with the server, transport, query time and size.
type JSONMessage struct {
	ID         uint16       `json:"id"`
	Opcode     string       `json:"opcode"`
	Status     string       `json:"status"`
	Flags      []string     `json:"flags"`
	Question   []JSONQ      `json:"question"`
	Answer     []JSONRecord `json:"answer"`
	Authority  []JSONRecord `json:"authority"`
	Additional []JSONRecord `json:"additional"`
	EDNS       *JSONEDNS    `json:"edns,omitempty"`
	Server     string       `json:"server"`
	Proto      string       `json:"proto"`
	QueryMS    int64        `json:"query_time_ms"`
	Size       int          `json:"size"`
}

// JSONQ is one question.
type JSONQ struct {
	Name  string `json:"name"`
	Class string `json:"class"`
	Type  string `json:"type"`
}

// JSONEDNS is the OPT pseudo-record.
type JSONEDNS struct {
	Version uint8  `json:"version"`
	DO      bool   `json:"do"`
	UDPSize uint16 `json:"udp"`
	NSID    string `json:"nsid,omitempty"`
}

// ToJSON converts r to dig --json's form.
func ToJSON(r *Result) *JSONMessage {
	m := r.Msg
	out := &JSONMessage{ID: m.Id, Opcode: dns.OpcodeToString[m.Opcode], Status: rcodeString(m), Flags: flags(m),
		Question: []JSONQ{}, Answer: records(m.Answer), Authority: records(m.Ns), Additional: records(m.Extra),
		Server: r.Server, Proto: r.Proto, QueryMS: r.RTT.Milliseconds(), Size: r.Size}
	if out.Flags == nil {
		out.Flags = []string{}
	}
	for _, q := range m.Question {
		out.Question = append(out.Question, JSONQ{Name: q.Name, Class: dns.ClassToString[q.Qclass], Type: dns.TypeToString[q.Qtype]})
	}
	if opt := m.IsEdns0(); opt != nil {
		e := &JSONEDNS{Version: opt.Version(), DO: opt.Do(), UDPSize: opt.UDPSize()}
		for _, o := range opt.Option {
			if n, ok := o.(*dns.EDNS0_NSID); ok {
				if b, err := hex.DecodeString(n.Nsid); err == nil {
					e.NSID = string(b)
				}
			}
		}
		out.EDNS = e
	}
	return out
}

func records(rrs []dns.RR) []JSONRecord {
	out := []JSONRecord{}
	for _, rr := range rrs {
		h := rr.Header()
		if h.Rrtype == dns.TypeOPT {
			continue
		}
		out = append(out, JSONRecord{Name: h.Name, TTL: h.Ttl, Class: dns.ClassToString[h.Class], Type: dns.TypeToString[h.Rrtype], Data: strings.TrimSpace(rdata(rr))})
	}
	return out
}

// PrintJSON writes r as one indented JSON object (--json).
func PrintJSON(w io.Writer, r *Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(ToJSON(r))
}
