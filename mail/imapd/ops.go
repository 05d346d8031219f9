package imapd

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"github.com/applayer/applayer/mail/msgmeta"
	"github.com/applayer/applayer/mail/store"
)

func readOnlyErr() error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "Mailbox is read-only (EXAMINE)"}
}

// Store implements imapserver.Session (STORE, UID STORE).
func (s *session) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) error {
	if s.readOnly {
		return readOnlyErr()
	}
	seqs, es := s.resolve(numSet)
	ctx, cancel := s.ctx()
	defer cancel()
	for i, e := range es {
		if e.gone {
			continue
		}
		var nf []imap.Flag
		switch flags.Op {
		case imap.StoreFlagsSet:
			nf = flags.Flags
		case imap.StoreFlagsAdd:
			nf = append(slices.Clone(e.flags), flags.Flags...)
		case imap.StoreFlagsDel:
			for _, f := range e.flags {
				if !hasFlag(flags.Flags, f) {
					nf = append(nf, f)
				}
			}
		}
		sf := toStoreFlags(nf)
		err := s.srv.store.SetFlags(ctx, s.user, s.box, uint32(e.uid), sf)
		if errors.Is(err, store.ErrNoMessage) {
			e.gone = true
			continue
		} else if err != nil {
			return imapErr(err, s.box)
		}
		e.flags = toIMAPFlags(sf)
		if !flags.Silent {
			rw := w.CreateMessage(seqs[i])
			rw.WriteUID(e.uid)
			rw.WriteFlags(e.flags)
			if err := rw.Close(); err != nil {
				return err
			}
		}
	}
	return nil
}

// Expunge implements imapserver.Session (EXPUNGE, UID EXPUNGE, CLOSE).
func (s *session) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	if s.readOnly {
		return nil
	}
	ctx, cancel := s.ctx()
	defer cancel()
	for i := len(s.msgs) - 1; i >= 0; i-- {
		e := s.msgs[i]
		if !hasFlag(e.flags, imap.FlagDeleted) || (uids != nil && !uids.Contains(e.uid)) {
			continue
		}
		if err := s.srv.store.Delete(ctx, s.user, s.box, uint32(e.uid)); err != nil && !errors.Is(err, store.ErrNoMessage) {
			return imapErr(err, s.box)
		}
		s.srv.envs.forget(s.cacheKey(), uint32(e.uid))
		s.msgs = slices.Delete(s.msgs, i, i+1)
		if w != nil {
			if err := w.WriteExpunge(uint32(i + 1)); err != nil {
				return err
			}
		}
	}
	return nil
}

// copyTo copies messages to dest; it returns the source and new UIDs.
func (s *session) copyTo(es []*entry, dest string) (*imap.CopyData, error) {
	dest = canon(dest)
	ctx, cancel := s.ctx()
	defer cancel()
	mb, err := s.srv.store.Mailbox(ctx, s.user, dest)
	if errors.Is(err, store.ErrNoMailbox) {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "No such mailbox"}
	} else if err != nil {
		return nil, imapErr(err, dest)
	}
	data := &imap.CopyData{UIDValidity: mb.UIDValidity}
	for _, e := range es {
		if e.gone {
			continue
		}
		body, err := s.srv.store.Body(ctx, s.user, s.box, uint32(e.uid))
		if errors.Is(err, store.ErrNoMessage) {
			continue
		} else if err != nil {
			return nil, imapErr(err, s.box)
		}
		m, err := s.srv.store.Append(ctx, s.user, dest, body, toStoreFlags(e.flags), e.date)
		if err != nil {
			return nil, imapErr(err, dest)
		}
		data.SourceUIDs.AddNum(e.uid)
		data.DestUIDs.AddNum(imap.UID(m.UID))
	}
	return data, nil
}

// Copy implements imapserver.Session (COPY, UID COPY).
func (s *session) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	_, es := s.resolve(numSet)
	return s.copyTo(es, dest)
}

