//go:build !linux

package udpbatch

import (
	"errors"
	"net"
	"net/netip"
)

// Size is how many datagrams one batch moves at most.
const Size = 64

// InBuf is the receive buffer per datagram.
const InBuf = 8192

// Sock is unavailable off Linux: Open always fails.
type Sock struct{}

// Open fails off Linux; callers keep their portable path.
func Open(*net.UDPConn) (*Sock, error) { return nil, errors.New("udpbatch: not linux") }

// Wake does nothing off Linux.
func (*Sock) Wake() {}

// Close does nothing off Linux.
func (*Sock) Close() {}

// Batch is unavailable off Linux.
type Batch struct{}

// NewBatch returns an unusable Batch off Linux.
func NewBatch() *Batch { return &Batch{} }

// Recv returns 0 off Linux.
func (*Batch) Recv(*Sock) int { return 0 }

// Datagram returns nothing off Linux.
func (*Batch) Datagram(int) ([]byte, bool) { return nil, false }

// From returns nothing off Linux.
func (*Batch) From(int) (netip.AddrPort, bool) { return netip.AddrPort{}, false }

// Reply does nothing off Linux.
func (*Batch) Reply(int, []byte) {}

// Send does nothing off Linux.
func (*Batch) Send(*Sock) {}

// Poller is unavailable off Linux: NewPoller always fails.
type Poller struct{}

// NewPoller fails off Linux; callers keep their portable path.
func NewPoller(*net.UDPConn, *Batch) (*Poller, error) {
	return nil, errors.New("udpbatch: not linux")
}

// Recv fails off Linux.
func (*Poller) Recv() (int, error) { return 0, errors.New("udpbatch: not linux") }

// Send does nothing off Linux.
func (*Poller) Send() {}
