package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// h1Client is the upstream client for HTTP and HTTPS backends: HTTP/1.1
// with keep-alive, as nginx speaks to upstreams. It does the whole
// exchange on the handler's goroutine (no reader and writer goroutines
// per connection as net/http's Transport has, no channel hand-offs, no
// context per request) and times out with connection deadlines, which is
// where most of a Go proxy's per-request cost goes otherwise.
//
// Connections are kept per endpoint address, last in first out, at most
// maxIdlePerHost, for idleTimeout. A connection idle for more than
// probeAfter is probed (a non-blocking peek) before reuse, so one the
// upstream closed meanwhile is not used; when a reused connection still
// fails before any byte of the answer came back, the request is sent again
// on a new one if its body was not read yet.
type h1Client struct {
	connect time.Duration
	tls     *tls.Config // nil: plain HTTP

	// live is the set of endpoint addresses in use (the Proxy's; nil or
	// an empty pointer: all are).
	live *atomic.Pointer[map[string]struct{}]

	mu        sync.Mutex
	idle      map[string][]*h1Conn
	lastSweep time.Time
}

func (cl *h1Client) isLive(addr string) bool {
	if cl.live == nil {
		return true
	}
	m := cl.live.Load()
	if m == nil {
		return true
	}
	_, ok := (*m)[addr]
	return ok
}

const probeAfter = 250 * time.Millisecond

func newH1Client(connect time.Duration, tlsConfig *tls.Config) *h1Client {
	return &h1Client{connect: connect, tls: tlsConfig, idle: map[string][]*h1Conn{}}
}

type h1Conn struct {
	cl     *h1Client
	addr   string
	c      net.Conn // the TLS conn for HTTPS
	raw    syscall.RawConn
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time
	reused bool
	nread  int64 // bytes read from c since the request was sent

	// plain: c is the TCP connection itself (no TLS), so the request's
	// last write can be a raw one (sendWait).
	plain bool
	// waitFlush asks the next write from bw to be sendWait's; waited
	// says it was, and the answer is there to read (or an error is).
	waitFlush, waited bool

	readTimeout time.Duration
	deadline    time.Time // current read deadline, refreshed coarsely
	// fresh: the read deadline was just set, the next Read need not
	// look at it.
	fresh bool
	// sendTimeout is the exchange's proxy-send-timeout; wpending says
	// the write deadline for it is yet to be set, which the first write
	// that may block does (sendWait's raw write does not block).
	sendTimeout time.Duration
	wpending    bool

	// The watch on the client of the exchange in progress: cc for a
	// plain HTTP/1.x client, else stopCtx, the context.AfterFunc's stop.
	cc      *clientConn
	stopCtx func() bool
	abortFn func()
}

// abort ends the exchange in progress: its blocked reads and writes
// return at once.
func (c *h1Conn) abort() { c.c.SetDeadline(aLongTimeAgo) }

// watchClient makes the client's going away (x's request context's end)
// abort the exchange.
func (c *h1Conn) watchClient(x *exchange) {
	if x.cc != nil && x.cc.watch(c) {
		c.cc = x.cc
		return
	}
	if c.abortFn == nil {
		c.abortFn = c.abort
	}
	c.stopCtx = context.AfterFunc(x.r.Context(), c.abortFn)
}

// stop ends the watch: false when the abort was done already (then or
// later the connection is not to be reused). Calls after the first
// return false.
func (c *h1Conn) stop() bool {
	if cc := c.cc; cc != nil {
		c.cc = nil
		return cc.unwatch(c)
	}
	if s := c.stopCtx; s != nil {
		c.stopCtx = nil
		return s()
	}
	return false
}

// Read feeds br: it counts bytes and keeps the read deadline
// readTimeout ahead of now (renewed when a quarter of it has passed: the
// timeout is between two reads, as nginx's proxy_read_timeout).
func (c *h1Conn) Read(p []byte) (int, error) {
	if c.fresh {
		c.fresh = false
	} else if c.readTimeout > 0 {
		if now := time.Now(); c.deadline.Sub(now) < c.readTimeout*3/4 {
			c.deadline = now.Add(c.readTimeout)
			c.c.SetReadDeadline(c.deadline)
		}
	}
	n, err := c.c.Read(p)
	c.nread += int64(n)
	return n, err
}

func (c *h1Conn) close() { c.c.Close() }

// h1Writer is what bw writes to: the connection, or sendWait for the
// request's last write.
type h1Writer struct{ c *h1Conn }

func (w h1Writer) Write(p []byte) (int, error) {
	c := w.c
	if c.waitFlush {
		c.waitFlush = false
		return c.sendWait(p)
	}
	c.armWrite()
	return c.c.Write(p)
}

