package metainfo

import (
	"encoding/base32"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Magnet is a magnet link (BEP 9): an info-hash and hints for finding the
// torrent's metadata.
type Magnet struct {
	InfoHash Hash
	// Name is the display name (dn).
	Name string
	// Trackers are tracker URLs (tr).
	Trackers []string
	// Peers are host:port peer addresses (x.pe).
	Peers []string
	// WebSeeds are web seed URLs (ws).
	WebSeeds []string
}

// ParseMagnet reads a magnet:?xt=urn:btih:... link. The info-hash may be 40
// hex digits or 32 base32 characters.
func ParseMagnet(s string) (*Magnet, error) {
	if len(s) > 64<<10 {
		return nil, errors.New("metainfo: magnet link too long")
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("metainfo: magnet: %w", err)
	}
	if u.Scheme != "magnet" {
		return nil, fmt.Errorf("metainfo: %q is not a magnet link", s)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("metainfo: magnet: %w", err)
	}
	m := &Magnet{}
	found := false
	for _, xt := range q["xt"] {
		rest, ok := strings.CutPrefix(xt, "urn:btih:")
		if !ok {
			continue
		}
		switch len(rest) {
		case 40:
			h, err := ParseHash(strings.ToLower(rest))
			if err != nil {
				return nil, err
			}
			m.InfoHash = h
		case 32:
			b, err := base32.StdEncoding.DecodeString(strings.ToUpper(rest))
			if err != nil || len(b) != 20 {
				return nil, fmt.Errorf("metainfo: magnet: bad base32 info-hash %q", rest)
			}
			copy(m.InfoHash[:], b)
		default:
			return nil, fmt.Errorf("metainfo: magnet: info-hash %q is neither 40 hex nor 32 base32 characters", rest)
		}
		found = true
		break
	}
	if !found {
		return nil, errors.New("metainfo: magnet link has no xt=urn:btih: info-hash (v2-only links are not supported)")
	}
	m.Name = q.Get("dn")
	m.Trackers = q["tr"]
	m.Peers = q["x.pe"]
	m.WebSeeds = q["ws"]
	return m, nil
}

// String prints the link: xt first, then dn, tr, ws and x.pe.
func (m *Magnet) String() string {
	var b strings.Builder
	b.WriteString("magnet:?xt=urn:btih:")
	b.WriteString(m.InfoHash.String())
	if m.Name != "" {
		b.WriteString("&dn=")
		b.WriteString(url.QueryEscape(m.Name))
	}
	for _, t := range m.Trackers {
		b.WriteString("&tr=")
		b.WriteString(url.QueryEscape(t))
	}
	for _, w := range m.WebSeeds {
		b.WriteString("&ws=")
		b.WriteString(url.QueryEscape(w))
	}
	for _, p := range m.Peers {
		b.WriteString("&x.pe=")
		b.WriteString(url.QueryEscape(p))
	}
	return b.String()
}

// Magnet returns the torrent's magnet link.
func (m *MetaInfo) Magnet() *Magnet {
	return &Magnet{InfoHash: m.InfoHash, Name: m.Info.Name, Trackers: m.Trackers(), WebSeeds: m.URLList}
}
