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

// MaxPexPeers caps the peers of one ut_pex message, each way.
const MaxPexPeers = 200

// PexMsg is a peer exchange message (BEP 11): peers the sender connected
// to and dropped since its last message.
type PexMsg struct {
	Added   []netip.AddrPort
	Dropped []netip.AddrPort
}

// Bytes encodes the message payload (IPv4 peers in added/dropped, IPv6
// in added6/dropped6, compact form; added.f flags all zero).
func (m PexMsg) Bytes() []byte {
	split := func(l []netip.AddrPort) (v4, v6 []byte) {
		for _, ap := range l {
			b := ap.Addr().AsSlice()
			b = append(b, byte(ap.Port()>>8), byte(ap.Port()))
			if ap.Addr().Is4() {
				v4 = append(v4, b...)
			} else {
				v6 = append(v6, b...)
			}
		}
		return v4, v6
	}
	a4, a6 := split(m.Added)
	d4, d6 := split(m.Dropped)
	d := map[string]bencode.Value{
		"added":   bencode.Bytes(nonNil(a4)),
		"added.f": bencode.Bytes(make([]byte, len(a4)/6)),
		"dropped": bencode.Bytes(nonNil(d4)),
	}
	if len(a6) > 0 {
		d["added6"] = bencode.Bytes(a6)
		d["added6.f"] = bencode.Bytes(make([]byte, len(a6)/18))
	}
	if len(d6) > 0 {
		d["dropped6"] = bencode.Bytes(d6)
	}
	return bencode.MustEncode(bencode.Dict(d))
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// ParsePexMsg decodes a ut_pex payload. Entries with port 0 are skipped;
// more than MaxPexPeers in a list is an error.
func ParsePexMsg(b []byte) (PexMsg, error) {
	var m PexMsg
	v, err := bencode.Decode(b, bencode.Limits{MaxSize: 16 << 10, MaxDepth: 4})
	if err != nil {
		return m, fmt.Errorf("peerwire: ut_pex: %w", err)
	}
	if v.Kind != bencode.KindDict {
		return m, errors.New("peerwire: ut_pex is not a dictionary")
	}
	read := func(key string, alen int) ([]netip.AddrPort, error) {
		s, ok := v.GetString(key)
		if !ok {
			return nil, nil
		}
		n := alen + 2
		if len(s)%n != 0 {
			return nil, fmt.Errorf("peerwire: ut_pex: %s of %d bytes", key, len(s))
		}
		if len(s)/n > MaxPexPeers {
			return nil, fmt.Errorf("peerwire: ut_pex: more than %d peers in %s", MaxPexPeers, key)
		}
		var out []netip.AddrPort
		for i := 0; i < len(s); i += n {
			a, _ := netip.AddrFromSlice([]byte(s[i : i+alen]))
			port := uint16(s[i+alen])<<8 | uint16(s[i+alen+1])
			if port != 0 {
				out = append(out, netip.AddrPortFrom(a.Unmap(), port))
			}
		}
		return out, nil
	}
	for _, k := range []struct {
		key  string
		alen int
		dst  *[]netip.AddrPort
	}{{"added", 4, &m.Added}, {"added6", 16, &m.Added}, {"dropped", 4, &m.Dropped}, {"dropped6", 16, &m.Dropped}} {
		l, err := read(k.key, k.alen)
		if err != nil {
			return m, err
		}
		*k.dst = append(*k.dst, l...)
	}
	return m, nil
}
