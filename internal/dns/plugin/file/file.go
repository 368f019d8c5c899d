// Package file is the DNS server's `file` plugin: authoritative answers
// from RFC 1035 zone files, with CoreDNS 1.15's answer shapes — the zone's
// NS set in the authority section of positive answers, the SOA there for
// NXDOMAIN and NODATA, referrals (AA clear) with glue below delegations,
// CNAME chains followed inside the zone, wildcards (not across empty
// non-terminals), and in-zone addresses of MX/SRV targets as additional
// records. A zone file that changes its SOA serial (or mtime, with
// reload_by_mtime) is reloaded; a bad reload keeps the old zone serving.
package file

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/podnet/podnet/internal/dns/plugin/plugutil"
)

// ZoneFile is one zone and where it comes from.
type ZoneFile struct {
	Origin  string
	Path    string
	zone    atomic.Pointer[Zone]
	mtime   time.Time
	stopped chan struct{}
}

// Current is the zone being served.
func (zf *ZoneFile) Current() *Zone { return zf.zone.Load() }

// File is the plugin handler.
type File struct {
	Next  plugutil.Handler
	Zones map[string]*ZoneFile
	names plugutil.Zones
	Fall  plugutil.Fall
	// Resolve, when set, resolves out-of-zone CNAME targets through the
	// server; it gets the original request's context.
	Resolve func(ctx context.Context, name string, qtype uint16) (*dns.Msg, error)

	Reload        time.Duration
	ReloadByMtime bool
	log           *slog.Logger
	stop          chan struct{}
	once          sync.Once
}

// Load reads path once for every origin (as CoreDNS, one file can serve
// several zones).
func Load(path string, origins []string, log *slog.Logger) (*File, error) {
	f := New(log)
	if err := f.Add(path, origins); err != nil {
		return nil, err
	}
	return f, nil
}

// New returns a File without zones.
func New(log *slog.Logger) *File {
	if log == nil {
		log = slog.Default()
	}
	return &File{Zones: map[string]*ZoneFile{}, Reload: time.Minute, log: log, stop: make(chan struct{})}
}

// Add loads path for each origin. A file that cannot be opened is not an
// error (as in CoreDNS): the zone answers SERVFAIL until a reload reads
// it. A file that does not parse is.
func (f *File) Add(path string, origins []string) error {
	for _, o := range origins {
		zf := &ZoneFile{Origin: o, Path: path}
		z, mtime, err := readZone(path, o)
		var pe *os.PathError
		switch {
		case errors.As(err, &pe):
			f.log.Warn("zone file cannot be read, serving SERVFAIL until it can", "zone", o, "file", path, "err", err)
			z = &Zone{Origin: o, names: map[string]map[uint16][]dns.RR{}, parent: map[string]bool{}}
		case err != nil:
			return err
		}
		zf.zone.Store(z)
		zf.mtime = mtime
		f.Zones[o] = zf
		f.names = append(f.names, o)
	}
	return nil
}

func readZone(path, origin string) (*Zone, time.Time, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, time.Time{}, err
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, time.Time{}, err
	}
	z, err := Parse(fh, origin, path)
	return z, st.ModTime(), err
}

// Name implements the plugin interface.
func (f *File) Name() string { return "file" }

// Start runs the reload loop.
func (f *File) Start() {
	if f.Reload <= 0 {
		return
	}
	go func() {
		t := time.NewTicker(f.Reload)
		defer t.Stop()
		for {
			select {
			case <-f.stop:
				return
			case <-t.C:
				f.ReloadNow()
			}
		}
	}()
}

// Stop ends the reload loop.
func (f *File) Stop() { f.once.Do(func() { close(f.stop) }) }

// ReloadNow re-reads each zone whose serial (or mtime) changed.
func (f *File) ReloadNow() {
	for _, zf := range f.Zones {
		if f.ReloadByMtime {
			if st, err := os.Stat(zf.Path); err != nil || st.ModTime().Equal(zf.mtime) {
				continue
			}
		}
		z, mtime, err := readZone(zf.Path, zf.Origin)
		if err != nil {
			f.log.Error("zone reload failed, keeping the loaded zone", "zone", zf.Origin, "file", zf.Path, "err", err)
			continue
		}
		old := zf.Current()
		if !f.ReloadByMtime && old != nil && old.SOA != nil && old.Serial() == z.Serial() {
			continue
		}
		zf.zone.Store(z)
		zf.mtime = mtime
		f.log.Info("zone reloaded", "zone", zf.Origin, "serial", z.Serial())
	}
}

// ServeDNS implements the plugin interface.
func (f *File) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	if len(r.Question) == 0 {
		return plugutil.NextOrFailure(f.Name(), f.Next, ctx, w, r)
	}
	q := r.Question[0]
	qname := strings.ToLower(q.Name)
	zone := f.names.Matches(qname)
	if zone == "" {
		if f.Next == nil {
			return dns.RcodeRefused, nil
		}
		return plugutil.NextOrFailure(f.Name(), f.Next, ctx, w, r)
	}
	z := f.Zones[zone].Current()
	if z == nil {
		return dns.RcodeServerFailure, nil
	}
	if q.Qtype == dns.TypeAXFR || q.Qtype == dns.TypeIXFR {
		return dns.RcodeRefused, nil
	}
	var resolve Resolver
	if f.Resolve != nil {
		resolve = func(name string, qtype uint16) (*dns.Msg, error) { return f.Resolve(ctx, name, qtype) }
	}
	answer, ns, extra, res := z.Lookup(qname, q.Qtype, resolve)
	if len(answer) == 0 && (res == NameError || res == Success) && f.Fall.Through(qname) {
		return plugutil.NextOrFailure(f.Name(), f.Next, ctx, w, r)
	}
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	m.Answer, m.Ns, m.Extra = answer, ns, extra
	switch res {
	case NameError:
		m.Rcode = dns.RcodeNameError
	case Delegation:
		if len(m.Answer) == 0 {
			m.Authoritative = false
		}
	case ServerFailure:
		if len(m.Answer) == 0 {
			return dns.RcodeServerFailure, nil
		}
		m.Rcode = dns.RcodeServerFailure
	}
	if err := w.WriteMsg(m); err != nil {
		return dns.RcodeServerFailure, err
	}
	return dns.RcodeSuccess, nil
}
