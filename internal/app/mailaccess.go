package app

import (
	"strconv"

	"github.com/spf13/pflag"

	"github.com/applayer/applayer/mail/mta"
)

// mailAccessFlags are `mail serve`'s reader flags: IMAP, POP3 and web
// mail, each off unless given an address.
func mailAccessFlags(f *pflag.FlagSet, a *mta.Access) {
	f.StringVar(&a.IMAP.Addr, "imap", "", "serve IMAP with STARTTLS on `ADDR` (e.g. 127.0.0.1:143)")
	f.StringVar(&a.IMAP.TLSAddr, "imaps", "", "serve IMAP over implicit TLS on `ADDR` (e.g. 127.0.0.1:993)")
	f.StringVar(&a.POP3.Addr, "pop3", "", "serve POP3 with STLS on `ADDR` (e.g. 127.0.0.1:110)")
	f.StringVar(&a.POP3.TLSAddr, "pop3s", "", "serve POP3 over implicit TLS on `ADDR` (e.g. 127.0.0.1:995)")
	f.StringVar(&a.Webmail.Addr, "webmail", "", "serve the web mail on `ADDR` (e.g. 127.0.0.1:8025), reading through this server's IMAP and sending through its SMTP")
	f.Var(loopbackAuth{a}, "plain-auth-loopback", "let IMAP and POP3 clients on loopback log in without TLS (elsewhere TLS is always required)")
	f.Lookup("plain-auth-loopback").NoOptDefVal = "true"
}

// loopbackAuth sets both readers' InsecureAuthLoopback.
type loopbackAuth struct{ a *mta.Access }

func (l loopbackAuth) String() string {
	if l.a == nil {
		return "false"
	}
	return strconv.FormatBool(l.a.IMAP.InsecureAuthLoopback)
}

func (l loopbackAuth) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	l.a.IMAP.InsecureAuthLoopback, l.a.POP3.InsecureAuthLoopback = v, v
	return nil
}

func (loopbackAuth) Type() string { return "bool" }
