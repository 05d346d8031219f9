// Package shop is the chapter's cookie application: a small shop whose
// session id travels in a cookie (Set-Cookie, then Cookie) and whose carts
// live in a back-end database (SQLite in a data directory), so a cart
// survives a server restart.
package shop

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	_ "modernc.org/sqlite" // database/sql driver "sqlite"
)

// CookieName is the session cookie's name.
const CookieName = "sid"

// Product is an item for sale.
type Product struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Cents int    `json:"cents"`
}

// Products returns the catalogue (a fresh copy: the shop's prices cannot
// be changed through it).
func Products() []Product {
	return []Product{
		{"book", "Computer Networking: A Top-Down Approach", 12999},
		{"cable", "Ethernet cable, 2 m", 499},
		{"router", "Home router", 5900},
		{"mug", "RFC 2324 coffee mug", 1200},
	}
}

func product(id string) (Product, bool) {
	for _, p := range Products() {
		if p.ID == id {
			return p, true
		}
	}
	return Product{}, false
}

// Line is one cart line.
type Line struct {
	Product
	Qty int `json:"qty"`
}

// Shop is an http.Handler backed by a SQLite database.
type Shop struct {
	db  *sql.DB
	log *slog.Logger
	now func() time.Time
}

// Open opens (creating if needed) the shop database in dataDir.
func Open(dataDir string, log *slog.Logger) (*Shop, error) {
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("shop: %w", err)
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dataDir, "shop.db")+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)")
	if err != nil {
		return nil, fmt.Errorf("shop: open: %w", err)
	}
	db.SetMaxOpenConns(1)
	_, err = db.Exec(`CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS cart (session TEXT NOT NULL, item TEXT NOT NULL, qty INTEGER NOT NULL, PRIMARY KEY (session, item));`)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("shop: schema: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Shop{db: db, log: log, now: time.Now}, nil
}

// Close closes the database.
func (s *Shop) Close() error { return s.db.Close() }

func validID(id string) bool {
	if len(id) != 32 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

// session returns the request's session id, creating a session (and
// setting the cookie) when the request has no valid one.
func (s *Shop) session(w http.ResponseWriter, r *http.Request) (string, error) {
	if c, err := r.Cookie(CookieName); err == nil && validID(c.Value) {
		var one int
		err := s.db.QueryRowContext(r.Context(), `SELECT 1 FROM sessions WHERE id = ?`, c.Value).Scan(&one)
		if err == nil {
			return c.Value, nil
		}
	}
	var b [16]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	if _, err := s.db.ExecContext(r.Context(), `INSERT INTO sessions (id, created) VALUES (?, ?)`, id, s.now().Unix()); err != nil {
		return "", fmt.Errorf("shop: new session: %w", err)
	}
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: id, Path: "/", MaxAge: 30 * 24 * 3600,
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil,
	})
	return id, nil
}

// Cart returns a session's cart.
func (s *Shop) Cart(ctx context.Context, sid string) ([]Line, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT item, qty FROM cart WHERE session = ? ORDER BY item`, sid)
	if err != nil {
		return nil, fmt.Errorf("shop: cart: %w", err)
	}
	defer rows.Close()
	var out []Line
	for rows.Next() {
		var item string
		var qty int
		if err := rows.Scan(&item, &qty); err != nil {
			return nil, fmt.Errorf("shop: cart: %w", err)
		}
		p, _ := product(item)
		out = append(out, Line{Product: p, Qty: qty})
	}
	return out, rows.Err()
}

func (s *Shop) fail(w http.ResponseWriter, err error) {
	s.log.Error("shop", "err", err)
	http.Error(w, "500 internal server error", http.StatusInternalServerError)
}

// ServeHTTP serves / (catalogue), /cart (HTML), /api/cart (JSON), and
// POST /cart/add and /cart/remove (form field "item").
func (s *Shop) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "private, no-store")
	switch r.URL.Path {
	case "/", "/cart", "/api/cart":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
			return
		}
	case "/cart/add", "/cart/remove":
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
			return
		}
	default:
		http.Error(w, "404 page not found", http.StatusNotFound)
		return
	}
	sid, err := s.session(w, r)
	if err != nil {
		s.fail(w, err)
		return
	}
	switch r.URL.Path {
	case "/":
		s.catalogue(w, sid)
	case "/cart", "/api/cart":
		lines, err := s.Cart(r.Context(), sid)
		if err != nil {
			s.fail(w, err)
			return
		}
		if r.URL.Path == "/api/cart" {
			w.Header().Set("Content-Type", "application/json")
			if lines == nil {
				lines = []Line{}
			}
			json.NewEncoder(w).Encode(lines)
			return
		}
		s.cartPage(w, lines)
	default:
		r.Body = http.MaxBytesReader(w, r.Body, 4096)
		if err := r.ParseForm(); err != nil {
			http.Error(w, "400 bad form", http.StatusBadRequest)
			return
		}
		item := r.PostForm.Get("item")
		if _, ok := product(item); !ok {
			http.Error(w, "400 unknown item", http.StatusBadRequest)
			return
		}
		q := `INSERT INTO cart (session, item, qty) VALUES (?, ?, 1) ON CONFLICT (session, item) DO UPDATE SET qty = qty + 1`
		if r.URL.Path == "/cart/remove" {
			q = `DELETE FROM cart WHERE session = ? AND item = ?`
		}
		if _, err := s.db.ExecContext(r.Context(), q, sid, item); err != nil {
			s.fail(w, err)
			return
		}
		http.Redirect(w, r, "/cart", http.StatusSeeOther)
	}
}

func money(c int) string { return "$" + strconv.Itoa(c/100) + "." + fmt.Sprintf("%02d", c%100) }

func (s *Shop) catalogue(w http.ResponseWriter, sid string) {
	var b strings.Builder
	b.WriteString("<!doctype html>\n<html><head><title>Shop</title></head><body>\n<h1>The applayer shop</h1>\n<p><a href=\"/cart\">Your cart</a></p>\n<ul>\n")
	for _, p := range Products() {
		fmt.Fprintf(&b, "<li>%s, %s <form method=\"post\" action=\"/cart/add\"><input type=\"hidden\" name=\"item\" value=\"%s\"><button>Add to cart</button></form></li>\n",
			html.EscapeString(p.Name), money(p.Cents), p.ID)
	}
	b.WriteString("</ul></body></html>\n")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write([]byte(b.String()))
}

func (s *Shop) cartPage(w http.ResponseWriter, lines []Line) {
	var b strings.Builder
	b.WriteString("<!doctype html>\n<html><head><title>Cart</title></head><body>\n<h1>Your cart</h1>\n<ul>\n")
	total := 0
	for _, l := range lines {
		total += l.Qty * l.Cents
		fmt.Fprintf(&b, "<li>%d x %s <form method=\"post\" action=\"/cart/remove\"><input type=\"hidden\" name=\"item\" value=\"%s\"><button>Remove</button></form></li>\n",
			l.Qty, html.EscapeString(l.Name), l.ID)
	}
	fmt.Fprintf(&b, "</ul><p>Total: %s</p><p><a href=\"/\">Continue shopping</a></p></body></html>\n", money(total))
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write([]byte(b.String()))
}
