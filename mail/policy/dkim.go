// Package policy is applayer's message authentication: DKIM signing of
// the mail our domains send (per-domain keys kept in a directory, the
// selector records to publish), and the checks of incoming mail a
// receiver makes before it accepts a message: SPF (RFC 7208) for the
// client's address and the envelope sender, DKIM (RFC 6376) signatures,
// and DMARC (RFC 7489) alignment and policy for the From domain, with the
// results in an Authentication-Results header (RFC 8601) and a verdict:
// accept, file into Junk, or refuse with 550 5.7.1.
//
// The wire formats come from the field's libraries: go-msgauth's dkim,
// dmarc and authres packages, and blitiri.com.ar/go/spf (the SPF
// evaluator chasquid and maddy use: all mechanisms, macros, the lookup
// and void-lookup limits). Ours are the key store, the DMARC evaluation
// (organizational domain, alignment, p/sp/pct), the policy and the header
// handling. Every DNS lookup goes through the Resolver the caller gives:
// applayer's own resolver in the lab, never the system's in tests.
package policy

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/emersion/go-msgauth/dkim"
)

// Selectors of the keys a Signer makes for each domain: one RSA-2048 key
// (rsa-sha256, what every verifier knows) and one Ed25519 key
// (ed25519-sha256, RFC 8463), and every message gets both signatures.
const (
	SelectorRSA     = "applayer-rsa"
	SelectorEd25519 = "applayer-ed25519"
)

// signedHeaders are the header fields a signature covers (RFC 6376
// 5.4.1). From is listed twice: the second, absent instance is signed as
// empty, so a From added later breaks the signature (over-signing).
var signedHeaders = []string{
	"From", "From", "Reply-To", "Subject", "Date", "To", "Cc", "Message-ID",
	"In-Reply-To", "References", "MIME-Version", "Content-Type",
	"Content-Transfer-Encoding", "List-Id", "List-Unsubscribe",
}

// Key is one DKIM key of a domain.
type Key struct {
	Domain   string
	Selector string
	Signer   crypto.Signer
}

// Record returns the key's DNS record: owner name (fully qualified) and
// the TXT value, e.g. "v=DKIM1; k=rsa; p=MIIB...".
func (k Key) Record() (owner, txt string) {
	owner = k.Selector + "._domainkey." + k.Domain + "."
	switch pub := k.Signer.Public().(type) {
	case *rsa.PublicKey:
		der, _ := x509.MarshalPKIXPublicKey(pub)
		txt = "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)
	case ed25519.PublicKey:
		txt = "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)
	}
	return owner, txt
}

// Signer signs outgoing mail for its domains with their DKIM keys.
type Signer struct {
	keys map[string][]Key // by lower-case domain
}

// LoadOrCreateKeys returns a Signer for domains, with the keys kept in
// dir/<domain>/<selector>.pem (PKCS #8, mode 0600): read when they exist,
// generated and written (synced) when they do not. Running it twice on
// one directory gives the same keys, so a lab can publish the records
// while it plans and sign with them when it runs.
func LoadOrCreateKeys(dir string, domains []string) (*Signer, error) {
	s := &Signer{keys: map[string][]Key{}}
	for _, d := range domains {
		d = canonDomain(d)
		if d == "" || strings.ContainsAny(d, "/\\ ") || d == "." || d == ".." {
			return nil, fmt.Errorf("policy: bad domain %q", d)
		}
		for _, sel := range []string{SelectorRSA, SelectorEd25519} {
			k, err := loadOrCreate(filepath.Join(dir, d, sel+".pem"), sel)
			if err != nil {
				return nil, fmt.Errorf("policy: DKIM key %s for %s: %w", sel, d, err)
			}
			s.keys[d] = append(s.keys[d], Key{Domain: d, Selector: sel, Signer: k})
		}
	}
	return s, nil
}

func loadOrCreate(path, selector string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		blk, _ := pem.Decode(b)
		if blk == nil || blk.Type != "PRIVATE KEY" {
			return nil, fmt.Errorf("%s: no PKCS #8 private key", path)
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		cs, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%s: key of type %T", path, k)
		}
		return cs, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	var k crypto.Signer
	if selector == SelectorEd25519 {
		_, k, err = ed25519.GenerateKey(rand.Reader)
	} else {
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	}
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	if err := writeFileSync(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
		return nil, err
	}
	return k, nil
}

// writeFileSync writes a file whole (temporary file, fsync, rename, fsync
// of the directory), so a crash leaves the old state or the new one.
func writeFileSync(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".tmp-key-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Keys returns a domain's keys (none for a domain that is not ours).
func (s *Signer) Keys(domain string) []Key { return s.keys[canonDomain(domain)] }

// Has reports whether the signer has keys for domain.
func (s *Signer) Has(domain string) bool { return len(s.keys[canonDomain(domain)]) > 0 }

// Sign returns msg with DKIM-Signature fields prepended, one per key of
// the domain of its From address (relaxed/relaxed canonicalization,
// SHA-256). A message whose From domain is not one of the signer's is
// returned unchanged with ok false: we sign only for our domains.
func (s *Signer) Sign(msg []byte) (signed []byte, ok bool, err error) {
	sigs, err := s.Header(msg)
	if err != nil || sigs == nil {
		return msg, false, err
	}
	out := make([]byte, 0, len(sigs)+len(msg))
	return append(append(out, sigs...), msg...), true, nil
}

// Header returns the DKIM-Signature fields (each ending in CRLF) to
// prepend to msg, or nil when its From domain is not one of the signer's
// (what a relay's signing hook wants).
func (s *Signer) Header(msg []byte) ([]byte, error) {
	h, _, err := parseHeader(msg)
	if err != nil {
		return nil, fmt.Errorf("policy: sign: %w", err)
	}
	from, err := fromDomain(h)
	if err != nil {
		return nil, nil
	}
	keys := s.keys[from]
	if len(keys) == 0 {
		return nil, nil
	}
	var sigs bytes.Buffer
	for _, k := range keys {
		ds, err := dkim.NewSigner(&dkim.SignOptions{
			Domain:                 k.Domain,
			Selector:               k.Selector,
			Signer:                 k.Signer,
			Hash:                   crypto.SHA256,
			HeaderCanonicalization: dkim.CanonicalizationRelaxed,
			BodyCanonicalization:   dkim.CanonicalizationRelaxed,
			HeaderKeys:             presentHeaders(h),
		})
		if err != nil {
			return nil, fmt.Errorf("policy: sign: %w", err)
		}
		if _, err := ds.Write(msg); err != nil {
			ds.Close()
			return nil, fmt.Errorf("policy: sign: %w", err)
		}
		if err := ds.Close(); err != nil {
			return nil, fmt.Errorf("policy: sign: %w", err)
		}
		sigs.WriteString(ds.Signature())
	}
	return sigs.Bytes(), nil
}

// presentHeaders returns the signedHeaders list for a message: the fields
// it has (and From once more), so the signature names no field that is
// absent except the over-signed From.
func presentHeaders(h []field) []string {
	have := map[string]bool{}
	for _, f := range h {
		have[strings.ToLower(f.name)] = true
	}
	var keys []string
	for i, k := range signedHeaders {
		if have[strings.ToLower(k)] || (i == 1 && k == "From") {
			keys = append(keys, k)
		}
	}
	return keys
}

func canonDomain(d string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
}
