// Package peerwire is the BitTorrent peer wire protocol codec: the
// handshake and the length-prefixed messages of BEP 3 (choke, unchoke,
// interested, not interested, have, bitfield, request, piece, cancel,
// port, keep-alive), the fast extension's messages (BEP 6: suggest, have
// all, have none, reject request, allowed fast), the extension protocol's
// envelope and handshake (BEP 10) and metadata exchange messages (BEP 9).
//
// Everything read from a peer is bounded: a message longer than the
// reader's limit is an error before any of it is allocated.
package peerwire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Protocol is the handshake's protocol string.
const Protocol = "BitTorrent protocol"

// HandshakeLen is the length of a handshake.
const HandshakeLen = 1 + len(Protocol) + 8 + 20 + 20

// BlockSize is the request size every client uses (16 KiB).
const BlockSize = 16 << 10

// MaxBlock is the largest request served or accepted.
const MaxBlock = 128 << 10

// DefaultMaxMessage is the default largest message (a piece message of a
// MaxBlock block, or a bitfield of 1M pieces).
const DefaultMaxMessage = MaxBlock + 13

// Reserved-bit masks of the handshake (byte index, bit).
const (
	extensionByte, extensionBit = 5, 0x10 // BEP 10
	fastByte, fastBit           = 7, 0x04 // BEP 6
	dhtByte, dhtBit             = 7, 0x01 // BEP 5
)

// Handshake is the first message each side sends.
type Handshake struct {
	Reserved [8]byte
	InfoHash [20]byte
	PeerID   [20]byte
}

// SetExtensions sets the reserved bits for the extension protocol, the
// fast extension and DHT.
func (h *Handshake) SetExtensions(ext, fast, dht bool) {
	if ext {
		h.Reserved[extensionByte] |= extensionBit
	}
	if fast {
		h.Reserved[fastByte] |= fastBit
	}
	if dht {
		h.Reserved[dhtByte] |= dhtBit
	}
}

// Extended reports support for the extension protocol (BEP 10).
func (h Handshake) Extended() bool { return h.Reserved[extensionByte]&extensionBit != 0 }

// Fast reports support for the fast extension (BEP 6).
func (h Handshake) Fast() bool { return h.Reserved[fastByte]&fastBit != 0 }

// DHT reports support for DHT (BEP 5).
func (h Handshake) DHT() bool { return h.Reserved[dhtByte]&dhtBit != 0 }

// Bytes encodes the handshake.
func (h Handshake) Bytes() []byte {
	b := make([]byte, 0, HandshakeLen)
	b = append(b, byte(len(Protocol)))
	b = append(b, Protocol...)
	b = append(b, h.Reserved[:]...)
	b = append(b, h.InfoHash[:]...)
	return append(b, h.PeerID[:]...)
}

// ReadHandshake reads a whole handshake.
func ReadHandshake(r io.Reader) (Handshake, error) {
	var b [HandshakeLen]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return Handshake{}, fmt.Errorf("peerwire: handshake: %w", err)
	}
	return ParseHandshake(b[:])
}

// ParseHandshake decodes a handshake.
func ParseHandshake(b []byte) (Handshake, error) {
	var h Handshake
	if len(b) != HandshakeLen {
		return h, fmt.Errorf("peerwire: handshake of %d bytes", len(b))
	}
	if int(b[0]) != len(Protocol) || string(b[1:20]) != Protocol {
		return h, errors.New("peerwire: not a BitTorrent handshake")
	}
	copy(h.Reserved[:], b[20:28])
	copy(h.InfoHash[:], b[28:48])
	copy(h.PeerID[:], b[48:68])
	return h, nil
}

// ID is a message type.
type ID uint8

// Message types.
const (
	Choke         ID = 0
	Unchoke       ID = 1
	Interested    ID = 2
	NotInterested ID = 3
	Have          ID = 4
	Bitfield      ID = 5
	Request       ID = 6
	Piece         ID = 7
	Cancel        ID = 8
	Port          ID = 9
	Suggest       ID = 0x0d
	HaveAll       ID = 0x0e
	HaveNone      ID = 0x0f
	Reject        ID = 0x10
	AllowedFast   ID = 0x11
	Extended      ID = 20
)

var idNames = map[ID]string{
	Choke: "choke", Unchoke: "unchoke", Interested: "interested", NotInterested: "not-interested",
	Have: "have", Bitfield: "bitfield", Request: "request", Piece: "piece", Cancel: "cancel", Port: "port",
	Suggest: "suggest", HaveAll: "have-all", HaveNone: "have-none", Reject: "reject", AllowedFast: "allowed-fast",
	Extended: "extended",
}

func (id ID) String() string {
	if s, ok := idNames[id]; ok {
		return s
	}
	return fmt.Sprintf("msg-%d", uint8(id))
}

// Message is one peer wire message. Which fields are set depends on ID.
type Message struct {
	// KeepAlive marks the zero-length message; ID is meaningless then.
	KeepAlive bool
	ID        ID
	// Index, Begin and Length are the piece index (have, request, piece,
	// cancel, suggest, reject, allowed fast), the offset in the piece
	// (request, piece, cancel, reject) and the request length.
	Index, Begin, Length uint32
	// Bitfield is the bitfield message's payload.
	Bitfield []byte
	// Block is a piece message's data.
	Block []byte
	// Port is the DHT port of a port message.
	Port uint16
	// ExtID and ExtPayload are an extended message's id (0 for the
	// handshake) and bencoded payload.
	ExtID      uint8
	ExtPayload []byte
}

