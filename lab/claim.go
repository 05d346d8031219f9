package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// claim is what a running lab records about itself, so a second lab on the
// same block can say which lab holds it instead of a bare "address already
// in use".
type claim struct {
	PID      int       `json:"pid"`
	Block    string    `json:"block"`
	StateDir string    `json:"state_dir"`
	Admin    string    `json:"admin,omitempty"`
	Started  time.Time `json:"started"`
}

// claimPath is where the lab on block records itself: one file per block in
// the system's temporary directory, shared by every user (root's lab and a
// user's lab on the same block collide on addresses too).
func claimPath(block string) string {
	name := strings.NewReplacer("/", "_", ":", "_").Replace(block)
	return filepath.Join(os.TempDir(), "applayer-lab-block-"+name+".json")
}

func (r *Running) writeClaim() {
	c := claim{PID: os.Getpid(), Block: r.Plan.Block.String(), StateDir: r.Plan.StateDir, Started: time.Now().UTC()}
	if r.Admin != nil {
		c.Admin = listenString(r.Admin)
	}
	raw, err := json.Marshal(c)
	if err != nil {
		return
	}
	path := claimPath(c.Block)
	tmp := fmt.Sprintf("%s.%d.tmp", path, c.PID)
	if err := os.WriteFile(tmp, raw, 0o644); err != nil {
		return // best effort: the lab runs without it
	}
	if os.Rename(tmp, path) != nil {
		os.Remove(tmp)
		return
	}
	r.claimed = path
}

func (r *Running) removeClaim() {
	if r.claimed == "" {
		return
	}
	if c, ok := readClaim(r.claimed); ok && c.PID == os.Getpid() && c.StateDir == r.Plan.StateDir {
		os.Remove(r.claimed)
	}
	r.claimed = ""
}

func readClaim(path string) (claim, bool) {
	var c claim
	raw, err := os.ReadFile(path)
	if err != nil || json.Unmarshal(raw, &c) != nil || c.PID <= 0 {
		return c, false
	}
	return c, true
}

// explainInUse turns a start failure on an address in use into one that
// names the lab holding the block, when a live one recorded itself.
func (r *Running) explainInUse(err error) error {
	if !errors.Is(err, syscall.EADDRINUSE) {
		return err
	}
	block := r.Plan.Block.String()
	c, ok := readClaim(claimPath(block))
	if !ok || !processAlive(c.PID) {
		return fmt.Errorf("lab: an address of the lab block %s is already in use by another program (not a lab that recorded itself); stop it or give the lab another block (lab.block in the topology):\n%w", block, err)
	}
	who := fmt.Sprintf("pid %d, started %s, state dir %s", c.PID, c.Started.Local().Format("2006-01-02 15:04:05"), c.StateDir)
	if c.Admin != "" {
		who += ", admin " + c.Admin
	}
	return fmt.Errorf("lab: the lab block %s is already held by another lab (%s): stop it (Ctrl-C, or kill %d) or give this lab another block (lab.block in the topology):\n%w", block, who, c.PID, err)
}

// RunningAdmin returns the admin listener address of the live lab that
// recorded itself on block, when there is one.
func RunningAdmin(block netip.Prefix) (string, bool) {
	c, ok := readClaim(claimPath(block.String()))
	if !ok || !processAlive(c.PID) || c.Admin == "" {
		return "", false
	}
	// listenString's form: "tcp 127.0.0.1:9900".
	a := c.Admin
	if _, after, ok := strings.Cut(a, " "); ok {
		a = after
	}
	return a, true
}

// AdminAddr returns the bound address of the lab's admin listener ("" when
// it has none).
func (r *Running) AdminAddr() string {
	if r.Admin == nil {
		return ""
	}
	if as := r.Admin.Addrs(); len(as) > 0 {
		return as[0].String()
	}
	return ""
}