// armWrite sets the write deadline of the exchange, if not yet done.
func (c *h1Conn) armWrite() {
	if !c.wpending {
		return
	}
	c.wpending = false
	if d := c.sendTimeout; d > 0 {
		c.c.SetWriteDeadline(time.Now().Add(d))
	} else {
		c.c.SetWriteDeadline(time.Time{})
	}
}

// sendWait writes p with a raw write from inside a raw read, then waits
// there until the connection is readable: the upstream's answer is then
// read with one read, where net.Conn's Read, called right after a write,
// would first find nothing (EAGAIN) and only then wait. The wait must
// start before the write, or the readiness of an answer that came back
// meanwhile would be lost, hence the write inside the read. When the raw
// write cannot send all of p at once, the rest goes through the
// connection as usual (with its write deadline) and the answer is
// waited for as usual. An error of the wait (deadline, closed
// connection) is left for the read that follows, which reports it as
// it always did.
func (c *h1Conn) sendWait(p []byte) (int, error) {
	var (
		n     int
		werr  error
		wrote bool
	)
	c.raw.Read(func(fd uintptr) bool {
		if wrote {
			return true // readable
		}
		wrote = true
		for n < len(p) {
			k, err := syscall.Write(int(fd), p[n:])
			if err == syscall.EINTR {
				continue
			}
			if err != nil {
				werr = err
				return true
			}
			n += k
		}
		return false // all sent: wait for the answer
	})
	switch {
	case !wrote, werr == syscall.EAGAIN:
		// Not written (the connection's deadline has passed or it is
		// closed), or not all of it: the connection does the rest.
		c.armWrite()
		m, err := c.c.Write(p[n:])
		return n + m, err
	case werr != nil:
		// As net.Conn's Write reports it.
		return n, &net.OpError{Op: "write", Net: "tcp", Source: c.c.LocalAddr(), Addr: c.c.RemoteAddr(), Err: os.NewSyscallError("write", werr)}
	}
	c.waited = true
	return n, nil
}

// alive peeks at an idle connection without blocking: false when the
// upstream closed it or sent something unasked.
func (c *h1Conn) alive() bool {
	if c.raw == nil {
		return true
	}
	ok := true
	err := c.raw.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		if n > 0 || (err == nil && n == 0) || (err != nil && err != syscall.EAGAIN) {
			ok = false
		}
		return true
	})
	return ok && err == nil
}

func (cl *h1Client) get(addr string, now time.Time) *h1Conn {
	cl.mu.Lock()
	for {
		s := cl.idle[addr]
		if len(s) == 0 {
			cl.mu.Unlock()
			return nil
		}
		c := s[len(s)-1]
		s[len(s)-1] = nil
		cl.idle[addr] = s[:len(s)-1]
		idle := now.Sub(c.idleAt)
		if idle < probeAfter {
			cl.mu.Unlock()
			return c
		}
		cl.mu.Unlock()
		if idle < idleTimeout && c.alive() {
			return c
		}
		c.close()
		cl.mu.Lock()
	}
}

func (cl *h1Client) put(c *h1Conn) {
	c.idleAt = time.Now()
	c.reused = true
	if !cl.isLive(c.addr) {
		c.close() // the endpoint is gone
		return
	}
	cl.mu.Lock()
	if c.idleAt.Sub(cl.lastSweep) > 10*time.Second {
		cl.lastSweep = c.idleAt
		cl.sweep(c.idleAt)
	}
	s := cl.idle[c.addr]
	// The oldest connection goes when it is past its time or the pool full.
	var drop *h1Conn
	if len(s) > 0 && (len(s) >= maxIdlePerHost || c.idleAt.Sub(s[0].idleAt) > idleTimeout) {
		drop = s[0]
		copy(s, s[1:])
		s = s[:len(s)-1]
	}
	cl.idle[c.addr] = append(s, c)
	cl.mu.Unlock()
	if drop != nil {
		drop.close()
	}
}

// sweep closes the connections idle for longer than idleTimeout; cl.mu
// is held.
func (cl *h1Client) sweep(now time.Time) {
	for addr, s := range cl.idle {
		i := 0
		for i < len(s) && now.Sub(s[i].idleAt) > idleTimeout {
			go s[i].close()
			i++
		}
		if i == len(s) {
			delete(cl.idle, addr)
		} else if i > 0 {
			cl.idle[addr] = append(s[:0], s[i:]...)
		}
	}
}

