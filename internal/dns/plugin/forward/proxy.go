package forward

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Timeouts of one upstream exchange.
const (
	dialTimeout        = 2 * time.Second
	defaultReadTimeout = 2 * time.Second
	hcTimeout          = time.Second
)

// errCachedClosed means a pooled connection was closed by the peer before
// our query went out; the exchange is retried on a new one.
var errCachedClosed = errors.New("cached connection was closed by the peer")

// Proxy is one upstream: its address, its failure count, a pool of idle
// connections per transport, and the health probe that runs after failures.
type Proxy struct {
	addr        string // host:port
	fails       atomic.Uint32
	readTimeout time.Duration
	expire      time.Duration

	mu   sync.Mutex
	idle map[string][]pooled // "udp" / "tcp"

	hc       healthCheck
	probing  atomic.Bool
	interval time.Duration
	stop     chan struct{}
	stopOnce sync.Once
	metrics  *Metrics
}

type pooled struct {
	c    *dns.Conn
	used time.Time
}

type healthCheck struct {
	domain string
	rd     bool
	tcp    bool
}

func newProxy(addr string, m *Metrics) *Proxy {
	return &Proxy{addr: addr, readTimeout: defaultReadTimeout, expire: 10 * time.Second,
		idle: map[string][]pooled{}, hc: healthCheck{domain: ".", rd: true}, interval: 500 * time.Millisecond,
		stop: make(chan struct{}), metrics: m}
}

// Addr is the upstream's host:port.
func (p *Proxy) Addr() string { return p.addr }

// Down reports whether the upstream failed more than maxFails health checks
// in a row; maxFails 0 means never down.
func (p *Proxy) Down(maxFails uint32) bool {
	return maxFails != 0 && p.fails.Load() > maxFails
}

// close stops the probe and closes pooled connections.
func (p *Proxy) close() {
	p.stopOnce.Do(func() { close(p.stop) })
	p.mu.Lock()
	defer p.mu.Unlock()
	for proto, conns := range p.idle {
		for _, pc := range conns {
			pc.c.Close()
		}
		delete(p.idle, proto)
	}
}

func (p *Proxy) get(proto string) (*dns.Conn, bool, error) {
	now := time.Now()
	p.mu.Lock()
	conns := p.idle[proto]
	for len(conns) > 0 {
		pc := conns[len(conns)-1]
		conns = conns[:len(conns)-1]
		if now.Sub(pc.used) < p.expire {
			p.idle[proto] = conns
			p.mu.Unlock()
			return pc.c, true, nil
		}
		pc.c.Close()
	}
	p.idle[proto] = conns
	p.mu.Unlock()
	c, err := net.DialTimeout(proto, p.addr, dialTimeout)
	if err != nil {
		return nil, false, err
	}
	return &dns.Conn{Conn: c}, false, nil
}

func (p *Proxy) put(proto string, c *dns.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.stop:
		c.Close()
		return
	default:
	}
	p.idle[proto] = append(p.idle[proto], pooled{c: c, used: time.Now()})
}

// exchange sends r (with a fresh ID) over proto and returns the reply with
// r's ID. A UDP reply with another ID is skipped, as are short reads.
func (p *Proxy) exchange(ctx context.Context, r *dns.Msg, proto string, udpSize uint16) (*dns.Msg, error) {
	start := time.Now()
	origID := r.Id
	id := newID()
	// The query goes out as r with a fresh ID. Without EDNS, packing r
	// leaves it untouched, so pack it as is and write the ID into the wire
	// form; with an OPT record Pack rewrites its extended rcode bits, so
	// pack a copy, as before.
	bp := packBufs.Get().(*[]byte)
	defer packBufs.Put(bp)
	var wire []byte
	var err error
	if r.IsEdns0() == nil {
		wire, err = r.PackBuffer(*bp)
		if err == nil {
			wire[0], wire[1] = byte(id>>8), byte(id)
		}
	} else {
		q := r.Copy()
		q.Id = id
		wire, err = q.PackBuffer(*bp)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errInvalidRequest, err)
	}
	if cap(wire) <= 4096 {
		*bp = wire[:cap(wire)]
	}
	c, cached, err := p.get(proto)
	if err != nil {
		return nil, err
	}
	c.UDPSize = max(udpSize, 512)
	if proto == "udp" {
		c.UDPSize = dns.MaxMsgSize // the server truncates for the client, not us
	}
	deadline := time.Now().Add(p.readTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	c.SetWriteDeadline(deadline)
	if _, err := c.Write(wire); err != nil {
		c.Close()
		if cached {
			return nil, errCachedClosed
		}
		return nil, err
	}
	c.SetReadDeadline(deadline)
	var ret *dns.Msg
	for {
		if proto == "udp" {
			ret, err = readUDP(c)
		} else {
			ret, err = c.ReadMsg()
		}
		if err != nil {
			if proto == "udp" && ((ret == nil && errors.Is(err, dns.ErrShortRead)) || (ret != nil && ret.Id != id)) {
				continue
			}
			c.Close()
			if cached && proto == "tcp" && isEOF(err) {
				return nil, errCachedClosed
			}
			return nil, err
		}
		if ret.Id == id {
			break
		}
		// a late reply to an earlier query on this socket: skip it
	}
	p.put(proto, c)
	ret.Id = origID
	p.metrics.observe(p.addr, ret.Rcode, time.Since(start))
	return ret, nil
}

