package webmail

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html/template"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/applayer/applayer/internal/trace"
	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/microcosm-cc/bluemonday"
)

var funcs = template.FuncMap{
	"date": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.Format("2 Jan 2006 15:04")
	},
	"size": func(n int64) string {
		switch {
		case n >= 1<<20:
			return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
		case n >= 1<<10:
			return fmt.Sprintf("%.0f kB", float64(n)/(1<<10))
		}
		return fmt.Sprintf("%d B", n)
	},
	"q":   url.QueryEscape,
	"add": func(a, b int) int { return a + b },
}

// sanitizer is the HTML policy for message bodies: bluemonday's UGC policy
// with every image source that is not inline data removed (remote images
// would tell the sender when and where the mail is read), and links
// opened with rel=noreferrer.
func sanitizer() *bluemonday.Policy {
	p := bluemonday.UGCPolicy()
	p.RequireNoReferrerOnLinks(true)
	p.AddTargetBlankToFullyQualifiedLinks(true)
	p.RewriteSrc(func(u *url.URL) {
		if u.Scheme != "data" {
			*u = url.URL{Scheme: "about", Opaque: "blank"}
		}
	})
	return p
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", s.loginPage)
	mux.HandleFunc("POST /login", s.login)
	mux.HandleFunc("POST /logout", s.auth(s.logout))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/box?name=INBOX", http.StatusSeeOther)
	})
	mux.HandleFunc("GET /box", s.auth(s.box))
	mux.HandleFunc("GET /msg", s.auth(s.message))
	mux.HandleFunc("GET /att", s.auth(s.attachment))
	mux.HandleFunc("GET /compose", s.auth(s.compose))
	mux.HandleFunc("POST /send", s.auth(s.sendForm))
	mux.HandleFunc("POST /move", s.auth(s.move))
	return securityHeaders(mux)
}

// securityHeaders: no script at all, no remote anything, no framing.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

type handler func(w http.ResponseWriter, r *http.Request, ss *session)

// auth requires a session, and on POST its CSRF token.
func (s *Server) auth(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ss := s.sessionOf(r)
		if ss == nil {
			http.Redirect(w, r, "/login", http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxUpload)
			if err := r.ParseMultipartForm(1 << 20); err != nil && !errors.Is(err, http.ErrNotMultipart) {
				http.Error(w, "form too large or malformed", http.StatusRequestEntityTooLarge)
				return
			}
			if !csrfOK(ss, r) {
				http.Error(w, "invalid CSRF token: reload the page", http.StatusForbidden)
				return
			}
		}
		h(w, r, ss)
	}
}

// page is what every template gets.
type page struct {
	Title   string
	User    string
	CSRF    string
	Folders []folder
	Box     string
	Error   string
	Notice  string
	Data    any
}

