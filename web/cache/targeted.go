package cache

import (
	"net/http"
	"strings"
)

// responseCC returns the directives that govern caching a response: those
// of the first field of the target list (RFC 9213 section 2.1) whose
// value is a valid, non-empty structured-field dictionary, targeted true;
// else the response's Cache-Control.
func (c *Cache) responseCC(h http.Header) (Directives, bool) {
	for _, f := range c.cfg.TargetedCacheControl {
		vs, ok := h[f]
		if !ok {
			continue
		}
		v := strings.Join(vs, ", ")
		if validDictionary(v) {
			return parseCC([]string{v}), true
		}
	}
	return ParseCacheControl(h), false
}

// isStripped reports whether field k is on the target list and the
// cache removes those from what it sends downstream.
func (c *Cache) isStripped(k string) bool {
	if !c.cfg.StripTargeted {
		return false
	}
	for _, f := range c.cfg.TargetedCacheControl {
		if f == k {
			return true
		}
	}
	return false
}

// stripTargeted removes the target list's fields from h when configured.
func (c *Cache) stripTargeted(h http.Header) {
	if !c.cfg.StripTargeted {
		return
	}
	for _, f := range c.cfg.TargetedCacheControl {
		delete(h, f)
	}
}

// validDictionary reports whether v parses as a non-empty Structured
// Field Dictionary (RFC 8941 section 3.2) whose members are bare items
// (integers, decimals, strings, tokens, booleans) with optional
// parameters: the syntax RFC 9213 section 2.2 requires of a targeted
// field. An invalid or empty field is ignored, as if absent.
func validDictionary(v string) bool {
	p := sfParser{s: v}
	p.ows()
	if p.eof() {
		return false
	}
	for {
		if !p.key() {
			return false
		}
		if p.peek() == '=' {
			p.i++
			if !p.bareItem() {
				return false
			}
		}
		if !p.params() {
			return false
		}
		p.ows()
		if p.eof() {
			return true
		}
		if p.peek() != ',' {
			return false
		}
		p.i++
		p.ows()
		if p.eof() {
			return false // trailing comma
		}
	}
}

type sfParser struct {
	s string
	i int
}

func (p *sfParser) eof() bool { return p.i >= len(p.s) }

func (p *sfParser) peek() byte {
	if p.eof() {
		return 0
	}
	return p.s[p.i]
}

func (p *sfParser) ows() {
	for !p.eof() && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

// key is lcalpha / "*" then lcalpha / DIGIT / "_" / "-" / "." / "*".
func (p *sfParser) key() bool {
	c := p.peek()
	if !(c >= 'a' && c <= 'z' || c == '*') {
		return false
	}
	p.i++
	for !p.eof() {
		c = p.s[p.i]
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' || c == '*' {
			p.i++
			continue
		}
		break
	}
	return true
}

func (p *sfParser) params() bool {
	for p.peek() == ';' {
		p.i++
		p.ows()
		if !p.key() {
			return false
		}
		if p.peek() == '=' {
			p.i++
			if !p.bareItem() {
				return false
			}
		}
	}
	return true
}

func (p *sfParser) bareItem() bool {
	c := p.peek()
	switch {
	case c == '-' || c >= '0' && c <= '9':
		return p.number()
	case c == '"':
		p.i++
		for !p.eof() {
			c = p.s[p.i]
			p.i++
			switch {
			case c == '\\':
				if p.eof() || (p.s[p.i] != '"' && p.s[p.i] != '\\') {
					return false
				}
				p.i++
			case c == '"':
				return true
			case c < 0x20 || c >= 0x7f:
				return false
			}
		}
		return false
	case c == '?':
		p.i++
		if c = p.peek(); c != '0' && c != '1' {
			return false
		}
		p.i++
		return true
	case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '*':
		p.i++
		for !p.eof() {
			c = p.s[p.i]
			if c > ' ' && c < 0x7f && !strings.ContainsRune("\"(),;<=>?@[\\]{}", rune(c)) || c == ':' || c == '/' {
				p.i++
				continue
			}
			break
		}
		return true
	}
	return false
}

// number is an sf-integer (at most 15 digits) or sf-decimal (12.3 digits).
func (p *sfParser) number() bool {
	if p.peek() == '-' {
		p.i++
	}
	digits, frac, dot := 0, 0, false
	for !p.eof() {
		c := p.s[p.i]
		switch {
		case c >= '0' && c <= '9':
			if dot {
				frac++
			} else {
				digits++
			}
		case c == '.' && !dot && digits > 0:
			dot = true
		default:
			goto done
		}
		p.i++
	}
done:
	if digits == 0 {
		return false
	}
	if dot {
		return digits <= 12 && frac >= 1 && frac <= 3
	}
	return digits <= 15
}
