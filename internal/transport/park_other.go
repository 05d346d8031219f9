//go:build !linux

package transport

const canPark = false

type poller struct{}

func (c *Conn) fd() int                            { return -1 }
func (s *StreamServer) parkLocked(c *Conn) bool    { return false }
func (s *StreamServer) unparkLocked(c *Conn)       {}
func (s *StreamServer) stopPoller()                {}
func (s *StreamServer) restoreLocked(c *Conn) bool { return true }
func closeBare(c *Conn)                            {}
