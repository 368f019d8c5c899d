package l2announce

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"reflect"
	"testing"
)

var (
	macA = net.HardwareAddr{0x02, 0, 0, 0, 0, 0xa}
	macB = net.HardwareAddr{0x02, 0, 0, 0, 0, 0xb}
	ipA  = netip.MustParseAddr("192.168.250.3")
)

// A request as Linux sends it, byte by byte.
var wireRequest = []byte{
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // dst
	0x02, 0, 0, 0, 0, 0xa, // src
	0x08, 0x06, // ARP
	0, 1, 0x08, 0, 6, 4, 0, 1, // Ethernet, IPv4, request
	0x02, 0, 0, 0, 0, 0xa, 192, 168, 250, 3, // sender
	0, 0, 0, 0, 0, 0, 192, 168, 250, 200, // target
}

func TestParseRequest(t *testing.T) {
	p, err := Parse(append(append([]byte{}, wireRequest...), make([]byte, 18)...)) // padded to 60
	if err != nil {
		t.Fatal(err)
	}
	want := Packet{EthDst: Broadcast, EthSrc: macA, Op: OpRequest, SenderHW: macA, SenderIP: ipA,
		TargetHW: net.HardwareAddr{0, 0, 0, 0, 0, 0}, TargetIP: lb1}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("parsed %+v\nwant %+v", p, want)
	}
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != MinFrameLen || !bytes.Equal(b[:FrameLen], wireRequest) || !bytes.Equal(b[FrameLen:], make([]byte, MinFrameLen-FrameLen)) {
		t.Fatalf("marshalled % x\nwant        % x + zero padding", b, wireRequest)
	}
}

func TestReply(t *testing.T) {
	req, _ := Parse(wireRequest)
	r := Reply(req, macB)
	want := Packet{EthDst: macA, EthSrc: macB, Op: OpReply, SenderHW: macB, SenderIP: lb1, TargetHW: macA, TargetIP: ipA}
	if !reflect.DeepEqual(r, want) {
		t.Fatalf("reply %+v\nwant %+v", r, want)
	}
}

func TestGratuitous(t *testing.T) {
	ps := Gratuitous(lb1, macB)
	if len(ps) != 2 || ps[0].Op != OpRequest || ps[1].Op != OpReply {
		t.Fatalf("gratuitous %+v", ps)
	}
	for _, p := range ps {
		if p.SenderIP != lb1 || p.TargetIP != lb1 || !bytes.Equal(p.SenderHW, macB) || !bytes.Equal(p.EthDst, Broadcast) {
			t.Errorf("gratuitous %+v", p)
		}
		if _, err := p.Marshal(); err != nil {
			t.Error(err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	mod := func(i int, v byte) []byte { b := append([]byte{}, wireRequest...); b[i] = v; return b }
	cases := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrShort},
		{"no ethertype", wireRequest[:13], ErrShort},
		{"IPv4 frame", mod(13, 0x00), ErrNotARP},
		{"ARP header cut", wireRequest[:20], ErrShort},
		{"hardware type 6", mod(15, 6), ErrNotARP},
		{"protocol IPv6", mod(16, 0x86), ErrNotARP},
		{"hardware length 8", mod(18, 8), ErrNotARP},
		{"ARP body cut", wireRequest[:FrameLen-1], ErrShort},
	}
	for _, c := range cases {
		if _, err := Parse(c.b); !errors.Is(err, c.want) {
			t.Errorf("%s: err %v, want %v", c.name, err, c.want)
		}
	}
}

func TestMarshalRefuses(t *testing.T) {
	p := Reply(Packet{SenderHW: macA, SenderIP: ipA, TargetIP: lb1}, macB)
	bad := p
	bad.TargetHW = net.HardwareAddr{1, 2}
	if _, err := bad.Marshal(); err == nil {
		t.Error("a 2-byte hardware address was marshalled")
	}
	bad = p
	bad.SenderIP = netip.MustParseAddr("fd00::1")
	if _, err := bad.Marshal(); err == nil {
		t.Error("an IPv6 sender was marshalled")
	}
}

func TestAnswers(t *testing.T) {
	owns := func(ip netip.Addr) bool { return ip == lb1 }
	req, _ := Parse(wireRequest)
	if !Answers(req, macB, owns) {
		t.Error("a request for an owned address is not answered")
	}
	if Answers(req, macA, owns) {
		t.Error("our own request is answered")
	}
	other := req
	other.TargetIP = netip.MustParseAddr("192.168.250.201")
	if Answers(other, macB, owns) {
		t.Error("a request for another address is answered")
	}
	if Answers(Reply(req, macA), macB, owns) {
		t.Error("a reply is answered")
	}
	if g := Gratuitous(lb1, macA)[0]; Answers(g, macB, owns) {
		t.Error("another host's gratuitous ARP is answered")
	}
	probe := req
	probe.SenderIP = netip.IPv4Unspecified()
	if !Answers(probe, macB, owns) {
		t.Error("an RFC 5227 probe for an owned address is not answered (it should learn of the conflict)")
	}
}

// FuzzParse: Parse never panics, and whatever it accepts marshals back to
// the same packet.
func FuzzParse(f *testing.F) {
	f.Add(wireRequest)
	f.Add(wireRequest[:20])
	g, _ := Gratuitous(lb1, macB)[1].Marshal()
	f.Add(g)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err != nil {
			return
		}
		out, err := p.Marshal()
		if err != nil {
			t.Fatalf("parsed %+v does not marshal: %v", p, err)
		}
		q, err := Parse(out)
		if err != nil || !reflect.DeepEqual(p, q) {
			t.Fatalf("round trip: %+v -> %+v (%v)", p, q, err)
		}
		if !bytes.Equal(out[:FrameLen], b[:FrameLen]) {
			t.Fatalf("re-marshalled % x, input % x", out[:FrameLen], b[:FrameLen])
		}
	})
}
