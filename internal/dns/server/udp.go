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
//   - on Linux, a socket bound to one address reads with recvmmsg, every
//     datagram already queued in one call (never waiting for more), and
//     hands them to a worker in batches of up to udpWorkerBatch; the
//     worker serves them in turn and sends the replies written during
//     their ServeDNS in one sendmmsg. Under load this divides the system
//     calls and worker wake-ups per query; at low load a batch is one
//     query, sent as soon as it is served. (A reply written after its
//     ServeDNS returned, or larger than udpBatchedMax, is sent at once;
//     a reply in a batch that the kernel refuses is lost as it would be,
//     but its Write reports no error.) Wildcard sockets, which need
//     IP_PKTINFO per datagram, read one datagram per call;
//   - reads have no deadline (miekg/dns re-arms a 2 s one per packet, only
//     to loop on the timeout), and packets are read into one buffer per
//     socket and replies packed into one buffer per worker.
type udpServer struct {
	conn    *net.UDPConn
	h       dns.Handler
	local   net.Addr
	pktinfo bool      // unspecified bind address: replies need the query's destination as source
	mc      *mmsgConn // batched I/O, when not pktinfo

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

// udpReadBatch is the most datagrams read in one recvmmsg;
// udpWorkerBatch the most queries handed to one worker at a time (a
// handler that waits, as forward does, delays the queries after it in
// its batch); udpBatchedMax the largest reply held for sendmmsg.
const (
	udpReadBatch   = 32
	udpWorkerBatch = 8
	udpBatchedMax  = 4096
)

type udpWorker struct {
	ch   chan struct{}
	last time.Time
	// the query, set by the reader before it signals ch
	b       []byte
	addr    netip.AddrPort
	session *dns.SessionUDP
	// or a batch of queries: query i is b[ends[i-1]:ends[i]] from srcs[i]
	ends []int
	srcs []netip.AddrPort
	out  udpOutbox
}

// udpOutbox holds the replies of a worker's batch until they are sent
// together. Writes are buffered only while cur, the response whose
// ServeDNS the worker is in, writes them.
type udpOutbox struct {
	mu   sync.Mutex
	cur  *udpResponse
	data []byte
	ends []int
	dsts []netip.AddrPort
	pkts [][]byte
	mb   *mmsgBatch
}

func newUDPServer(conn *net.UDPConn, h dns.Handler) (*udpServer, error) {
	u := &udpServer{conn: conn, h: h, local: conn.LocalAddr(), readerDone: make(chan struct{}), stop: make(chan struct{})}
	if a, ok := u.local.(*net.UDPAddr); ok && a.IP.IsUnspecified() {
		u.pktinfo = true
		if err := setPktinfo(conn); err != nil {
			return nil, err
		}
	} else if mmsgSupported {
		mc, err := newMmsgConn(conn)
		if err != nil {
			return nil, err
		}
		u.mc = mc
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
	if u.mc != nil {
		return u.serveBatches()
	}
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
			if err = u.readFailed(err); err == nil && !u.isStopped() {
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

// readFailed says what a failed read means for a serving loop: nil to go
// on (a temporary error, as miekg/dns decides) or to stop quietly (the
// server is stopping; the caller checks isStopped), else the error that
// ends it.
func (u *udpServer) readFailed(err error) error {
	if u.isStopped() {
		return nil
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Temporary() { //nolint:staticcheck // as miekg/dns decides
		return nil
	}
	return err
}

// serveBatches is serve's loop with recvmmsg.
func (u *udpServer) serveBatches() error {
	mb := newMmsgBatch(u.mc, udpReadBatch)
	bufs := make([][]byte, udpReadBatch)
	for i := range bufs {
		bufs[i] = make([]byte, dns.MaxMsgSize)
	}
	for {
		n, err := mb.read(bufs)
		if err != nil {
			if err = u.readFailed(err); err == nil && !u.isStopped() {
				continue
			}
			return err
		}
		var w *udpWorker
		for i := range n {
			size := mb.size(i)
			if size < 12 { // shorter than a header: dropped
				continue
			}
			if w == nil {
				w = u.worker()
				w.b = w.b[:0]
			}
			w.b = append(w.b, bufs[i][:size]...)
			w.ends = append(w.ends, len(w.b))
			w.srcs = append(w.srcs, mb.source(i))
			if len(w.ends) == udpWorkerBatch {
				u.inflight.Add(1)
				w.ch <- struct{}{}
				w = nil
			}
		}
		if w != nil {
			u.inflight.Add(1)
			w.ch <- struct{}{}
		}
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
		if u.mc != nil {
			u.handleBatch(w)
		} else {
			u.handle(w)
		}
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
	u.serveQuery(&udpResponse{u: u, addr: w.addr, session: w.session}, w.b)
}

// handleBatch serves w's batch of queries, then sends the replies they
// wrote.
func (u *udpServer) handleBatch(w *udpWorker) {
	o := &w.out
	start := 0
	for i, end := range w.ends {
		rw := &udpResponse{u: u, addr: w.srcs[i], out: o}
		o.mu.Lock()
		o.cur = rw
		o.mu.Unlock()
		u.serveQuery(rw, w.b[start:end])
		o.mu.Lock()
		o.cur = nil
		o.mu.Unlock()
		start = end
	}
	w.ends, w.srcs = w.ends[:0], w.srcs[:0]
	if len(o.ends) == 0 {
		return
	}
	if o.mb == nil {
		o.mb = newMmsgBatch(u.mc, udpReadBatch)
	}
	start = 0
	for _, end := range o.ends {
		o.pkts = append(o.pkts, o.data[start:end])
		start = end
	}
	o.mb.write(o.pkts, o.dsts) //nolint:errcheck // as a lost datagram; see udpServer
	clear(o.pkts)
	o.pkts, o.ends, o.dsts = o.pkts[:0], o.ends[:0], o.dsts[:0]
	if cap(o.data) > 64<<10 {
		o.data = nil
	} else {
		o.data = o.data[:0]
	}
}

// hold buffers b, a reply of r, when r's ServeDNS is in progress in a
// batch; it reports whether it did.
func (o *udpOutbox) hold(r *udpResponse, b []byte) bool {
	if len(b) > udpBatchedMax || len(b) == 0 {
		return false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.cur != r {
		return false
	}
	o.data = append(o.data, b...)
	o.ends = append(o.ends, len(o.data))
	o.dsts = append(o.dsts, r.addr)
	return true
}

// serveQuery decodes b and serves it through rw.
func (u *udpServer) serveQuery(rw *udpResponse, b []byte) {
	req, reject := decodeQuery(b)
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
	out     *udpOutbox // batched I/O
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
	if r.out != nil && r.out.hold(r, b) {
		return len(b), nil
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