// packBufs holds the buffers queries are packed into.
var packBufs = sync.Pool{New: func() any { b := make([]byte, 512); return &b }}

// newID is a random message ID from crypto/rand, as dns.Id makes, without
// its reflection-based binary.Read.
func newID() uint16 {
	var b [2]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return uint16(b[0])<<8 | uint16(b[1])
}

// udpBufs holds the 64 KiB buffers UDP replies are read into: dns.Conn's
// ReadMsg makes a fresh buffer of UDPSize bytes for every datagram, which
// at dns.MaxMsgSize was the forward path's main cost (allocation and GC).
var udpBufs = sync.Pool{New: func() any { b := make([]byte, dns.MaxMsgSize); return &b }}

// readUDP reads one datagram from c as dns.Conn's ReadMsg does (short reads
// are dns.ErrShortRead, an unpack error returns the partial message, a TSIG
// reply fails verification as we hold no secrets) but into a pooled buffer.
func readUDP(c *dns.Conn) (*dns.Msg, error) {
	bp := udpBufs.Get().(*[]byte)
	defer udpBufs.Put(bp)
	n, err := c.Conn.Read(*bp)
	if err != nil {
		return nil, err
	}
	if n < 12 { // the DNS header
		return nil, dns.ErrShortRead
	}
	// Unpacking copies every field out of the wire form (miekg/dns's own
	// server unpacks from its pooled buffers the same way).
	wire := (*bp)[:n]
	m := new(dns.Msg)
	if err := m.Unpack(wire); err != nil {
		return m, err
	}
	if m.IsTsig() != nil {
		return m, dns.TsigVerifyWithProvider(wire, noSecrets{}, "", false)
	}
	return m, nil
}

// noSecrets is the TSIG provider of a dns.Conn without TsigSecret.
type noSecrets struct{}

func (noSecrets) Generate([]byte, *dns.TSIG) ([]byte, error) { return nil, dns.ErrSecret }
func (noSecrets) Verify([]byte, *dns.TSIG) error             { return dns.ErrSecret }

func isEOF(err error) bool { return errors.Is(err, io.EOF) }

// healthcheck starts probing the upstream, if no probe runs yet: a `. IN
// NS` query every interval until one gets any DNS reply back.
func (p *Proxy) healthcheck() {
	if !p.probing.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer p.probing.Store(false)
		t := time.NewTicker(p.interval)
		defer t.Stop()
		for {
			if p.check() == nil {
				return
			}
			select {
			case <-p.stop:
				return
			case <-t.C:
			}
		}
	}()
}

// check sends one health query; failure counts toward max_fails.
func (p *Proxy) check() error {
	ping := new(dns.Msg)
	ping.SetQuestion(p.hc.domain, dns.TypeNS)
	ping.RecursionDesired = p.hc.rd
	cl := &dns.Client{Net: "udp", Timeout: hcTimeout}
	if p.hc.tcp {
		cl.Net = "tcp"
	}
	m, _, err := cl.Exchange(ping, p.addr)
	if err != nil && m != nil && (m.Response || m.Opcode == dns.OpcodeQuery) {
		err = nil // some DNS came back: the upstream is alive
	}
	if err != nil {
		p.metrics.hcFailure(p.addr)
		p.fails.Add(1)
		return err
	}
	p.fails.Store(0)
	return nil
}
