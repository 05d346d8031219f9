package swarm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/applayer/applayer/internal/atomicfile"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/lab"
	"github.com/applayer/applayer/torrent/dht"
	"github.com/applayer/applayer/torrent/metainfo"
	"github.com/applayer/applayer/torrent/tracker"
)

// DefaultPort is the conventional BitTorrent peer port.
const DefaultPort = 6881

// LabSeedConfig configures the lab's torrent-seed kind.
type LabSeedConfig struct {
	// Tracker is the lab's torrent-tracker the seed announces to: its
	// host or the name its config gives it. Default tracker.lab.
	Tracker string `json:"tracker,omitempty"`
	// Name is the sample file's name. Default sample.bin.
	Name string `json:"name,omitempty"`
	// Size is the sample file's size in bytes. Default 8 MiB.
	Size int64 `json:"size,omitempty"`
	// UploadLimit caps the seed's upload, bytes/s (0: none).
	UploadLimit int `json:"upload_limit,omitempty"`
	// DHT is the lab host running the torrent-dht node to join; the seed
	// then runs its own DHT node on its address (UDP, the seed's port) and
	// announces the sample there too. Empty: no DHT.
	DHT string `json:"dht,omitempty"`
}

func (c *LabSeedConfig) defaults() {
	if c.Tracker == "" {
		c.Tracker = "tracker.lab"
	}
	if c.Name == "" {
		c.Name = "sample.bin"
	}
	if c.Size <= 0 {
		c.Size = 8 << 20
	}
}

func (c LabSeedConfig) check() error {
	if c.Size > 1<<30 {
		return errors.New("size: at most 1 GiB")
	}
	if c.Name != "" && (c.Name == "." || c.Name == ".." || filepath.Base(c.Name) != c.Name) {
		return fmt.Errorf("name: %q is not a plain file name", c.Name)
	}
	return nil
}

// LabKinds are the peer's lab kinds: torrent-seed (config: LabSeedConfig),
// which seeds a sample file it generates the same on every run (so its
// info-hash does not change) in STATE/torrent/HOST/, announcing to the
// lab's tracker; the .torrent is written to STATE/torrent/NAME.torrent for
// `applayer torrent get`.
func LabKinds() []lab.Kind {
	return []lab.Kind{{
		Name: "torrent-seed", Summary: "BitTorrent seed of a sample file, announcing to the lab's tracker", Port: DefaultPort, Network: "tcp",
		Check: func(raw json.RawMessage) error {
			var c LabSeedConfig
			if err := lab.DecodeConfig(raw, &c); err != nil {
				return err
			}
			return c.check()
		},
		Build: func(env lab.Env) (service.Service, error) {
			var c LabSeedConfig
			if err := lab.DecodeConfig(env.Spec.Config, &c); err != nil {
				return nil, err
			}
			c.defaults()
			th, port, err := tracker.LabTracker(env.Plan, c.Tracker)
			if err != nil {
				return nil, fmt.Errorf("swarm: torrent-seed: %w", err)
			}
			hostPort := netip.AddrPortFrom(th.Addr, uint16(port)).String()
			base := filepath.Join(env.Plan.StateDir, "torrent")
			dir := filepath.Join(base, env.Host.Name)
			if err := writeSample(filepath.Join(dir, c.Name), c.Size); err != nil {
				return nil, err
			}
			m, err := metainfo.Create(filepath.Join(dir, c.Name), metainfo.CreateOptions{
				Trackers:  [][]string{{"http://" + hostPort + "/announce"}, {"udp://" + hostPort}},
				CreatedBy: "applayer lab",
			})
			if err != nil {
				return nil, err
			}
			if err := atomicfile.Write(filepath.Join(base, c.Name+".torrent"), m.Bytes(), 0o644); err != nil {
				return nil, err
			}
			cfg := Config{Torrent: m, Dir: dir, Listen: env.Listen.String(), Seed: true, UploadLimit: c.UploadLimit}
			if c.DHT == "" {
				return New(cfg, env.Deps)
			}
			dh, ok := env.Plan.Lookup(c.DHT)
			if !ok {
				return nil, fmt.Errorf("swarm: torrent-seed: dht host %q is not in the lab", c.DHT)
			}
			node, err := dht.New(dht.Config{Addr: env.Listen.String(),
				Bootstrap: []string{netip.AddrPortFrom(dh.Addr, uint16(env.Plan.Port(dht.DefaultPort))).String()}}, env.Deps)
			if err != nil {
				return nil, err
			}
			cfg.DHT = node
			cl, err := New(cfg, env.Deps)
			if err != nil {
				return nil, err
			}
			return &withDHT{node: node, Client: cl}, nil
		},
	}}
}

// writeSample writes size pseudo-random bytes (the same every time) to
// path unless it is already there at that size.
func writeSample(path string, size int64) error {
	if st, err := os.Stat(path); err == nil && st.Size() == size {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("swarm: %w", err)
	}
	r := rand.New(rand.NewPCG(uint64(size), 0x6170706c61796572))
	b := make([]byte, size)
	for i := 0; i+8 <= len(b); i += 8 {
		v := r.Uint64()
		for k := range 8 {
			b[i+k] = byte(v >> (8 * k))
		}
	}
	for i := len(b) &^ 7; i < len(b); i++ {
		b[i] = byte(r.Uint32())
	}
	if err := atomicfile.Write(path, b, 0o644); err != nil {
		return fmt.Errorf("swarm: sample %s: %w", path, err)
	}
	return nil
}

// withDHT runs a client with its own DHT node: the node starts first and
// stops last.
type withDHT struct {
	node *dht.Node
	*Client
}

func (w *withDHT) Start(ctx context.Context) error {
	if err := w.node.Start(ctx); err != nil {
		return err
	}
	if err := w.Client.Start(ctx); err != nil {
		w.node.Shutdown(ctx)
		return err
	}
	return nil
}

func (w *withDHT) Shutdown(ctx context.Context) error {
	return errors.Join(w.Client.Shutdown(ctx), w.node.Shutdown(ctx))
}

func (w *withDHT) Addrs() []net.Addr { return append(w.Client.Addrs(), w.node.Addrs()...) }