// forget closes the idle connections of addresses no longer live (those
// in use close when they come back).
func (cl *h1Client) forget() {
	cl.mu.Lock()
	var drop []*h1Conn
	for addr, s := range cl.idle {
		if !cl.isLive(addr) {
			drop = append(drop, s...)
			delete(cl.idle, addr)
		}
	}
	cl.sweep(time.Now())
	cl.mu.Unlock()
	for _, c := range drop {
		c.close()
	}
}

func (cl *h1Client) dial(addr string) (*h1Conn, error) {
	d := net.Dialer{Timeout: cl.connect, KeepAlive: 30 * time.Second}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, &dialError{err}
	}
	c := &h1Conn{cl: cl, addr: addr, c: nc}
	if tc, ok := nc.(*net.TCPConn); ok {
		c.raw, _ = tc.SyscallConn()
		c.plain = c.raw != nil && cl.tls == nil
	}
	if cl.tls != nil {
		tc := tls.Client(nc, cl.tls)
		ctx, cancel := context.WithTimeout(context.Background(), cl.connect)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			nc.Close()
			return nil, &dialError{fmt.Errorf("TLS handshake: %w", err)}
		}
		c.c = tc
	}
	c.br = bufio.NewReaderSize(c, 16<<10)
	c.bw = bufio.NewWriterSize(h1Writer{c}, 16<<10)
	return c, nil
}

// roundTrip sends out to addr and reads the answer's head. The body of
// the returned response gives the connection back to the pool at its
// end; Close before the end closes the connection.
func (cl *h1Client) roundTrip(x *exchange, out *http.Request, addr string) (*http.Response, error) {
	for try := 0; ; try++ {
		// The first connection of the request is taken at the time
		// the exchange started, read once (x.getNow).
		now := x.getNow
		if now.IsZero() {
			now = time.Now()
		}
		x.getNow = time.Time{}
		c := cl.get(addr, now)
		if c == nil {
			var err error
			if c, err = cl.dial(addr); err != nil {
				return nil, err
			}
		}
		res, err := c.exchange(x, out)
		if err == nil {
			return res, nil
		}
		c.close()
		// A kept-alive connection the upstream closed under us: nothing
		// came back; send again on a fresh one if the body is intact.
		if c.reused && c.nread == 0 && !x.body.used.Load() && try < 2 && !x.clientGone() {
			continue
		}
		return nil, err
	}
}

var errSendTimeout = errors.New("upstream send timed out")

// aLongTimeAgo is a deadline in the past: it aborts blocked I/O.
var aLongTimeAgo = time.Unix(1, 0)

func (c *h1Conn) exchange(x *exchange, out *http.Request) (res *http.Response, err error) {
	cfg := x.rt.cfg
	c.nread = 0
	// A client that goes away aborts the exchange (a long poll must not
	// hold the upstream connection); the connection is then not reused.
	c.watchClient(x)
	defer func() {
		if err != nil {
			c.stop()
		}
	}()
	c.readTimeout = cfg.ProxyReadTimeout
	c.sendTimeout, c.wpending = cfg.ProxySendTimeout, true
	if err := writeHead(c.bw, out, x.uri); err != nil {
		return nil, err
	}
	if out.Body != nil {
		if err := c.writeBody(out, cfg.ProxySendTimeout); err != nil {
			return nil, err
		}
	}
	// The read deadline starts when the request is sent: before
	// sendWait's write (which does not block), else after the flush.
	c.waited = false
	if c.plain && c.bw.Buffered() > 0 {
		c.armRead()
		c.waitFlush = true
	}
	err = c.bw.Flush()
	c.waitFlush = false
	if err != nil {
		return nil, err
	}
	if !c.waited {
		c.armRead()
	}
	for {
		res, err := http.ReadResponse(c.br, out)
		if err != nil {
			return nil, err
		}
		if res.StatusCode < 100 || res.StatusCode > 599 {
			// "000" and the like parse, but no client may be sent them:
			// a malformed answer (502), and the connection is not kept.
			return nil, fmt.Errorf("malformed HTTP status code %q from the upstream", res.Status)
		}
		if res.StatusCode == http.StatusSwitchingProtocols {
			c.stop()
			c.readTimeout = 0
			c.c.SetDeadline(time.Time{})
			res.Body = &h1Upgraded{c}
			return res, nil
		}
		if res.StatusCode >= 100 && res.StatusCode < 200 {
			continue // 100 Continue, 103 Early Hints: not passed on
		}
		if res.Body == http.NoBody {
			c.release(!res.Close)
			return res, nil
		}
		res.Body = &h1Body{c: c, rc: res.Body, keep: !res.Close}
		return res, nil
	}
}

