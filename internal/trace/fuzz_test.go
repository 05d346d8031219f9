package trace

import (
	"bytes"
	"testing"
)

// FuzzReadJSONL: a trace file (trace diagram's input) of any content is
// read without a panic, and what it yields writes back as lines that read
// back to the same events.
func FuzzReadJSONL(f *testing.F) {
	f.Add([]byte(`{"time":"2026-12-03T14:00:00Z","type":"msg","from":"127.1.0.14:40112","to":"127.1.0.2:53","proto":"dns/udp","summary":"query A edu.","bytes":32,"host":"resolver.nyu.edu"}` + "\n"))
	f.Add([]byte("{}\n{\"type\":\"cache.hit\"}\n"))
	f.Add([]byte("{\"time\":\"not a time\"}"))
	f.Add([]byte("[1,2,3]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		evs, err := ReadJSONL(bytes.NewReader(data))
		if err != nil {
			return
		}
		var buf bytes.Buffer
		j := NewJSONL(&buf)
		for _, e := range evs {
			j.Event(e)
		}
		j.Close()
		back, err := ReadJSONL(&buf)
		if err != nil || len(back) != len(evs) {
			t.Fatalf("%d events wrote back as %d: %v", len(evs), len(back), err)
		}
	})
}
