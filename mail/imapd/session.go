package imapd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/applayer/applayer/mail/msgmeta"
	"github.com/applayer/applayer/mail/store"
)

// opTimeout bounds each store operation of a command.
const opTimeout = 30 * time.Second

// Delim is the hierarchy delimiter of mailbox names.
const Delim = '/'

// session is one connection's IMAP session. go-imap calls it from one
// goroutine at a time (IDLE runs on its own goroutine, but the command
// loop waits for it), so it needs no lock.
type session struct {
	srv  *Server
	conn *imapserver.Conn
	raw  *conn // under conn (and TLS): corked during a FETCH; may be nil
	user string

	// The selected mailbox, "" when none.
	box         string
	readOnly    bool
	uidValidity uint32
	// msgs is this session's view: message i has sequence number i+1.
	msgs      []*entry
	version   uint64 // the hub's counter when msgs was last reconciled
	scanned   time.Time
	searchRes imap.UIDSet
}

// entry is a message as the session last showed it.
type entry struct {
	uid   imap.UID
	flags []imap.Flag
	date  time.Time
	size  int64
	gone  bool // expunged elsewhere, not yet announced
}

var (
	_ imapserver.SessionIMAP4rev2      = (*session)(nil)
	_ imapserver.SessionAppendLimit    = (*session)(nil)
	_ imapserver.SessionUnauthenticate = (*session)(nil)
)

func (s *session) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), opTimeout)
}

// Close implements imapserver.Session.
func (s *session) Close() error { return nil }

// Login implements imapserver.Session (LOGIN and AUTHENTICATE PLAIN).
func (s *session) Login(username, password string) error {
	ctx, cancel := s.ctx()
	defer cancel()
	u, err := s.srv.store.Authenticate(ctx, username, password)
	if err != nil {
		s.srv.m.logins.WithLabelValues("fail").Inc()
		if errors.Is(err, store.ErrNoUser) || errors.Is(err, store.ErrBadPassword) || errors.Is(err, store.ErrBadAddress) {
			time.Sleep(s.srv.cfg.AuthFailDelay)
			return imapserver.ErrAuthFailed
		}
		return fmt.Errorf("imapd: login: %w", err)
	}
	s.srv.m.logins.WithLabelValues("ok").Inc()
	s.user = u.Address
	s.srv.publish(s.conn, "LOGIN "+u.Address+": OK", 0)
	return nil
}

// Unauthenticate implements imapserver.SessionUnauthenticate.
func (s *session) Unauthenticate() error {
	s.Unselect()
	s.user = ""
	return nil
}

// AppendLimit implements imapserver.SessionAppendLimit.
func (s *session) AppendLimit() uint32 { return uint32(min(s.srv.cfg.MaxMessageBytes, 1<<32-1)) }

// canon returns the store's name of a mailbox: INBOX in any case is INBOX.
func canon(name string) string {
	name = strings.TrimSuffix(name, string(Delim))
	if strings.EqualFold(name, "INBOX") {
		return "INBOX"
	}
	return name
}

// imapErr maps store errors to IMAP responses.
func imapErr(err error, what string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNoMailbox):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent, Text: "No such mailbox: " + what}
	case errors.Is(err, store.ErrMailboxExists):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAlreadyExists, Text: "Mailbox exists: " + what}
	case errors.Is(err, store.ErrInbox):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "INBOX cannot be deleted or renamed"}
	case errors.Is(err, store.ErrQuota):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeOverQuota, Text: "Quota exceeded"}
	case errors.Is(err, store.ErrNoMessage):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent, Text: "No such message"}
	}
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeServerBug, Text: "Store error"}
}

// sysFlags are the system flags, in their canonical spelling.
var sysFlags = map[string]imap.Flag{}

func init() {
	for _, f := range []imap.Flag{imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagDraft} {
		sysFlags[strings.ToLower(string(f))] = f
	}
}

// canonFlag spells system flags canonically; keywords stay as given.
func canonFlag(f imap.Flag) imap.Flag {
	if c, ok := sysFlags[strings.ToLower(string(f))]; ok {
		return c
	}
	return f
}

