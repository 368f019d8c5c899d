//go:build linux

package server

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsgSupported reports whether this platform has recvmmsg/sendmmsg.
const mmsgSupported = true

// mmsgConn does batched datagram I/O on one UDP socket: recvmmsg returns
// every datagram already queued (at least one, waiting in the runtime's
// poller when there is none, never for a batch to fill) and sendmmsg
// sends several replies in one system call. Addresses are decoded into
// netip values, with no allocation per datagram.
type mmsgConn struct {
	rc     syscall.RawConn
	family int // AF_INET or AF_INET6: how destinations are encoded
}

func newMmsgConn(conn *net.UDPConn) (*mmsgConn, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("dns: udp socket: %w", err)
	}
	var family int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		family, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
	}); err != nil {
		return nil, fmt.Errorf("dns: udp socket: %w", err)
	}
	if serr != nil {
		return nil, fmt.Errorf("dns: udp socket family: %w", serr)
	}
	if family != unix.AF_INET && family != unix.AF_INET6 {
		return nil, fmt.Errorf("dns: udp socket family %d", family)
	}
	return &mmsgConn{rc: rc, family: family}, nil
}

// mmsgBatch is the system call state of one batch: headers, iovecs and
// address buffers, made once and reused.
type mmsgBatch struct {
	hs    []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6 // large enough for either family

	c    *mmsgConn
	todo []unix.Mmsghdr // the headers left for the call in progress
	n    int
	err  error
	recv func(fd uintptr) bool // the closures given to RawConn, made once
	send func(fd uintptr) bool
}

func newMmsgBatch(c *mmsgConn, n int) *mmsgBatch {
	b := &mmsgBatch{
		hs:    make([]unix.Mmsghdr, n),
		iovs:  make([]unix.Iovec, n),
		names: make([]unix.RawSockaddrInet6, n),
		c:     c,
	}
	for i := range b.hs {
		b.hs[i].Hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		b.hs[i].Hdr.Iov = &b.iovs[i]
		b.hs[i].Hdr.SetIovlen(1)
	}
	b.recv = func(fd uintptr) bool { return b.call(fd, unix.SYS_RECVMMSG) }
	b.send = func(fd uintptr) bool { return b.call(fd, unix.SYS_SENDMMSG) }
	return b
}

// call makes one recvmmsg or sendmmsg on b.todo. It returns false (wait
// for the socket) on EAGAIN, and retries on EINTR.
func (b *mmsgBatch) call(fd uintptr, trap uintptr) bool {
	for {
		n, _, e := unix.Syscall6(trap, fd, uintptr(unsafe.Pointer(&b.todo[0])), uintptr(len(b.todo)), 0, 0, 0)
		switch e {
		case 0:
			b.n, b.err = int(n), nil
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			b.n, b.err = 0, e
			return true
		}
	}
}

// read receives up to len(bufs) datagrams, the i-th into bufs[i]; it
// returns how many. Their lengths and sources are then size(i) and
// source(i).
func (b *mmsgBatch) read(bufs [][]byte) (int, error) {
	n := min(len(bufs), len(b.hs))
	for i := range n {
		b.iovs[i].Base = &bufs[i][0]
		b.iovs[i].SetLen(len(bufs[i]))
		b.hs[i].Hdr.Namelen = unix.SizeofSockaddrInet6
		b.hs[i].Hdr.Flags = 0
		b.hs[i].Len = 0
	}
	b.todo = b.hs[:n]
	if err := b.c.rc.Read(b.recv); err != nil {
		return 0, err
	}
	if b.err != nil {
		return 0, &net.OpError{Op: "read", Net: "udp", Err: b.err}
	}
	return b.n, nil
}

func (b *mmsgBatch) size(i int) int { return int(b.hs[i].Len) }

// source decodes the i-th datagram's source as net.UDPConn's
// ReadMsgUDPAddrPort does (an IPv6 zone by interface name).
func (b *mmsgBatch) source(i int) netip.AddrPort {
	sa := &b.names[i]
	port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port)
	case unix.AF_INET6:
		a := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 {
			a = a.WithZone(zoneName(int(sa.Scope_id)))
		}
		return netip.AddrPortFrom(a, port)
	}
	return netip.AddrPort{}
}

// write sends the datagrams pkts[i] to dsts[i]. A datagram the kernel
// refuses is skipped (its error is the first returned); the rest are sent.
func (b *mmsgBatch) write(pkts [][]byte, dsts []netip.AddrPort) error {
	var first error
	for len(pkts) > 0 {
		n := min(len(pkts), len(b.hs))
		for i := range n {
			b.iovs[i].Base = &pkts[i][0]
			b.iovs[i].SetLen(len(pkts[i]))
			l, err := b.putName(i, dsts[i])
			if err != nil {
				return err // a destination no datagram of this socket came from
			}
			b.hs[i].Hdr.Namelen = l
			b.hs[i].Hdr.Flags = 0
			b.hs[i].Len = 0
		}
		b.todo = b.hs[:n]
		for len(b.todo) > 0 {
			if err := b.c.rc.Write(b.send); err != nil {
				return err // closed
			}
			if b.err != nil {
				// sendmmsg fails only on the first datagram: skip it.
				if first == nil {
					first = &net.OpError{Op: "write", Net: "udp", Err: b.err}
				}
				b.n = 1
			}
			b.n = max(b.n, 1) // never spin on a call that sent nothing
			b.todo = b.todo[b.n:]
		}
		pkts, dsts = pkts[n:], dsts[n:]
	}
	return first
}

// putName encodes dst as the i-th destination for this socket's family.
func (b *mmsgBatch) putName(i int, dst netip.AddrPort) (uint32, error) {
	sa := &b.names[i]
	a := dst.Addr()
	var port [2]byte
	binary.BigEndian.PutUint16(port[:], dst.Port())
	if b.c.family == unix.AF_INET {
		a = a.Unmap()
		if !a.Is4() {
			return 0, fmt.Errorf("dns: udp: %v is not an IPv4 address", a)
		}
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.As4()}
		sa4.Port = *(*uint16)(unsafe.Pointer(&port))
		return unix.SizeofSockaddrInet4, nil
	}
	*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16()}
	sa.Port = *(*uint16)(unsafe.Pointer(&port))
	if z := a.Zone(); z != "" {
		idx, err := zoneIndex(z)
		if err != nil {
			return 0, err
		}
		sa.Scope_id = uint32(idx)
	}
	return unix.SizeofSockaddrInet6, nil
}

// zoneName is the interface name of index i, as package net names zones,
// else the number.
func zoneName(i int) string {
	if ifi, err := net.InterfaceByIndex(i); err == nil {
		return ifi.Name
	}
	return strconv.Itoa(i)
}

func zoneIndex(z string) (int, error) {
	if i, err := strconv.Atoi(z); err == nil {
		return i, nil
	}
	ifi, err := net.InterfaceByName(z)
	if err != nil {
		return 0, fmt.Errorf("dns: udp: zone %q: %w", z, err)
	}
	return ifi.Index, nil
}
