//go:build !unix

package lab

// processAlive cannot tell here; a recorded lab is taken to be running.
func processAlive(pid int) bool { return true }