func toIMAPFlags(fs []string) []imap.Flag {
	out := make([]imap.Flag, 0, len(fs))
	for _, f := range fs {
		out = append(out, canonFlag(imap.Flag(f)))
	}
	return out
}

func toStoreFlags(fs []imap.Flag) []string {
	out := make([]string, 0, len(fs))
	for _, f := range fs {
		if f == "\\Recent" || f == imap.FlagWildcard {
			continue
		}
		out = append(out, string(canonFlag(f)))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func hasFlag(fs []imap.Flag, f imap.Flag) bool {
	for _, g := range fs {
		if strings.EqualFold(string(g), string(f)) {
			return true
		}
	}
	return false
}

// Select implements imapserver.Session (SELECT and EXAMINE).
func (s *session) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	s.Unselect()
	name = canon(name)
	ctx, cancel := s.ctx()
	defer cancel()
	version := s.srv.hub.Version(s.user, name)
	mb, err := s.srv.store.Mailbox(ctx, s.user, name)
	if err != nil {
		return nil, imapErr(err, name)
	}
	msgs, err := s.srv.store.Messages(ctx, s.user, name)
	if err != nil {
		return nil, imapErr(err, name)
	}
	s.box, s.readOnly, s.uidValidity, s.version, s.scanned = name, options.ReadOnly, mb.UIDValidity, version, s.srv.now()
	s.msgs = s.msgs[:0]
	uidNext := imap.UID(mb.UIDNext)
	var firstUnseen uint32
	for i, m := range msgs {
		e := &entry{uid: imap.UID(m.UID), flags: toIMAPFlags(m.Flags), date: m.InternalDate, size: m.Size}
		s.msgs = append(s.msgs, e)
		if firstUnseen == 0 && !hasFlag(e.flags, imap.FlagSeen) {
			firstUnseen = uint32(i + 1)
		}
		if e.uid >= uidNext {
			uidNext = e.uid + 1
		}
	}
	flags := []imap.Flag{imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagDraft}
	perm := append(slices.Clone(flags), imap.FlagWildcard)
	if s.readOnly {
		perm = nil
	}
	return &imap.SelectData{
		Flags:             flags,
		PermanentFlags:    perm,
		NumMessages:       uint32(len(s.msgs)),
		FirstUnseenSeqNum: firstUnseen,
		UIDNext:           uidNext,
		UIDValidity:       mb.UIDValidity,
	}, nil
}

// Unselect implements imapserver.Session (CLOSE's expunge is done by
// go-imap through Expunge first).
func (s *session) Unselect() error {
	s.box, s.msgs, s.searchRes = "", nil, nil
	return nil
}

// Create implements imapserver.Session.
func (s *session) Create(name string, options *imap.CreateOptions) error {
	name = canon(name)
	use := store.UseNone
	if options != nil && len(options.SpecialUse) > 0 {
		switch a := options.SpecialUse[0]; a {
		case imap.MailboxAttrSent, imap.MailboxAttrDrafts, imap.MailboxAttrTrash, imap.MailboxAttrJunk, imap.MailboxAttrArchive, imap.MailboxAttrAll, imap.MailboxAttrFlagged:
			use = string(a)
		default:
			return &imap.Error{Type: imap.StatusResponseTypeNo, Code: "USEATTR", Text: "Unsupported special-use attribute"}
		}
	}
	ctx, cancel := s.ctx()
	defer cancel()
	// Superiors first (RFC 3501 6.3.3), when missing.
	for i, r := range name {
		if r == Delim && i > 0 {
			if _, err := s.srv.store.CreateMailbox(ctx, s.user, name[:i], store.UseNone); err != nil && !errors.Is(err, store.ErrMailboxExists) {
				return imapErr(err, name[:i])
			}
		}
	}
	_, err := s.srv.store.CreateMailbox(ctx, s.user, name, use)
	return imapErr(err, name)
}

// Delete implements imapserver.Session.
func (s *session) Delete(name string) error {
	name = canon(name)
	ctx, cancel := s.ctx()
	defer cancel()
	err := s.srv.store.DeleteMailbox(ctx, s.user, name)
	if err == nil {
		s.srv.envs.forgetBox(s.user, name, false)
	}
	return imapErr(err, name)
}

// Rename implements imapserver.Session.
func (s *session) Rename(from, to string, _ *imap.RenameOptions) error {
	ctx, cancel := s.ctx()
	defer cancel()
	err := s.srv.store.RenameMailbox(ctx, s.user, canon(from), canon(to))
	if err == nil {
		s.srv.envs.forgetBox(s.user, canon(from), true)
	}
	return imapErr(err, from)
}

// Subscribe implements imapserver.Session.
func (s *session) Subscribe(name string) error { return s.subscribe(name, true) }

// Unsubscribe implements imapserver.Session.
func (s *session) Unsubscribe(name string) error { return s.subscribe(name, false) }

func (s *session) subscribe(name string, on bool) error {
	ctx, cancel := s.ctx()
	defer cancel()
	return imapErr(s.srv.store.Subscribe(ctx, s.user, canon(name), on), name)
}

// Namespace implements imapserver.SessionNamespace: one personal namespace.
func (s *session) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Prefix: "", Delim: Delim}}}, nil
}

