// Package template is the DNS server's `template` plugin: queries whose
// class, type and zone fit and whose name matches one of a template's
// regular expressions get an answer built from Go text/templates that
// produce RFC 1035 records (answer, additional, authority) with a chosen
// rcode. A template that does not match answers SERVFAIL, unless it has
// `fallthrough` for the name: then the next template, or the next plugin,
// gets the query. CNAME answers to A/AAAA queries are followed through
// the server, as CoreDNS's upstream lookups do.
package template

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	gotmpl "text/template"

	"github.com/miekg/dns"

	"github.com/podnet/podnet/internal/dns/plugin/plugutil"
)

// Template is one `template` directive.
type Template struct {
	Class, Type uint16
	Zones       []string
	Regex       []*regexp.Regexp
	Answer      []*gotmpl.Template
	Additional  []*gotmpl.Template
	Authority   []*gotmpl.Template
	Rcode       int
	Fall        plugutil.Fall
	EDE         *dns.EDNS0_EDE
}

// Handler holds the templates of a server block, tried in order.
type Handler struct {
	Next      plugutil.Handler
	Zones     []string
	Templates []*Template
	// Resolve follows CNAME targets through the server (nil: not followed).
	Resolve func(ctx context.Context, name string, qtype uint16) (*dns.Msg, error)
}

// Data is what a record template sees.
type Data struct {
	Zone     string
	Name     string
	Regex    string
	Match    []string
	Group    map[string]string
	Class    string
	Type     string
	Message  *dns.Msg
	Question *dns.Question
	Remote   string
}

// Meta returns "" (there is no metadata plugin): templates using
// `.Meta "x"` still execute.
func (Data) Meta(string) string { return "" }

// NewRecordTemplate parses one record template, with CoreDNS's parseInt.
func NewRecordTemplate(name, text string) (*gotmpl.Template, error) {
	return gotmpl.New(name).Funcs(gotmpl.FuncMap{"parseInt": strconv.ParseUint}).Parse(text)
}

// Name implements the plugin interface.
func (h *Handler) Name() string { return "template" }

// match returns the data for t, whether t matched, and whether a miss may
// fall through.
func (t *Template) match(r *dns.Msg, qname, remote string) (*Data, bool, bool) {
	q := r.Question[0]
	zone := plugutil.Zones(t.Zones).Matches(qname)
	if zone == "" {
		return nil, false, true
	}
	if t.Class != dns.ClassANY && q.Qclass != dns.ClassANY && q.Qclass != t.Class {
		return nil, false, true
	}
	if t.Type != dns.TypeANY && q.Qtype != dns.TypeANY && q.Qtype != t.Type {
		return nil, false, true
	}
	for _, re := range t.Regex {
		m := re.FindStringSubmatch(qname)
		if m == nil {
			continue
		}
		d := &Data{Zone: zone, Regex: re.String(), Name: qname, Question: &q, Message: r, Remote: remote, Match: m, Group: map[string]string{}}
		d.Class = dns.ClassToString[q.Qclass]
		if q.Qclass == dns.ClassANY {
			d.Class = dns.ClassToString[t.Class]
		}
		d.Type = dns.TypeToString[q.Qtype]
		if q.Qtype == dns.TypeANY {
			d.Type = dns.TypeToString[t.Type]
		}
		names := re.SubexpNames()
		for i, v := range m {
			d.Group[strconv.Itoa(i)] = v
		}
		for i, v := range m {
			if names[i] != "" {
				d.Group[names[i]] = v
			}
		}
		return d, true, false
	}
	return nil, false, t.Fall.Through(qname)
}

func execute(t *gotmpl.Template, d *Data) (dns.RR, error) {
	var b bytes.Buffer
	if err := t.Execute(&b, d); err != nil {
		return nil, fmt.Errorf("template %s: %w", t.Name(), err)
	}
	rr, err := dns.NewRR(b.String())
	if err != nil {
		return nil, fmt.Errorf("template %s made %q: %w", t.Name(), b.String(), err)
	}
	if rr == nil {
		return nil, fmt.Errorf("template %s made no record", t.Name())
	}
	return rr, nil
}

// ServeDNS implements the plugin interface.
func (h *Handler) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	if len(r.Question) == 0 {
		return plugutil.NextOrFailure(h.Name(), h.Next, ctx, w, r)
	}
	qname := strings.ToLower(r.Question[0].Name)
	if !plugutil.Zones(h.Zones).Contains(qname) {
		return plugutil.NextOrFailure(h.Name(), h.Next, ctx, w, r)
	}
	remote := ""
	if a := w.RemoteAddr(); a != nil {
		if host, _, err := net.SplitHostPort(a.String()); err == nil {
			remote = host
		}
	}
	qtype := r.Question[0].Qtype
	for _, t := range h.Templates {
		d, ok, fall := t.match(r, qname, remote)
		if !ok {
			if !fall {
				return dns.RcodeServerFailure, nil
			}
			continue
		}
		if t.Rcode == dns.RcodeServerFailure {
			return dns.RcodeServerFailure, nil
		}
		m := new(dns.Msg)
		m.SetReply(r)
		m.Authoritative = true
		m.Rcode = t.Rcode
		for _, at := range t.Answer {
			rr, err := execute(at, d)
			if err != nil {
				return dns.RcodeServerFailure, err
			}
			m.Answer = append(m.Answer, rr)
			if cn, isCNAME := rr.(*dns.CNAME); isCNAME && h.Resolve != nil && (qtype == dns.TypeA || qtype == dns.TypeAAAA) {
				if up, err := h.Resolve(ctx, cn.Target, qtype); err == nil && up != nil {
					m.Truncated = up.Truncated
					m.Answer = append(m.Answer, up.Answer...)
				}
			}
		}
		for _, at := range t.Additional {
			rr, err := execute(at, d)
			if err != nil {
				return dns.RcodeServerFailure, err
			}
			m.Extra = append(m.Extra, rr)
		}
		for _, at := range t.Authority {
			rr, err := execute(at, d)
			if err != nil {
				return dns.RcodeServerFailure, err
			}
			m.Ns = append(m.Ns, rr)
		}
		if t.EDE != nil {
			m.SetEdns0(4096, true)
			o := m.IsEdns0()
			o.Option = append(o.Option, &dns.EDNS0_EDE{InfoCode: t.EDE.InfoCode, ExtraText: t.EDE.ExtraText})
		}
		if err := w.WriteMsg(m); err != nil {
			return dns.RcodeServerFailure, err
		}
		if !plugutil.ClientWrite(t.Rcode) {
			// Already written: tell the server so it does not write again.
			return dns.RcodeSuccess, nil
		}
		return t.Rcode, nil
	}
	return plugutil.NextOrFailure(h.Name(), h.Next, ctx, w, r)
}
