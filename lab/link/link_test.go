package link

import (
	"math"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Config
		err  bool
	}{
		{in: "delay=1s,rate=1.54Mbit,loss=1%", want: Config{Delay: time.Second, Up: 1.54e6, Down: 1.54e6, Loss: 0.01}},
		{in: "delay=20ms, up=100kbit, down=10Mbit, queue=64KB", want: Config{Delay: 20 * time.Millisecond, Up: 1e5, Down: 1e7, Queue: 64000}},
		{in: "loss=0.05,queue=16KiB,rate=56000", want: Config{Loss: 0.05, Queue: 16384, Up: 56000, Down: 56000}},
		{in: "rate=1Gbit/s", want: Config{Up: 1e9, Down: 1e9}},
		{in: "", want: Config{}},
		{in: "delay=fast", err: true},
		{in: "rate=-1Mbit", err: true},
		{in: "loss=100%", err: true},
		{in: "loss=-1%", err: true},
		{in: "jitter=1ms", err: true},
		{in: "delay", err: true},
		{in: "delay=-1s", err: true},
		{in: "queue=lots", err: true},
	} {
		got, err := Parse(tc.in)
		if (err != nil) != tc.err {
			t.Errorf("Parse(%q) error %v, want error %v", tc.in, err, tc.err)
			continue
		}
		if !tc.err && got != tc.want {
			t.Errorf("Parse(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
		if !tc.err {
			back, err := Parse(got.String())
			if err != nil || back != got {
				t.Errorf("Parse(%q.String() = %q) = %+v, %v; want %+v", tc.in, got.String(), back, err, got)
			}
		}
	}
}

// simulate offers a back-to-back stream of size-byte packets to p from t0,
// each as soon as the previous one was transmitted (a sender that always has
// data), for dur, and returns the bytes delivered by t0+dur and the last
// verdict.
func simulate(p *Pipe, t0 time.Time, dur time.Duration, size int, datagram bool) (delivered int, last Verdict) {
	now := t0
	end := t0.Add(dur)
	for now.Before(end) {
		v := p.Offer(now, size, datagram)
		if v.Drop == "" && !v.At.After(end) {
			delivered += size
		}
		last = v
		if v.Done.After(now) {
			now = v.Done
		} else {
			now = now.Add(time.Microsecond)
		}
	}
	return delivered, last
}

// TestRateSimulated: a 1.54 Mbit/s link delivers 1.54 Mbit/s ± 3% over 10
// s of simulated time (the bound), for streams and datagrams.
func TestRateSimulated(t *testing.T) {
	t0 := time.Unix(1000, 0)
	for _, tc := range []struct {
		rate     float64
		size     int
		datagram bool
	}{{1.54e6, MSS, false}, {1.54e6, 1200, true}, {1.54e6, chunk, false}, {100e3, 512, true}, {100e6, chunk, false}} {
		p := NewPipe("test", 0, tc.rate, 0, 0, 1)
		got, _ := simulate(p, t0, 10*time.Second, tc.size, tc.datagram)
		measured := float64(got) * 8 / 10
		if e := math.Abs(measured-tc.rate) / tc.rate; e > 0.03 {
			t.Errorf("rate %g, %d-byte packets: measured %.0f bit/s, off by %.1f%% (> 3%%)", tc.rate, tc.size, measured, e*100)
		} else {
			t.Logf("rate %s, %d-byte packets: measured %.4f Mbit/s (%.2f%% off)", FormatRate(tc.rate), tc.size, measured/1e6, e*100)
		}
	}
}

// TestDelaySimulated: a 1 s delay adds 1 s ± 10 ms, alone and on top of a
// rate (then the transmission time L/R is added, exactly).
func TestDelaySimulated(t *testing.T) {
	t0 := time.Unix(1000, 0)
	p := NewPipe("test", time.Second, 0, 0, 0, 1)
	for i := 0; i < 100; i++ {
		now := t0.Add(time.Duration(i) * 37 * time.Millisecond)
		v := p.Offer(now, 1000, i%2 == 0)
		if d := v.At.Sub(now); d < time.Second-10*time.Millisecond || d > time.Second+10*time.Millisecond {
			t.Fatalf("packet %d: delivered after %s, want 1s ± 10ms", i, d)
		}
	}
	p = NewPipe("test", time.Second, 1.54e6, 0, 0, 1)
	v := p.Offer(t0, 12500, false)                 // the chapter's 100 kbit object
	want := time.Second + 64935064*time.Nanosecond // 100e3 / 1.54e6 s
	if d := v.At.Sub(t0); d < want-time.Nanosecond || d > want+time.Nanosecond {
		t.Errorf("100 kbit over 1.54 Mbit/s + 1 s: %s, want %s", d, want)
	}
	// A path adds its pipes' delays and transmissions.
	a := NewPipe("a", 10*time.Millisecond, 0, 0, 0, 1)
	b := NewPipe("b", 30*time.Millisecond, 8e6, 0, 0, 1)
	pv := Path{a, b}.Offer(t0, 1000, true)
	if d := pv.At.Sub(t0); d != 41*time.Millisecond {
		t.Errorf("path of 10ms and 30ms + 1000 B at 8 Mbit/s: %s, want 41ms", d)
	}
}

// TestQueueingSimulated: packets arriving together queue behind each other
// (FIFO), the way the chapter's access link makes requests wait.
func TestQueueingSimulated(t *testing.T) {
	t0 := time.Unix(1000, 0)
	p := NewPipe("test", 0, 1e6, 0, 0, 1)
	for i := 1; i <= 5; i++ {
		v := p.Offer(t0, 1250, false) // 10 ms each at 1 Mbit/s
		if want := time.Duration(i) * 10 * time.Millisecond; v.At.Sub(t0) != want {
			t.Errorf("packet %d of a burst: delivered at +%s, want +%s", i, v.At.Sub(t0), want)
		}
	}
	// After the queue drained, a packet waits for nobody.
	later := t0.Add(time.Second)
	if v := p.Offer(later, 1250, false); v.At.Sub(later) != 10*time.Millisecond {
		t.Errorf("packet on an idle link: +%s, want +10ms", v.At.Sub(later))
	}
}

// TestQueueLimitSimulated: datagrams beyond the queue limit are dropped;
// streams are never dropped (they are held back instead).
func TestQueueLimitSimulated(t *testing.T) {
	t0 := time.Unix(1000, 0)
	p := NewPipe("test", 0, 1e6, 0, 10000, 1)
	kept := 0
	for i := 0; i < 20; i++ {
		v := p.Offer(t0, 1000, true)
		if v.Drop == "" {
			kept++
		} else if v.Drop != "queue full" {
			t.Errorf("drop reason %q, want queue full", v.Drop)
		}
	}
	if kept != 10 || p.Dropped() != 10 {
		t.Errorf("20 datagrams of 1000 B into a 10000 B queue: kept %d, dropped %d; want 10 and 10", kept, p.Dropped())
	}
	for i := 0; i < 20; i++ {
		if v := p.Offer(t0, 1000, false); v.Drop != "" {
			t.Fatalf("stream chunk dropped: %q", v.Drop)
		}
	}
}

// TestLossSimulated: datagrams are lost at the configured rate (within
// four standard deviations over 20000 datagrams), repeatably for a seed;
// lost stream segments arrive one RTO late instead.
func TestLossSimulated(t *testing.T) {
	t0 := time.Unix(1000, 0)
	const n = 20000
	for _, loss := range []float64{0.01, 0.1, 0.3} {
		count := func(seed uint64) int {
			p := NewPipe("test", 0, 0, loss, 0, seed)
			for i := 0; i < n; i++ {
				p.Offer(t0, 100, true)
			}
			return int(p.Dropped())
		}
		got := count(7)
		sd := math.Sqrt(n * loss * (1 - loss))
		if math.Abs(float64(got)-n*loss) > 4*sd {
			t.Errorf("loss %g: %d of %d dropped, want %.0f ± %.0f", loss, got, n, n*loss, 4*sd)
		}
		if again := count(7); again != got {
			t.Errorf("loss %g: seed 7 dropped %d then %d", loss, got, again)
		}
	}
	p := NewPipe("test", 50*time.Millisecond, 0, 0.5, 0, 3)
	late := 0
	for i := 0; i < 1000; i++ {
		v := p.Offer(t0, MSS, false)
		switch d := v.At.Sub(t0); d {
		case 50 * time.Millisecond:
		case 50*time.Millisecond + MinRTO + 100*time.Millisecond, 50*time.Millisecond + 2*(MinRTO+100*time.Millisecond):
			late++
		default:
			if d < 50*time.Millisecond || (d-50*time.Millisecond)%(MinRTO+100*time.Millisecond) != 0 {
				t.Fatalf("stream segment delivered at +%s: not the delay plus whole RTOs", d)
			}
			late++
		}
	}
	if late < 400 || late > 600 || int(p.Retransmitted()) != late {
		t.Errorf("loss 0.5 on 1000 stream segments: %d late (counter %d), want about 500", late, p.Retransmitted())
	}
}

// TestLoseNextSimulated: LoseNext loses exactly the next segments or
// datagrams, whatever the loss rate: a lost stream segment arrives one RTO
// (200 ms + RTT) late and the Verdict says so; the chunk after it is not
// lost; a datagram is dropped.
func TestLoseNextSimulated(t *testing.T) {
	t0 := time.Unix(1000, 0)
	const d = 25 * time.Millisecond
	p := NewPipe("client link down", d, 0, 0, 0, 1)
	if v := p.Offer(t0, 3*MSS, false); v.Lost != 0 || v.At != t0.Add(d) {
		t.Fatalf("before LoseNext: %+v, want on time", v)
	}
	p.LoseNext(1)
	v := p.Offer(t0, 3*MSS, false)
	if v.Lost != 1 || v.LostAt != "client link down" || v.Stall != MinRTO+2*d || v.At != t0.Add(d+MinRTO+2*d) {
		t.Errorf("lost chunk: %+v, want 1 segment lost, %s late", v, MinRTO+2*d)
	}
	if v := p.Offer(t0, 3*MSS, false); v.Lost != 0 || v.At != t0.Add(d) {
		t.Errorf("after the lost segment: %+v, want on time (LoseNext(1) loses one)", v)
	}
	p.LoseNext(2)
	if v := p.Offer(t0, 3*MSS, false); v.Lost != 2 || v.Stall != 2*(MinRTO+2*d) {
		t.Errorf("LoseNext(2) on a 3-segment chunk: %+v, want 2 lost", v)
	}
	p.LoseNext(1)
	if v := p.Offer(t0, 100, true); v.Drop != "loss" {
		t.Errorf("datagram after LoseNext(1): %+v, want dropped", v)
	}
	if v := p.Offer(t0, 100, true); v.Drop != "" {
		t.Errorf("next datagram: %+v, want delivered", v)
	}
	if p.Retransmitted() != 3 || p.Dropped() != 1 {
		t.Errorf("counters: %d retransmitted, %d dropped; want 3, 1", p.Retransmitted(), p.Dropped())
	}
	// Across a path, the pipe that lost it is named and the stalls add up.
	up := NewPipe("a up", d, 0, 0, 0, 1)
	up.LoseNext(1)
	pv := Path{up, NewPipe("b down", d, 0, 0, 0, 2)}.Offer(t0, MSS, false)
	if pv.Lost != 1 || pv.LostAt != "a up" || pv.At != t0.Add(2*d+MinRTO+2*d) {
		t.Errorf("path: %+v", pv)
	}
}

// FuzzParse: any --link or topology string either parses into a valid
// Config that renders back to (nearly) itself, or is refused; never a
// panic.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"delay=1s,rate=1.54Mbit,loss=1%", "up=100kbit,down=10Mbit,queue=64KB", "loss=0.5", "queue=16KiB", "rate=1e3", "delay=-1s", ",,", "rate=0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse(s)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse(%q) accepted an invalid config: %v", s, err)
		}
		back, err := Parse(c.String())
		if err != nil {
			t.Fatalf("Parse(%q).String() = %q does not parse: %v", s, c.String(), err)
		}
		near := func(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(math.Abs(a), math.Abs(b)) }
		if back.Delay != c.Delay || back.Queue != c.Queue || !near(back.Up, c.Up) || !near(back.Down, c.Down) || !near(back.Loss, c.Loss) {
			t.Fatalf("Parse(%q) = %+v, rendered %q, parsed back %+v", s, c, c.String(), back)
		}
	})
}
