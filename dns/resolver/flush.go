package resolver

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/miekg/dns"
)

// Flush removes cached data: everything when name is "" or ".", otherwise
// every entry for name and the names below it. It returns how many
// entries were removed.
func (s *Server) Flush(name string) int {
	name = lowerName(name)
	if name == "." {
		return s.rr.flush(nil) + s.msgs.flush(nil)
	}
	n := s.rr.flush(func(k string) bool { return len(k) > 2 && dns.IsSubDomain(name, k[:len(k)-2]) })
	n += s.msgs.flush(func(k string) bool {
		if len(k) < 4 {
			return false
		}
		return dns.IsSubDomain(name, wireName(k[:len(k)-3]))
	})
	return n
}

// wireName turns an uncompressed wire-format name into text.
func wireName(w string) string {
	var b strings.Builder
	for i := 0; i < len(w); {
		l := int(w[i])
		if l == 0 || i+1+l > len(w) {
			break
		}
		b.WriteString(w[i+1 : i+1+l])
		b.WriteByte('.')
		i += 1 + l
	}
	if b.Len() == 0 {
		return "."
	}
	return b.String()
}

// FlushHandler is the admin endpoint that flushes the cache: POST with an
// optional name parameter (the name and everything below it), e.g.
// curl -X POST 'http://127.0.0.1:9900/dns/resolver/flush?name=example.com'.
func (s *Server) FlushHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			http.Error(w, "use POST", http.StatusMethodNotAllowed)
			return
		}
		name := r.URL.Query().Get("name")
		if name != "" {
			if _, ok := dns.IsDomainName(name); !ok {
				http.Error(w, "bad name", http.StatusBadRequest)
				return
			}
		}
		n := s.Flush(name)
		s.log.Info("cache flushed", "name", name, "entries", n)
		fmt.Fprintf(w, "flushed %d entries\n", n)
	})
}