// List implements imapserver.Session (LIST, LSUB, LIST-EXTENDED,
// LIST-STATUS, SPECIAL-USE).
func (s *session) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	if len(patterns) == 0 { // LIST "" "": the delimiter
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: Delim})
	}
	ctx, cancel := s.ctx()
	defer cancel()
	boxes, err := s.srv.store.Mailboxes(ctx, s.user)
	if err != nil {
		return imapErr(err, "")
	}
	subs, err := s.srv.store.Subscriptions(ctx, s.user)
	if err != nil {
		return imapErr(err, "")
	}
	subscribed := map[string]bool{}
	for _, n := range subs {
		subscribed[n] = true
	}
	exists := map[string]bool{}
	for _, b := range boxes {
		exists[b.Name] = true
	}
	hasChildren := func(name string) bool {
		for _, b := range boxes {
			if strings.HasPrefix(b.Name, name+string(Delim)) {
				return true
			}
		}
		return false
	}
	match := func(name string) bool {
		for _, p := range patterns {
			if imapserver.MatchList(name, Delim, ref, p) {
				return true
			}
		}
		return false
	}
	if options.SelectSubscribed {
		// Subscribed names, existing or not (\NonExistent).
		for _, n := range subs {
			if !match(n) {
				continue
			}
			d := &imap.ListData{Mailbox: n, Delim: Delim, Attrs: []imap.MailboxAttr{imap.MailboxAttrSubscribed}}
			if !exists[n] {
				d.Attrs = append(d.Attrs, imap.MailboxAttrNonExistent)
			} else if err := s.decorate(ctx, d, boxes, options, hasChildren(n)); err != nil {
				return err
			}
			if err := w.WriteList(d); err != nil {
				return err
			}
		}
		return nil
	}
	for _, b := range boxes {
		if !match(b.Name) {
			continue
		}
		if options.SelectSpecialUse && (b.SpecialUse == "" || b.SpecialUse == store.UseInbox) {
			continue
		}
		d := &imap.ListData{Mailbox: b.Name, Delim: Delim}
		if subscribed[b.Name] && (options.ReturnSubscribed) {
			d.Attrs = append(d.Attrs, imap.MailboxAttrSubscribed)
		}
		if err := s.decorate(ctx, d, boxes, options, hasChildren(b.Name)); err != nil {
			return err
		}
		if err := w.WriteList(d); err != nil {
			return err
		}
	}
	return nil
}

// decorate adds the child, special-use and status data of a LIST line.
func (s *session) decorate(ctx context.Context, d *imap.ListData, boxes []store.Mailbox, options *imap.ListOptions, children bool) error {
	if children {
		d.Attrs = append(d.Attrs, imap.MailboxAttrHasChildren)
	} else {
		d.Attrs = append(d.Attrs, imap.MailboxAttrHasNoChildren)
	}
	for _, b := range boxes {
		if b.Name == d.Mailbox && b.SpecialUse != "" && b.SpecialUse != store.UseInbox {
			d.Attrs = append(d.Attrs, imap.MailboxAttr(b.SpecialUse))
		}
	}
	if options.ReturnStatus != nil {
		st, err := s.status(ctx, d.Mailbox, options.ReturnStatus)
		if err != nil {
			return err
		}
		d.Status = st
	}
	return nil
}