// Move implements imapserver.SessionMove (MOVE, UID MOVE): copy, then
// remove from this mailbox.
func (s *session) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	if s.readOnly {
		return readOnlyErr()
	}
	if canon(dest) == s.box {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "Source and destination are the same mailbox"}
	}
	_, es := s.resolve(numSet)
	data, err := s.copyTo(es, dest)
	if err != nil {
		return err
	}
	if err := w.WriteCopyData(data); err != nil {
		return err
	}
	ctx, cancel := s.ctx()
	defer cancel()
	for i := len(s.msgs) - 1; i >= 0; i-- {
		e := s.msgs[i]
		if !data.SourceUIDs.Contains(e.uid) {
			continue
		}
		if err := s.srv.store.Delete(ctx, s.user, s.box, uint32(e.uid)); err != nil && !errors.Is(err, store.ErrNoMessage) {
			return imapErr(err, s.box)
		}
		s.srv.envs.forget(s.cacheKey(), uint32(e.uid))
		s.msgs = slices.Delete(s.msgs, i, i+1)
		if err := w.WriteExpunge(uint32(i + 1)); err != nil {
			return err
		}
	}
	return nil
}

// Search implements imapserver.Session (SEARCH, UID SEARCH, ESEARCH,
// SEARCHRES). Bodies are read only when a criterion needs them.
func (s *session) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	var (
		data   imap.SearchData
		seqSet imap.SeqSet
		uidSet imap.UIDSet
	)
	match := func(i int, e *entry, body []byte) error {
		seq := uint32(i + 1)
		m := &candidate{s: s, e: e, seq: seq, body: body}
		if !m.match(criteria) {
			return nil
		}
		uidSet.AddNum(e.uid)
		num := seq
		if kind == imapserver.NumKindUID {
			num = uint32(e.uid)
		} else {
			seqSet.AddNum(seq)
		}
		if data.Min == 0 || num < data.Min {
			data.Min = num
		}
		data.Max = max(data.Max, num)
		data.Count++
		return nil
	}
	if needsBody(criteria) {
		if err := s.withBodies(ctx, s.msgs, match); err != nil {
			return nil, err
		}
	} else {
		for i, e := range s.msgs {
			if !e.gone {
				match(i, e, nil)
			}
		}
	}
	if kind == imapserver.NumKindUID {
		data.All = uidSet
	} else {
		data.All = seqSet
	}
	if options.ReturnSave {
		s.searchRes = uidSet
	}
	return &data, nil
}

func needsBody(c *imap.SearchCriteria) bool {
	if len(c.Header) > 0 || len(c.Body) > 0 || len(c.Text) > 0 || !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
		return true
	}
	for i := range c.Not {
		if needsBody(&c.Not[i]) {
			return true
		}
	}
	for _, or := range c.Or {
		if needsBody(&or[0]) || needsBody(&or[1]) {
			return true
		}
	}
	return false
}

// candidate is a message being matched against search criteria.
type candidate struct {
	s      *session
	e      *entry
	seq    uint32
	body   []byte
	header *mail.Header
}

func (m *candidate) hdr() *mail.Header {
	if m.header == nil {
		h, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(m.body[:msgmeta.HeaderLen(m.body)])))
		m.header = &mail.Header{Header: gomessage.Header{Header: h}}
	}
	return m.header
}

// day drops the time of day: SEARCH compares dates only (RFC 3501).
func day(t time.Time) time.Time { return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC) }

func inDates(t, since, before time.Time) bool {
	t = day(t)
	return (since.IsZero() || !t.Before(since)) && (before.IsZero() || t.Before(before))
}

