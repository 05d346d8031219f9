package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/app"
	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/lab"
)

// TestMakeLabCtrlC runs `make lab` as the README says and presses Ctrl-C
// (SIGINT to the whole foreground process group, as a terminal does): make
// must not report "Error 1". It used `go run`, which exits 1 after
// any interrupt whatever the program's status. The lab runs the default
// topology moved to its own block ($APPLAYER_LAB_TOPOLOGY) and the binary is
// built into a temporary directory (BIN=...).
func TestMakeLabCtrlC(t *testing.T) {
	makePath := testkit.Peer(t, "make")
	dir := t.TempDir()
	topo, err := lab.DefaultTopology()
	if err != nil {
		t.Fatal(err)
	}
	offset := 23000 + rand.IntN(50)*10
	topo.Lab = lab.Settings{Block: fmt.Sprintf("127.%d.0.0/16", 200+rand.IntN(50)), PortOffset: &offset, Admin: "127.0.0.1:0", StateDir: dir}
	raw, _ := json.Marshal(topo)
	topoPath := filepath.Join(dir, "lab.json")
	os.WriteFile(topoPath, raw, 0o600)

	ctx := testkit.Context(t, 5*time.Minute)
	cmd := exec.CommandContext(ctx, makePath, "-C", "../..", "lab", "BIN="+filepath.Join(dir, "applayer"))
	cmd.Env = append(os.Environ(), app.TopologyEnv+"="+topoPath)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	stdout, _ := cmd.StdoutPipe()
	var stderr testkit.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	var out strings.Builder
	up := false
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), "lab is up") {
			up = true
			break
		}
	}
	if !up {
		cmd.Wait()
		t.Fatalf("make lab never came up:\n%s\n%s", out.String(), stderr.String())
	}
	rest := make(chan string)
	go func() {
		var b strings.Builder
		for sc.Scan() {
			b.WriteString(sc.Text() + "\n")
		}
		rest <- b.String()
	}()
	syscall.Kill(-cmd.Process.Pid, syscall.SIGINT) // Ctrl-C: make, the shell and the lab
	tail := <-rest
	err = cmd.Wait()
	// make itself got the SIGINT too: it may end by it, as programs do on
	// Ctrl-C (the shell prints nothing then), or exit 0; what it must not do
	// is report the recipe failed ("Error 1", exit 2).
	byInterrupt := false
	if ee, ok := err.(*exec.ExitError); ok {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGINT {
			byInterrupt = true
		}
	}
	if err != nil && !byInterrupt || strings.Contains(stderr.String(), "Error") {
		t.Fatalf("make lab after Ctrl-C: %v (want exit 0 or an end by SIGINT, no error)\nstdout: %s\nstderr: %s", err, tail, stderr.String())
	}
	if !strings.Contains(tail, "lab stopped") {
		t.Errorf("the lab did not say it stopped:\n%s", tail)
	}
}