func (s *Server) render(w http.ResponseWriter, name string, p page, status int) {
	var buf bytes.Buffer
	if err := s.tmpl.ExecuteTemplate(&buf, name, p); err != nil {
		s.log.Error("webmail: template", "name", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

const loginCookie = "applayer_webmail_login"

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	s.m.requests.WithLabelValues("login").Inc()
	t := token()
	s.setCookie(w, loginCookie, t, 600)
	s.render(w, "login.html", page{Title: "Log in", CSRF: t}, http.StatusOK)
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	r.ParseForm()
	// Login CSRF: the form's token must match the cookie set with it.
	c, err := r.Cookie(loginCookie)
	if err != nil || c.Value == "" || r.PostFormValue("csrf") != c.Value {
		http.Error(w, "invalid login form: reload the page", http.StatusForbidden)
		return
	}
	ip := clientIP(r)
	fail := func(status int, msg string) {
		t := token()
		s.setCookie(w, loginCookie, t, 600)
		s.render(w, "login.html", page{Title: "Log in", CSRF: t, Error: msg}, status)
	}
	if s.limited(ip) {
		s.m.logins.WithLabelValues("limited").Inc()
		w.Header().Set("Retry-After", strconv.Itoa(int(s.cfg.LoginWindow.Seconds())))
		fail(http.StatusTooManyRequests, "Too many failed logins: wait a minute and try again.")
		return
	}
	user, pw := strings.TrimSpace(r.PostFormValue("user")), r.PostFormValue("password")
	ctx, cancel := context.WithTimeout(r.Context(), opTimeout)
	defer cancel()
	cl, err := s.dialIMAP(ctx, user, pw)
	if err != nil {
		s.failed(ip)
		s.m.logins.WithLabelValues("fail").Inc()
		s.log.Info("webmail: login failed", "user", user, "remote", ip, "err", err)
		fail(http.StatusUnauthorized, "Wrong address or password.")
		return
	}
	cl.Logout().Wait()
	cl.Close()
	s.m.logins.WithLabelValues("ok").Inc()
	s.setCookie(w, loginCookie, "", -1)
	s.newSession(w, user, pw)
	http.Redirect(w, r, "/box?name=INBOX", http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, ss *session) {
	s.endSession(w, r)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// withIMAP runs f on an IMAP session of the user, with the folder list.
func (s *Server) withIMAP(w http.ResponseWriter, r *http.Request, ss *session, f func(c *imapclient.Client, fs []folder) error) {
	ctx, cancel := context.WithTimeout(r.Context(), opTimeout)
	defer cancel()
	c, err := s.dialIMAP(ctx, ss.user, ss.password)
	if err != nil {
		s.log.Warn("webmail: imap", "user", ss.user, "err", err)
		http.Error(w, "the mail server is unavailable", http.StatusBadGateway)
		return
	}
	defer func() {
		c.Logout().Wait()
		c.Close()
	}()
	fs, err := folders(c)
	if err == nil {
		err = f(c, fs)
	}
	if err != nil {
		var ie *imap.Error
		if errors.As(err, &ie) || errors.Is(err, errNoMessage) {
			http.Error(w, "not found: "+err.Error(), http.StatusNotFound)
			return
		}
		s.log.Warn("webmail: imap", "user", ss.user, "err", err)
		http.Error(w, "the mail server failed", http.StatusBadGateway)
	}
}

func (s *Server) base(ss *session, fs []folder, box, title string) page {
	return page{Title: title, User: ss.user, CSRF: ss.csrf, Folders: fs, Box: box}
}

type boxData struct {
	Messages       []summary
	Query          string
	Page, Pages    int
	Total          int
	Prev, Next     int
	HasPrev, HasNx bool
}

func (s *Server) box(w http.ResponseWriter, r *http.Request, ss *session) {
	s.m.requests.WithLabelValues("box").Inc()
	name := r.FormValue("name")
	if name == "" {
		name = "INBOX"
	}
	pg, _ := strconv.Atoi(r.FormValue("page"))
	pg = max(pg, 0)
	q := strings.TrimSpace(r.FormValue("q"))
	s.withIMAP(w, r, ss, func(c *imapclient.Client, fs []folder) error {
		msgs, total, err := listPage(c, name, q, pg, s.cfg.PageSize)
		if err != nil {
			return err
		}
		pages := max(1, (total+s.cfg.PageSize-1)/s.cfg.PageSize)
		p := s.base(ss, fs, name, name)
		p.Notice = r.FormValue("notice")
		p.Data = boxData{Messages: msgs, Query: q, Page: pg, Pages: pages, Total: total, Prev: pg - 1, Next: pg + 1, HasPrev: pg > 0, HasNx: pg+1 < pages}
		s.render(w, "box.html", p, http.StatusOK)
		return nil
	})
}

type msgData struct {
	UID  imap.UID
	Msg  *parsed
	HTML template.HTML
	// Blocked counts remote images removed from the HTML.
	Blocked bool
}

var remoteImg = regexp.MustCompile(`(?i)<img[^>]+src\s*=\s*["']?(https?:)?//`)

func uidOf(r *http.Request) (imap.UID, bool) {
	n, err := strconv.ParseUint(r.FormValue("uid"), 10, 32)
	return imap.UID(n), err == nil && n > 0
}

func (s *Server) message(w http.ResponseWriter, r *http.Request, ss *session) {
	s.m.requests.WithLabelValues("message").Inc()
	box := r.FormValue("box")
	uid, ok := uidOf(r)
	if !ok {
		http.Error(w, "bad uid", http.StatusBadRequest)
		return
	}
	s.withIMAP(w, r, ss, func(c *imapclient.Client, fs []folder) error {
		raw, err := fetchRaw(c, box, uid, false) // reading marks it \Seen
		if err != nil {
			return err
		}
		m, err := parse(raw)
		if err != nil {
			return err
		}
		d := msgData{UID: uid, Msg: m}
		if m.HTML != "" {
			d.Blocked = remoteImg.MatchString(m.HTML)
			d.HTML = template.HTML(sanitizer().Sanitize(m.HTML))
		}
		p := s.base(ss, fs, box, m.Subject)
		p.Data = d
		if s.trace != nil {
			s.trace.Publish(trace.Event{From: r.RemoteAddr, To: s.cfg.Addr, Proto: "http/webmail", Summary: fmt.Sprintf("GET /msg %s UID %d for %s: %q from %s", box, uid, ss.user, m.Subject, m.From), Bytes: len(raw)})
		}
		s.render(w, "message.html", p, http.StatusOK)
		return nil
	})
}

func (s *Server) attachment(w http.ResponseWriter, r *http.Request, ss *session) {
	s.m.requests.WithLabelValues("attachment").Inc()
	box := r.FormValue("box")
	uid, ok := uidOf(r)
	i, err := strconv.Atoi(r.FormValue("i"))
	if !ok || err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	s.withIMAP(w, r, ss, func(c *imapclient.Client, fs []folder) error {
		raw, err := fetchRaw(c, box, uid, true)
		if err != nil {
			return err
		}
		m, err := parse(raw)
		if err != nil {
			return err
		}
		if i < 0 || i >= len(m.Attachments) {
			return errNoMessage
		}
		a := m.Attachments[i]
		// Always a download, never rendered in our origin.
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": a.Name}))
		w.Header().Set("Content-Length", strconv.Itoa(len(a.data)))
		w.Write(a.data)
		return nil
	})
}

type composeData struct {
	To, Cc, Subject, Body, InReplyTo, References string
	// Forward names the original attached to the new message.
	FwdBox string
	FwdUID imap.UID
}

func quote(m *parsed) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n\nOn %s, %s wrote:\n", m.Date.Format("2 Jan 2006 15:04"), m.From)
	for _, l := range strings.Split(strings.TrimRight(strings.ReplaceAll(m.Text, "\r\n", "\n"), "\n"), "\n") {
		b.WriteString("> " + l + "\n")
	}
	return b.String()
}

func (s *Server) compose(w http.ResponseWriter, r *http.Request, ss *session) {
	s.m.requests.WithLabelValues("compose").Inc()
	mode, box := r.FormValue("mode"), r.FormValue("box")
	uid, hasUID := uidOf(r)
	s.withIMAP(w, r, ss, func(c *imapclient.Client, fs []folder) error {
		d := composeData{To: r.FormValue("to")}
		if hasUID && (mode == "reply" || mode == "forward") {
			raw, err := fetchRaw(c, box, uid, true)
			if err != nil {
				return err
			}
			m, err := parse(raw)
			if err != nil {
				return err
			}
			if mode == "reply" {
				d.To, d.Subject, d.Body = m.From, prefixed("Re: ", m.Subject), quote(m)
				d.InReplyTo, d.References = m.MessageID, m.References
			} else {
				d.Subject, d.FwdBox, d.FwdUID = prefixed("Fwd: ", m.Subject), box, uid
				d.Body = "\n\n-------- Forwarded message --------\nFrom: " + m.From + "\nSubject: " + m.Subject + "\n\n" + m.Text
			}
		}
		p := s.base(ss, fs, box, "Compose")
		p.Data = d
		s.render(w, "compose.html", p, http.StatusOK)
		return nil
	})
}

func prefixed(p, subject string) string {
	if strings.HasPrefix(strings.ToLower(subject), strings.ToLower(p)) {
		return subject
	}
	return p + subject
}

func (s *Server) sendForm(w http.ResponseWriter, r *http.Request, ss *session) {
	s.m.requests.WithLabelValues("send").Inc()
	o := &outgoing{From: ss.user, To: r.FormValue("to"), Cc: r.FormValue("cc"), Subject: r.FormValue("subject"), Body: r.FormValue("body"), InReplyTo: r.FormValue("in_reply_to"), References: r.FormValue("references")}
	if r.MultipartForm != nil {
		for _, fh := range r.MultipartForm.File["attachments"] {
			f, err := fh.Open()
			if err != nil {
				continue
			}
			b, _ := io.ReadAll(io.LimitReader(f, s.cfg.MaxUpload))
			f.Close()
			t := fh.Header.Get("Content-Type")
			if t == "" {
				t = "application/octet-stream"
			}
			o.Attachments = append(o.Attachments, attachment{Name: fh.Filename, Type: t, data: b})
		}
	}
	fwdUID, _ := strconv.ParseUint(r.FormValue("fwd_uid"), 10, 32)
	s.withIMAP(w, r, ss, func(c *imapclient.Client, fs []folder) error {
		if fwdUID > 0 {
			raw, err := fetchRaw(c, r.FormValue("fwd_box"), imap.UID(fwdUID), true)
			if err != nil {
				return err
			}
			o.Attachments = append(o.Attachments, attachment{Name: "forwarded.eml", Type: "message/rfc822", data: raw})
		}
		msg, rcpts, err := o.build(s.now(), s.cfg.Hostname)
		if err == nil {
			ctx, cancel := context.WithTimeout(r.Context(), opTimeout)
			err = s.send(ctx, ss.user, ss.password, rcpts, msg)
			cancel()
		}
		if err != nil {
			p := s.base(ss, fs, "", "Compose")
			p.Error = "Not sent: " + err.Error()
			p.Data = composeData{To: o.To, Cc: o.Cc, Subject: o.Subject, Body: o.Body, InReplyTo: o.InReplyTo, References: o.References}
			s.render(w, "compose.html", p, http.StatusBadRequest)
			return nil
		}
		s.m.sent.Inc()
		// A copy in Sent, seen.
		sent := specialFolder(fs, string(imap.MailboxAttrSent), "Sent")
		ac := c.Append(sent, int64(len(msg)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagSeen}, Time: s.now()})
		ac.Write(msg)
		ac.Close()
		if _, err := ac.Wait(); err != nil {
			s.log.Warn("webmail: copy to Sent", "user", ss.user, "err", err)
		}
		if o.InReplyTo != "" {
			if b, u := r.FormValue("reply_box"), r.FormValue("reply_uid"); b != "" {
				if n, err := strconv.ParseUint(u, 10, 32); err == nil {
					if _, err := c.Select(b, nil).Wait(); err == nil {
						c.Store(imap.UIDSetNum(imap.UID(n)), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagAnswered}}, nil).Close()
					}
				}
			}
		}
		http.Redirect(w, r, "/box?name=INBOX&notice="+url.QueryEscape("Message sent."), http.StatusSeeOther)
		return nil
	})
}

