//go:build linux

package dnsserver

import (
	"net"

	"golang.org/x/sys/unix"
)

// noPMTU sets IP_MTU_DISCOVER (and IPV6_MTU_DISCOVER) to PMTUDISC_OMIT on
// a UDP socket, as NSD and Knot do on theirs: replies leave
// without DF and the kernel ignores path-MTU information (ICMP "need to
// frag" that anyone may forge to make a server fragment its answers, the
// first step of fragmentation attacks on DNS). It also spares the kernel
// the route's path-MTU lookups on every reply sent. An error (an address
// family without the option) leaves the socket as it was.
func noPMTU(c *net.UDPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	v4 := false
	if ua, ok := c.LocalAddr().(*net.UDPAddr); ok && ua.IP.To4() != nil {
		v4 = true
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		if v4 {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_OMIT)
			return
		}
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, unix.IPV6_PMTUDISC_OMIT)
		// A dual-stack socket sends to IPv4-mapped clients with the IPv4
		// option's rule (an IPv6-only socket has no such clients).
		unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_OMIT)
	})
	if err != nil {
		return err
	}
	return serr
}