// Status implements imapserver.Session.
func (s *session) Status(name string, options *imap.StatusOptions) (*imap.StatusData, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	return s.status(ctx, canon(name), options)
}

func (s *session) status(ctx context.Context, name string, options *imap.StatusOptions) (*imap.StatusData, error) {
	mb, err := s.srv.store.Mailbox(ctx, s.user, name)
	if err != nil {
		return nil, imapErr(err, name)
	}
	d := &imap.StatusData{Mailbox: name, UIDNext: imap.UID(mb.UIDNext), UIDValidity: mb.UIDValidity}
	n := uint32(mb.Messages)
	d.NumMessages = &n
	if options.NumUnseen || options.NumDeleted || options.Size || options.NumRecent {
		msgs, err := s.srv.store.Messages(ctx, s.user, name)
		if err != nil {
			return nil, imapErr(err, name)
		}
		var unseen, deleted, recent uint32
		var size int64
		for _, m := range msgs {
			fs := toIMAPFlags(m.Flags)
			if !hasFlag(fs, imap.FlagSeen) {
				unseen++
			}
			if hasFlag(fs, imap.FlagDeleted) {
				deleted++
			}
			size += m.Size
		}
		n = uint32(len(msgs))
		if options.NumUnseen {
			d.NumUnseen = &unseen
		}
		if options.NumDeleted {
			d.NumDeleted = &deleted
		}
		if options.Size {
			d.Size = &size
		}
		if options.NumRecent {
			d.NumRecent = &recent
		}
	}
	if !options.NumMessages {
		d.NumMessages = nil
	}
	if options.AppendLimit {
		l := s.AppendLimit()
		d.AppendLimit = &l
	}
	return d, nil
}

// Append implements imapserver.Session; the quota is the store's.
func (s *session) Append(name string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	name = canon(name)
	body, err := io.ReadAll(io.LimitReader(r, s.srv.cfg.MaxMessageBytes+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > s.srv.cfg.MaxMessageBytes {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTooBig, Text: "Message too big"}
	}
	date := options.Time
	if date.IsZero() {
		date = s.srv.now()
	}
	ctx, cancel := s.ctx()
	defer cancel()
	mb, err := s.srv.store.Mailbox(ctx, s.user, name)
	if errors.Is(err, store.ErrNoMailbox) {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "No such mailbox"}
	} else if err != nil {
		return nil, imapErr(err, name)
	}
	m, err := s.srv.store.Append(ctx, s.user, name, body, toStoreFlags(options.Flags), date)
	if err != nil {
		return nil, imapErr(err, name)
	}
	s.srv.m.appends.Inc()
	return &imap.AppendData{UID: imap.UID(m.UID), UIDValidity: mb.UIDValidity}, nil
}

