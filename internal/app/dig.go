package app

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
	"github.com/spf13/cobra"

	"github.com/applayer/applayer/dns/dig"
)

func digCommand(g *globals) *cobra.Command {
	var (
		hints    string
		roots    []string
		useLab   bool
		offset   int
		timeout  time.Duration
		port     int
		reverse  string
		qtype    string
		jsonOut  bool
		qname    string
		tcpFlag  bool
		classArg string
		topoPath string
	)
	cmd := &cobra.Command{
		Use:   "dig [@server[:port]] [-t type] [-x addr] name [type] [+trace] [+dnssec] [+short] [+noall +answer] ...",
		Short: "Query a DNS server and print the answer the way dig does; +trace resolves iteratively from the root",
		Long: `Sends one query and prints the answer laid out like dig's: the header with its
flags, the question, answer, authority and additional sections, the query
time, the server and the size. dig's options work:

  -t TYPE, -x ADDR (reverse lookup), -p PORT, -q NAME
  +tcp, +dnssec (DO bit), +norecurse (RD clear), +cd (checking disabled),
  +nsid (ask for the server's NSID), +short (answer data only),
  +multi (long records over several lines), +[no]all, +[no]cmd,
  +[no]comments, +[no]question, +[no]answer, +[no]authority,
  +[no]additional, +[no]stats (e.g. +noall +answer), and
  +trace (iterate from the root servers, printing each referral, like the
  textbook's iterated-query figure).

--json prints the answer as one JSON object.

--lab talks to the default lab: without @server it asks the lab's resolver
(resolver.nyu.edu), and every port gets the lab's offset (10000 when not
root), so the same command works as root and as a normal user. +trace starts
from --root addresses, a --hints file (named.root format), or, with --lab, the
lab's root server.`,
		Example: `  applayer dig --lab gaia.cs.umass.edu +trace
  applayer dig --lab gaia.cs.umass.edu +noall +answer
  applayer dig --lab @127.1.0.3 umass.edu NS +norecurse
  applayer dig --lab -t MX umass.edu +json
  applayer dig --lab @127.1.0.6 umass.edu SOA +multi +nsid
  applayer dig @127.0.0.1:5300 www.example.com
  applayer dig --lab --hints named.root www.umass.edu +trace +dnssec`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o := dig.Options{Timeout: timeout, Args: strings.Join(args, " "), Port: 53, TCP: tcpFlag}
			if qtype != "" {
				t, ok := dns.StringToType[strings.ToUpper(qtype)]
				if !ok {
					return fmt.Errorf("-t %q: unknown type", qtype)
				}
				o.Type = t
			}
			if classArg != "" && !strings.EqualFold(classArg, "IN") {
				return fmt.Errorf("-c %q: only class IN is supported", classArg)
			}
			if reverse != "" {
				name, err := dns.ReverseAddr(reverse)
				if err != nil {
					return fmt.Errorf("-x %q: not an IP address", reverse)
				}
				o.Name = name
				if o.Type == 0 {
					o.Type = dns.TypePTR
				}
			}
			if qname != "" {
				o.Name = qname
			}
			for _, a := range args {
				switch {
				case strings.HasPrefix(a, "@"):
					o.Server = a[1:]
				case strings.HasPrefix(a, "+"):
					if err := digPlusOption(&o, a); err != nil {
						return err
					}
				default:
					if t, ok := dns.StringToType[strings.ToUpper(a)]; ok && o.Name != "" {
						o.Type = t
					} else if strings.EqualFold(a, "IN") && o.Name != "" {
						// the class, as dig takes it
					} else if o.Name == "" {
						o.Name = a
					} else {
						return fmt.Errorf("unexpected argument %q", a)
					}
				}
			}
			if o.Name == "" {
				return fmt.Errorf("no name to query (see 'applayer dig --help')")
			}
			if jsonOut {
				o.JSON = true
			}
			if o.JSON && o.Trace {
				return fmt.Errorf("--json does not apply to +trace")
			}
			// Ports: -p, else the lab's DNS port with --lab, else 53.
			defPort := 53
			if useLab {
				plan, err := clientLabPlan(topoPath, offset)
				if err != nil {
					return err
				}
				defPort = plan.Port(53)
				switch {
				case o.Trace && hints == "" && len(roots) == 0:
					r, _, err := labRoot(plan)
					if err != nil {
						return err
					}
					roots = []string{r}
				case !o.Trace && o.Server == "":
					if o.Server, err = labResolver(plan); err != nil {
						return err
					}
				}
			}
			if port != 0 {
				defPort = port
			}
			if o.Server != "" {
				host := o.Server
				if h, p, err := net.SplitHostPort(o.Server); err == nil {
					host = h
					if port == 0 {
						defPort, _ = strconv.Atoi(p)
					}
				}
				o.Server = net.JoinHostPort(strings.Trim(host, "[]"), strconv.Itoa(defPort))
			}
			if o.Trace {
				o.Roots = roots
				switch {
				case hints != "":
					h, err := dig.ReadHints(hints, defPort)
					if err != nil {
						return err
					}
					o.Roots = h
				case len(roots) == 0 && o.Server != "":
					o.Roots = []string{o.Server}
				}
				for i, r := range o.Roots {
					if _, _, err := net.SplitHostPort(r); err != nil {
						o.Roots[i] = net.JoinHostPort(strings.Trim(r, "[]"), strconv.Itoa(defPort))
					}
				}
				if len(o.Roots) > 0 {
					if _, p, err := net.SplitHostPort(o.Roots[0]); err == nil {
						o.Port, _ = strconv.Atoi(p)
					}
				}
			}
			return dig.Run(cmd.Context(), g.stdout, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&hints, "hints", "", "+trace: root hints `FILE` (named.root format)")
	f.StringArrayVar(&roots, "root", nil, "+trace: a root server `ADDR[:PORT]` (repeatable)")
	f.BoolVar(&useLab, "lab", false, "talk to the default lab: its resolver (or +trace from its root), ports offset as lab up offsets them")
	f.IntVar(&offset, "port-offset", -1, "with --lab: the lab's port offset (default: as lab up decides)")
	f.StringVar(&topoPath, "lab-topology", "", "with --lab: the lab's topology `FILE` (default: the embedded one)")
	f.DurationVar(&timeout, "timeout", 3*time.Second, "time to wait for each answer")
	f.IntVarP(&port, "port", "p", 0, "the server's port (as dig -p)")
	f.StringVarP(&reverse, "reverse", "x", "", "reverse lookup of `ADDR` (PTR in in-addr.arpa / ip6.arpa), as dig -x")
	f.StringVarP(&qtype, "type", "t", "", "query `TYPE` (A, AAAA, MX, NS, SOA, TXT, DNSKEY...), as dig -t")
	f.StringVarP(&qname, "query", "q", "", "the `NAME` to query, as dig -q")
	f.StringVarP(&classArg, "class", "c", "", "query class (only IN), as dig -c")
	f.BoolVar(&tcpFlag, "tcp", false, "query over TCP (as +tcp)")
	f.BoolVar(&jsonOut, "json", false, "print the answer as one JSON object (as +json)")
	return cmd
}

// digPlusOption applies one of dig's +options to o.
func digPlusOption(o *dig.Options, a string) error {
	name := strings.ToLower(strings.TrimPrefix(a, "+"))
	on := true
	if n, ok := strings.CutPrefix(name, "no"); ok && n != "" {
		name, on = n, false
	}
	if o.Display.Set(name, on) {
		return nil
	}
	switch name {
	case "trace":
		o.Trace = on
	case "dnssec":
		o.DNSSEC = on
	case "tcp", "vc":
		o.TCP = on
	case "recurse", "rec":
		o.NoRecurse = !on
	case "short":
		o.Short = on
	case "cd", "cdflag":
		o.CD = on
	case "nsid":
		o.NSID = on
	case "multi", "multiline":
		o.Multi = on
	case "json":
		o.JSON = on
	default:
		return fmt.Errorf("unknown option %s", a)
	}
	return nil
}
