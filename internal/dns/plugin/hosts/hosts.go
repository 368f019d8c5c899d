// Package hosts is the DNS server's `hosts` plugin: A, AAAA and PTR answers
// from a hosts(5) file and from entries inlined in the Corefile, with the
// file re-read when its size or modification time changes.
//
// Answers follow CoreDNS 1.15: a known name asked for another type gets an
// authoritative NOERROR with nothing in it; an unknown name falls through
// when `fallthrough` covers it and otherwise gets SERVFAIL (a hosts file has
// no SOA to make an NXDOMAIN with). PTR queries are answered for any reverse
// name the entries cover, whatever the plugin's zones.
package hosts

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/podnet/podnet/internal/dns/plugin/plugutil"
)

// Options are the parsed settings of one `hosts` block.
type Options struct {
	Path    string
	Origins []string
	Inline  []string
	TTL     uint32
	Reload  time.Duration
	Reverse bool
	Fall    plugutil.Fall
	// FallUnsupported passes types other than A/AAAA/PTR on when Fall covers the name.
	FallUnsupported bool
}

// DefaultOptions are CoreDNS's defaults.
func DefaultOptions() Options {
	return Options{Path: "/etc/hosts", TTL: 3600, Reload: 5 * time.Second, Reverse: true}
}

// Hosts is the plugin handler.
type Hosts struct {
	Next plugutil.Handler
	opts Options
	log  *slog.Logger

	inline *Map
	file   atomic.Pointer[Map]

	mu    sync.Mutex // guards mtime/size (only the reloader and Load touch them)
	mtime time.Time
	size  int64

	// OnReload is called with the total entry count after each (re)load.
	OnReload func(path string, entries int)

	stop chan struct{}
	once sync.Once
}

// New builds the handler and loads the file once.
func New(opts Options, log *slog.Logger) *Hosts {
	if log == nil {
		log = slog.Default()
	}
	h := &Hosts{opts: opts, log: log, stop: make(chan struct{})}
	h.inline = Parse(stringsReader(opts.Inline), opts.Origins, opts.Reverse)
	h.file.Store(newMap())
	h.Load()
	return h
}

// Name implements the plugin interface.
func (h *Hosts) Name() string { return "hosts" }

// Entries is the number of entries from the file and the inline lines.
func (h *Hosts) Entries() int { return h.inline.Len() + h.file.Load().Len() }

// Load re-reads the file if its size or modification time changed. A file
// that cannot be opened keeps the entries last read from it, as CoreDNS does.
func (h *Hosts) Load() {
	f, err := os.Open(h.opts.Path)
	if err != nil {
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.IsDir() {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if st.ModTime().Equal(h.mtime) && st.Size() == h.size {
		return
	}
	m := Parse(f, h.opts.Origins, h.opts.Reverse)
	h.file.Store(m)
	h.mtime, h.size = st.ModTime(), st.Size()
	h.log.Debug("hosts file loaded", "path", h.opts.Path, "entries", m.Len())
	if h.OnReload != nil {
		h.OnReload(h.opts.Path, h.Entries())
	}
}

// Start runs the reload loop (when Reload > 0) until Stop.
func (h *Hosts) Start() {
	if h.opts.Reload <= 0 {
		return
	}
	go func() {
		t := time.NewTicker(h.opts.Reload)
		defer t.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-t.C:
				h.Load()
			}
		}
	}()
}

// Stop ends the reload loop.
func (h *Hosts) Stop() { h.once.Do(func() { close(h.stop) }) }

func (h *Hosts) lookupHost(name string, v4 bool) []net.IP {
	file := h.file.Load()
	var a, b []net.IP
	if v4 {
		a, b = lookup(file.name4, file.wild4, name), lookup(h.inline.name4, h.inline.wild4, name)
	} else {
		a, b = lookup(file.name6, file.wild6, name), lookup(h.inline.name6, h.inline.wild6, name)
	}
	out := make([]net.IP, 0, len(a)+len(b))
	return append(append(out, a...), b...)
}

func (h *Hosts) lookupAddr(a netip.Addr) []string {
	file := h.file.Load()
	x, y := file.addr[a], h.inline.addr[a]
	out := make([]string, 0, len(x)+len(y))
	return append(append(out, x...), y...)
}

// ServeDNS implements the plugin interface.
func (h *Hosts) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	if len(r.Question) == 0 {
		return plugutil.NextOrFailure(h.Name(), h.Next, ctx, w, r)
	}
	q := r.Question[0]
	qname := plugutil.Normalize(q.Name)
	if !plugutil.Zones(h.opts.Origins).Contains(qname) && q.Qtype != dns.TypePTR {
		return plugutil.NextOrFailure(h.Name(), h.Next, ctx, w, r)
	}
	var answer []dns.RR
	ttl := h.opts.TTL
	switch q.Qtype {
	case dns.TypePTR:
		names := h.lookupAddr(plugutil.ReverseAddr(qname))
		if len(names) == 0 {
			return plugutil.NextOrFailure(h.Name(), h.Next, ctx, w, r)
		}
		for _, n := range names {
			answer = append(answer, &dns.PTR{Hdr: dns.RR_Header{Name: qname, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: ttl}, Ptr: n})
		}
	case dns.TypeA:
		for _, ip := range h.lookupHost(qname, true) {
			answer = append(answer, &dns.A{Hdr: dns.RR_Header{Name: qname, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl}, A: ip})
		}
	case dns.TypeAAAA:
		for _, ip := range h.lookupHost(qname, false) {
			answer = append(answer, &dns.AAAA{Hdr: dns.RR_Header{Name: qname, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: ttl}, AAAA: ip})
		}
	default:
		if h.opts.FallUnsupported && h.opts.Fall.Through(qname) {
			return plugutil.NextOrFailure(h.Name(), h.Next, ctx, w, r)
		}
	}
	if len(answer) == 0 && !h.known(qname) {
		if h.opts.Fall.Through(qname) {
			return plugutil.NextOrFailure(h.Name(), h.Next, ctx, w, r)
		}
		return dns.RcodeServerFailure, nil
	}
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	m.Answer = answer
	if err := w.WriteMsg(m); err != nil {
		return dns.RcodeServerFailure, err
	}
	return dns.RcodeSuccess, nil
}

// known reports whether the name has an address of either family.
func (h *Hosts) known(name string) bool {
	return len(h.lookupHost(name, true)) > 0 || len(h.lookupHost(name, false)) > 0
}