// armRead sets the read deadline for the answer.
func (c *h1Conn) armRead() {
	c.fresh = true
	if c.readTimeout > 0 {
		c.deadline = time.Now().Add(c.readTimeout)
		c.c.SetReadDeadline(c.deadline)
	} else {
		c.deadline = time.Time{}
		c.c.SetReadDeadline(time.Time{})
	}
}

// release gives the connection back once the answer was read whole,
// unless it is not to be kept or the client-gone watch already fired.
func (c *h1Conn) release(keep bool) {
	if !c.stop() || !keep || c.br.Buffered() > 0 {
		c.close()
		return
	}
	c.cl.put(c)
}

// writeHead writes the request line and header. The header is the
// client's, made ready by prepareHeaders; framing fields are written here
// from the body's length.
func writeHead(bw *bufio.Writer, out *http.Request, uri string) error {
	bw.WriteString(out.Method)
	bw.WriteByte(' ')
	bw.WriteString(uri)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(out.Host)
	bw.WriteString("\r\n")
	for k, vv := range out.Header {
		switch k {
		case "Host", "Content-Length", "Transfer-Encoding", "Expect", "Trailer":
			continue
		}
		for _, v := range vv {
			if v == "" && k == "User-Agent" {
				continue
			}
			bw.WriteString(k)
			bw.WriteString(": ")
			if strings.ContainsAny(v, "\r\n") {
				v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
			}
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	switch {
	case out.Body == nil:
		switch out.Method {
		case http.MethodPost, http.MethodPut, http.MethodPatch:
			bw.WriteString("Content-Length: 0\r\n")
		}
	case out.ContentLength > 0:
		bw.WriteString("Content-Length: ")
		var b [20]byte
		bw.Write(strconv.AppendInt(b[:0], out.ContentLength, 10))
		bw.WriteString("\r\n")
	default:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
		if len(out.Trailer) > 0 {
			keys := make([]string, 0, len(out.Trailer))
			for k := range out.Trailer {
				keys = append(keys, k)
			}
			bw.WriteString("Trailer: " + strings.Join(keys, ", ") + "\r\n")
		}
	}
	_, err := bw.WriteString("\r\n")
	return err
}

// writeBody sends the request body: Content-Length bytes, or chunked. A
// pause longer than proxy-send-timeout between two writes is a timeout,
// as nginx's proxy_send_timeout.
func (c *h1Conn) writeBody(out *http.Request, sendTimeout time.Duration) error {
	bufp := bodyBufs.Get().(*[]byte)
	defer bodyBufs.Put(bufp)
	buf := *bufp
	chunked := out.ContentLength <= 0
	remaining := out.ContentLength
	last := time.Now()
	for {
		lim := buf
		if !chunked && remaining < int64(len(lim)) {
			lim = lim[:remaining]
		}
		var n int
		var rerr error
		if len(lim) > 0 {
			n, rerr = out.Body.Read(lim)
		} else {
			rerr = io.EOF
		}
		if n > 0 {
			now := time.Now()
			if sendTimeout > 0 {
				if now.Sub(last) > sendTimeout {
					return errSendTimeout
				}
				c.c.SetWriteDeadline(now.Add(sendTimeout))
				c.wpending = false
			}
			last = now
			if chunked {
				c.bw.WriteString(strconv.FormatInt(int64(n), 16))
				c.bw.WriteString("\r\n")
			}
			if _, err := c.bw.Write(buf[:n]); err != nil {
				return err
			}
			if chunked {
				c.bw.WriteString("\r\n")
			}
			remaining -= int64(n)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	if !chunked && remaining > 0 {
		return io.ErrUnexpectedEOF
	}
	if chunked {
		c.bw.WriteString("0\r\n")
		for k, vv := range out.Trailer {
			for _, v := range vv {
				c.bw.WriteString(k + ": " + v + "\r\n")
			}
		}
		c.bw.WriteString("\r\n")
	}
	return nil
}

var bodyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// h1Body is an upstream answer's body; at its end the connection goes
// back to the pool.
type h1Body struct {
	c    *h1Conn
	rc   io.ReadCloser
	keep bool
	done bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.done = true
		b.c.release(b.keep)
	}
	return n, err
}

func (b *h1Body) Close() error {
	if !b.done {
		b.done = true
		b.c.stop()
		b.c.close()
	}
	return nil
}

// h1Upgraded is the connection after 101 Switching Protocols.
type h1Upgraded struct{ c *h1Conn }

func (u *h1Upgraded) Read(p []byte) (int, error)  { return u.c.br.Read(p) }
func (u *h1Upgraded) Write(p []byte) (int, error) { return u.c.c.Write(p) }
func (u *h1Upgraded) Close() error                { return u.c.c.Close() }