// Poll implements imapserver.Session: it reconciles the session's view
// with the store when the hub says the mailbox changed (or Rescan has
// passed), announcing new messages (EXISTS), flag changes (FETCH) and,
// when allowed, expunges.
func (s *session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	if s.box == "" {
		return nil
	}
	v := s.srv.hub.Version(s.user, s.box)
	if v == s.version && s.srv.now().Sub(s.scanned) < s.srv.cfg.Rescan {
		return nil
	}
	ctx, cancel := s.ctx()
	defer cancel()
	msgs, err := s.srv.store.Messages(ctx, s.user, s.box)
	if errors.Is(err, store.ErrNoMailbox) {
		return w.WriteMailboxFlags(nil) // deleted under us; the client learns on its next command
	} else if err != nil {
		return imapErr(err, s.box)
	}
	s.scanned = s.srv.now()
	byUID := make(map[imap.UID]*store.Message, len(msgs))
	for i := range msgs {
		byUID[imap.UID(msgs[i].UID)] = &msgs[i]
	}
	pending := false
	// Expunges, from the highest sequence number down so each stays valid.
	for i := len(s.msgs) - 1; i >= 0; i-- {
		e := s.msgs[i]
		if byUID[e.uid] != nil {
			continue
		}
		if !allowExpunge {
			e.gone, pending = true, true
			continue
		}
		if err := w.WriteExpunge(uint32(i + 1)); err != nil {
			return err
		}
		s.msgs = slices.Delete(s.msgs, i, i+1)
	}
	// Flag changes.
	var last imap.UID
	for i, e := range s.msgs {
		last = max(last, e.uid)
		m := byUID[e.uid]
		if m == nil {
			continue
		}
		if fs := toIMAPFlags(m.Flags); !slices.Equal(fs, e.flags) {
			e.flags = fs
			if err := w.WriteMessageFlags(uint32(i+1), e.uid, fs); err != nil {
				return err
			}
		}
	}
	// New messages: UIDs above the last one shown.
	n := len(s.msgs)
	for _, m := range msgs {
		if imap.UID(m.UID) > last {
			s.msgs = append(s.msgs, &entry{uid: imap.UID(m.UID), flags: toIMAPFlags(m.Flags), date: m.InternalDate, size: m.Size})
		}
	}
	if len(s.msgs) != n {
		if err := w.WriteNumMessages(uint32(len(s.msgs))); err != nil {
			return err
		}
	}
	if pending {
		s.version = v - 1 // look again at the next command that may expunge
	} else {
		s.version = v
	}
	return nil
}

// Idle implements imapserver.Session: it pushes changes as the hub
// announces them (and every Rescan) until the client sends DONE.
func (s *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	if s.box == "" {
		<-stop
		return nil
	}
	ch, cancel := s.srv.hub.Watch(s.user, s.box)
	defer cancel()
	t := time.NewTicker(s.srv.cfg.Rescan)
	defer t.Stop()
	for {
		if err := s.Poll(w, true); err != nil {
			return err
		}
		select {
		case <-stop:
			return nil
		case <-ch:
		case <-t.C:
		}
	}
}

// resolve turns a sequence or UID set (with * and $) into the entries it
// names, in sequence order, with their sequence numbers.
func (s *session) resolve(numSet imap.NumSet) (seqs []uint32, es []*entry) {
	if imap.IsSearchRes(numSet) {
		numSet = s.searchRes
	}
	// Each range as [lo, hi] of the number it is about (sequence number
	// or UID), with * (0) the largest in the mailbox.
	var ranges [][2]uint32
	byUID := false
	switch set := numSet.(type) {
	case imap.SeqSet:
		for _, r := range set {
			ranges = append(ranges, [2]uint32{r.Start, r.Stop})
		}
	case imap.UIDSet:
		byUID = true
		for _, r := range set {
			ranges = append(ranges, [2]uint32{uint32(r.Start), uint32(r.Stop)})
		}
	}
	var largest uint32
	if n := len(s.msgs); n > 0 {
		largest = uint32(n)
		if byUID {
			largest = uint32(s.msgs[n-1].uid)
		}
	}
	for i, e := range s.msgs {
		num := uint32(i + 1)
		if byUID {
			num = uint32(e.uid)
		}
		for _, r := range ranges {
			lo, hi := r[0], r[1]
			if lo == 0 {
				lo = largest
			}
			if hi == 0 {
				hi = largest
			}
			if lo > hi {
				lo, hi = hi, lo
			}
			if num >= lo && num <= hi {
				seqs, es = append(seqs, uint32(i+1)), append(es, e)
				break
			}
		}
	}
	return seqs, es
}

