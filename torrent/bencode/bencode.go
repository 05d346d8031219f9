// Package bencode is BitTorrent's serialisation (BEP 3): integers
// (i42e), byte strings (4:spam), lists (l...e) and dictionaries (d...e).
//
// The decoder is strict, as BEP 3 asks: integers are canonical (no leading
// zeros, no -0), dictionary keys are byte strings in sorted order without
// duplicates, and input size, nesting depth and string length are bounded.
// Because only canonical input is accepted, Encode(Decode(b)) == b, so a
// decoded value's Raw bytes and its re-encoding are the same; the info-hash
// of a torrent is computed from Raw anyway.
package bencode

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strconv"
)

// Kind is the type of a Value.
type Kind uint8

// The four bencode types.
const (
	KindInvalid Kind = iota
	KindInt
	KindString
	KindList
	KindDict
	// KindRaw is a value already encoded (its Raw field), written as it is:
	// it splices a decoded info dictionary into a new .torrent unchanged.
	KindRaw
)

func (k Kind) String() string {
	switch k {
	case KindInt:
		return "integer"
	case KindString:
		return "string"
	case KindList:
		return "list"
	case KindDict:
		return "dictionary"
	case KindRaw:
		return "raw"
	}
	return "invalid"
}

// Value is one bencoded value. Exactly the field matching Kind is set.
type Value struct {
	Kind Kind
	Int  int64
	Str  []byte
	List []Value
	// Dict holds the entries in key order (strictly increasing).
	Dict []Entry
	// Raw is the value's encoding as found in the decoded input (nil for
	// values built in code).
	Raw []byte
}

// Entry is one key and value of a dictionary.
type Entry struct {
	Key   string
	Value Value
}

// Int returns an integer value.
func Int(n int64) Value { return Value{Kind: KindInt, Int: n} }

// String returns a byte-string value holding s.
func String(s string) Value { return Value{Kind: KindString, Str: []byte(s)} }

// Bytes returns a byte-string value holding b.
func Bytes(b []byte) Value { return Value{Kind: KindString, Str: b} }

// List returns a list value.
func List(vs ...Value) Value { return Value{Kind: KindList, List: vs} }

// Dict returns a dictionary value of m, its keys sorted.
func Dict(m map[string]Value) Value {
	d := Value{Kind: KindDict, Dict: make([]Entry, 0, len(m))}
	for k, v := range m {
		d.Dict = append(d.Dict, Entry{Key: k, Value: v})
	}
	sort.Slice(d.Dict, func(i, j int) bool { return d.Dict[i].Key < d.Dict[j].Key })
	return d
}

// RawValue returns a value that encodes as b, which must already be
// bencoded.
func RawValue(b []byte) Value { return Value{Kind: KindRaw, Raw: b} }

// Get returns the value of key in a dictionary, and whether it is there.
func (v Value) Get(key string) (Value, bool) {
	if v.Kind != KindDict {
		return Value{}, false
	}
	i := sort.Search(len(v.Dict), func(i int) bool { return v.Dict[i].Key >= key })
	if i < len(v.Dict) && v.Dict[i].Key == key {
		return v.Dict[i].Value, true
	}
	return Value{}, false
}

// GetString returns the byte string at key, if there is one.
func (v Value) GetString(key string) (string, bool) {
	x, ok := v.Get(key)
	if !ok || x.Kind != KindString {
		return "", false
	}
	return string(x.Str), true
}

// GetInt returns the integer at key, if there is one.
func (v Value) GetInt(key string) (int64, bool) {
	x, ok := v.Get(key)
	if !ok || x.Kind != KindInt {
		return 0, false
	}
	return x.Int, true
}

// Limits bound what Decode accepts. Zero fields take the defaults.
type Limits struct {
	// MaxSize is the largest input, in bytes. Default 16 MiB.
	MaxSize int
	// MaxDepth is the deepest nesting of lists and dictionaries. Default 32.
	MaxDepth int
	// MaxItems caps the number of values in the whole input. Default 1<<20.
	MaxItems int
}

