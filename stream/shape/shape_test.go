package shape

import (
	"io"
	"net"
	"testing"
	"time"
)

func TestParseSteps(t *testing.T) {
	s, err := ParseSteps("20M:20s,1:20s,500k:15s")
	if err != nil {
		t.Fatal(err)
	}
	if s.Length() != 55*time.Second {
		t.Fatalf("length %v", s.Length())
	}
	for _, c := range []struct {
		at   time.Duration
		rate float64
	}{{0, 20e6}, {19 * time.Second, 20e6}, {20 * time.Second, 1e6}, {50 * time.Second, 0.5e6}, {56 * time.Second, 20e6}} {
		if r := s.Rate(c.at); r != c.rate {
			t.Errorf("rate at %v = %v, want %v", c.at, r, c.rate)
		}
	}
	for _, bad := range []string{"", "20M", "x:1s", "1:xs", "0:1s", "1:0s", "-1:1s"} {
		if _, err := ParseSteps(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestTransferTime: 2.5 MB starting 19 s in: 1 s at 20 Mbit/s carries
// 2.5 MB exactly; starting at 19.5 s, half of it then 1.25 MB at 1 Mbit/s
// (10 s).
func TestTransferTime(t *testing.T) {
	s, _ := ParseSteps("20:20s,1:20s")
	if d := s.TransferTime(19*time.Second, 2.5e6); d != time.Second {
		t.Errorf("TransferTime = %v, want 1s", d)
	}
	if d := s.TransferTime(19500*time.Millisecond, 2.5e6); d != 10500*time.Millisecond {
		t.Errorf("TransferTime = %v, want 10.5s", d)
	}
	if b := s.Bytes(19*time.Second, 2*time.Second); b != 2.5e6+125e3 {
		t.Errorf("Bytes = %v", b)
	}
}

func TestParseCooked(t *testing.T) {
	s, err := ParseCooked([]byte("# a trace\n0.0 2.5\n1.0 1.0\n\n3.0 4\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Steps) != 3 || s.Steps[0].Dur != time.Second || s.Steps[1].Dur != 2*time.Second || s.Steps[2].Dur != 1500*time.Millisecond || s.Steps[2].Mbps != 4 {
		t.Fatalf("%+v", s.Steps)
	}
	for _, bad := range []string{"", "1", "0 1\n0 2", "a b", "0 1 2", "1 NaN", "-1 2"} {
		if _, err := ParseCooked([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestShaperRate: a shaped connection reads 1 Mbit/s (125 kB/s): 100 kB
// take about 0.8 s, not the instant loopback would take.
func TestShaperRate(t *testing.T) {
	s, _ := Constant(1)
	sh := NewShaper(s, nil)
	a, b := net.Pipe()
	go func() {
		a.Write(make([]byte, 100_000))
		a.Close()
	}()
	start := time.Now()
	n, err := io.Copy(io.Discard, sh.Conn(b))
	el := time.Since(start)
	if err != nil || n != 100_000 {
		t.Fatal(n, err)
	}
	// The bucket's 16 KiB burst comes at once: (100000-16384)/125000 s.
	if el < 600*time.Millisecond {
		t.Errorf("100 kB at 1 Mbit/s took %v", el)
	}
}

// FuzzParseCooked: a trace parses into positive steps or fails cleanly.
func FuzzParseCooked(f *testing.F) {
	f.Add([]byte("0.0 2.5\n1.0 1.0\n3.0 4\n"))
	f.Add([]byte("# c\n\n0 0\n"))
	f.Add([]byte("1e308 1e308\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseCooked(data)
		if err != nil {
			return
		}
		for _, st := range s.Steps {
			if st.Dur <= 0 || !(st.Mbps > 0) {
				t.Fatalf("step %+v", st)
			}
		}
		if d := s.TransferTime(0, 1000); d <= 0 {
			t.Fatalf("transfer time %v", d)
		}
	})
}

// FuzzParseSteps as FuzzParseCooked for the step list.
func FuzzParseSteps(f *testing.F) {
	f.Add("20M:20s,1M:20s,8M:15s")
	f.Add("500k:1ms")
	f.Fuzz(func(t *testing.T, spec string) {
		s, err := ParseSteps(spec)
		if err != nil {
			return
		}
		if s.Length() <= 0 {
			t.Fatal("empty")
		}
		s.TransferTime(s.Length()/2, 1e6)
	})
}

// TestProxyShapes: through the proxy, 200 kB from a fast upstream take
// about 200000*8/2e6 = 0.8 s at 2 Mbit/s.
func TestProxyShapes(t *testing.T) {
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	go func() {
		c, err := up.Accept()
		if err != nil {
			return
		}
		c.Write(make([]byte, 200_000))
		c.Close()
	}()
	s, _ := Constant(2)
	p, err := NewProxy("127.0.0.1:0", up.Addr().String(), s)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	n, _ := io.Copy(io.Discard, c)
	if el := time.Since(start); n != 200_000 || el < 600*time.Millisecond {
		t.Fatalf("%d bytes in %v", n, el)
	}
}

// TestSplice: the sawtooth's first 7 s, then a constant 2 Mbit/s, then
// the sawtooth restarted: rates on both sides of the splice.
func TestSplice(t *testing.T) {
	saw, err := ParseSteps("0.5M:3s,1M:3s,1.5M:3s")
	if err != nil {
		t.Fatal(err)
	}
	two, _ := Constant(2)
	for _, c := range []struct {
		then *Schedule
		at   []float64 // seconds
		want []float64 // Mbit/s
	}{
		{two, []float64{0, 2.9, 3, 6.9, 7, 20, 29.9}, []float64{0.5, 0.5, 1, 1.5, 2, 2, 2}},
		{saw, []float64{0, 6.9, 7, 9.9, 10, 13, 16}, []float64{0.5, 1.5, 0.5, 0.5, 1, 1.5, 0.5}},
	} {
		s, err := saw.Splice(7*time.Second, c.then, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if s.Length() != 30*time.Second {
			t.Errorf("length %v", s.Length())
		}
		for i, at := range c.at {
			if got := s.Rate(time.Duration(at*float64(time.Second))) / 1e6; got != c.want[i] {
				t.Errorf("rate at %vs = %v, want %v", at, got, c.want[i])
			}
		}
	}
}