// Fetch implements imapserver.Session. Bodies are read from the store
// only for items that need them, envelopes from the store's stored form
// (parsed when the message was stored), both in batches; the responses
// go out corked (see conn.Write).
func (s *session) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	seqs, es := s.resolve(numSet)
	markSeen := false
	for _, bs := range options.BodySection {
		markSeen = markSeen || !bs.Peek
	}
	markSeen = markSeen && !s.readOnly
	need := need{
		body:     options.BodyStructure != nil || len(options.BodySection) > 0 || len(options.BinarySection) > 0 || len(options.BinarySectionSize) > 0,
		envelope: options.Envelope,
	}
	if s.raw != nil && len(es) > 1 {
		s.raw.cork()
		defer s.raw.uncork()
	}
	ctx, cancel := s.ctx()
	defer cancel()
	return s.withData(ctx, es, need, func(i int, e *entry, d data) error {
		writeFlags := options.Flags
		if markSeen && !hasFlag(e.flags, imap.FlagSeen) {
			nf := append(slices.Clone(e.flags), imap.FlagSeen)
			if err := s.srv.store.SetFlags(ctx, s.user, s.box, uint32(e.uid), toStoreFlags(nf)); err != nil && !errors.Is(err, store.ErrNoMessage) {
				return imapErr(err, s.box)
			}
			e.flags = toIMAPFlags(toStoreFlags(nf))
			writeFlags = true
		}
		if len(options.BodySection) > 0 && s.srv.trace != nil {
			s.srv.publish(s.conn, fmt.Sprintf("FETCH %s UID %d BODY[]: %d bytes", s.box, e.uid, len(d.body)), len(d.body))
		}
		return writeMessage(w.CreateMessage(seqs[i]), e, d, options, writeFlags)
	})
}

// Batch bounds of withData.
const (
	batchMessages = 256
	batchBytes    = 8 << 20
)

// need says what withData reads from the store.
type need struct{ body, envelope bool }

// data is what withData read for a message.
type data struct {
	body     []byte
	envelope *imap.Envelope
}

// withBodies calls f for each entry still present, in order, with its
// body.
func (s *session) withBodies(ctx context.Context, es []*entry, f func(i int, e *entry, body []byte) error) error {
	return s.withData(ctx, es, need{body: true}, func(i int, e *entry, d data) error { return f(i, e, d.body) })
}

// withData calls f for each entry still present, in order, with what
// need asks for, read from the store in batches (one round trip each
// per batchMessages, or batchBytes of bodies). Bodies are valid only
// during f.
func (s *session) withData(ctx context.Context, es []*entry, need need, f func(i int, e *entry, d data) error) error {
	if !need.body && !need.envelope {
		for i, e := range es {
			if !e.gone {
				if err := f(i, e, data{}); err != nil {
					return err
				}
			}
		}
		return nil
	}
	var envs []*imap.Envelope
	var buf *store.Buffer
	if need.body {
		// Batch after batch in one buffer (f keeps no body).
		buf = s.srv.bufs.Get().(*store.Buffer)
		defer s.srv.bufs.Put(buf)
	}
	for start := 0; start < len(es); {
		end, size := start, int64(0)
		var uids []uint32
		for end < len(es) && len(uids) < batchMessages && (!need.body || size < batchBytes || len(uids) == 0) {
			if !es[end].gone {
				uids = append(uids, uint32(es[end].uid))
				size += es[end].size
			}
			end++
		}
		var bodies map[uint32][]byte
		var err error
		if need.body {
			if bodies, err = s.srv.store.Bodies(ctx, s.user, s.box, uids, buf); err != nil {
				return imapErr(err, s.box)
			}
		}
		if need.envelope {
			envs = slices.Grow(envs[:0], len(uids))[:len(uids)]
			if err := s.envelopes(ctx, uids, envs); err != nil {
				return err
			}
		}
		j := 0 // es[i]'s place in uids
		for i := start; i < end; i++ {
			e := es[i]
			if e.gone {
				continue
			}
			var d data
			var ok bool
			if need.body {
				if d.body, ok = bodies[uint32(e.uid)]; !ok {
					e.gone = true // expunged since: nothing to show
					j++
					continue
				}
			}
			if need.envelope {
				if d.envelope = envs[j]; d.envelope == nil {
					e.gone = true
					j++
					continue
				}
			}
			j++
			if err := f(i, e, d); err != nil {
				return err
			}
		}
		start = end
	}
	return nil
}

