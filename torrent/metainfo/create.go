package metainfo

import (
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// CreateOptions say how Create builds a torrent. Zero fields take defaults.
type CreateOptions struct {
	// Trackers are announce URLs in tiers (BEP 12): the first URL of the
	// first tier is also the plain announce key.
	Trackers [][]string
	// PieceLength is the piece size in bytes, a power of two from 16 KiB to
	// 64 MiB; 0 chooses one by size (PieceLengthFor).
	PieceLength int64
	// Private sets the private flag (BEP 27): peers only from trackers.
	Private bool
	// WebSeeds are url-list entries (BEP 19).
	WebSeeds []string
	// Name overrides the torrent's name (default: the base name of the path).
	Name      string
	Comment   string
	CreatedBy string
	// CreationDate is written when not zero.
	CreationDate time.Time
	// Progress, when set, is called after each piece is hashed.
	Progress func(done, total int)
}

// PieceLengthFor chooses the piece length for total bytes: the smallest
// power of two from 16 KiB up that keeps the torrent at or under 1024
// pieces, capped at 16 MiB. More pieces let rarest-first spread them
// sooner; fewer make a smaller .torrent.
func PieceLengthFor(total int64) int64 {
	pl := int64(MinPieceLength)
	for pl < 16<<20 && (total+pl-1)/pl > 1024 {
		pl *= 2
	}
	return pl
}

// Create builds a torrent of the file or directory at path, hashing every
// piece. A directory's regular files are taken in lexical path order;
// symbolic links and other non-regular files are refused.
func Create(path string, opts CreateOptions) (*MetaInfo, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("metainfo: %w", err)
	}
	name := opts.Name
	if name == "" {
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, fmt.Errorf("metainfo: %w", err)
		}
		name = filepath.Base(abs)
	}
	if err := checkComponent(name); err != nil {
		return nil, fmt.Errorf("metainfo: name: %w", err)
	}
	info := &Info{Name: name, Private: opts.Private}
	var paths []string // on disk, in torrent order
	if st.IsDir() {
		err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				return nil
			}
			if !d.Type().IsRegular() {
				return fmt.Errorf("%s is not a regular file", p)
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(path, p)
			if err != nil {
				return err
			}
			comps := strings.Split(filepath.ToSlash(rel), "/")
			for _, c := range comps {
				if err := checkComponent(c); err != nil {
					return fmt.Errorf("%s: %w", p, err)
				}
			}
			info.Files = append(info.Files, File{Length: fi.Size(), Path: comps})
			paths = append(paths, p)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("metainfo: %w", err)
		}
		if len(info.Files) == 0 {
			return nil, fmt.Errorf("metainfo: %s holds no files", path)
		}
		// WalkDir is lexical per directory; sort by the joined path so the
		// order is the same on every system.
		idx := make([]int, len(paths))
		for i := range idx {
			idx[i] = i
		}
		sort.SliceStable(idx, func(a, b int) bool {
			return strings.Join(info.Files[idx[a]].Path, "/") < strings.Join(info.Files[idx[b]].Path, "/")
		})
		files, ps := make([]File, len(idx)), make([]string, len(idx))
		for i, k := range idx {
			files[i], ps[i] = info.Files[k], paths[k]
		}
		info.Files, paths = files, ps
	} else {
		if !st.Mode().IsRegular() {
			return nil, fmt.Errorf("metainfo: %s is not a regular file", path)
		}
		info.Length = st.Size()
		paths = []string{path}
	}
	total := info.TotalLength()
	if total == 0 {
		return nil, fmt.Errorf("metainfo: %s is empty", path)
	}
	info.PieceLength = opts.PieceLength
	if info.PieceLength == 0 {
		info.PieceLength = PieceLengthFor(total)
	}
	if pl := info.PieceLength; pl < MinPieceLength || pl > MaxPieceLength || pl&(pl-1) != 0 {
		return nil, fmt.Errorf("metainfo: piece length %d is not a power of two in [%d, %d]", pl, MinPieceLength, MaxPieceLength)
	}
	if err := hashPieces(info, paths, opts.Progress); err != nil {
		return nil, err
	}
	m := &MetaInfo{Info: *info, Comment: opts.Comment, CreatedBy: opts.CreatedBy, URLList: opts.WebSeeds}
	if !opts.CreationDate.IsZero() {
		m.CreationDate = opts.CreationDate.Unix()
	}
	for _, tier := range opts.Trackers {
		if len(tier) > 0 {
			m.AnnounceList = append(m.AnnounceList, append([]string(nil), tier...))
		}
	}
	if len(m.AnnounceList) > 0 {
		m.Announce = m.AnnounceList[0][0]
		if len(m.AnnounceList) == 1 && len(m.AnnounceList[0]) == 1 {
			m.AnnounceList = nil // announce alone says it all
		}
	}
	m.InfoBytes = EncodeInfo(&m.Info)
	m.InfoHash = sha1.Sum(m.InfoBytes)
	return m, nil
}

func hashPieces(info *Info, paths []string, progress func(done, total int)) error {
	total := info.TotalLength()
	n := int((total + info.PieceLength - 1) / info.PieceLength)
	info.Pieces = make([]Hash, 0, n)
	buf := make([]byte, info.PieceLength)
	fill := 0
	files := info.FileList()
	for i, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("metainfo: %w", err)
		}
		var read int64
		for {
			k, err := f.Read(buf[fill:])
			fill += k
			read += int64(k)
			if fill == len(buf) {
				info.Pieces = append(info.Pieces, sha1.Sum(buf))
				fill = 0
				if progress != nil {
					progress(len(info.Pieces), n)
				}
			}
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				f.Close()
				return fmt.Errorf("metainfo: %w", err)
			}
		}
		f.Close()
		if read != files[i].Length {
			return fmt.Errorf("metainfo: %s changed size while hashing", p)
		}
	}
	if fill > 0 {
		info.Pieces = append(info.Pieces, sha1.Sum(buf[:fill]))
		if progress != nil {
			progress(len(info.Pieces), n)
		}
	}
	if len(info.Pieces) != n {
		return fmt.Errorf("metainfo: hashed %d pieces, want %d", len(info.Pieces), n)
	}
	return nil
}
