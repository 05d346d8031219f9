package mail

import (
	"net"
	"strconv"

	"github.com/applayer/applayer/mail/imapd"
	"github.com/applayer/applayer/mail/mta"
	"github.com/applayer/applayer/mail/pop3d"
	"github.com/applayer/applayer/mail/webmail"
)

// labAccess is a lab mail server's readers: IMAP on 143 (STARTTLS) and
// 993, POP3 on 110 (STLS) and 995, the web mail on 80 (reading through
// 993 and sending through 587, checked with the lab CA).
func labAccess(addr string, port func(int) int) mta.Access {
	at := func(p int) string { return net.JoinHostPort(addr, strconv.Itoa(port(p))) }
	return mta.Access{
		IMAP:    imapd.Config{Addr: at(143), TLSAddr: at(993)},
		POP3:    pop3d.Config{Addr: at(110), TLSAddr: at(995)},
		Webmail: webmail.Config{Addr: at(80)},
	}
}
