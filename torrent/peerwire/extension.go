package peerwire

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/applayer/applayer/torrent/bencode"
)

// Extension names this package knows (BEP 9, BEP 11).
const (
	ExtMetadata = "ut_metadata"
	ExtPEX      = "ut_pex"
)

// MetadataPieceSize is the size of a metadata piece (BEP 9).
const MetadataPieceSize = 16 << 10

// MaxMetadataSize caps the metadata (info dictionary) fetched from peers.
const MaxMetadataSize = 8 << 20

// ExtHandshake is the extension protocol handshake (BEP 10), extended
// message 0.
type ExtHandshake struct {
	// M maps extension names to the message ids the sender wants to
	// receive them with; id 0 disables one.
	M map[string]uint8
	// MetadataSize is the info dictionary's size (BEP 9), 0 if unknown.
	MetadataSize int
	// Port is the sender's listen port (p), 0 if not given.
	Port uint16
	// Client is the client name and version (v).
	Client string
	// ReqQ is how many outstanding requests the sender queues (reqq).
	ReqQ int
	// YourIP is the address the sender sees the receiver at.
	YourIP netip.Addr
}

// Bytes encodes the handshake's payload.
func (h ExtHandshake) Bytes() []byte {
	m := map[string]bencode.Value{}
	for k, v := range h.M {
		m[k] = bencode.Int(int64(v))
	}
	d := map[string]bencode.Value{"m": bencode.Dict(m)}
	if h.MetadataSize > 0 {
		d["metadata_size"] = bencode.Int(int64(h.MetadataSize))
	}
	if h.Port != 0 {
		d["p"] = bencode.Int(int64(h.Port))
	}
	if h.Client != "" {
		d["v"] = bencode.String(h.Client)
	}
	if h.ReqQ > 0 {
		d["reqq"] = bencode.Int(int64(h.ReqQ))
	}
	if h.YourIP.IsValid() {
		d["yourip"] = bencode.Bytes(h.YourIP.AsSlice())
	}
	return bencode.MustEncode(bencode.Dict(d))
}

// ParseExtHandshake decodes an extension handshake payload. Unknown keys
// are ignored, as BEP 10 asks; values of the wrong type are ignored too.
func ParseExtHandshake(b []byte) (ExtHandshake, error) {
	var h ExtHandshake
	v, err := bencode.Decode(b, bencode.Limits{MaxSize: 64 << 10, MaxDepth: 8})
	if err != nil {
		return h, fmt.Errorf("peerwire: extension handshake: %w", err)
	}
	if v.Kind != bencode.KindDict {
		return h, errors.New("peerwire: extension handshake is not a dictionary")
	}
	h.M = map[string]uint8{}
	if m, ok := v.Get("m"); ok && m.Kind == bencode.KindDict {
		for _, e := range m.Dict {
			if e.Value.Kind == bencode.KindInt && e.Value.Int >= 0 && e.Value.Int <= 255 {
				h.M[e.Key] = uint8(e.Value.Int)
			}
		}
	}
	if n, ok := v.GetInt("metadata_size"); ok && n > 0 && n <= MaxMetadataSize {
		h.MetadataSize = int(n)
	}
	if n, ok := v.GetInt("p"); ok && n > 0 && n < 65536 {
		h.Port = uint16(n)
	}
	h.Client, _ = v.GetString("v")
	if n, ok := v.GetInt("reqq"); ok && n > 0 && n < 1<<16 {
		h.ReqQ = int(n)
	}
	if s, ok := v.GetString("yourip"); ok {
		if a, ok := netip.AddrFromSlice([]byte(s)); ok {
			h.YourIP = a
		}
	}
	return h, nil
}

// Metadata message types (BEP 9).
const (
	MetadataRequest = 0
	MetadataData    = 1
	MetadataReject  = 2
)

// MetadataMsg is a ut_metadata message.
type MetadataMsg struct {
	Type      int
	Piece     int
	TotalSize int    // data messages
	Data      []byte // data messages: the piece, after the dictionary
}

// Bytes encodes the message payload (without the extended envelope).
func (m MetadataMsg) Bytes() []byte {
	d := map[string]bencode.Value{"msg_type": bencode.Int(int64(m.Type)), "piece": bencode.Int(int64(m.Piece))}
	if m.Type == MetadataData {
		d["total_size"] = bencode.Int(int64(m.TotalSize))
	}
	return append(bencode.MustEncode(bencode.Dict(d)), m.Data...)
}

// ParseMetadataMsg decodes a ut_metadata payload.
func ParseMetadataMsg(b []byte) (MetadataMsg, error) {
	var m MetadataMsg
	v, n, err := bencode.DecodePrefix(b, bencode.Limits{MaxSize: MetadataPieceSize + 1024, MaxDepth: 4})
	if err != nil {
		return m, fmt.Errorf("peerwire: ut_metadata: %w", err)
	}
	t, ok1 := v.GetInt("msg_type")
	p, ok2 := v.GetInt("piece")
	if !ok1 || !ok2 || t < 0 || t > 2 || p < 0 || p > MaxMetadataSize/MetadataPieceSize {
		return m, errors.New("peerwire: ut_metadata: bad msg_type or piece")
	}
	m.Type, m.Piece = int(t), int(p)
	if m.Type == MetadataData {
		ts, ok := v.GetInt("total_size")
		if !ok || ts <= 0 || ts > MaxMetadataSize {
			return m, errors.New("peerwire: ut_metadata: bad total_size")
		}
		m.TotalSize = int(ts)
		m.Data = b[n:]
		if len(m.Data) > MetadataPieceSize {
			return m, errors.New("peerwire: ut_metadata: piece larger than 16 KiB")
		}
	} else if n != len(b) {
		return m, errors.New("peerwire: ut_metadata: trailing data")
	}
	return m, nil
}
