// Package dht is a Mainline DHT node (BEP 5): a Kademlia network where
// peers find each other by info-hash without a tracker. It answers ping,
// find_node, get_peers and announce_peer, keeps a routing table of k-buckets
// by XOR distance, stores announced peers (with tokens that prove the
// announcer owns its address), and looks peers up iteratively. It
// bootstraps only from the nodes it is given (the lab's), never from the
// public routers.
package dht

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/applayer/applayer/torrent/bencode"
)

// ID is a node id or an info-hash: 160 bits.
type ID [20]byte

// Msg is a KRPC message: a query (Y "q"), a response ("r") or an error ("e").
type Msg struct {
	T string // transaction id
	Y string
	Q string // query name
	// Arguments and response values, as far as BEP 5 defines them.
	ID          ID
	Target      ID
	InfoHash    ID
	Token       string
	Port        int
	ImpliedPort bool
	Nodes       []NodeInfo
	Values      []netip.AddrPort
	// Error code and message of an error message.
	ErrCode int
	ErrMsg  string
}

// NodeInfo is a node's id and address (the compact node info of BEP 5).
type NodeInfo struct {
	ID   ID
	Addr netip.AddrPort
}

// MaxMsg is the largest KRPC datagram accepted.
const MaxMsg = 2048

// Parse decodes a KRPC datagram. Unknown keys are ignored.
func Parse(b []byte) (Msg, error) {
	var m Msg
	v, err := bencode.Decode(b, bencode.Limits{MaxSize: MaxMsg, MaxDepth: 6})
	if err != nil {
		return m, fmt.Errorf("dht: %w", err)
	}
	if v.Kind != bencode.KindDict {
		return m, errors.New("dht: message is not a dictionary")
	}
	m.T, _ = v.GetString("t")
	m.Y, _ = v.GetString("y")
	if m.T == "" || len(m.T) > 32 {
		return m, errors.New("dht: bad transaction id")
	}
	var body bencode.Value
	switch m.Y {
	case "q":
		m.Q, _ = v.GetString("q")
		body, _ = v.Get("a")
	case "r":
		body, _ = v.Get("r")
	case "e":
		e, ok := v.Get("e")
		if !ok || e.Kind != bencode.KindList || len(e.List) < 2 || e.List[0].Kind != bencode.KindInt || e.List[1].Kind != bencode.KindString {
			return m, errors.New("dht: bad error message")
		}
		m.ErrCode, m.ErrMsg = int(e.List[0].Int), string(e.List[1].Str)
		return m, nil
	default:
		return m, fmt.Errorf("dht: message type %q", m.Y)
	}
	if body.Kind != bencode.KindDict {
		return m, errors.New("dht: no arguments or values")
	}
	id, ok := body.GetString("id")
	if !ok || len(id) != 20 {
		return m, errors.New("dht: no 20-byte node id")
	}
	copy(m.ID[:], id)
	get20 := func(k string, dst *ID) error {
		s, ok := body.GetString(k)
		if !ok {
			return nil
		}
		if len(s) != 20 {
			return fmt.Errorf("dht: %s is not 20 bytes", k)
		}
		copy(dst[:], s)
		return nil
	}
	if err := get20("target", &m.Target); err != nil {
		return m, err
	}
	if err := get20("info_hash", &m.InfoHash); err != nil {
		return m, err
	}
	m.Token, _ = body.GetString("token")
	if len(m.Token) > 64 {
		return m, errors.New("dht: token too long")
	}
	if p, ok := body.GetInt("port"); ok {
		if p < 0 || p > 65535 {
			return m, errors.New("dht: bad port")
		}
		m.Port = int(p)
	}
	if ip, ok := body.GetInt("implied_port"); ok && ip == 1 {
		m.ImpliedPort = true
	}
	if s, ok := body.GetString("nodes"); ok {
		if len(s)%26 != 0 {
			return m, errors.New("dht: nodes is not a multiple of 26 bytes")
		}
		for i := 0; i < len(s); i += 26 {
			var n NodeInfo
			copy(n.ID[:], s[i:i+20])
			a := netip.AddrFrom4([4]byte([]byte(s[i+20 : i+24])))
			port := uint16(s[i+24])<<8 | uint16(s[i+25])
			if port == 0 {
				continue
			}
			n.Addr = netip.AddrPortFrom(a, port)
			m.Nodes = append(m.Nodes, n)
		}
	}
	if vals, ok := body.Get("values"); ok && vals.Kind == bencode.KindList {
		for _, x := range vals.List {
			if x.Kind != bencode.KindString || len(x.Str) != 6 {
				continue
			}
			a := netip.AddrFrom4([4]byte(x.Str[:4]))
			port := uint16(x.Str[4])<<8 | uint16(x.Str[5])
			if port != 0 {
				m.Values = append(m.Values, netip.AddrPortFrom(a, port))
			}
		}
	}
	return m, nil
}

func compactNodes(nodes []NodeInfo) []byte {
	b := make([]byte, 0, 26*len(nodes))
	for _, n := range nodes {
		if !n.Addr.Addr().Is4() {
			continue
		}
		a := n.Addr.Addr().As4()
		b = append(b, n.ID[:]...)
		b = append(b, a[:]...)
		b = append(b, byte(n.Addr.Port()>>8), byte(n.Addr.Port()))
	}
	return b
}

// Bytes encodes the message.
func (m Msg) Bytes() []byte {
	d := map[string]bencode.Value{"t": bencode.String(m.T), "y": bencode.String(m.Y)}
	if m.Y == "e" {
		d["e"] = bencode.List(bencode.Int(int64(m.ErrCode)), bencode.String(m.ErrMsg))
		return bencode.MustEncode(bencode.Dict(d))
	}
	body := map[string]bencode.Value{"id": bencode.Bytes(append([]byte(nil), m.ID[:]...))}
	var zero ID
	if m.Target != zero {
		body["target"] = bencode.Bytes(append([]byte(nil), m.Target[:]...))
	}
	if m.InfoHash != zero {
		body["info_hash"] = bencode.Bytes(append([]byte(nil), m.InfoHash[:]...))
	}
	if m.Token != "" {
		body["token"] = bencode.String(m.Token)
	}
	if m.Port != 0 {
		body["port"] = bencode.Int(int64(m.Port))
	}
	if m.ImpliedPort {
		body["implied_port"] = bencode.Int(1)
	}
	if m.Nodes != nil {
		body["nodes"] = bencode.Bytes(compactNodes(m.Nodes))
	}
	if m.Values != nil {
		var l []bencode.Value
		for _, v := range m.Values {
			if v.Addr().Is4() {
				a := v.Addr().As4()
				l = append(l, bencode.Bytes([]byte{a[0], a[1], a[2], a[3], byte(v.Port() >> 8), byte(v.Port())}))
			}
		}
		body["values"] = bencode.List(l...)
	}
	if m.Y == "q" {
		d["q"] = bencode.String(m.Q)
		d["a"] = bencode.Dict(body)
	} else {
		d["r"] = bencode.Dict(body)
	}
	return bencode.MustEncode(bencode.Dict(d))
}