func (m Message) String() string {
	if m.KeepAlive {
		return "keep-alive"
	}
	switch m.ID {
	case Have, Suggest, AllowedFast:
		return fmt.Sprintf("%s %d", m.ID, m.Index)
	case Request, Cancel, Reject:
		return fmt.Sprintf("%s %d+%d:%d", m.ID, m.Index, m.Begin, m.Length)
	case Piece:
		return fmt.Sprintf("piece %d+%d:%d", m.Index, m.Begin, len(m.Block))
	case Bitfield:
		return fmt.Sprintf("bitfield %d bytes", len(m.Bitfield))
	case Port:
		return fmt.Sprintf("port %d", m.Port)
	case Extended:
		return fmt.Sprintf("extended %d (%d bytes)", m.ExtID, len(m.ExtPayload))
	}
	return m.ID.String()
}

// AppendTo appends m's encoding (length prefix included) to b.
func (m Message) AppendTo(b []byte) []byte {
	if m.KeepAlive {
		return append(b, 0, 0, 0, 0)
	}
	start := len(b)
	b = append(b, 0, 0, 0, 0, byte(m.ID))
	switch m.ID {
	case Have, Suggest, AllowedFast:
		b = binary.BigEndian.AppendUint32(b, m.Index)
	case Request, Cancel, Reject:
		b = binary.BigEndian.AppendUint32(b, m.Index)
		b = binary.BigEndian.AppendUint32(b, m.Begin)
		b = binary.BigEndian.AppendUint32(b, m.Length)
	case Piece:
		b = binary.BigEndian.AppendUint32(b, m.Index)
		b = binary.BigEndian.AppendUint32(b, m.Begin)
		b = append(b, m.Block...)
	case Bitfield:
		b = append(b, m.Bitfield...)
	case Port:
		b = binary.BigEndian.AppendUint16(b, m.Port)
	case Extended:
		b = append(b, m.ExtID)
		b = append(b, m.ExtPayload...)
	}
	binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start-4))
	return b
}

// Bytes encodes m.
func (m Message) Bytes() []byte { return m.AppendTo(nil) }

// ErrTooLong is returned (wrapped) for a message over the reader's limit.
var ErrTooLong = errors.New("peerwire: message too long")

// ReadMessage reads one message of at most max bytes (after the length
// prefix). buf, if large enough, holds the payload; the returned
// message's Block, Bitfield and ExtPayload alias it.
func ReadMessage(r io.Reader, max int, buf []byte) (Message, []byte, error) {
	var lb [4]byte
	if _, err := io.ReadFull(r, lb[:]); err != nil {
		return Message{}, buf, err
	}
	n := binary.BigEndian.Uint32(lb[:])
	if n == 0 {
		return Message{KeepAlive: true}, buf, nil
	}
	if n > uint32(max) {
		return Message{}, buf, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLong, n, max)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Message{}, buf, fmt.Errorf("peerwire: %w", err)
	}
	m, err := Parse(buf)
	return m, buf, err
}

// Parse decodes a message body (the bytes after the length prefix).
func Parse(b []byte) (Message, error) {
	if len(b) == 0 {
		return Message{KeepAlive: true}, nil
	}
	m := Message{ID: ID(b[0])}
	p := b[1:]
	need := func(n int) error {
		if len(p) != n {
			return fmt.Errorf("peerwire: %s message of %d bytes, want %d", m.ID, len(p), n)
		}
		return nil
	}
	switch m.ID {
	case Choke, Unchoke, Interested, NotInterested, HaveAll, HaveNone:
		return m, need(0)
	case Have, Suggest, AllowedFast:
		if err := need(4); err != nil {
			return m, err
		}
		m.Index = binary.BigEndian.Uint32(p)
	case Request, Cancel, Reject:
		if err := need(12); err != nil {
			return m, err
		}
		m.Index = binary.BigEndian.Uint32(p)
		m.Begin = binary.BigEndian.Uint32(p[4:])
		m.Length = binary.BigEndian.Uint32(p[8:])
	case Piece:
		if len(p) < 8 {
			return m, fmt.Errorf("peerwire: piece message of %d bytes", len(p))
		}
		m.Index = binary.BigEndian.Uint32(p)
		m.Begin = binary.BigEndian.Uint32(p[4:])
		m.Block = p[8:]
	case Bitfield:
		m.Bitfield = p
	case Port:
		if err := need(2); err != nil {
			return m, err
		}
		m.Port = binary.BigEndian.Uint16(p)
	case Extended:
		if len(p) < 1 {
			return m, errors.New("peerwire: empty extended message")
		}
		m.ExtID = p[0]
		m.ExtPayload = p[1:]
	default:
		// Unknown messages are skipped by the caller, as BEP 3 asks.
	}
	return m, nil
}

// BitfieldBytes is the size of a bitfield for n pieces.
func BitfieldBytes(n int) int { return (n + 7) / 8 }

// CheckBitfield checks a received bitfield for n pieces: the right size
// and no spare bits set.
func CheckBitfield(b []byte, n int) error {
	if len(b) != BitfieldBytes(n) {
		return fmt.Errorf("peerwire: bitfield of %d bytes for %d pieces", len(b), n)
	}
	if n%8 != 0 && b[len(b)-1]&(0xff>>(n%8)) != 0 {
		return errors.New("peerwire: bitfield has spare bits set")
	}
	return nil
}

// Equal reports whether two messages encode the same.
func Equal(a, b Message) bool { return bytes.Equal(a.Bytes(), b.Bytes()) }
