//go:build linux

package zone

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// diskFullEnv, in a child test process, names the key directory to use
// with writes limited to a few bytes (RLIMIT_FSIZE: the write fails with
// EFBIG, as a full disk fails with ENOSPC, after part of the data).
const diskFullEnv = "APPLAYER_TEST_DISKFULL_DIR"

// TestKeyFilesOnFullDisk: generating keys on a disk that fills mid-write
// fails, and leaves no partial key file behind: the next start (with
// space again) generates the keys and signs. Before key files were
// written atomically, a 0-byte or cut .private stayed and every later
// start failed on it.
func TestKeyFilesOnFullDisk(t *testing.T) {
	if dir := os.Getenv(diskFullEnv); dir != "" {
		// The child: limit file size, then try.
		n, _ := strconv.Atoi(os.Getenv(diskFullEnv + "_LIMIT"))
		lim := syscall.Rlimit{Cur: uint64(n), Max: uint64(n)}
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
			t.Fatalf("setrlimit: %v", err)
		}
		if _, err := LoadOrCreateKeys(dir, "example.", ""); err == nil {
			t.Fatal("key generation succeeded on a full disk")
		}
		return
	}
	// (An ECDSA key's .private is 114 bytes, its .key 122, its .state 136.)
	// 40 bytes cuts the first .private; 118 lets it through and cuts the
	// .key; 130 cuts the .state file.
	for _, limit := range []int{40, 118, 130} {
		t.Run(strconv.Itoa(limit), func(t *testing.T) { keysOnFullDisk(t, limit) })
	}
}

func keysOnFullDisk(t *testing.T, limit int) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKeyFilesOnFullDisk$", "-test.count=1")
	cmd.Env = append(os.Environ(), diskFullEnv+"="+dir, diskFullEnv+"_LIMIT="+strconv.Itoa(limit))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	es, _ := os.ReadDir(dir)
	for _, e := range es {
		t.Logf("left after the failed write: %s", e.Name())
		if strings.HasPrefix(e.Name(), ".atomic-") {
			continue // a crash's leftover; the next open removes it
		}
		if fi, _ := e.Info(); strings.HasSuffix(e.Name(), ".key") || strings.HasSuffix(e.Name(), ".private") {
			b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
			if _, err := readKeyFile(filepath.Join(dir, e.Name()), b); err != nil || fi.Size() == 0 {
				t.Errorf("partial key file %s (%d bytes) left behind", e.Name(), fi.Size())
			}
		}
	}
	k, err := LoadOrCreateKeys(dir, "example.", "")
	if err != nil {
		t.Fatalf("start after the disk filled: %v", err)
	}
	if k.KSK.Private == nil || k.ZSK.Private == nil {
		t.Fatal("keys missing")
	}
	es, _ = os.ReadDir(dir)
	for _, e := range es {
		if strings.HasPrefix(e.Name(), ".atomic-") || strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("leftover %s not cleaned at start", e.Name())
		}
	}
}

// readKeyFile checks that a .key or .private file is complete.
func readKeyFile(path string, b []byte) (bool, error) {
	if strings.HasSuffix(path, ".key") {
		_, err := readKey(path)
		return err == nil, err
	}
	if !strings.Contains(string(b), "PrivateKey:") {
		return false, os.ErrInvalid
	}
	return true, nil
}
