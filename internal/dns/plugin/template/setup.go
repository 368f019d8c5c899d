package template

import (
	"context"
	"regexp"
	"strconv"

	"github.com/miekg/dns"

	pdns "github.com/podnet/podnet/internal/dns"
	"github.com/podnet/podnet/internal/dns/plugin/plugutil"
)

const (
	name        = "template"
	maxRegexLen = 10000
)

func init() { pdns.Register(name, setup) }

func setup(c *pdns.Controller) error {
	h, err := parse(c)
	if err != nil {
		return err
	}
	h.Resolve = func(ctx context.Context, n string, qtype uint16) (*dns.Msg, error) {
		r := new(dns.Msg)
		r.SetQuestion(n, qtype)
		return plugutil.ServerResolve(ctx, r, n, qtype)
	}
	c.AddPlugin(func(next pdns.Handler) pdns.Handler { h.Next = next; return h })
	return nil
}

// parse reads every `template CLASS TYPE [ZONES...] { match, answer, additional, authority, rcode, ederror, fallthrough }`.
func parse(c *pdns.Controller) (*Handler, error) {
	h := &Handler{}
	for c.Next() {
		if !c.NextArg() {
			return nil, c.ArgErr()
		}
		class, ok := dns.StringToClass[c.Val()]
		if !ok {
			return nil, c.Errf("invalid query class %s", c.Val())
		}
		if !c.NextArg() {
			return nil, c.ArgErr()
		}
		qtype, ok := dns.StringToType[c.Val()]
		if !ok {
			return nil, c.Errf("invalid RR class %s", c.Val())
		}
		zones, err := pdns.OriginsFromArgsOrServerBlock(c.RemainingArgs(), c.Zones())
		if err != nil {
			return nil, c.Errf("%v", err)
		}
		h.Zones = append(h.Zones, zones...)
		t := &Template{Class: class, Type: qtype, Zones: zones}
		for c.NextBlock() {
			opt := c.Val()
			switch opt {
			case "match":
				args := c.RemainingArgs()
				if len(args) == 0 {
					return nil, c.ArgErr()
				}
				for _, re := range args {
					if len(re) > maxRegexLen {
						return nil, c.Errf("regex pattern too long: %d > %d", len(re), maxRegexLen)
					}
					r, err := regexp.Compile(re)
					if err != nil {
						return nil, c.Errf("could not parse regex: %s, %v", re, err)
					}
					t.Regex = append(t.Regex, r)
				}
			case "answer", "additional", "authority":
				args := c.RemainingArgs()
				if len(args) == 0 {
					return nil, c.ArgErr()
				}
				for _, a := range args {
					tm, err := NewRecordTemplate(opt, a)
					if err != nil {
						return nil, c.Errf("could not compile template: %s, %v", a, err)
					}
					switch opt {
					case "answer":
						t.Answer = append(t.Answer, tm)
					case "additional":
						t.Additional = append(t.Additional, tm)
					default:
						t.Authority = append(t.Authority, tm)
					}
				}
			case "rcode":
				if !c.NextArg() {
					return nil, c.ArgErr()
				}
				rc, ok := dns.StringToRcode[c.Val()]
				if !ok {
					return nil, c.Errf("unknown rcode %s", c.Val())
				}
				t.Rcode = rc
				if c.NextArg() {
					return nil, c.ArgErr()
				}
			case "ederror":
				args := c.RemainingArgs()
				if len(args) != 1 && len(args) != 2 {
					return nil, c.ArgErr()
				}
				code, err := strconv.ParseUint(args[0], 10, 16)
				if err != nil {
					return nil, c.Errf("error parsing extended DNS error code %s, %v", args[0], err)
				}
				t.EDE = &dns.EDNS0_EDE{InfoCode: uint16(code)}
				if len(args) == 2 {
					t.EDE.ExtraText = args[1]
				}
			case "fallthrough":
				t.Fall.SetZonesFromArgs(c.RemainingArgs())
			case "upstream":
				c.RemainingArgs() // accepted and ignored, as in CoreDNS
			case "var", "expr":
				return nil, c.Errf("'%s' (expressions) is not supported by podnet dns", opt)
			default:
				return nil, c.Errf("unknown property '%s'", opt)
			}
		}
		if len(t.Regex) == 0 {
			t.Regex = []*regexp.Regexp{regexp.MustCompile(".*")}
		}
		h.Templates = append(h.Templates, t)
	}
	return h, nil
}

var _ plugutil.Handler = (*Handler)(nil)
