package log

import (
	"context"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	pdns "github.com/podnet/podnet/internal/dns"
)

// Class is a class of responses.
type Class int

// The response classes a rule can select.
const (
	All Class = iota
	Success
	Denial
	Error
)

var classes = map[string]Class{"all": All, "success": Success, "denial": Denial, "error": Error}

// Classify returns the class of a reply: NXDOMAIN and NODATA are denial,
// NOERROR with data (or a referral) success, the rest error.
func Classify(m *dns.Msg) Class {
	switch m.Rcode {
	case dns.RcodeSuccess:
		if len(m.Answer) == 0 {
			for _, rr := range m.Ns {
				if rr.Header().Rrtype == dns.TypeNS {
					return Success
				}
			}
			return Denial
		}
		return Success
	case dns.RcodeNameError, dns.RcodeNXRrset, dns.RcodeYXDomain:
		return Denial
	}
	return Error
}

// Handler logs the queries of the rest of the chain.
type Handler struct {
	next  pdns.Handler
	rules []Rule
	mu    sync.Mutex
	out   io.Writer
}

// Name implements pdns.Handler.
func (h *Handler) Name() string { return name }

// ServeDNS implements pdns.Handler.
func (h *Handler) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	st := pdns.NewRequest(w, r)
	var rule *Rule
	for i := range h.rules {
		if h.rules[i].Zones.Matches(st.Name()) != "" {
			rule = &h.rules[i]
			break
		}
	}
	if rule == nil {
		return pdns.NextOrFailure(name, h.next, ctx, w, r)
	}
	rec := pdns.NewRecorder(w, name)
	rc, err := pdns.NextOrFailure(name, h.next, ctx, rec, r)
	reply := rec.Msg
	size := rec.Len
	if !pdns.ClientWrite(rc) || reply == nil {
		// The server writes this reply after us.
		reply = new(dns.Msg)
		reply.SetRcode(r, rc)
		size = reply.Len()
	}
	if !rule.Classes[All] && !rule.Classes[Classify(reply)] {
		return rc, err
	}
	e := entry{st: st, reply: reply, rsize: size, dur: time.Since(rec.Start)}
	var b strings.Builder
	b.WriteString("[INFO] ")
	for _, s := range rule.Format {
		if s.lit != "" {
			b.WriteString(s.lit)
			continue
		}
		b.WriteString(e.value(s.ph))
	}
	b.WriteByte('\n')
	h.mu.Lock()
	io.WriteString(h.out, b.String())
	h.mu.Unlock()
	return rc, err
}

// segment is a literal or a placeholder of a format.
type segment struct {
	lit string
	ph  string
}

// parseFormat splits a format into literals and {placeholders}.
func parseFormat(f string) []segment {
	var out []segment
	for f != "" {
		i := strings.IndexByte(f, '{')
		if i < 0 {
			out = append(out, segment{lit: f})
			break
		}
		j := strings.IndexByte(f[i:], '}')
		if j < 0 {
			out = append(out, segment{lit: f})
			break
		}
		if i > 0 {
			out = append(out, segment{lit: f[:i]})
		}
		ph := f[i : i+j+1]
		if _, ok := placeholders[ph]; ok || strings.HasPrefix(ph, "{/") {
			out = append(out, segment{ph: ph})
		} else {
			out = append(out, segment{lit: ph})
		}
		f = f[i+j+1:]
	}
	return out
}

type entry struct {
	st    *pdns.Request
	reply *dns.Msg
	rsize int
	dur   time.Duration
}

var placeholders = map[string]func(e *entry) string{
	"{type}":  func(e *entry) string { return e.st.Type() },
	"{name}":  func(e *entry) string { return e.st.Name() },
	"{class}": func(e *entry) string { return e.st.Class() },
	"{proto}": func(e *entry) string { return e.st.Proto() },
	"{size}":  func(e *entry) string { return strconv.Itoa(e.st.Len()) },
	"{remote}": func(e *entry) string {
		ip := e.st.IP()
		if strings.Contains(ip, ":") {
			return "[" + ip + "]"
		}
		return ip
	},
	"{port}":        func(e *entry) string { return e.st.Port() },
	"{local}":       func(e *entry) string { return e.st.LocalIP() },
	"{server_ip}":   func(e *entry) string { return e.st.LocalIP() },
	"{server_port}": func(e *entry) string { return e.st.LocalPort() },
	"{rcode}": func(e *entry) string {
		if s, ok := dns.RcodeToString[e.reply.Rcode]; ok {
			return s
		}
		return strconv.Itoa(e.reply.Rcode)
	},
	"{rsize}":    func(e *entry) string { return strconv.Itoa(e.rsize) },
	"{duration}": func(e *entry) string { return strconv.FormatFloat(e.dur.Seconds(), 'f', -1, 64) + "s" },
	"{>id}":      func(e *entry) string { return strconv.Itoa(int(e.st.Req.Id)) },
	"{>opcode}":  func(e *entry) string { return strconv.Itoa(e.st.Req.Opcode) },
	"{>do}":      func(e *entry) string { return strconv.FormatBool(e.st.Do()) },
	"{>bufsize}": func(e *entry) string { return strconv.Itoa(e.st.Size()) },
	"{>rflags}":  func(e *entry) string { return flags(e.reply) },
	"{rflags}":   func(e *entry) string { return flags(e.reply) },
	"{>qflags}":  func(e *entry) string { return flags(e.st.Req) },
}

func (e *entry) value(ph string) string {
	if f, ok := placeholders[ph]; ok {
		if v := f(e); v != "" {
			return v
		}
	}
	return "-"
}

// flags renders a message's header flags as CoreDNS does: "qr,aa,rd".
func flags(m *dns.Msg) string {
	var fs []string
	for _, f := range []struct {
		on bool
		s  string
	}{{m.Response, "qr"}, {m.Authoritative, "aa"}, {m.Truncated, "tc"}, {m.RecursionDesired, "rd"}, {m.RecursionAvailable, "ra"}, {m.Zero, "z"}, {m.AuthenticatedData, "ad"}, {m.CheckingDisabled, "cd"}} {
		if f.on {
			fs = append(fs, f.s)
		}
	}
	return strings.Join(fs, ",")
}
