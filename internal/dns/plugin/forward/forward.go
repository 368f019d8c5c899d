// Package forward is the DNS server's `forward` plugin: queries for a zone
// are sent to one of a list of upstream servers, chosen by a policy, and
// the upstream's reply goes back to the client as it came (only its ID is
// the client's). Upstreams that fail are probed with `. IN NS` queries and
// skipped while more than max_fails probes in a row have failed.
//
// Plain DNS over UDP and TCP only: CoreDNS's tls://, https:// and quic://
// upstreams are refused at setup.
package forward

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/podnet/podnet/internal/dns/plugin/plugutil"
)

// Errors of an exchange.
var (
	errInvalidRequest = errors.New("invalid request")
	ErrNoHealthy      = errors.New("no healthy proxies")
	ErrLimitExceeded  = errors.New("concurrent queries exceeded maximum")
)

// defaultTimeout bounds the whole forwarding of one query, retries included.
const defaultTimeout = 5 * time.Second

// Policy orders the upstreams for one query.
type Policy int

// The policies of `policy`.
const (
	Random Policy = iota
	RoundRobin
	Sequential
)

// Config is the parsed `forward` block.
type Config struct {
	From           string
	To             []string // host:port
	Except         []string
	ForceTCP       bool
	PreferUDP      bool
	Expire         time.Duration
	MaxFails       uint32
	Policy         Policy
	HCInterval     time.Duration
	HCNoRec        bool
	HCDomain       string
	MaxConcurrent  int64
	ReadTimeout    time.Duration
	Next           []int // rcodes that pass the query to a following forward
	Failover       []int // rcodes that make us try the next upstream
	FailfastAllBad bool
}

// DefaultConfig has CoreDNS's defaults.
func DefaultConfig() Config {
	return Config{Expire: 10 * time.Second, MaxFails: 2, HCInterval: 500 * time.Millisecond, HCDomain: ".", ReadTimeout: defaultReadTimeout}
}

// Forward is the plugin handler.
type Forward struct {
	Next    plugutil.Handler
	cfg     Config
	proxies []*Proxy
	rr      atomic.Uint32

	concurrent atomic.Int64
	metrics    *Metrics
}

// New builds the handler. Health probes start only after a failed
// exchange; Close stops them.
func New(cfg Config, m *Metrics) *Forward {
	f := &Forward{cfg: cfg, metrics: m}
	for _, to := range cfg.To {
		p := newProxy(to, m)
		p.expire = cfg.Expire
		p.readTimeout = cfg.ReadTimeout
		p.interval = cfg.HCInterval
		p.hc = healthCheck{domain: cfg.HCDomain, rd: !cfg.HCNoRec, tcp: cfg.ForceTCP}
		f.proxies = append(f.proxies, p)
	}
	return f
}

// Name implements the plugin interface.
func (f *Forward) Name() string { return "forward" }

// Close stops health probes and closes idle connections.
func (f *Forward) Close() {
	for _, p := range f.proxies {
		p.close()
	}
}

// Proxies returns the upstreams, in configuration order.
func (f *Forward) Proxies() []*Proxy { return f.proxies }

func (f *Forward) list() []*Proxy {
	switch f.cfg.Policy {
	case Sequential:
		return f.proxies
	case RoundRobin:
		n := len(f.proxies)
		i := int(f.rr.Add(1)-1) % n
		out := make([]*Proxy, 0, n)
		return append(append(out, f.proxies[i:]...), f.proxies[:i]...)
	default:
		if len(f.proxies) == 1 {
			return f.proxies // nothing to shuffle; the caller only reads
		}
		out := slices.Clone(f.proxies)
		rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
		return out
	}
}

func (f *Forward) match(qname string) bool {
	if !dns.IsSubDomain(f.cfg.From, qname) {
		return false
	}
	for _, e := range f.cfg.Except {
		if dns.IsSubDomain(e, qname) {
			return false
		}
	}
	return true
}

// ServeDNS implements the plugin interface.
func (f *Forward) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	if len(r.Question) == 0 || !f.match(plugutil.Normalize(r.Question[0].Name)) {
		return plugutil.NextOrFailure(f.Name(), f.Next, ctx, w, r)
	}
	if f.cfg.MaxConcurrent > 0 {
		n := f.concurrent.Add(1)
		defer f.concurrent.Add(-1)
		if n > f.cfg.MaxConcurrent {
			f.metrics.reject()
			return dns.RcodeRefused, ErrLimitExceeded
		}
	}
	proto := "udp"
	if plugutil.IsTCP(w) {
		proto = "tcp"
	}
	switch {
	case f.cfg.ForceTCP:
		proto = "tcp"
	case f.cfg.PreferUDP:
		proto = "udp"
	}
	udpSize := uint16(plugutil.UDPSize(r))

	list := f.list()
	deadline := time.Now().Add(defaultTimeout)
	maxAttempts := 2 * len(list)
	attempts, fails, failovers, i := 0, 0, 0, 0
	var upstreamErr error
	for time.Now().Before(deadline) && ctx.Err() == nil && attempts < maxAttempts {
		if i >= len(list) {
			i, fails = 0, 0
		}
		p := list[i]
		i++
		if p.Down(f.cfg.MaxFails) {
			fails++
			if fails < len(f.proxies) {
				continue
			}
			f.metrics.broken()
			if f.cfg.FailfastAllBad {
				break
			}
			// every upstream looks down: the probes may be wrong, try one anyway
			p = f.proxies[rand.IntN(len(f.proxies))]
		}
		useProto := proto
		var ret *dns.Msg
		var err error
		for {
			ret, err = p.exchange(ctx, r, useProto, udpSize)
			if errors.Is(err, errCachedClosed) {
				continue
			}
			if err == nil && ret.Truncated && useProto == "udp" && f.cfg.PreferUDP && !f.cfg.ForceTCP {
				useProto = "tcp"
				continue
			}
			break
		}
		upstreamErr = err
		if err != nil {
			if errors.Is(err, errInvalidRequest) {
				return dns.RcodeFormatError, err
			}
			if f.cfg.MaxFails != 0 {
				p.healthcheck()
			}
			attempts++
			if fails < len(f.proxies) {
				continue
			}
			break
		}
		if !sameQuestion(r, ret) {
			m := new(dns.Msg)
			m.SetRcode(r, dns.RcodeFormatError)
			w.WriteMsg(m)
			return 0, nil
		}
		if slices.Contains(f.cfg.Failover, ret.Rcode) {
			failovers++
			if failovers < len(f.proxies) {
				continue
			}
		}
		if slices.Contains(f.cfg.Next, ret.Rcode) && f.Next != nil {
			if _, ok := f.Next.(*Forward); ok {
				return plugutil.NextOrFailure(f.Name(), f.Next, ctx, w, r)
			}
		}
		if err := w.WriteMsg(ret); err != nil {
			return dns.RcodeServerFailure, err
		}
		return 0, nil
	}
	if upstreamErr != nil {
		return dns.RcodeServerFailure, upstreamErr
	}
	return dns.RcodeServerFailure, ErrNoHealthy
}

func sameQuestion(req, res *dns.Msg) bool {
	if len(res.Question) == 0 {
		// Some servers send no question with errors; accept a header-only reply.
		return res.Rcode != dns.RcodeSuccess
	}
	a, b := req.Question[0], res.Question[0]
	return a.Qtype == b.Qtype && a.Qclass == b.Qclass && plugutil.Normalize(a.Name) == plugutil.Normalize(b.Name)
}