// move moves a message to another folder; "delete" moves it to Trash, or
// removes it for good when it is in Trash already.
func (s *Server) move(w http.ResponseWriter, r *http.Request, ss *session) {
	s.m.requests.WithLabelValues("move").Inc()
	box, dest := r.FormValue("box"), r.FormValue("dest")
	uid, ok := uidOf(r)
	if !ok || box == "" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	s.withIMAP(w, r, ss, func(c *imapclient.Client, fs []folder) error {
		if _, err := c.Select(box, nil).Wait(); err != nil {
			return err
		}
		trash := specialFolder(fs, string(imap.MailboxAttrTrash), "Trash")
		notice := "Message moved to " + dest + "."
		if r.FormValue("delete") != "" {
			dest, notice = trash, "Message moved to Trash."
		}
		set := imap.UIDSetNum(uid)
		if dest == box {
			// Deleting from Trash: for good.
			if err := c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
				return err
			}
			if err := c.UIDExpunge(set).Close(); err != nil {
				return err
			}
			notice = "Message deleted."
		} else if _, err := c.Move(set, dest).Wait(); err != nil {
			return err
		}
		http.Redirect(w, r, "/box?name="+url.QueryEscape(box)+"&notice="+url.QueryEscape(notice), http.StatusSeeOther)
		return nil
	})
}
