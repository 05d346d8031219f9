// Package metainfo reads and writes BitTorrent v1 metainfo (.torrent files,
// BEP 3) and magnet links (BEP 9): the info dictionary (name, piece length,
// SHA-1 piece hashes, one file or many), announce and announce-list (BEP 12),
// the private flag (BEP 27) and url-list web seeds (BEP 19).
package metainfo

import (
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/applayer/applayer/torrent/bencode"
)

// Hash is a SHA-1 digest: an info-hash or a piece hash.
type Hash [20]byte

// String is the hash in lower-case hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// ParseHash reads 40 hex digits.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != 40 {
		return h, fmt.Errorf("metainfo: hash %q is not 40 hex digits", s)
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, fmt.Errorf("metainfo: hash %q: %w", s, err)
	}
	return h, nil
}

// File is one file of a torrent, its path relative to the torrent's name.
type File struct {
	Length int64
	Path   []string
}

// Info is the info dictionary: what the info-hash identifies.
type Info struct {
	Name        string
	PieceLength int64
	Pieces      []Hash
	// Length is the file's size for a single-file torrent; Files is nil then.
	Length int64
	// Files lists a multi-file torrent's files in order.
	Files   []File
	Private bool
}

// MultiFile reports whether the torrent is a directory of files.
func (i *Info) MultiFile() bool { return i.Files != nil }

// TotalLength is the sum of the files' lengths.
func (i *Info) TotalLength() int64 {
	if i.Files == nil {
		return i.Length
	}
	var n int64
	for _, f := range i.Files {
		n += f.Length
	}
	return n
}

// NumPieces is the number of pieces.
func (i *Info) NumPieces() int { return len(i.Pieces) }

// PieceSize is the length of piece p: PieceLength, except for the last.
func (i *Info) PieceSize(p int) int64 {
	if p == len(i.Pieces)-1 {
		return i.TotalLength() - int64(p)*i.PieceLength
	}
	return i.PieceLength
}

// FileList returns the files as a list even for a single-file torrent
// (one file whose path is the name).
func (i *Info) FileList() []File {
	if i.Files == nil {
		return []File{{Length: i.Length, Path: []string{i.Name}}}
	}
	out := make([]File, len(i.Files))
	for k, f := range i.Files {
		out[k] = File{Length: f.Length, Path: append([]string{i.Name}, f.Path...)}
	}
	return out
}

// MetaInfo is a whole .torrent file.
type MetaInfo struct {
	Announce     string
	AnnounceList [][]string
	Comment      string
	CreatedBy    string
	CreationDate int64
	// URLList are web seeds (BEP 19).
	URLList []string
	Info    Info
	// InfoBytes is the bencoded info dictionary, as read or as built.
	InfoBytes []byte
	InfoHash  Hash
}