func (m *candidate) match(c *imap.SearchCriteria) bool {
	for _, set := range c.SeqNum {
		if imap.IsSearchRes(set) {
			if !m.s.searchRes.Contains(m.e.uid) {
				return false
			}
			continue
		}
		if _, es := m.s.resolve(set); !slices.Contains(es, m.e) {
			return false
		}
	}
	for _, set := range c.UID {
		if _, es := m.s.resolve(set); !slices.Contains(es, m.e) {
			return false
		}
	}
	if !inDates(m.e.date, c.Since, c.Before) {
		return false
	}
	for _, f := range c.Flag {
		if !hasFlag(m.e.flags, f) {
			return false
		}
	}
	for _, f := range c.NotFlag {
		if hasFlag(m.e.flags, f) {
			return false
		}
	}
	if (c.Larger != 0 && m.e.size <= c.Larger) || (c.Smaller != 0 && m.e.size >= c.Smaller) {
		return false
	}
	for _, hf := range c.Header {
		if !matchFields(m.hdr().FieldsByKey(hf.Key), hf.Value) {
			return false
		}
	}
	if !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
		t, err := m.hdr().Date()
		if err != nil || !inDates(t, c.SentSince, c.SentBefore) {
			return false
		}
	}
	for _, text := range c.Text {
		if !containsFold(m.body, text) {
			return false
		}
	}
	for _, text := range c.Body {
		if !matchBody(m.body, text) {
			return false
		}
	}
	for i := range c.Not {
		if m.match(&c.Not[i]) {
			return false
		}
	}
	for _, or := range c.Or {
		if !m.match(&or[0]) && !m.match(&or[1]) {
			return false
		}
	}
	return true
}

func matchFields(fields gomessage.HeaderFields, pattern string) bool {
	if pattern == "" {
		return fields.Len() > 0
	}
	for fields.Next() {
		v, err := fields.Text()
		if err != nil {
			v = fields.Value()
		}
		if containsFold([]byte(v), pattern) {
			return true
		}
	}
	return false
}

// containsFold reports whether b contains s, case-insensitively (ASCII
// without allocating; other text through lower-casing).
func containsFold(b []byte, s string) bool {
	if s == "" {
		return true
	}
	n := strings.ToLower(s)
	for i := 0; i < len(n); i++ {
		if n[i] >= 0x80 {
			return bytes.Contains(bytes.ToLower(b), []byte(n))
		}
	}
	lo, up := n[0], n[0]
	if lo >= 'a' && lo <= 'z' {
		up = lo - 'a' + 'A'
	}
	for i := 0; i+len(n) <= len(b); i++ {
		j := indexEither(b[i:len(b)-len(n)+1], lo, up)
		if j < 0 {
			return false
		}
		i += j
		if equalFoldASCII(b[i:i+len(n)], n) {
			return true
		}
	}
	return false
}

func indexEither(b []byte, x, y byte) int {
	i := bytes.IndexByte(b, x)
	if x == y {
		return i
	}
	if j := bytes.IndexByte(b, y); j >= 0 && (i < 0 || j < i) {
		return j
	}
	return i
}

// equalFoldASCII compares b with the lower-case ASCII string n.
func equalFoldASCII(b []byte, n string) bool {
	for i := 0; i < len(n); i++ {
		c := b[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != n[i] {
			return false
		}
	}
	return true
}

// matchBody searches the decoded text parts of a message (BODY): the
// raw text, then each text part decoded from its transfer encoding.
func matchBody(body []byte, pattern string) bool {
	if containsFold(body[msgmeta.HeaderLen(body):], pattern) {
		return true
	}
	e, err := gomessage.Read(bytes.NewReader(body))
	if e == nil {
		return false
	}
	_ = err
	return matchEntity(e, pattern, 0)
}

func matchEntity(e *gomessage.Entity, pattern string, depth int) bool {
	if depth > 10 {
		return false
	}
	if mr := e.MultipartReader(); mr != nil {
		for {
			p, err := mr.NextPart()
			if err != nil {
				return false
			}
			if matchEntity(p, pattern, depth+1) {
				return true
			}
		}
	}
	t, _, _ := e.Header.ContentType()
	if t != "" && !strings.HasPrefix(t, "text/") {
		return false
	}
	b, _ := io.ReadAll(io.LimitReader(e.Body, 32<<20))
	return containsFold(b, pattern)
}
