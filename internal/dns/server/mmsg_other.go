//go:build !linux

package server

import (
	"errors"
	"net"
	"net/netip"
)

// mmsgSupported reports whether this platform has recvmmsg/sendmmsg.
const mmsgSupported = false

type mmsgConn struct{}

func newMmsgConn(*net.UDPConn) (*mmsgConn, error) {
	return nil, errors.New("dns: batched udp i/o needs linux")
}

type mmsgBatch struct{}

func newMmsgBatch(*mmsgConn, int) *mmsgBatch              { return &mmsgBatch{} }
func (*mmsgBatch) read([][]byte) (int, error)             { return 0, errors.New("unsupported") }
func (*mmsgBatch) size(int) int                           { return 0 }
func (*mmsgBatch) source(int) netip.AddrPort              { return netip.AddrPort{} }
func (*mmsgBatch) write([][]byte, []netip.AddrPort) error { return errors.New("unsupported") }
