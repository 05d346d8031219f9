//go:build !linux

package transport

import (
	"errors"
	"net"
	"net/netip"
)

// Off Linux there is no recvmmsg fast path: every Batch takes the portable
// path (one datagram per ReadFromUDPAddrPort, each reply written at once).

type rawSock struct{}

func openRawSock(*net.UDPConn) (*rawSock, error) {
	return nil, errors.New("transport: blocking reads need linux")
}

func (*rawSock) wake()  {}
func (*rawSock) close() {}

type rawBatch struct{}

func newRawBatch(*packetSock, int, int) *rawBatch { return nil }

func (*rawBatch) recv() (int, error)      { return 0, errors.New("transport: no batch path") }
func (*rawBatch) data(int) []byte         { return nil }
func (*rawBatch) truncated(int) bool      { return false }
func (*rawBatch) from(int) netip.AddrPort { return netip.AddrPort{} }
func (*rawBatch) reply(int, []byte)       {}
func (*rawBatch) send()                   {}
