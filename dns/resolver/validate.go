package resolver

import (
	"context"

	"github.com/miekg/dns"
)

func (r *Server) validateReply(ctx context.Context, t *task, m *dns.Msg, zone, qname string, qtype uint16) verdict {
	return verdict{state: secInsecure}
}
