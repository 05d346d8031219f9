package app

import (
	"github.com/spf13/pflag"

	"github.com/applayer/applayer/mail/mta"
)

// mailAccessFlags are `mail serve`'s reader flags: IMAP, POP3 and web
// mail, each off unless given an address (--insecure-auth-loopback, the
// submission flag, lets loopback clients log in without TLS on them too).
func mailAccessFlags(f *pflag.FlagSet, a *mta.Access) {
	f.StringVar(&a.IMAP.Addr, "imap", "", "serve IMAP with STARTTLS on `ADDR` (e.g. 127.0.0.1:143)")
	f.StringVar(&a.IMAP.TLSAddr, "imaps", "", "serve IMAP over implicit TLS on `ADDR` (e.g. 127.0.0.1:993)")
	f.StringVar(&a.POP3.Addr, "pop3", "", "serve POP3 with STLS on `ADDR` (e.g. 127.0.0.1:110)")
	f.StringVar(&a.POP3.TLSAddr, "pop3s", "", "serve POP3 over implicit TLS on `ADDR` (e.g. 127.0.0.1:995)")
	f.StringVar(&a.Webmail.Addr, "webmail", "", "serve the web mail on `ADDR` (e.g. 127.0.0.1:8025), reading through this server's IMAP and sending through its SMTP")
}
