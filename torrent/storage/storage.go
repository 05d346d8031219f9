// Package storage maps a torrent's pieces onto its files on disk: a
// single-file torrent is DIR/NAME, a multi-file one DIR/NAME/PATH... It
// reads blocks for upload, writes verified pieces, checks piece hashes and
// scans what is already on disk so a download resumes where it stopped.
package storage

import (
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/applayer/applayer/torrent/metainfo"
)

type span struct {
	path   string
	offset int64 // in the torrent's byte stream
	length int64
}

// Storage is a torrent's data on disk. It is safe for concurrent use.
type Storage struct {
	info  *metainfo.Info
	root  string
	files []span

	mu      sync.Mutex
	handles map[int]*os.File
	// writable files have been opened for writing (created as needed).
	writable map[int]bool
}

// Open maps info onto dir. Paths are checked to stay inside dir.
func Open(info *metainfo.Info, dir string) (*Storage, error) {
	root, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	s := &Storage{info: info, root: root, handles: map[int]*os.File{}, writable: map[int]bool{}}
	var off int64
	for _, f := range info.FileList() {
		p := filepath.Join(append([]string{root}, f.Path...)...)
		if rel, err := filepath.Rel(root, p); err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return nil, fmt.Errorf("storage: %q escapes %s", strings.Join(f.Path, "/"), dir)
		}
		s.files = append(s.files, span{path: p, offset: off, length: f.Length})
		off += f.Length
	}
	return s, nil
}

// Path is the file or directory the torrent is stored as.
func (s *Storage) Path() string { return filepath.Join(s.root, s.info.Name) }

func (s *Storage) file(i int, write bool) (*os.File, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := s.handles[i]; f != nil && (!write || s.writable[i]) {
		return f, nil
	}
	if f := s.handles[i]; f != nil {
		f.Close()
		delete(s.handles, i)
	}
	var f *os.File
	var err error
	if write {
		if err := os.MkdirAll(filepath.Dir(s.files[i].path), 0o755); err != nil {
			return nil, fmt.Errorf("storage: %w", err)
		}
		f, err = os.OpenFile(s.files[i].path, os.O_RDWR|os.O_CREATE, 0o644)
	} else {
		f, err = os.Open(s.files[i].path)
	}
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	s.handles[i] = f
	s.writable[i] = write
	return f, nil
}

// each calls fn for every file segment of [off, off+n).
func (s *Storage) each(off, n int64, fn func(i int, fileOff int64, bufOff, length int64) error) error {
	if off < 0 || n < 0 || off+n > s.info.TotalLength() {
		return fmt.Errorf("storage: range %d+%d outside the torrent", off, n)
	}
	var done int64
	for i, f := range s.files {
		if done == n {
			break
		}
		cur := off + done
		if cur >= f.offset+f.length || f.length == 0 {
			continue
		}
		l := min(f.offset+f.length-cur, n-done)
		if err := fn(i, cur-f.offset, done, l); err != nil {
			return err
		}
		done += l
	}
	return nil
}

// ReadAt reads len(p) bytes of the torrent's stream at off.
func (s *Storage) ReadAt(p []byte, off int64) error {
	return s.each(off, int64(len(p)), func(i int, fo, bo, l int64) error {
		f, err := s.file(i, false)
		if err != nil {
			return err
		}
		if _, err := f.ReadAt(p[bo:bo+l], fo); err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("storage: %s is short", s.files[i].path)
			}
			return fmt.Errorf("storage: %w", err)
		}
		return nil
	})
}

// WriteAt writes p into the torrent's stream at off, creating files.
func (s *Storage) WriteAt(p []byte, off int64) error {
	return s.each(off, int64(len(p)), func(i int, fo, bo, l int64) error {
		f, err := s.file(i, true)
		if err != nil {
			return err
		}
		if _, err := f.WriteAt(p[bo:bo+l], fo); err != nil {
			return fmt.Errorf("storage: %w", err)
		}
		return nil
	})
}

// ReadBlock reads length bytes of piece at begin.
func (s *Storage) ReadBlock(piece, begin, length int) ([]byte, error) {
	if piece < 0 || piece >= s.info.NumPieces() || begin < 0 || length <= 0 || int64(begin+length) > s.info.PieceSize(piece) {
		return nil, fmt.Errorf("storage: block %d+%d:%d outside piece", piece, begin, length)
	}
	b := make([]byte, length)
	if err := s.ReadAt(b, int64(piece)*s.info.PieceLength+int64(begin)); err != nil {
		return nil, err
	}
	return b, nil
}

// CheckPiece reports whether data is piece i (its SHA-1 matches).
func (s *Storage) CheckPiece(i int, data []byte) bool {
	return int64(len(data)) == s.info.PieceSize(i) && sha1.Sum(data) == s.info.Pieces[i]
}

// WritePiece writes a verified piece.
func (s *Storage) WritePiece(i int, data []byte) error {
	return s.WriteAt(data, int64(i)*s.info.PieceLength)
}

// Scan hashes every piece already on disk and returns those that check
// out: how a restarted download resumes and how a seed verifies its data.
// progress, if set, is called after each piece.
func (s *Storage) Scan(progress func(done, total int)) ([]bool, error) {
	n := s.info.NumPieces()
	have := make([]bool, n)
	buf := make([]byte, s.info.PieceLength)
	for i := range n {
		b := buf[:s.info.PieceSize(i)]
		err := s.ReadAt(b, int64(i)*s.info.PieceLength)
		switch {
		case err == nil:
			have[i] = sha1.Sum(b) == s.info.Pieces[i]
		case errors.Is(err, fs.ErrNotExist) || strings.Contains(err.Error(), "is short"):
		default:
			return nil, err
		}
		if progress != nil {
			progress(i+1, n)
		}
	}
	return have, nil
}

// Close closes the open files.
func (s *Storage) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for i, f := range s.handles {
		if err := f.Close(); err != nil {
			errs = append(errs, fmt.Errorf("storage: %w", err))
		}
		delete(s.handles, i)
	}
	return errors.Join(errs...)
}

// Complete makes sure every file exists at its full length (zero-length
// files included), after every piece is written.
func (s *Storage) Complete() error {
	for i, f := range s.files {
		h, err := s.file(i, true)
		if err != nil {
			return err
		}
		st, err := h.Stat()
		if err != nil {
			return fmt.Errorf("storage: %w", err)
		}
		if st.Size() != f.length {
			if err := h.Truncate(f.length); err != nil {
				return fmt.Errorf("storage: %w", err)
			}
		}
	}
	return nil
}
