package swarm

import (
	"crypto/sha1"

	"github.com/applayer/applayer/torrent/metainfo"
	"github.com/applayer/applayer/torrent/peerwire"
)

// metaFetch gathers the info dictionary from peers (BEP 9) for a download
// started from a magnet link: 16 KiB pieces, each asked of one peer, the
// whole checked against the info-hash.
type metaFetch struct {
	c      *Client
	size   int
	pieces [][]byte
	asked  map[int]int // piece -> peer id
	peers  map[int]*peerConn
	done   bool
}

func (c *Client) metaFetchLocked() *metaFetch {
	if c.meta == nil {
		c.meta = &metaFetch{c: c, asked: map[int]int{}, peers: map[int]*peerConn{}}
	}
	return c.meta
}

func (f *metaFetch) addPeer(p *peerConn) {
	if f.done {
		return
	}
	if f.size == 0 {
		f.size = p.metadataSize
		f.pieces = make([][]byte, (f.size+peerwire.MetadataPieceSize-1)/peerwire.MetadataPieceSize)
	}
	if p.metadataSize != f.size {
		return // disagrees with the first peer: not asked
	}
	f.peers[p.id] = p
	f.requestLocked()
}

func (f *metaFetch) peerGone(id int) {
	delete(f.peers, id)
	for piece, pid := range f.asked {
		if pid == id {
			delete(f.asked, piece)
		}
	}
	f.requestLocked()
}

// requestLocked asks for every missing piece not yet asked, spreading them
// over the peers.
func (f *metaFetch) requestLocked() {
	if f.done || len(f.peers) == 0 {
		return
	}
	var ids []int
	for id := range f.peers {
		ids = append(ids, id)
	}
	k := 0
	for i, got := range f.pieces {
		if got != nil {
			continue
		}
		if _, ok := f.asked[i]; ok {
			continue
		}
		p := f.peers[ids[k%len(ids)]]
		k++
		f.asked[i] = p.id
		p.sendLocked(peerwire.Message{ID: peerwire.Extended, ExtID: p.extMetadata,
			ExtPayload: peerwire.MetadataMsg{Type: peerwire.MetadataRequest, Piece: i}.Bytes()})
	}
}

// onMetadataLocked handles a ut_metadata message.
func (c *Client) onMetadataLocked(p *peerConn, m peerwire.MetadataMsg) error {
	switch m.Type {
	case peerwire.MetadataRequest:
		if p.extMetadata == 0 {
			return nil
		}
		n := (len(c.infoRaw) + peerwire.MetadataPieceSize - 1) / peerwire.MetadataPieceSize
		if c.infoRaw == nil || m.Piece >= n {
			p.sendLocked(peerwire.Message{ID: peerwire.Extended, ExtID: p.extMetadata,
				ExtPayload: peerwire.MetadataMsg{Type: peerwire.MetadataReject, Piece: m.Piece}.Bytes()})
			return nil
		}
		end := min(len(c.infoRaw), (m.Piece+1)*peerwire.MetadataPieceSize)
		p.sendLocked(peerwire.Message{ID: peerwire.Extended, ExtID: p.extMetadata,
			ExtPayload: peerwire.MetadataMsg{Type: peerwire.MetadataData, Piece: m.Piece, TotalSize: len(c.infoRaw),
				Data: c.infoRaw[m.Piece*peerwire.MetadataPieceSize : end]}.Bytes()})
	case peerwire.MetadataReject:
		if f := c.meta; f != nil {
			delete(f.peers, p.id)
			if f.asked[m.Piece] == p.id {
				delete(f.asked, m.Piece)
			}
			f.requestLocked()
		}
	case peerwire.MetadataData:
		f := c.meta
		if f == nil || f.done || m.TotalSize != f.size || m.Piece >= len(f.pieces) || f.asked[m.Piece] != p.id {
			return nil
		}
		want := min(peerwire.MetadataPieceSize, f.size-m.Piece*peerwire.MetadataPieceSize)
		if len(m.Data) != want {
			delete(f.asked, m.Piece)
			delete(f.peers, p.id)
			f.requestLocked()
			return nil
		}
		f.pieces[m.Piece] = append([]byte(nil), m.Data...)
		for _, pc := range f.pieces {
			if pc == nil {
				return nil
			}
		}
		raw := make([]byte, 0, f.size)
		for _, pc := range f.pieces {
			raw = append(raw, pc...)
		}
		if sha1.Sum(raw) != c.ih {
			c.log.Warn("swarm: metadata does not match the info-hash; fetching again")
			c.meta = nil
			for _, q := range c.peers {
				if q.extMetadata != 0 && q.metadataSize > 0 && q.id != p.id {
					c.metaFetchLocked().addPeer(q)
				}
			}
			return nil
		}
		info, err := metainfo.ParseInfo(raw)
		if err != nil {
			c.log.Warn("swarm: metadata from peers is invalid", "err", err)
			c.meta = nil
			return nil
		}
		f.done = true
		c.log.Info("swarm: metadata received", "name", info.Name, "bytes", len(raw))
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			if err := c.setInfo(info, raw); err != nil {
				c.log.Error("swarm: opening the data", "err", err)
			}
			c.kick()
		}()
	}
	return nil
}
