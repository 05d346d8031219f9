//go:build !linux

package dnsserver

import "net"

// noPMTU is Linux's (PMTUDISC_OMIT); elsewhere UDP replies keep the
// system's default.
func noPMTU(*net.UDPConn) error { return nil }
