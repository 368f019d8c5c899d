package proxy

import (
	"math/rand/v2"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"github.com/podnet/podnet/internal/ingress/annotations"
)

// rateLimiter is limit-rps for one Ingress: a leaky bucket per client
// address, with nginx's limit_req arithmetic (burst = 5 x rate, nodelay):
// a client may send 1 + burst requests at once, then rate per second;
// what exceeds is refused (503), not delayed.
type rateLimiter struct {
	rate  float64 // requests per nanosecond
	burst float64

	mu        sync.Mutex
	clients   map[netip.Addr]bucket
	lastSweep int64
}

type bucket struct {
	excess float64 // requests above the rate, as in nginx
	last   int64   // unix nanoseconds
}

// burstMultiplier is ingress-nginx's limit-burst-multiplier default.
const burstMultiplier = 5

// sweepAt is the client count above which idle clients are forgotten.
const sweepAt = 4096

func newRateLimiter(rps int) *rateLimiter {
	return &rateLimiter{
		rate:    float64(rps) / 1e9,
		burst:   float64(rps * burstMultiplier),
		clients: make(map[netip.Addr]bucket),
	}
}

func (l *rateLimiter) allow(ip netip.Addr, now int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.clients[ip]
	excess := 0.0
	if ok {
		excess = b.excess - l.rate*float64(now-b.last) + 1
		if excess < 0 {
			excess = 0
		}
		if excess > l.burst {
			return false
		}
	}
	l.clients[ip] = bucket{excess: excess, last: now}
	if len(l.clients) > sweepAt && now-l.lastSweep > 1e9 {
		l.lastSweep = now
		for k, b := range l.clients {
			if b.excess-l.rate*float64(now-b.last) <= 0 {
				delete(l.clients, k)
			}
		}
	}
	return true
}

// connLimiter is limit-connections for one Ingress: concurrent requests
// per client address.
type connLimiter struct {
	max     int32
	mu      sync.Mutex
	clients map[netip.Addr]int32
}

func newConnLimiter(n int) *connLimiter {
	return &connLimiter{max: int32(n), clients: make(map[netip.Addr]int32)}
}

func (l *connLimiter) acquire(ip netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.clients[ip]
	if n >= l.max {
		return false
	}
	l.clients[ip] = n + 1
	return true
}

func (l *connLimiter) release(ip netip.Addr) {
	l.mu.Lock()
	if n := l.clients[ip] - 1; n > 0 {
		l.clients[ip] = n
	} else {
		delete(l.clients, ip)
	}
	l.mu.Unlock()
}

// allowed reports whether ip is inside one of the whitelist-source-range
// prefixes (an empty list allows everyone).
func allowed(prefixes []netip.Prefix, ip netip.Addr) bool {
	if len(prefixes) == 0 {
		return true
	}
	ip = ip.Unmap()
	for _, p := range prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// canaryState is a canary of a route with its backend resolved.
type canaryState struct {
	cfg     *annotations.Config
	backend *backendState
}

// pickCanary decides, with ingress-nginx's precedence, whether the request
// goes to a canary: the header first ("always", "never", or with
// canary-by-header-value that exact value; anything else falls through),
// then the cookie ("always" or "never"), then the weight.
func pickCanary(r *http.Request, cs []canaryState) *canaryState {
	for i := range cs {
		c := &cs[i]
		cfg := c.cfg
		if cfg.CanaryByHeader != "" {
			if v := r.Header.Get(cfg.CanaryByHeader); v != "" {
				if cfg.CanaryByHeaderValue != "" {
					if v == cfg.CanaryByHeaderValue {
						return c
					}
				} else if v == "always" {
					return c
				} else if v == "never" {
					continue
				}
			}
		}
		if cfg.CanaryByCookie != "" {
			if ck, err := r.Cookie(cfg.CanaryByCookie); err == nil {
				switch ck.Value {
				case "always":
					return c
				case "never":
					continue
				}
			}
		}
		if cfg.CanaryWeight > 0 {
			total := cfg.CanaryWeightTotal
			if total <= 0 {
				total = 100
			}
			if cfg.CanaryWeight >= total || rand.IntN(total) < cfg.CanaryWeight {
				return c
			}
		}
	}
	return nil
}

// corsOrigin is the Access-Control-Allow-Origin to send for a request
// with Origin origin, and whether CORS headers apply at all: "*" when the
// allowed origins include it, else the request's origin when it is in the
// list (an entry may be a wildcard like "https://*.foo.com").
func corsOrigin(allow []string, origin string) (string, bool) {
	for _, a := range allow {
		if a == "*" {
			return "*", true
		}
	}
	if origin == "" {
		return "", false
	}
	for _, a := range allow {
		if strings.EqualFold(a, origin) {
			return origin, true
		}
		if i := strings.Index(a, "://*."); i >= 0 {
			scheme, suffix := a[:i+3], a[i+4:] // "https://", ".foo.com[:port]"
			if len(origin) > len(scheme)+len(suffix) &&
				strings.EqualFold(origin[:len(scheme)], scheme) &&
				strings.EqualFold(origin[len(origin)-len(suffix):], suffix) {
				return origin, true
			}
		}
	}
	return "", false
}

// setCORS adds the CORS response headers; preflight adds the ones only a
// preflight answer carries.
func setCORS(h http.Header, cfg *annotations.Config, origin string, preflight bool) {
	h.Set("Access-Control-Allow-Origin", origin)
	if origin != "*" {
		h.Add("Vary", "Origin")
	}
	if cfg.CORSAllowCredentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	h.Set("Access-Control-Allow-Methods", cfg.CORSAllowMethods)
	h.Set("Access-Control-Allow-Headers", cfg.CORSAllowHeaders)
	if cfg.CORSExposeHeaders != "" && !preflight {
		h.Set("Access-Control-Expose-Headers", cfg.CORSExposeHeaders)
	}
	if preflight {
		h.Set("Access-Control-Max-Age", strconv.Itoa(cfg.CORSMaxAge))
	}
}

// redirectHost is the host part of a redirect to HTTPS: the request's Host
// without its port, with httpsPort appended when it is not 443.
func redirectHost(host string, httpsPort int) string {
	if h, _, ok := splitHostPort(host); ok {
		host = h
	}
	if httpsPort != 0 && httpsPort != 443 {
		if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
			host = "[" + host + "]"
		}
		return host + ":" + strconv.Itoa(httpsPort)
	}
	return host
}

// splitHostPort splits "host:port" and "[v6]:port"; ok is false when there
// is no port.
func splitHostPort(hp string) (host, port string, ok bool) {
	if strings.HasPrefix(hp, "[") {
		end := strings.IndexByte(hp, ']')
		if end < 0 {
			return hp, "", false
		}
		if len(hp) > end+1 && hp[end+1] == ':' {
			return hp[:end+1], hp[end+2:], true
		}
		return hp, "", false
	}
	i := strings.LastIndexByte(hp, ':')
	if i < 0 || strings.IndexByte(hp, ':') != i {
		return hp, "", false
	}
	return hp[:i], hp[i+1:], true
}
