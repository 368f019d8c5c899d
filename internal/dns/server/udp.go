package server

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// udpServer serves one UDP socket. It decodes and answers queries as
// miekg/dns's Server does (the same header checks, the same FORMERR and
// NOTIMP replies, the same ResponseWriter behaviour) but:
//
//   - queries are served by a pool of long-lived worker goroutines rather
//     than a new goroutine per packet, whose stack would grow again for
//     every query (morestack was ~6-9% of the server's CPU under dnsperf);
//     a worker is started whenever none is idle, so there is no limit on
//     queries in flight, and workers idle for udpIdleTimeout exit;
//   - a socket bound to one address reads and writes without control
//     messages: the destination of a query is always that address, so the
//     source of the reply needs no IP_PKTINFO (miekg/dns asks for it on
//     every socket and parses and marshals it per packet). A socket bound
//     to an unspecified address keeps them, through miekg/dns's own
//     ReadFromSessionUDP/WriteToSessionUDP;
//   - reads have no deadline (miekg/dns re-arms a 2 s one per packet, only
//     to loop on the timeout), and packets are read into one buffer per
//     socket and replies packed into one buffer per worker.
type udpServer struct {
	conn    *net.UDPConn
	h       dns.Handler
	local   net.Addr
	pktinfo bool // unspecified bind address: replies need the query's destination as source

	mu      sync.Mutex
	idle    []*udpWorker // LIFO; oldest first
	started bool
	stopped bool

	inflight   sync.WaitGroup
	readerDone chan struct{}
	stop       chan struct{}
}

// udpIdleTimeout is how long a worker waits for a query before it exits.
const udpIdleTimeout = 10 * time.Second

type udpWorker struct {
	ch   chan struct{}
	last time.Time
	// the query, set by the reader before it signals ch
	b       []byte
	addr    netip.AddrPort
	session *dns.SessionUDP
}

func newUDPServer(conn *net.UDPConn, h dns.Handler) (*udpServer, error) {
	u := &udpServer{conn: conn, h: h, local: conn.LocalAddr(), readerDone: make(chan struct{}), stop: make(chan struct{})}
	if a, ok := u.local.(*net.UDPAddr); ok && a.IP.IsUnspecified() {
		u.pktinfo = true
		if err := setPktinfo(conn); err != nil {
			return nil, err
		}
	}
	return u, nil
}

// setPktinfo asks for the destination address of each datagram, for both
// families, failing only when both fail (as miekg/dns does).
func setPktinfo(conn *net.UDPConn) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var err4, err6 error
	if err := rc.Control(func(fd uintptr) {
		err6 = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
		err4 = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
	}); err != nil {
		return err
	}
	if err4 != nil && err6 != nil {
		return err4
	}
	return nil
}

// serve reads queries until the socket is closed.
func (u *udpServer) serve() error {
	defer close(u.readerDone)
	u.mu.Lock()
	if u.stopped {
		u.mu.Unlock()
		return nil
	}
	u.started = true
	u.mu.Unlock()
	go u.janitor()
	buf := make([]byte, dns.MaxMsgSize)
	for {
		var (
			n       int
			addr    netip.AddrPort
			session *dns.SessionUDP
			err     error
		)
		if u.pktinfo {
			n, session, err = dns.ReadFromSessionUDP(u.conn, buf)
		} else {
			n, _, _, addr, err = u.conn.ReadMsgUDPAddrPort(buf, nil)
		}
		if err != nil {
			if u.isStopped() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Temporary() { //nolint:staticcheck // as miekg/dns decides
				continue
			}
			return err
		}
		if n < 12 { // shorter than a header: dropped
			continue
		}
		w := u.worker()
		w.b = append(w.b[:0], buf[:n]...)
		w.addr, w.session = addr, session
		u.inflight.Add(1)
		w.ch <- struct{}{}
	}
}

func (u *udpServer) isStopped() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.stopped
}

// worker takes an idle worker or starts one.
func (u *udpServer) worker() *udpWorker {
	u.mu.Lock()
	if n := len(u.idle); n > 0 {
		w := u.idle[n-1]
		u.idle[n-1] = nil
		u.idle = u.idle[:n-1]
		u.mu.Unlock()
		return w
	}
	u.mu.Unlock()
	w := &udpWorker{ch: make(chan struct{}, 1)}
	go u.work(w)
	return w
}

func (u *udpServer) work(w *udpWorker) {
	for range w.ch {
		u.handle(w)
		u.inflight.Done()
		if cap(w.b) > 4096 {
			w.b = nil
		}
		w.session = nil
		u.mu.Lock()
		if u.stopped {
			u.mu.Unlock()
			return
		}
		w.last = time.Now()
		u.idle = append(u.idle, w)
		u.mu.Unlock()
	}
}

// janitor ends workers idle for udpIdleTimeout, until shutdown.
func (u *udpServer) janitor() {
	t := time.NewTicker(udpIdleTimeout / 2)
	defer t.Stop()
	for {
		select {
		case <-u.stop:
			return
		case now := <-t.C:
			u.mu.Lock()
			i := 0
			for i < len(u.idle) && now.Sub(u.idle[i].last) >= udpIdleTimeout {
				close(u.idle[i].ch)
				u.idle[i] = nil
				i++
			}
			if i > 0 {
				u.idle = append(u.idle[:0], u.idle[i:]...)
			}
			u.mu.Unlock()
		}
	}
}