func (l Limits) withDefaults() Limits {
	if l.MaxSize <= 0 {
		l.MaxSize = 16 << 20
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = 32
	}
	if l.MaxItems <= 0 {
		l.MaxItems = 1 << 20
	}
	return l
}

// SyntaxError reports malformed input and where it was found.
type SyntaxError struct {
	Offset int
	Msg    string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("bencode: offset %d: %s", e.Offset, e.Msg)
}

// ErrTooLarge is returned (wrapped) when input exceeds Limits.MaxSize.
var ErrTooLarge = errors.New("bencode: input too large")

// Decode decodes exactly one value filling all of data.
func Decode(data []byte, lim Limits) (Value, error) {
	v, n, err := DecodePrefix(data, lim)
	if err != nil {
		return Value{}, err
	}
	if n != len(data) {
		return Value{}, &SyntaxError{Offset: n, Msg: "trailing data after value"}
	}
	return v, nil
}

// DecodePrefix decodes one value at the start of data and returns it with
// the number of bytes it used; what follows is left alone (ut_metadata
// messages carry raw data after a dictionary).
func DecodePrefix(data []byte, lim Limits) (Value, int, error) {
	lim = lim.withDefaults()
	if len(data) > lim.MaxSize {
		return Value{}, 0, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(data), lim.MaxSize)
	}
	d := decoder{data: data, lim: lim}
	v, err := d.value(0)
	if err != nil {
		return Value{}, 0, err
	}
	return v, d.pos, nil
}

type decoder struct {
	data  []byte
	pos   int
	lim   Limits
	items int
}

func (d *decoder) fail(msg string, args ...any) error {
	return &SyntaxError{Offset: d.pos, Msg: fmt.Sprintf(msg, args...)}
}

func (d *decoder) value(depth int) (Value, error) {
	if d.pos >= len(d.data) {
		return Value{}, d.fail("unexpected end of input")
	}
	d.items++
	if d.items > d.lim.MaxItems {
		return Value{}, d.fail("more than %d values", d.lim.MaxItems)
	}
	start := d.pos
	switch c := d.data[d.pos]; {
	case c == 'i':
		d.pos++
		n, err := d.integer('e')
		if err != nil {
			return Value{}, err
		}
		return Value{Kind: KindInt, Int: n, Raw: d.data[start:d.pos]}, nil
	case c >= '0' && c <= '9':
		s, err := d.str()
		if err != nil {
			return Value{}, err
		}
		return Value{Kind: KindString, Str: s, Raw: d.data[start:d.pos]}, nil
	case c == 'l':
		if depth >= d.lim.MaxDepth {
			return Value{}, d.fail("nesting deeper than %d", d.lim.MaxDepth)
		}
		d.pos++
		var list []Value
		for {
			if d.pos >= len(d.data) {
				return Value{}, d.fail("unterminated list")
			}
			if d.data[d.pos] == 'e' {
				d.pos++
				break
			}
			v, err := d.value(depth + 1)
			if err != nil {
				return Value{}, err
			}
			list = append(list, v)
		}
		return Value{Kind: KindList, List: list, Raw: d.data[start:d.pos]}, nil
	case c == 'd':
		if depth >= d.lim.MaxDepth {
			return Value{}, d.fail("nesting deeper than %d", d.lim.MaxDepth)
		}
		d.pos++
		var dict []Entry
		for {
			if d.pos >= len(d.data) {
				return Value{}, d.fail("unterminated dictionary")
			}
			if d.data[d.pos] == 'e' {
				d.pos++
				break
			}
			if c := d.data[d.pos]; c < '0' || c > '9' {
				return Value{}, d.fail("dictionary key is not a string")
			}
			kpos := d.pos
			k, err := d.str()
			if err != nil {
				return Value{}, err
			}
			if n := len(dict); n > 0 {
				switch cmp := bytes.Compare([]byte(dict[n-1].Key), k); {
				case cmp == 0:
					return Value{}, &SyntaxError{Offset: kpos, Msg: fmt.Sprintf("duplicate key %q", k)}
				case cmp > 0:
					return Value{}, &SyntaxError{Offset: kpos, Msg: fmt.Sprintf("key %q out of order", k)}
				}
			}
			v, err := d.value(depth + 1)
			if err != nil {
				return Value{}, err
			}
			dict = append(dict, Entry{Key: string(k), Value: v})
		}
		return Value{Kind: KindDict, Dict: dict, Raw: d.data[start:d.pos]}, nil
	default:
		return Value{}, d.fail("unexpected byte %q", c)
	}
}

