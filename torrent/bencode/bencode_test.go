package bencode

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestDecodeValid(t *testing.T) {
	tests := []struct {
		in   string
		want Value
	}{
		{"i42e", Int(42)},
		{"i0e", Int(0)},
		{"i-7e", Int(-7)},
		{"i9223372036854775807e", Int(9223372036854775807)},
		{"4:spam", String("spam")},
		{"0:", String("")},
		{"l4:spami3ee", List(String("spam"), Int(3))},
		{"le", List()},
		{"de", Dict(nil)},
		{"d3:cow3:moo4:spam4:eggse", Dict(map[string]Value{"cow": String("moo"), "spam": String("eggs")})},
		{"d1:ald1:bi1eeee", Dict(map[string]Value{"a": List(Dict(map[string]Value{"b": Int(1)}))})},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			v, err := Decode([]byte(tt.in), Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if !equal(v, tt.want) {
				t.Fatalf("got %+v, want %+v", v, tt.want)
			}
			if string(v.Raw) != tt.in {
				t.Errorf("Raw = %q", v.Raw)
			}
			enc, err := Encode(v)
			if err != nil || string(enc) != tt.in {
				t.Errorf("re-encode = %q, %v", enc, err)
			}
			enc, err = Encode(tt.want)
			if err != nil || string(enc) != tt.in {
				t.Errorf("encode built value = %q, %v", enc, err)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	tests := []struct{ name, in, msg string }{
		{"empty", "", "unexpected end"},
		{"leading zero", "i03e", "leading zero"},
		{"minus zero", "i-0e", "non-canonical"},
		{"lone minus", "i-e", "lone minus"},
		{"empty int", "ie", "empty integer"},
		{"plus sign", "i+1e", "bad digit"},
		{"overflow", "i9223372036854775808e", "out of range"},
		{"unterminated int", "i12", "unterminated integer"},
		{"string length leading zero", "04:spam", "leading zero"},
		{"negative string length", "-1:a", "unexpected byte"},
		{"short string", "5:spam", "runs past"},
		{"unsorted keys", "d4:spam4:eggs3:cow3:mooe", "out of order"},
		{"duplicate key", "d3:cowi1e3:cowi2ee", "duplicate key"},
		{"int key", "di1ei2ee", "not a string"},
		{"unterminated list", "l4:spam", "unterminated list"},
		{"unterminated dict", "d3:cow", "unexpected end"},
		{"trailing", "i1ei2e", "trailing data"},
		{"junk", "x", "unexpected byte"},
		{"deep", strings.Repeat("l", 40) + strings.Repeat("e", 40), "nesting deeper"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode([]byte(tt.in), Limits{})
			var se *SyntaxError
			if !errors.As(err, &se) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("Decode(%q) = %v, want a syntax error containing %q", tt.in, err, tt.msg)
			}
		})
	}
}

func TestLimits(t *testing.T) {
	if _, err := Decode([]byte("4:spam"), Limits{MaxSize: 5}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("size limit: %v", err)
	}
	if _, err := Decode([]byte("llleee"), Limits{MaxDepth: 2}); err == nil {
		t.Error("depth 3 accepted with MaxDepth 2")
	}
	if _, err := Decode([]byte("lle"), Limits{MaxDepth: 2}); err == nil {
		t.Error("truncated input accepted")
	}
	if _, err := Decode([]byte("llee"), Limits{MaxDepth: 2}); err != nil {
		t.Errorf("depth 2 refused with MaxDepth 2: %v", err)
	}
	if _, err := Decode([]byte("li1ei2ei3ee"), Limits{MaxItems: 3}); err == nil {
		t.Error("4 values accepted with MaxItems 3")
	}
}

func TestDecodePrefix(t *testing.T) {
	in := []byte("d8:msg_typei1e5:piecei0eeRAWDATA")
	v, n, err := DecodePrefix(in, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if string(in[n:]) != "RAWDATA" {
		t.Errorf("rest = %q", in[n:])
	}
	if mt, _ := v.GetInt("msg_type"); mt != 1 {
		t.Errorf("msg_type = %d", mt)
	}
}

func TestEncodeSortsAndRejectsDuplicates(t *testing.T) {
	v := Value{Kind: KindDict, Dict: []Entry{{"b", Int(1)}, {"a", Int(2)}}}
	got, err := Encode(v)
	if err != nil || string(got) != "d1:ai2e1:bi1ee" {
		t.Errorf("Encode = %q, %v", got, err)
	}
	v = Value{Kind: KindDict, Dict: []Entry{{"a", Int(1)}, {"a", Int(2)}}}
	if _, err := Encode(v); err == nil {
		t.Error("duplicate keys encoded")
	}
	if _, err := Encode(Value{}); err == nil {
		t.Error("invalid value encoded")
	}
}

func TestGetters(t *testing.T) {
	v, err := Decode([]byte("d1:ai1e1:b2:xye"), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := v.GetInt("a"); !ok || n != 1 {
		t.Errorf("GetInt(a) = %d %v", n, ok)
	}
	if s, ok := v.GetString("b"); !ok || s != "xy" {
		t.Errorf("GetString(b) = %q %v", s, ok)
	}
	if _, ok := v.GetString("a"); ok {
		t.Error("GetString on an integer succeeded")
	}
	if _, ok := v.Get("c"); ok {
		t.Error("missing key found")
	}
}

func equal(a, b Value) bool {
	if a.Kind != b.Kind {
		return false
	}
	switch a.Kind {
	case KindInt:
		return a.Int == b.Int
	case KindString:
		return bytes.Equal(a.Str, b.Str)
	case KindList:
		if len(a.List) != len(b.List) {
			return false
		}
		for i := range a.List {
			if !equal(a.List[i], b.List[i]) {
				return false
			}
		}
		return true
	case KindDict:
		if len(a.Dict) != len(b.Dict) {
			return false
		}
		for i := range a.Dict {
			if a.Dict[i].Key != b.Dict[i].Key || !equal(a.Dict[i].Value, b.Dict[i].Value) {
				return false
			}
		}
		return true
	}
	return false
}

// FuzzDecode checks that whatever Decode accepts re-encodes to exactly the
// same bytes (the decoder accepts only canonical input) and decodes again.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{"i42e", "4:spam", "l4:spami3ee", "d3:cow3:moo4:spam4:eggse", "d1:ald1:bi1eeee", "i-0e", "d1:b0:1:a0:e", "i03e"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := Decode(data, Limits{MaxSize: 1 << 16})
		if err != nil {
			return
		}
		enc, err := Encode(v)
		if err != nil {
			t.Fatalf("accepted value does not encode: %v", err)
		}
		if !bytes.Equal(enc, data) {
			t.Fatalf("re-encoding differs:\n in %q\nout %q", data, enc)
		}
		if !bytes.Equal(v.Raw, data) {
			t.Fatalf("Raw differs from input")
		}
	})
}