// handle decodes w's query and serves it.
func (u *udpServer) handle(w *udpWorker) {
	rw := &udpResponse{u: u, addr: w.addr, session: w.session}
	req, reject := decodeQuery(w.b)
	if req == nil {
		return
	}
	if reject != nil {
		rw.WriteMsg(reject)
		return
	}
	u.h.ServeDNS(rw, req)
}

// decodeQuery decodes b (at least a header) as miekg/dns's server does:
// nil, nil for a packet to ignore; a request and a FORMERR or NOTIMP
// reply for one to reject; else the request.
func decodeQuery(b []byte) (req, reject *dns.Msg) {
	var dh dns.Header
	dh.Id = uint16(b[0])<<8 | uint16(b[1])
	dh.Bits = uint16(b[2])<<8 | uint16(b[3])
	dh.Qdcount = uint16(b[4])<<8 | uint16(b[5])
	dh.Ancount = uint16(b[6])<<8 | uint16(b[7])
	dh.Nscount = uint16(b[8])<<8 | uint16(b[9])
	dh.Arcount = uint16(b[10])<<8 | uint16(b[11])
	req = new(dns.Msg)
	action := dns.DefaultMsgAcceptFunc(dh)
	switch action {
	case dns.MsgIgnore:
		return nil, nil
	case dns.MsgAccept:
		if err := req.Unpack(b); err == nil {
			return req, nil
		}
		// The partly unpacked request is the reply, as in miekg/dns.
	default:
		setHdr(req, dh)
	}
	opcode := req.Opcode
	req.SetRcodeFormatError(req)
	req.Zero = false
	if action == dns.MsgRejectNotImplemented {
		req.Opcode = opcode
		req.Rcode = dns.RcodeNotImplemented
	}
	req.Ns, req.Answer, req.Extra = nil, nil, nil
	return req, req
}

// setHdr sets m's header fields from dh, as dns.Msg.Unpack does.
func setHdr(m *dns.Msg, dh dns.Header) {
	m.Id = dh.Id
	m.Response = dh.Bits&(1<<15) != 0
	m.Opcode = int(dh.Bits>>11) & 0xF
	m.Authoritative = dh.Bits&(1<<10) != 0
	m.Truncated = dh.Bits&(1<<9) != 0
	m.RecursionDesired = dh.Bits&(1<<8) != 0
	m.RecursionAvailable = dh.Bits&(1<<7) != 0
	m.Zero = dh.Bits&(1<<6) != 0
	m.AuthenticatedData = dh.Bits&(1<<5) != 0
	m.CheckingDisabled = dh.Bits&(1<<4) != 0
	m.Rcode = int(dh.Bits & 0xF)
}

// shutdown stops reading, waits (until ctx is done) for the queries being
// served, and ends the workers.
func (u *udpServer) shutdown(ctx context.Context) error {
	u.mu.Lock()
	if u.stopped {
		u.mu.Unlock()
		return errors.New("dns: udp server already stopped")
	}
	u.stopped = true
	started := u.started
	for i, w := range u.idle {
		close(w.ch)
		u.idle[i] = nil
	}
	u.idle = nil
	u.mu.Unlock()
	close(u.stop)
	err := u.conn.Close()
	if !started {
		return err
	}
	done := make(chan struct{})
	go func() {
		<-u.readerDone
		u.inflight.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return err
}

// udpResponse is the dns.ResponseWriter of one UDP query. It holds its
// own copy of the client's address: a plugin may still write after its
// ServeDNS returned, when the worker serves another query.
type udpResponse struct {
	u       *udpServer
	addr    netip.AddrPort
	session *dns.SessionUDP
	remote  net.Addr
	closed  bool
}

// packBufs are the buffers replies are packed into.
var packBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func (r *udpResponse) LocalAddr() net.Addr { return r.u.local }

// UDPWriter implements pdns.UDPWriter.
func (r *udpResponse) UDPWriter() bool { return true }

func (r *udpResponse) RemoteAddr() net.Addr {
	if r.remote == nil {
		if r.session != nil {
			r.remote = r.session.RemoteAddr()
		} else {
			r.remote = net.UDPAddrFromAddrPort(r.addr)
		}
	}
	return r.remote
}

func (r *udpResponse) WriteMsg(m *dns.Msg) error {
	if r.closed {
		return errors.New("dns: WriteMsg called after Close")
	}
	bp := packBufs.Get().(*[]byte)
	b, err := m.PackBuffer((*bp)[:cap(*bp)])
	if err != nil {
		packBufs.Put(bp)
		return err
	}
	_, err = r.Write(b)
	if cap(b) <= 16384 {
		*bp = b[:0]
		packBufs.Put(bp)
	}
	return err
}

func (r *udpResponse) Write(b []byte) (int, error) {
	if r.closed {
		return 0, errors.New("dns: Write called after Close")
	}
	if r.session != nil {
		return dns.WriteToSessionUDP(r.u.conn, b, r.session)
	}
	n, _, err := r.u.conn.WriteMsgUDPAddrPort(b, nil, r.addr)
	return n, err
}

func (r *udpResponse) Close() error {
	if r.closed {
		return errors.New("dns: connection already closed")
	}
	r.closed = true
	return nil
}

func (r *udpResponse) TsigStatus() error   { return nil }
func (r *udpResponse) TsigTimersOnly(bool) {}
func (r *udpResponse) Hijack()             {}
