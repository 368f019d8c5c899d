package l2announce

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Conn sends and receives Ethernet frames on one interface.
type Conn interface {
	// ReadFrame reads one frame into b; outgoing reports a copy of a frame
	// this host sent.
	ReadFrame(b []byte) (n int, outgoing bool, err error)
	WriteFrame(b []byte) error
	Close() error
}

// GratuitousSchedule is when a node that takes an address over announces
// it, from the takeover: more than once, since Linux ignores an update of
// a neighbour entry less than its locktime (1 s by default) after the
// previous one, and a frame may be lost.
var GratuitousSchedule = []time.Duration{0, 500 * time.Millisecond, 1500 * time.Millisecond, 3500 * time.Millisecond}

// Responder answers ARP requests for the addresses it is given on one
// interface and announces each address it takes over.
type Responder struct {
	conn Conn
	mac  net.HardwareAddr
	log  *slog.Logger

	mu   sync.Mutex
	ips  map[netip.Addr]bool
	ctx  context.Context // Run's, for the announcements
	wg   sync.WaitGroup
	sent func(Packet) // tests: every frame written
}

// NewResponder answers on conn as mac.
func NewResponder(conn Conn, mac net.HardwareAddr, log *slog.Logger) *Responder {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Responder{conn: conn, mac: append(net.HardwareAddr(nil), mac...), log: log, ips: map[netip.Addr]bool{}, ctx: context.Background()}
}

// MAC is the address the responder answers with.
func (r *Responder) MAC() net.HardwareAddr { return r.mac }

// Owned returns the addresses answered for, sorted.
func (r *Responder) Owned() []netip.Addr {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]netip.Addr, 0, len(r.ips))
	for ip := range r.ips {
		out = append(out, ip)
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return out
}

func (r *Responder) owns(ip netip.Addr) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ips[ip]
}

// Set makes ips the addresses answered for. Each one not answered for
// before is announced by gratuitous ARP on GratuitousSchedule while it
// stays in the set. It returns the addresses taken and given up.
func (r *Responder) Set(ips []netip.Addr) (taken, released []netip.Addr) {
	want := map[netip.Addr]bool{}
	for _, ip := range ips {
		if ip.Is4() {
			want[ip] = true
		}
	}
	r.mu.Lock()
	for ip := range want {
		if !r.ips[ip] {
			taken = append(taken, ip)
		}
	}
	for ip := range r.ips {
		if !want[ip] {
			released = append(released, ip)
		}
	}
	r.ips = want
	ctx := r.ctx
	r.mu.Unlock()
	for _, ip := range taken {
		r.wg.Add(1)
		go func() { defer r.wg.Done(); r.announce(ctx, ip) }()
	}
	return taken, released
}

func (r *Responder) announce(ctx context.Context, ip netip.Addr) {
	start := time.Now()
	for _, at := range GratuitousSchedule {
		if d := time.Until(start.Add(at)); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		if !r.owns(ip) {
			return
		}
		for _, p := range Gratuitous(ip, r.mac) {
			if err := r.write(p); err != nil {
				r.log.Warn("gratuitous ARP", "ip", ip, "err", err)
			}
		}
	}
}

func (r *Responder) write(p Packet) error {
	b, err := p.Marshal()
	if err != nil {
		return err
	}
	if err := r.conn.WriteFrame(b); err != nil {
		return err
	}
	if r.sent != nil {
		r.sent(p)
	}
	return nil
}

// Run answers requests until ctx ends or the connection fails; it closes
// the connection when it returns.
func (r *Responder) Run(ctx context.Context) error {
	r.mu.Lock()
	r.ctx = ctx
	r.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { r.conn.Close() })
	defer stop()
	defer r.wg.Wait()
	defer r.conn.Close()
	buf := make([]byte, 1600)
	for {
		n, outgoing, err := r.conn.ReadFrame(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("arp: read: %w", err)
		}
		if outgoing {
			continue
		}
		p, err := Parse(buf[:n])
		if err != nil || !Answers(p, r.mac, r.owns) {
			continue
		}
		if err := r.write(Reply(p, r.mac)); err != nil {
			r.log.Warn("ARP reply", "ip", p.TargetIP, "to", p.SenderIP, "err", err)
			continue
		}
		r.log.Debug("ARP reply", "ip", p.TargetIP, "to", p.SenderIP, "mac", p.SenderHW.String())
	}
}

// packetConn is an AF_PACKET socket bound to one interface, receiving ARP.
type packetConn struct {
	f *os.File
}

// ListenARP opens an AF_PACKET socket for ARP on the interface, in the
// caller's network namespace. It needs CAP_NET_RAW.
func ListenARP(ifindex int) (Conn, error) {
	proto := htons(EtherTypeARP)
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, int(proto))
	if err != nil {
		return nil, fmt.Errorf("arp: AF_PACKET socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifindex}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("arp: bind to interface %d: %w", ifindex, err)
	}
	// Non-blocking, so reads go through the runtime's poller and Close
	// ends a pending read.
	return &packetConn{f: os.NewFile(uintptr(fd), fmt.Sprintf("arp@%d", ifindex))}, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (c *packetConn) ReadFrame(b []byte) (int, bool, error) {
	rc, err := c.f.SyscallConn()
	if err != nil {
		return 0, false, err
	}
	var n int
	var from unix.Sockaddr
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		n, from, rerr = unix.Recvfrom(int(fd), b, 0)
		return !errors.Is(rerr, unix.EAGAIN)
	})
	if err != nil {
		return 0, false, err
	}
	if rerr != nil {
		return 0, false, rerr
	}
	ll, _ := from.(*unix.SockaddrLinklayer)
	return n, ll != nil && ll.Pkttype == unix.PACKET_OUTGOING, nil
}

func (c *packetConn) WriteFrame(b []byte) error {
	_, err := c.f.Write(b)
	return err
}

func (c *packetConn) Close() error {
	err := c.f.Close()
	if errors.Is(err, os.ErrClosed) {
		return nil
	}
	return err
}

// InterfaceOf returns the interface that holds address ip, in the
// caller's network namespace, and the subnet of that address there (its
// L2 segment, for AnnotationSegment).
func InterfaceOf(ip netip.Addr) (*net.Interface, netip.Prefix, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, netip.Prefix{}, err
	}
	for i := range ifs {
		addrs, err := ifs[i].Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if x, ok := netip.AddrFromSlice(n.IP); ok && x.Unmap() == ip {
					bits, _ := n.Mask.Size()
					return &ifs[i], netip.PrefixFrom(ip, bits).Masked(), nil
				}
			}
		}
	}
	return nil, netip.Prefix{}, fmt.Errorf("no interface holds %s", ip)
}