// Trackers returns every tracker URL, tier by tier, announce first when the
// announce-list does not name it.
func (m *MetaInfo) Trackers() []string {
	var out []string
	seen := map[string]bool{}
	add := func(u string) {
		if u != "" && !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	for _, tier := range m.AnnounceList {
		for _, u := range tier {
			add(u)
		}
	}
	add(m.Announce)
	return out
}

// Limits on what Parse accepts.
const (
	// MaxTorrentSize is the largest .torrent file read.
	MaxTorrentSize = 16 << 20
	// MaxPieceLength is the largest piece length accepted (64 MiB).
	MaxPieceLength = 64 << 20
	// MinPieceLength is the smallest piece length accepted (one block).
	MinPieceLength = 16 << 10
	// MaxFiles caps the files of one torrent.
	MaxFiles = 100000
)

// ReadFile reads and parses a .torrent file.
func ReadFile(path string) (*MetaInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("metainfo: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("metainfo: %w", err)
	}
	if st.Size() > MaxTorrentSize {
		return nil, fmt.Errorf("metainfo: %s: %d bytes is larger than the %d-byte limit", path, st.Size(), MaxTorrentSize)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("metainfo: %w", err)
	}
	m, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return m, nil
}

// Parse reads a bencoded .torrent.
func Parse(data []byte) (*MetaInfo, error) {
	v, err := bencode.Decode(data, bencode.Limits{MaxSize: MaxTorrentSize})
	if err != nil {
		return nil, fmt.Errorf("metainfo: %w", err)
	}
	if v.Kind != bencode.KindDict {
		return nil, errors.New("metainfo: top level is not a dictionary")
	}
	m := &MetaInfo{}
	infoV, ok := v.Get("info")
	if !ok {
		return nil, errors.New("metainfo: no info dictionary")
	}
	info, err := ParseInfo(infoV.Raw)
	if err != nil {
		return nil, err
	}
	m.Info = *info
	m.InfoBytes = infoV.Raw
	m.InfoHash = sha1.Sum(infoV.Raw)
	if s, ok := v.GetString("announce"); ok {
		m.Announce = s
	}
	if al, ok := v.Get("announce-list"); ok {
		if al.Kind != bencode.KindList {
			return nil, errors.New("metainfo: announce-list is not a list")
		}
		for _, tier := range al.List {
			if tier.Kind != bencode.KindList {
				return nil, errors.New("metainfo: announce-list tier is not a list")
			}
			var urls []string
			for _, u := range tier.List {
				if u.Kind != bencode.KindString {
					return nil, errors.New("metainfo: announce-list entry is not a string")
				}
				urls = append(urls, string(u.Str))
			}
			if len(urls) > 0 {
				m.AnnounceList = append(m.AnnounceList, urls)
			}
		}
	}
	m.Comment, _ = v.GetString("comment")
	m.CreatedBy, _ = v.GetString("created by")
	m.CreationDate, _ = v.GetInt("creation date")
	if ul, ok := v.Get("url-list"); ok {
		switch ul.Kind {
		case bencode.KindString:
			if len(ul.Str) > 0 {
				m.URLList = []string{string(ul.Str)}
			}
		case bencode.KindList:
			for _, u := range ul.List {
				if u.Kind != bencode.KindString {
					return nil, errors.New("metainfo: url-list entry is not a string")
				}
				m.URLList = append(m.URLList, string(u.Str))
			}
		default:
			return nil, errors.New("metainfo: url-list is neither a string nor a list")
		}
	}
	return m, nil
}

// ParseInfo reads a bencoded info dictionary (from a .torrent or from
// metadata exchange) and checks it is self-consistent.
func ParseInfo(raw []byte) (*Info, error) {
	v, err := bencode.Decode(raw, bencode.Limits{MaxSize: MaxTorrentSize})
	if err != nil {
		return nil, fmt.Errorf("metainfo: info: %w", err)
	}
	if v.Kind != bencode.KindDict {
		return nil, errors.New("metainfo: info is not a dictionary")
	}
	info := &Info{}
	name, ok := v.GetString("name")
	if !ok {
		return nil, errors.New("metainfo: info has no name")
	}
	if err := checkComponent(name); err != nil {
		return nil, fmt.Errorf("metainfo: name: %w", err)
	}
	info.Name = name
	pl, ok := v.GetInt("piece length")
	if !ok {
		return nil, errors.New("metainfo: info has no piece length")
	}
	if pl < MinPieceLength || pl > MaxPieceLength {
		return nil, fmt.Errorf("metainfo: piece length %d outside [%d, %d]", pl, MinPieceLength, MaxPieceLength)
	}
	info.PieceLength = pl
	pieces, ok := v.Get("pieces")
	if !ok || pieces.Kind != bencode.KindString {
		return nil, errors.New("metainfo: info has no pieces string")
	}
	if len(pieces.Str)%20 != 0 {
		return nil, fmt.Errorf("metainfo: pieces is %d bytes, not a multiple of 20", len(pieces.Str))
	}
	info.Pieces = make([]Hash, len(pieces.Str)/20)
	for i := range info.Pieces {
		copy(info.Pieces[i][:], pieces.Str[i*20:])
	}
	if p, ok := v.GetInt("private"); ok {
		info.Private = p == 1
	}
	length, hasLength := v.GetInt("length")
	files, hasFiles := v.Get("files")
	switch {
	case hasLength && hasFiles:
		return nil, errors.New("metainfo: info has both length and files")
	case hasLength:
		if length < 0 {
			return nil, fmt.Errorf("metainfo: negative length %d", length)
		}
		info.Length = length
	case hasFiles:
		if files.Kind != bencode.KindList || len(files.List) == 0 {
			return nil, errors.New("metainfo: files is not a non-empty list")
		}
		if len(files.List) > MaxFiles {
			return nil, fmt.Errorf("metainfo: %d files, limit %d", len(files.List), MaxFiles)
		}
		seen := map[string]bool{}
		var total int64
		for i, f := range files.List {
			n, ok := f.GetInt("length")
			if !ok || n < 0 {
				return nil, fmt.Errorf("metainfo: file %d has no valid length", i)
			}
			p, ok := f.Get("path")
			if !ok || p.Kind != bencode.KindList || len(p.List) == 0 {
				return nil, fmt.Errorf("metainfo: file %d has no path", i)
			}
			var path []string
			for _, c := range p.List {
				if c.Kind != bencode.KindString {
					return nil, fmt.Errorf("metainfo: file %d path element is not a string", i)
				}
				if err := checkComponent(string(c.Str)); err != nil {
					return nil, fmt.Errorf("metainfo: file %d: %w", i, err)
				}
				path = append(path, string(c.Str))
			}
			key := strings.Join(path, "/")
			if seen[key] {
				return nil, fmt.Errorf("metainfo: file %q listed twice", key)
			}
			seen[key] = true
			total += n
			if total < 0 || total > 1<<50 {
				return nil, errors.New("metainfo: total length out of range")
			}
			info.Files = append(info.Files, File{Length: n, Path: path})
		}
	default:
		return nil, errors.New("metainfo: info has neither length nor files")
	}
	total := info.TotalLength()
	if total > 1<<50 {
		return nil, errors.New("metainfo: total length out of range")
	}
	want := (total + pl - 1) / pl
	if int64(len(info.Pieces)) != want {
		return nil, fmt.Errorf("metainfo: %d piece hashes for %d bytes in %d-byte pieces (want %d)", len(info.Pieces), total, pl, want)
	}
	return info, nil
}

// checkComponent refuses path elements that could escape the download
// directory or that no file system can hold.
func checkComponent(s string) error {
	switch {
	case s == "" || s == "." || s == "..":
		return fmt.Errorf("bad path element %q", s)
	case strings.ContainsAny(s, "/\\\x00"):
		return fmt.Errorf("path element %q contains a separator or NUL", s)
	case !utf8.ValidString(s):
		return fmt.Errorf("path element %q is not UTF-8", s)
	case len(s) > 255:
		return fmt.Errorf("path element of %d bytes is too long", len(s))
	case filepath.VolumeName(s) != "":
		return fmt.Errorf("path element %q names a volume", s)
	}
	return nil
}

// Bytes encodes m as a .torrent. InfoBytes is written as it is, so the
// info-hash does not change.
func (m *MetaInfo) Bytes() []byte {
	d := map[string]bencode.Value{
		"info": bencode.RawValue(m.InfoBytes),
	}
	if m.Announce != "" {
		d["announce"] = bencode.String(m.Announce)
	}
	if len(m.AnnounceList) > 0 {
		var tiers []bencode.Value
		for _, tier := range m.AnnounceList {
			var urls []bencode.Value
			for _, u := range tier {
				urls = append(urls, bencode.String(u))
			}
			tiers = append(tiers, bencode.List(urls...))
		}
		d["announce-list"] = bencode.List(tiers...)
	}
	if m.Comment != "" {
		d["comment"] = bencode.String(m.Comment)
	}
	if m.CreatedBy != "" {
		d["created by"] = bencode.String(m.CreatedBy)
	}
	if m.CreationDate != 0 {
		d["creation date"] = bencode.Int(m.CreationDate)
	}
	if len(m.URLList) > 0 {
		var urls []bencode.Value
		for _, u := range m.URLList {
			urls = append(urls, bencode.String(u))
		}
		d["url-list"] = bencode.List(urls...)
	}
	return bencode.MustEncode(bencode.Dict(d))
}

// EncodeInfo returns the bencoded info dictionary of info.
func EncodeInfo(info *Info) []byte {
	pieces := make([]byte, 0, 20*len(info.Pieces))
	for _, p := range info.Pieces {
		pieces = append(pieces, p[:]...)
	}
	d := map[string]bencode.Value{
		"name":         bencode.String(info.Name),
		"piece length": bencode.Int(info.PieceLength),
		"pieces":       bencode.Bytes(pieces),
	}
	if info.Private {
		d["private"] = bencode.Int(1)
	}
	if info.Files == nil {
		d["length"] = bencode.Int(info.Length)
	} else {
		var files []bencode.Value
		for _, f := range info.Files {
			var path []bencode.Value
			for _, c := range f.Path {
				path = append(path, bencode.String(c))
			}
			files = append(files, bencode.Dict(map[string]bencode.Value{
				"length": bencode.Int(f.Length),
				"path":   bencode.List(path...),
			}))
		}
		d["files"] = bencode.List(files...)
	}
	return bencode.MustEncode(bencode.Dict(d))
}
