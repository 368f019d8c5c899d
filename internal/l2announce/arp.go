package l2announce

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// ARP over Ethernet for IPv4 (RFC 826), the only kind answered here.
const (
	EtherTypeARP  = 0x0806
	etherTypeIPv4 = 0x0800
	hwEthernet    = 1
	// OpRequest and OpReply are ARP operations.
	OpRequest = 1
	OpReply   = 2
	// FrameLen is an Ethernet header plus an IPv4 ARP packet.
	FrameLen = ethHeaderLen + arpLen
	// MinFrameLen is the shortest Ethernet frame on the wire (without
	// its checksum); shorter frames are padded.
	MinFrameLen  = 60
	ethHeaderLen = 14
	arpLen       = 28
)

// Broadcast is the Ethernet broadcast address.
var Broadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// Packet is an IPv4-over-Ethernet ARP packet with the Ethernet addresses
// of the frame that carries it.
type Packet struct {
	EthDst, EthSrc net.HardwareAddr
	Op             uint16
	SenderHW       net.HardwareAddr
	SenderIP       netip.Addr
	TargetHW       net.HardwareAddr
	TargetIP       netip.Addr
}

// Errors of Parse; a frame that is not IPv4 ARP is not an error of the
// sender, only something to ignore.
var (
	ErrNotARP = errors.New("not an IPv4-over-Ethernet ARP frame")
	ErrShort  = errors.New("frame too short")
)

// Parse decodes an Ethernet frame carrying IPv4 ARP. Trailing padding is
// ignored. It never panics on any input (FuzzParse).
func Parse(b []byte) (Packet, error) {
	if len(b) < ethHeaderLen {
		return Packet{}, fmt.Errorf("%w: %d bytes, an Ethernet header has %d", ErrShort, len(b), ethHeaderLen)
	}
	if et := binary.BigEndian.Uint16(b[12:14]); et != EtherTypeARP {
		return Packet{}, fmt.Errorf("%w: ethertype %#04x", ErrNotARP, et)
	}
	a := b[ethHeaderLen:]
	if len(a) < 8 {
		return Packet{}, fmt.Errorf("%w: ARP header of %d bytes, want 8", ErrShort, len(a))
	}
	htype, ptype := binary.BigEndian.Uint16(a[0:2]), binary.BigEndian.Uint16(a[2:4])
	hlen, plen := a[4], a[5]
	if htype != hwEthernet || ptype != etherTypeIPv4 || hlen != 6 || plen != 4 {
		return Packet{}, fmt.Errorf("%w: hardware type %d, protocol %#04x, lengths %d/%d", ErrNotARP, htype, ptype, hlen, plen)
	}
	if len(a) < arpLen {
		return Packet{}, fmt.Errorf("%w: ARP packet of %d bytes, want %d", ErrShort, len(a), arpLen)
	}
	hw := func(p []byte) net.HardwareAddr { return append(net.HardwareAddr(nil), p...) }
	return Packet{
		EthDst:   hw(b[0:6]),
		EthSrc:   hw(b[6:12]),
		Op:       binary.BigEndian.Uint16(a[6:8]),
		SenderHW: hw(a[8:14]),
		SenderIP: netip.AddrFrom4([4]byte(a[14:18])),
		TargetHW: hw(a[18:24]),
		TargetIP: netip.AddrFrom4([4]byte(a[24:28])),
	}, nil
}

// Marshal encodes the packet as an Ethernet frame, padded to MinFrameLen.
// Hardware addresses must have 6 bytes and IP addresses be IPv4.
func (p Packet) Marshal() ([]byte, error) {
	for _, h := range []struct {
		name string
		a    net.HardwareAddr
	}{{"ethernet destination", p.EthDst}, {"ethernet source", p.EthSrc}, {"sender hardware address", p.SenderHW}, {"target hardware address", p.TargetHW}} {
		if len(h.a) != 6 {
			return nil, fmt.Errorf("arp: %s %q: want 6 bytes", h.name, h.a)
		}
	}
	if !p.SenderIP.Is4() || !p.TargetIP.Is4() {
		return nil, fmt.Errorf("arp: sender %s, target %s: want IPv4 addresses", p.SenderIP, p.TargetIP)
	}
	b := make([]byte, MinFrameLen)
	copy(b[0:6], p.EthDst)
	copy(b[6:12], p.EthSrc)
	binary.BigEndian.PutUint16(b[12:14], EtherTypeARP)
	a := b[ethHeaderLen:]
	binary.BigEndian.PutUint16(a[0:2], hwEthernet)
	binary.BigEndian.PutUint16(a[2:4], etherTypeIPv4)
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:8], p.Op)
	copy(a[8:14], p.SenderHW)
	s, t := p.SenderIP.As4(), p.TargetIP.As4()
	copy(a[14:18], s[:])
	copy(a[18:24], p.TargetHW)
	copy(a[24:28], t[:])
	return b, nil
}

// Reply is the answer of the interface with address mac to request req,
// which asked for one of its IPs: unicast back to the asker.
func Reply(req Packet, mac net.HardwareAddr) Packet {
	return Packet{
		EthDst: req.SenderHW, EthSrc: mac,
		Op:       OpReply,
		SenderHW: mac, SenderIP: req.TargetIP,
		TargetHW: req.SenderHW, TargetIP: req.SenderIP,
	}
}

// Gratuitous returns the announcements of ip at mac, broadcast: a
// gratuitous request (sender and target IP both ip, target hardware
// address zero) and a gratuitous reply. Linux updates an existing
// neighbour entry on either; some stacks heed only one of them.
func Gratuitous(ip netip.Addr, mac net.HardwareAddr) []Packet {
	zero := make(net.HardwareAddr, 6)
	return []Packet{
		{EthDst: Broadcast, EthSrc: mac, Op: OpRequest, SenderHW: mac, SenderIP: ip, TargetHW: zero, TargetIP: ip},
		{EthDst: Broadcast, EthSrc: mac, Op: OpReply, SenderHW: mac, SenderIP: ip, TargetHW: Broadcast, TargetIP: ip},
	}
}

// Answers says whether a responder at mac owning ips answers p: an ARP
// request for one of ips from another host, not a gratuitous one (whose
// sender claims the address itself).
func Answers(p Packet, mac net.HardwareAddr, owns func(netip.Addr) bool) bool {
	if p.Op != OpRequest || !owns(p.TargetIP) {
		return false
	}
	if p.SenderIP == p.TargetIP || string(p.SenderHW) == string(mac) {
		return false
	}
	return true
}

func (p Packet) String() string {
	op := fmt.Sprint(p.Op)
	switch p.Op {
	case OpRequest:
		op = "request"
	case OpReply:
		op = "reply"
	}
	return fmt.Sprintf("%s > %s arp %s %s/%s -> %s/%s", p.EthSrc, p.EthDst, op, p.SenderHW, p.SenderIP, p.TargetHW, p.TargetIP)
}