// envelopes puts the decoded envelope of uids[i] in envs[i], from the
// server's cache or else the store (then cached); nil for a message no
// longer in the store. A message expunged by another session but still
// in the cache keeps its envelope until this session learns of the
// expunge (RFC 2180 section 4.1.1, as Dovecot does).
func (s *session) envelopes(ctx context.Context, uids []uint32, envs []*imap.Envelope) error {
	key := s.cacheKey()
	if s.srv.envs.get(key, uids, envs) == len(uids) {
		return nil
	}
	var missing []uint32
	for i, u := range uids {
		if envs[i] == nil {
			missing = append(missing, u)
		}
	}
	stored, err := s.srv.store.Envelopes(ctx, s.user, s.box, missing)
	if err != nil {
		return imapErr(err, s.box)
	}
	fresh := make([]*imap.Envelope, 0, len(missing))
	for i, u := range uids {
		if envs[i] != nil {
			continue
		}
		b, ok := stored[u]
		if !ok {
			fresh = append(fresh, nil)
			continue
		}
		env, err := msgmeta.DecodeEnvelope(b)
		if err != nil {
			s.srv.log.Warn("imapd: stored envelope", "user", s.user, "mailbox", s.box, "uid", u, "err", err)
			envs[i] = &imap.Envelope{}
			fresh = append(fresh, nil) // not cached: the next read logs again
			continue
		}
		envs[i] = env
		fresh = append(fresh, env)
	}
	s.srv.envs.put(key, missing, fresh)
	return nil
}

// cacheKey names the selected mailbox in the server's envelope cache.
func (s *session) cacheKey() boxKey { return boxKey{s.user, s.box, s.uidValidity} }

func partial(b []byte, p *imap.SectionPartial) []byte {
	if p == nil {
		return b
	}
	if p.Offset >= int64(len(b)) {
		return nil
	}
	return b[p.Offset:min(int64(len(b)), p.Offset+p.Size)]
}

// section returns a body section: the stored bytes themselves for the
// whole message, its header and its text (so sizes agree with
// RFC822.SIZE), go-imap's extraction for parts and header fields.
func section(body []byte, bs *imap.FetchItemBodySection) []byte {
	if len(bs.Part) == 0 && len(bs.HeaderFields) == 0 && len(bs.HeaderFieldsNot) == 0 {
		switch bs.Specifier {
		case imap.PartSpecifierNone:
			return partial(body, bs.Partial)
		case imap.PartSpecifierHeader:
			return partial(body[:msgmeta.HeaderLen(body)], bs.Partial)
		case imap.PartSpecifierText:
			return partial(body[msgmeta.HeaderLen(body):], bs.Partial)
		}
	}
	return imapserver.ExtractBodySection(bytes.NewReader(body), bs)
}

func writeMessage(w *imapserver.FetchResponseWriter, e *entry, d data, options *imap.FetchOptions, flags bool) error {
	body := d.body
	w.WriteUID(e.uid)
	if flags {
		w.WriteFlags(e.flags)
	}
	if options.InternalDate {
		w.WriteInternalDate(e.date)
	}
	if options.RFC822Size {
		w.WriteRFC822Size(e.size)
	}
	if options.Envelope {
		w.WriteEnvelope(d.envelope)
	}
	if options.BodyStructure != nil {
		w.WriteBodyStructure(imapserver.ExtractBodyStructure(bytes.NewReader(body)))
	}
	for _, bs := range options.BodySection {
		buf := section(body, bs)
		if err := writeAll(w.WriteBodySection(bs, int64(len(buf))), buf); err != nil {
			return err
		}
	}
	for _, bs := range options.BinarySection {
		buf := imapserver.ExtractBinarySection(bytes.NewReader(body), bs)
		if err := writeAll(w.WriteBinarySection(bs, int64(len(buf))), buf); err != nil {
			return err
		}
	}
	for _, bss := range options.BinarySectionSize {
		w.WriteBinarySectionSize(bss, imapserver.ExtractBinarySectionSize(bytes.NewReader(body), bss))
	}
	return w.Close()
}

func writeAll(wc io.WriteCloser, b []byte) error {
	_, err := wc.Write(b)
	return errors.Join(err, wc.Close())
}
