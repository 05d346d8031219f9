//go:build !linux

package transport

import (
	"net"
	"time"
)

const canDirect = false

func (s *StreamServer) serveDirect(ln *net.TCPListener) error { return s.serveNet(ln) }

// directConn does not exist here.
type directConn struct{ net.Conn }

// adopt does nothing here (no direct connections).
func adopt(net.Conn, *Conn) {}

// unmovedDirect is false here (no direct connections).
func unmovedDirect(net.Conn) bool { return false }

// movedConn returns nc itself (no direct connections here).
func movedConn(nc net.Conn) net.Conn { return nc }

// directMoved is never asked here.
func directMoved(*directConn) bool { return false }

// deferAccept does nothing here (TCP_DEFER_ACCEPT is Linux's).
func deferAccept(*net.TCPListener, time.Duration) error { return nil }