// integer reads a canonical decimal integer up to end and consumes end.
func (d *decoder) integer(end byte) (int64, error) {
	i := bytes.IndexByte(d.data[d.pos:], end)
	if i < 0 {
		return 0, d.fail("unterminated integer")
	}
	digits := d.data[d.pos : d.pos+i]
	if err := canonical(digits, end == 'e'); err != nil {
		return 0, d.fail("%s", err)
	}
	n, err := strconv.ParseInt(string(digits), 10, 64)
	if err != nil {
		return 0, d.fail("integer %q out of range", digits)
	}
	d.pos += i + 1
	return n, nil
}

func canonical(digits []byte, signed bool) error {
	if len(digits) == 0 {
		return errors.New("empty integer")
	}
	if len(digits) > 20 {
		return fmt.Errorf("integer %q too long", digits)
	}
	body := digits
	if signed && body[0] == '-' {
		body = body[1:]
		if len(body) == 0 {
			return errors.New("lone minus sign")
		}
		if body[0] == '0' {
			return fmt.Errorf("non-canonical integer %q", digits)
		}
	}
	for _, c := range body {
		if c < '0' || c > '9' {
			return fmt.Errorf("bad digit in integer %q", digits)
		}
	}
	if len(body) > 1 && body[0] == '0' {
		return fmt.Errorf("non-canonical integer %q (leading zero)", digits)
	}
	return nil
}

func (d *decoder) str() ([]byte, error) {
	n, err := d.integer(':')
	if err != nil {
		return nil, err
	}
	if n > int64(len(d.data)-d.pos) {
		return nil, d.fail("string of %d bytes runs past the end of input", n)
	}
	s := d.data[d.pos : d.pos+int(n)]
	d.pos += int(n)
	return s, nil
}

// Encode returns the canonical encoding of v. Dictionary entries are
// written in key order whatever order v holds them in; an invalid Kind or a
// duplicate key is an error.
func Encode(v Value) ([]byte, error) {
	var b bytes.Buffer
	if err := encode(&b, v, 0); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// MustEncode is Encode for values built in code, which cannot be invalid
// unless the program is wrong; it panics on error.
func MustEncode(v Value) []byte {
	b, err := Encode(v)
	if err != nil {
		panic(err)
	}
	return b
}

func encode(b *bytes.Buffer, v Value, depth int) error {
	if depth > 64 {
		return errors.New("bencode: value nested too deeply")
	}
	switch v.Kind {
	case KindInt:
		b.WriteByte('i')
		b.WriteString(strconv.FormatInt(v.Int, 10))
		b.WriteByte('e')
	case KindString:
		b.WriteString(strconv.Itoa(len(v.Str)))
		b.WriteByte(':')
		b.Write(v.Str)
	case KindList:
		b.WriteByte('l')
		for _, x := range v.List {
			if err := encode(b, x, depth+1); err != nil {
				return err
			}
		}
		b.WriteByte('e')
	case KindDict:
		entries := v.Dict
		if !sort.SliceIsSorted(entries, func(i, j int) bool { return entries[i].Key < entries[j].Key }) {
			entries = append([]Entry(nil), entries...)
			sort.SliceStable(entries, func(i, j int) bool { return entries[i].Key < entries[j].Key })
		}
		b.WriteByte('d')
		for i, e := range entries {
			if i > 0 && entries[i-1].Key == e.Key {
				return fmt.Errorf("bencode: duplicate key %q", e.Key)
			}
			b.WriteString(strconv.Itoa(len(e.Key)))
			b.WriteByte(':')
			b.WriteString(e.Key)
			if err := encode(b, e.Value, depth+1); err != nil {
				return err
			}
		}
		b.WriteByte('e')
	case KindRaw:
		b.Write(v.Raw)
	default:
		return fmt.Errorf("bencode: cannot encode a value of kind %s", v.Kind)
	}
	return nil
}
