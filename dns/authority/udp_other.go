//go:build !linux

package authority

import (
	"errors"
	"net"
)

type rawSock struct{}

func newRawSock(*net.UDPConn) (*rawSock, error) { return nil, errors.New("not linux") }
func (*rawSock) wake()                          {}
func (s *Server) serveRaw(*rawSock, string)     {}
