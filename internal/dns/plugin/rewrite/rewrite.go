// Package rewrite is the DNS server's `rewrite` plugin: it changes a
// query's name (exact, prefix, suffix, substring or regex match), type or
// class before the rest of the chain sees it, and undoes the change in the
// reply — the original question is always put back, and with `answer
// auto` (always for exact matches), `answer name` or `answer value` the
// names in the records too. `ttl` and `rcode` rules edit replies.
package rewrite

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"github.com/podnet/podnet/internal/dns/plugin/plugutil"
)

// Rewrite is the plugin handler.
type Rewrite struct {
	Next  plugutil.Handler
	Rules []Rule
}

// Name implements the plugin interface.
func (rw *Rewrite) Name() string { return "rewrite" }

// ServeDNS implements the plugin interface.
func (rw *Rewrite) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	if len(r.Question) == 0 {
		return plugutil.NextOrFailure(rw.Name(), rw.Next, ctx, w, r)
	}
	orig := r.Question[0]
	rev := &reverter{ResponseWriter: w, orig: orig}
	stopped := false
	for _, rule := range rw.Rules {
		rules, ok := rule.Apply(r, strings.ToLower(r.Question[0].Name))
		if !ok {
			continue
		}
		if _, valid := dns.IsDomainName(r.Question[0].Name); !valid {
			bad := r.Question[0].Name
			r.Question[0] = orig
			return dns.RcodeServerFailure, fmt.Errorf("invalid name after rewrite: %s", bad)
		}
		rev.rules = append(rev.rules, rules...)
		if rule.Mode() == Stop {
			stopped = true
			break
		}
	}
	if !stopped && len(rev.rules) == 0 {
		// Only continue rules without reply edits applied (or none): CoreDNS
		// then passes the client's writer on, without restoring the question.
		return plugutil.NextOrFailure(rw.Name(), rw.Next, ctx, w, r)
	}
	rc, err := plugutil.NextOrFailure(rw.Name(), rw.Next, ctx, rev, r)
	if plugutil.ClientWrite(rc) {
		return rc, err
	}
	// The server would answer the rewritten question: answer with the original.
	m := new(dns.Msg)
	m.SetRcode(r, rc)
	if o := r.IsEdns0(); o != nil {
		m.SetEdns0(o.UDPSize(), o.Do())
	}
	rev.WriteMsg(m)
	return dns.RcodeSuccess, err
}

// reverter puts the original question back and applies response rules,
// the last rule's first.
type reverter struct {
	dns.ResponseWriter
	orig  dns.Question
	rules []ResponseRule
}

func (v *reverter) WriteMsg(in *dns.Msg) error {
	m := in.Copy()
	if len(m.Question) == 0 {
		m.Question = []dns.Question{v.orig}
	} else {
		m.Question[0] = v.orig
	}
	if len(v.rules) > 0 {
		for _, sec := range [][]dns.RR{m.Ns, m.Answer, m.Extra} {
			for _, rr := range sec {
				for _, rule := range slices.Backward(v.rules) {
					rule.Edit(m, rr)
				}
			}
		}
		for _, rule := range slices.Backward(v.rules) {
			if rc, ok := rule.(*rcodeRule); ok {
				rc.Edit(m, nil)
			}
		}
	}
	return v.ResponseWriter.WriteMsg(m)
}
