package peerwire

import (
	"bytes"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestHandshake(t *testing.T) {
	var h Handshake
	h.SetExtensions(true, true, false)
	copy(h.InfoHash[:], strings.Repeat("i", 20))
	copy(h.PeerID[:], "-AL0001-abcdefghijkl")
	b := h.Bytes()
	if len(b) != HandshakeLen || b[0] != 19 || string(b[1:20]) != Protocol {
		t.Fatalf("handshake bytes %q", b)
	}
	// The reserved bits are where BEP 10 and BEP 6 put them.
	if b[20+5] != 0x10 || b[20+7] != 0x04 {
		t.Errorf("reserved = %x", b[20:28])
	}
	got, err := ReadHandshake(bytes.NewReader(b))
	if err != nil || got != h || !got.Extended() || !got.Fast() || got.DHT() {
		t.Fatalf("ReadHandshake = %+v, %v", got, err)
	}
	b[3] = 'X'
	if _, err := ParseHandshake(b); err == nil {
		t.Error("wrong protocol string accepted")
	}
	if _, err := ReadHandshake(bytes.NewReader(b[:30])); err == nil {
		t.Error("short handshake accepted")
	}
}

func TestMessages(t *testing.T) {
	tests := []struct {
		m    Message
		wire string
	}{
		{Message{KeepAlive: true}, "\x00\x00\x00\x00"},
		{Message{ID: Choke}, "\x00\x00\x00\x01\x00"},
		{Message{ID: Unchoke}, "\x00\x00\x00\x01\x01"},
		{Message{ID: Interested}, "\x00\x00\x00\x01\x02"},
		{Message{ID: NotInterested}, "\x00\x00\x00\x01\x03"},
		{Message{ID: Have, Index: 258}, "\x00\x00\x00\x05\x04\x00\x00\x01\x02"},
		{Message{ID: Bitfield, Bitfield: []byte{0xf0, 0x80}}, "\x00\x00\x00\x03\x05\xf0\x80"},
		{Message{ID: Request, Index: 1, Begin: 16384, Length: 16384}, "\x00\x00\x00\x0d\x06\x00\x00\x00\x01\x00\x00\x40\x00\x00\x00\x40\x00"},
		{Message{ID: Piece, Index: 1, Begin: 2, Block: []byte("abc")}, "\x00\x00\x00\x0c\x07\x00\x00\x00\x01\x00\x00\x00\x02abc"},
		{Message{ID: Cancel, Index: 1, Begin: 0, Length: 16384}, "\x00\x00\x00\x0d\x08\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x40\x00"},
		{Message{ID: Port, Port: 6881}, "\x00\x00\x00\x03\x09\x1a\xe1"},
		{Message{ID: HaveAll}, "\x00\x00\x00\x01\x0e"},
		{Message{ID: HaveNone}, "\x00\x00\x00\x01\x0f"},
		{Message{ID: Reject, Index: 3, Begin: 0, Length: 16384}, "\x00\x00\x00\x0d\x10\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x40\x00"},
		{Message{ID: AllowedFast, Index: 9}, "\x00\x00\x00\x05\x11\x00\x00\x00\x09"},
		{Message{ID: Suggest, Index: 9}, "\x00\x00\x00\x05\x0d\x00\x00\x00\x09"},
		{Message{ID: Extended, ExtID: 0, ExtPayload: []byte("de")}, "\x00\x00\x00\x04\x14\x00de"},
	}
	for _, tt := range tests {
		t.Run(tt.m.String(), func(t *testing.T) {
			if got := string(tt.m.Bytes()); got != tt.wire {
				t.Fatalf("encode = %q, want %q", got, tt.wire)
			}
			m, _, err := ReadMessage(strings.NewReader(tt.wire), DefaultMaxMessage, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !Equal(m, tt.m) {
				t.Errorf("decode = %+v", m)
			}
		})
	}
}

func TestReadMessageRejects(t *testing.T) {
	tests := []struct{ name, wire string }{
		{"too long", "\x00\x02\x00\x00\x07"},
		{"truncated", "\x00\x00\x00\x05\x04\x00"},
		{"have too short", "\x00\x00\x00\x03\x04\x00\x00"},
		{"request too long", "\x00\x00\x00\x0e\x06" + strings.Repeat("\x00", 13)},
		{"choke with payload", "\x00\x00\x00\x02\x00\x00"},
		{"piece without header", "\x00\x00\x00\x03\x07\x00\x00"},
		{"empty extended", "\x00\x00\x00\x01\x14"},
	}
	for _, tt := range tests {
		if _, _, err := ReadMessage(strings.NewReader(tt.wire), 1024, nil); err == nil {
			t.Errorf("%s accepted", tt.name)
		}
	}
	_, _, err := ReadMessage(strings.NewReader("\x00\x02\x00\x00\x07"), 1024, nil)
	if !errors.Is(err, ErrTooLong) {
		t.Errorf("too long: %v", err)
	}
	// Unknown ids are returned for the caller to skip.
	m, _, err := ReadMessage(strings.NewReader("\x00\x00\x00\x02\x63\x01"), 1024, nil)
	if err != nil || m.ID != 0x63 {
		t.Errorf("unknown id: %+v %v", m, err)
	}
}

func TestCheckBitfield(t *testing.T) {
	if err := CheckBitfield([]byte{0xff, 0xe0}, 11); err != nil {
		t.Error(err)
	}
	if err := CheckBitfield([]byte{0xff, 0xf0}, 11); err == nil {
		t.Error("spare bit accepted")
	}
	if err := CheckBitfield([]byte{0xff}, 11); err == nil {
		t.Error("short bitfield accepted")
	}
}

func TestExtHandshake(t *testing.T) {
	h := ExtHandshake{M: map[string]uint8{ExtMetadata: 3, ExtPEX: 1}, MetadataSize: 31235, Port: 6881, Client: "applayer", ReqQ: 250, YourIP: netip.MustParseAddr("127.0.0.9")}
	got, err := ParseExtHandshake(h.Bytes())
	if err != nil || !reflect.DeepEqual(got, h) {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	// Wrong-typed and unknown keys are ignored; a non-dictionary is not.
	got, err = ParseExtHandshake([]byte("d1:md11:ut_metadata3:xyz6:ut_pexi2ee1:pi99999e1:zi1ee"))
	if err != nil || got.M[ExtPEX] != 2 || got.M[ExtMetadata] != 0 || got.Port != 0 {
		t.Errorf("lenient parse: %+v %v", got, err)
	}
	if _, err := ParseExtHandshake([]byte("li1ee")); err == nil {
		t.Error("list accepted")
	}
}

func TestMetadataMsg(t *testing.T) {
	for _, m := range []MetadataMsg{
		{Type: MetadataRequest, Piece: 2},
		{Type: MetadataReject, Piece: 0},
		{Type: MetadataData, Piece: 1, TotalSize: 20000, Data: []byte("xyz")},
	} {
		got, err := ParseMetadataMsg(m.Bytes())
		if err != nil || !reflect.DeepEqual(got, m) {
			t.Errorf("round trip %+v: %+v %v", m, got, err)
		}
	}
	for _, bad := range []string{"d8:msg_typei7e5:piecei0ee", "d8:msg_typei1e5:piecei0ee", "d8:msg_typei0e5:piecei0eejunk", "i1e"} {
		if _, err := ParseMetadataMsg([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestPexMsg(t *testing.T) {
	m := PexMsg{Added: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.2:6881"), netip.MustParseAddrPort("[::1]:7000")},
		Dropped: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.3:1")}}
	got, err := ParsePexMsg(m.Bytes())
	if err != nil || !reflect.DeepEqual(got, m) {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	if !strings.Contains(string(m.Bytes()), "5:added6:\x7f\x00\x00\x02\x1a\xe1") {
		t.Errorf("added not compact: %q", m.Bytes())
	}
	for _, bad := range []string{"d5:added5:12345e", "li1ee", "d5:added1206:" + strings.Repeat("\x7f\x00\x00\x01\x00\x01", 201) + "e"} {
		if _, err := ParsePexMsg([]byte(bad)); err == nil {
			t.Errorf("%.40q accepted", bad)
		}
	}
}

func FuzzReadMessage(f *testing.F) {
	for _, m := range []Message{{ID: Have, Index: 1}, {ID: Piece, Index: 1, Block: []byte("ab")}, {ID: Request, Length: 16384}, {ID: Extended, ExtID: 1, ExtPayload: []byte("d8:msg_typei0e5:piecei0ee")}, {KeepAlive: true}} {
		f.Add(m.Bytes())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		for {
			m, _, err := ReadMessage(r, 1<<16, nil)
			if err != nil {
				return
			}
			if _, ok := idNames[m.ID]; !ok || m.KeepAlive {
				continue
			}
			// A known message re-encodes to what was read.
			again, err := Parse(m.Bytes()[4:])
			if err != nil || !Equal(again, m) {
				t.Fatalf("re-encode of %v: %v", m, err)
			}
		}
	})
}

func FuzzExtension(f *testing.F) {
	f.Add(ExtHandshake{M: map[string]uint8{ExtMetadata: 1}, MetadataSize: 100}.Bytes())
	f.Add(PexMsg{Added: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.2:6881")}}.Bytes())
	f.Add(MetadataMsg{Type: MetadataData, Piece: 0, TotalSize: 5, Data: []byte("hello")}.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		if h, err := ParseExtHandshake(b); err == nil {
			if _, err := ParseExtHandshake(h.Bytes()); err != nil {
				t.Fatalf("re-encoded handshake refused: %v", err)
			}
		}
		if p, err := ParsePexMsg(b); err == nil {
			again, err := ParsePexMsg(p.Bytes())
			if err != nil || len(again.Added) != len(p.Added) || len(again.Dropped) != len(p.Dropped) {
				t.Fatalf("pex round trip: %v", err)
			}
		}
		if m, err := ParseMetadataMsg(b); err == nil {
			if len(m.Data) > MetadataPieceSize || m.TotalSize > MaxMetadataSize {
				t.Fatalf("limits not enforced: %+v", m)
			}
		}
	})
}
