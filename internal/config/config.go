// Package config holds the shared pieces of applayer's configuration: the
// Duration type, strict YAML/JSON loading into config structs, and field
// errors that name the offending field and the reason.
//
// JSON is the native schema (struct json tags); YAML is converted to JSON
// first, so both formats fill the same structs and unknown fields are
// rejected in both.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Duration is a time.Duration that reads "5s"-style strings or a number of
// seconds, and writes the string form.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON writes d as a string such as "1m30s".
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads "1m30s" or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("invalid duration %q", s)
		}
		*d = Duration(v)
		return nil
	}
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("invalid duration %s: want a string like \"5s\" or a number of seconds", b)
	}
	*d = Duration(f * float64(time.Second))
	return nil
}

// FieldError says which field of a config is wrong and why.
type FieldError struct {
	Field  string // dotted path of the field, e.g. "sites[0].root"
	Reason string // what is wrong with its value
}

// Error returns "field: reason".
func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Errorf returns a *FieldError for field.
func Errorf(field, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Prefix returns err with every FieldError's field prefixed by prefix (e.g.
// "hosts[2]"), so nested Validate methods compose into full field paths.
func Prefix(prefix string, err error) error {
	if err == nil {
		return nil
	}
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	out := make([]error, 0, len(errs))
	for _, e := range errs {
		var fe *FieldError
		if errors.As(e, &fe) {
			f := prefix
			if fe.Field != "" {
				if strings.HasPrefix(fe.Field, "[") {
					f += fe.Field
				} else {
					f += "." + fe.Field
				}
			}
			out = append(out, &FieldError{Field: f, Reason: fe.Reason})
			continue
		}
		out = append(out, &FieldError{Field: prefix, Reason: e.Error()})
	}
	return errors.Join(out...)
}

// Decode reads data in format "yaml" or "json" into v, rejecting unknown
// fields and trailing data.
func Decode(data []byte, format string, v any) error {
	switch format {
	case "yaml", "yml":
		j, err := yaml.YAMLToJSON(data)
		if err != nil {
			return fmt.Errorf("config: yaml: %w", err)
		}
		data = j
	case "json":
	default:
		return fmt.Errorf("config: unknown format %q (want yaml or json)", format)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("config: %s", describeJSONError(err))
	}
	if dec.More() {
		return errors.New("config: trailing data after the document")
	}
	return nil
}

func describeJSONError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("%s: cannot use %s as %s", te.Field, te.Value, te.Type)
	}
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "json: ")
	return msg
}

// Load reads a YAML (.yaml, .yml) or JSON (.json) file into v. Other
// extensions are read as YAML, which is a superset of JSON.
func Load(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	format := "yaml"
	if strings.EqualFold(filepath.Ext(path), ".json") {
		format = "json"
	}
	if err := Decode(data, format, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// String returns d as "1m30s", so a Duration can be a command-line flag
// bound to a config field (with Set and Type, it is a pflag.Value).
func (d Duration) String() string { return time.Duration(d).String() }

// Set parses "1m30s".
func (d *Duration) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("config: invalid duration %q", s)
	}
	*d = Duration(v)
	return nil
}

// Type names the flag's value type in help texts.
func (d *Duration) Type() string { return "duration" }
