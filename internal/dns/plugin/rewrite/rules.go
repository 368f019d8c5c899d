package rewrite

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/miekg/dns"

	"github.com/podnet/podnet/internal/dns/plugin/plugutil"
)

// Modes of a rule: stop (the default) ends rule processing once the rule
// applied; continue goes on with the next rule.
const (
	Stop     = "stop"
	Continue = "continue"
)

const maxRegexLen = 10000

// Rule changes a request and may return response rules that undo it in the reply.
type Rule interface {
	// Apply rewrites r (name is its current lowercased qname) and reports
	// whether it applied.
	Apply(r *dns.Msg, name string) ([]ResponseRule, bool)
	Mode() string
}

// ResponseRule edits one record of the reply (rr nil: the message itself).
type ResponseRule interface {
	Edit(m *dns.Msg, rr dns.RR)
}

// matcher is a name match of one of the five kinds.
type matcher struct {
	kind string
	from string
	re   *regexp.Regexp
}

func (m matcher) match(name string) bool {
	switch m.kind {
	case "exact":
		return name == m.from
	case "prefix":
		return strings.HasPrefix(name, m.from)
	case "suffix":
		return strings.HasSuffix(name, m.from)
	case "substring":
		return strings.Contains(name, m.from)
	default:
		return m.re.MatchString(name)
	}
}

func newMatcher(kind, from string) (matcher, error) {
	switch kind {
	case "exact", "prefix", "suffix", "substring":
		return matcher{kind: kind, from: plugutil.Normalize(from)}, nil
	case "regex":
		if len(from) > maxRegexLen {
			return matcher{}, fmt.Errorf("regex pattern too long: %d > %d", len(from), maxRegexLen)
		}
		re, err := regexp.Compile(from)
		if err != nil {
			return matcher{}, fmt.Errorf("invalid regex matching pattern: %s", from)
		}
		return matcher{kind: kind, re: re}, nil
	}
	return matcher{}, fmt.Errorf("name rule supports only exact, prefix, suffix, substring, and regex name matching, received: %s", kind)
}

// expand fills {0}, {1}, ... in repl from a regex match.
func expand(repl string, groups []string) string {
	for i, g := range groups {
		repl = strings.ReplaceAll(repl, "{"+strconv.Itoa(i)+"}", g)
	}
	return repl
}

func subexpUsed(s string) int {
	n := 0
	for i := 0; i <= 100; i++ {
		if strings.Contains(s, "{"+strconv.Itoa(i)+"}") {
			n++
		}
	}
	return n
}

func compileRewrite(from, to string) (*regexp.Regexp, error) {
	if len(from) > maxRegexLen {
		return nil, fmt.Errorf("regex pattern too long: %d > %d", len(from), maxRegexLen)
	}
	re, err := regexp.Compile(from)
	if err != nil {
		return nil, fmt.Errorf("invalid regex matching pattern: %s", from)
	}
	if subexpUsed(to) > re.NumSubexp() {
		return nil, fmt.Errorf("the rewrite regex pattern (%s) uses more subexpressions than its corresponding matching regex pattern (%s)", to, from)
	}
	return re, nil
}

// stringRewriter maps one name to another in replies.
type stringRewriter func(string) string

func regexRewriter(re *regexp.Regexp, to string) stringRewriter {
	return func(s string) string {
		g := re.FindStringSubmatch(s)
		if g == nil {
			return s
		}
		return expand(to, g)
	}
}

// remapRewriter maps from (or a name ending in ".from") back to to.
func remapRewriter(from, to string) stringRewriter {
	return func(s string) string {
		if s == from {
			return to
		}
		if i := len(s) - len(from); i > 0 && s[i-1] == '.' && s[i:] == from {
			return s[:i] + to
		}
		return s
	}
}

func suffixRewriter(suffix, repl string) stringRewriter {
	return func(s string) string {
		if b, ok := strings.CutSuffix(s, suffix); ok {
			return b + repl
		}
		return s
	}
}

type nameEdit struct{ f stringRewriter }

func (e nameEdit) Edit(_ *dns.Msg, rr dns.RR) {
	if rr != nil {
		rr.Header().Name = e.f(rr.Header().Name)
	}
}

type valueEdit struct{ f stringRewriter }

func (e valueEdit) Edit(_ *dns.Msg, rr dns.RR) {
	switch x := rr.(type) {
	case *dns.SRV:
		x.Target = e.f(x.Target)
	case *dns.MX:
		x.Mx = e.f(x.Mx)
	case *dns.CNAME:
		x.Target = e.f(x.Target)
	case *dns.NS:
		x.Ns = e.f(x.Ns)
	case *dns.DNAME:
		x.Target = e.f(x.Target)
	case *dns.NAPTR:
		x.Replacement = e.f(x.Replacement)
	case *dns.SOA:
		x.Ns = e.f(x.Ns)
	case *dns.PTR:
		x.Ptr = e.f(x.Ptr)
	}
}

// nameRule rewrites the question name.
type nameRule struct {
	mode   string
	m      matcher
	to     string
	auto   bool
	static []ResponseRule
}

func (n *nameRule) Mode() string { return n.mode }

func (n *nameRule) Apply(r *dns.Msg, name string) ([]ResponseRule, bool) {
	var out string
	switch n.m.kind {
	case "exact":
		if name != n.m.from {
			return nil, false
		}
		out = n.to
	case "prefix":
		after, ok := strings.CutPrefix(name, n.m.from)
		if !ok {
			return nil, false
		}
		out = n.to + after
	case "suffix":
		before, ok := strings.CutSuffix(name, n.m.from)
		if !ok {
			return nil, false
		}
		out = before + n.to
	case "substring":
		if !strings.Contains(name, n.m.from) {
			return nil, false
		}
		out = strings.ReplaceAll(name, n.m.from, n.to)
	case "regex":
		g := n.m.re.FindStringSubmatch(name)
		if g == nil {
			return nil, false
		}
		out = expand(n.to, g)
	}
	r.Question[0].Name = out
	if !n.auto {
		return n.static, true
	}
	back := remapRewriter(out, name)
	rules := []ResponseRule{nameEdit{back}, valueEdit{back}}
	return append(rules, n.static...), true
}

func newNameRule(mode string, args []string) (Rule, error) {
	if len(args) < 2 {
		return nil, fmt.Errorf("too few arguments for a name rule")
	}
	kind, from, to := "exact", args[0], args[1]
	rest := args[2:]
	if len(args) >= 3 {
		kind, from, to = strings.ToLower(args[0]), args[1], args[2]
		rest = args[3:]
	}
	m, err := newMatcher(kind, from)
	if err != nil {
		return nil, err
	}
	if kind == "regex" {
		if _, err := compileRewrite(from, to); err != nil {
			return nil, err
		}
	}
	// As in CoreDNS, every FROM but a regex and every TO is lowercased and
	// given a final dot, prefix and substring strings included.
	to = plugutil.Normalize(to)
	n := &nameRule{mode: mode, m: m, to: to, auto: kind == "exact"}
	if len(rest) > 0 {
		auto, static, err := parseAnswer(kind, rest)
		if err != nil {
			return nil, err
		}
		n.static = static
		if kind != "exact" {
			n.auto = auto
		}
	}
	if kind == "suffix" && n.auto {
		// auto for suffix maps the new suffix back to the old one.
		back := suffixRewriter(n.to, n.m.from)
		n.static = append([]ResponseRule{nameEdit{back}, valueEdit{back}}, n.static...)
		n.auto = false
	}
	return n, nil
}

// parseAnswer reads `answer auto | answer name FROM TO | answer value FROM TO`, repeated.
func parseAnswer(kind string, args []string) (auto bool, rules []ResponseRule, err error) {
	if len(args) < 2 {
		return false, nil, fmt.Errorf("invalid arguments for %s rule", kind)
	}
	names := 0
	for i, first := 0, true; i < len(args); first = false {
		if first && args[i] != "answer" {
			return false, nil, fmt.Errorf("exceeded the number of arguments for a non-answer rule argument for %s rule", kind)
		}
		if args[i] == "answer" {
			i++
		}
		if i >= len(args) {
			return false, nil, fmt.Errorf("type missing for answer rule for %s rule", kind)
		}
		what := args[i]
		i++
		switch what {
		case "auto":
			auto = true
		case "name", "value":
			if len(args)-i < 2 {
				return false, nil, fmt.Errorf("%s answer rule for %s rule: 2 arguments required", what, kind)
			}
			re, err := compileRewrite(args[i], args[i+1])
			if err != nil {
				return false, nil, fmt.Errorf("%s answer rule for %s rule: %w", what, kind, err)
			}
			f := regexRewriter(re, plugutil.Normalize(args[i+1]))
			if what == "name" {
				rules = append(rules, nameEdit{f})
				names++
			} else {
				rules = append(rules, valueEdit{f})
			}
			i += 2
		default:
			return false, nil, fmt.Errorf("invalid type %q for answer rule for %s rule", what, kind)
		}
	}
	if auto && names > 0 {
		return false, nil, fmt.Errorf("auto name answer rule cannot be combined with explicit name answer rules")
	}
	return auto, rules, nil
}

type typeRule struct {
	mode     string
	from, to uint16
}

func (t *typeRule) Mode() string { return t.mode }

func (t *typeRule) Apply(r *dns.Msg, _ string) ([]ResponseRule, bool) {
	if r.Question[0].Qtype != t.from {
		return nil, false
	}
	r.Question[0].Qtype = t.to
	return nil, true
}

type classRule struct {
	mode     string
	from, to uint16
}

func (c *classRule) Mode() string { return c.mode }

func (c *classRule) Apply(r *dns.Msg, _ string) ([]ResponseRule, bool) {
	if r.Question[0].Qclass != c.from {
		return nil, false
	}
	r.Question[0].Qclass = c.to
	return nil, true
}

// ttlRule clamps the TTL of every record of matching replies to [min, max].
type ttlRule struct {
	mode     string
	m        matcher
	min, max uint32
}

func (t *ttlRule) Mode() string { return t.mode }

func (t *ttlRule) Apply(_ *dns.Msg, name string) ([]ResponseRule, bool) {
	if !t.m.match(name) {
		return nil, false
	}
	return []ResponseRule{t}, true
}

func (t *ttlRule) Edit(_ *dns.Msg, rr dns.RR) {
	if rr == nil || rr.Header().Rrtype == dns.TypeOPT {
		return
	}
	h := rr.Header()
	if h.Ttl < t.min {
		h.Ttl = t.min
	} else if h.Ttl > t.max {
		h.Ttl = t.max
	}
}

// rcodeRule changes one rcode to another in matching replies.
type rcodeRule struct {
	mode     string
	m        matcher
	old, new int
}

func (c *rcodeRule) Mode() string { return c.mode }

func (c *rcodeRule) Apply(_ *dns.Msg, name string) ([]ResponseRule, bool) {
	if !c.m.match(name) {
		return nil, false
	}
	return []ResponseRule{c}, true
}

func (c *rcodeRule) Edit(m *dns.Msg, _ dns.RR) {
	if m.Rcode == c.old {
		m.Rcode = c.new
	}
}

func parseTTL(v string) (uint32, uint32, bool) {
	parts := strings.Split(v, "-")
	num := func(s string) (uint64, bool) {
		n, err := strconv.ParseUint(s, 10, 32)
		return n, err == nil
	}
	switch len(parts) {
	case 1:
		n, ok := num(parts[0])
		return uint32(n), uint32(n), ok
	case 2:
		var lo, hi uint64 = 0, 2147483647
		var ok bool
		if parts[0] == "" && parts[1] == "" {
			return 0, 0, false
		}
		if parts[0] != "" {
			if lo, ok = num(parts[0]); !ok {
				return 0, 0, false
			}
		}
		if parts[1] != "" {
			if hi, ok = num(parts[1]); !ok {
				return 0, 0, false
			}
		}
		if lo > hi {
			return 0, 0, false
		}
		return uint32(lo), uint32(hi), true
	}
	return 0, 0, false
}

func parseRcode(v string) (int, bool) {
	if n, err := strconv.ParseUint(v, 10, 32); err == nil && n <= 23 {
		return int(n), true
	}
	rc, ok := dns.StringToRcode[strings.ToUpper(v)]
	return rc, ok
}

// matchedRule parses `[TYPE] NAME VALUE` shapes shared by ttl and rcode.
func matchedArgs(field string, args []string, values int) (matcher, []string, error) {
	switch len(args) {
	case 1 + values:
		m, err := newMatcher("exact", args[0])
		return m, args[1:], err
	case 2 + values:
		kind := strings.ToLower(args[0])
		m, err := newMatcher(kind, args[1])
		if err != nil {
			return matcher{}, nil, fmt.Errorf("%s rule supports only exact, prefix, suffix, substring, and regex name matching", field)
		}
		return m, args[2:], nil
	}
	if len(args) < 1+values {
		return matcher{}, nil, fmt.Errorf("too few (%d) arguments for a %s rule", len(args), field)
	}
	return matcher{}, nil, fmt.Errorf("too many arguments for a %s rule", field)
}

// NewRule parses one rule: `[continue|stop] FIELD ARGS...`.
func NewRule(args ...string) (Rule, error) {
	if len(args) == 0 {
		return nil, fmt.Errorf("no rule type specified for rewrite")
	}
	mode := Stop
	if a := strings.ToLower(args[0]); a == Stop || a == Continue {
		if len(args) < 2 {
			return nil, fmt.Errorf("%s rule must begin with a rule type", a)
		}
		mode = a
		args = args[1:]
	}
	field := strings.ToLower(args[0])
	rest := args[1:]
	switch field {
	case "answer":
		return nil, fmt.Errorf("response rewrites must begin with a name rule")
	case "name":
		return newNameRule(mode, rest)
	case "type":
		if len(rest) != 2 {
			return nil, fmt.Errorf("type rules must have exactly two arguments")
		}
		from, ok := dns.StringToType[strings.ToUpper(rest[0])]
		if !ok {
			return nil, fmt.Errorf("invalid type %q", strings.ToUpper(rest[0]))
		}
		to, ok := dns.StringToType[strings.ToUpper(rest[1])]
		if !ok {
			return nil, fmt.Errorf("invalid type %q", strings.ToUpper(rest[1]))
		}
		return &typeRule{mode: mode, from: from, to: to}, nil
	case "class":
		if len(rest) != 2 {
			return nil, fmt.Errorf("class rules must have exactly two arguments")
		}
		from, ok := dns.StringToClass[strings.ToUpper(rest[0])]
		if !ok {
			return nil, fmt.Errorf("invalid class %q", strings.ToUpper(rest[0]))
		}
		to, ok := dns.StringToClass[strings.ToUpper(rest[1])]
		if !ok {
			return nil, fmt.Errorf("invalid class %q", strings.ToUpper(rest[1]))
		}
		return &classRule{mode: mode, from: from, to: to}, nil
	case "ttl":
		m, vals, err := matchedArgs("ttl", rest, 1)
		if err != nil {
			return nil, err
		}
		lo, hi, ok := parseTTL(vals[0])
		if !ok {
			return nil, fmt.Errorf("invalid TTL '%s' for a ttl rule", vals[0])
		}
		return &ttlRule{mode: mode, m: m, min: lo, max: hi}, nil
	case "rcode":
		m, vals, err := matchedArgs("rcode", rest, 2)
		if err != nil {
			return nil, err
		}
		old, ok := parseRcode(vals[0])
		if !ok {
			return nil, fmt.Errorf("invalid matching RCODE '%s' for a rcode rule", vals[0])
		}
		nw, ok := parseRcode(vals[1])
		if !ok {
			return nil, fmt.Errorf("invalid replacement RCODE '%s' for a rcode rule", vals[1])
		}
		return &rcodeRule{mode: mode, m: m, old: old, new: nw}, nil
	case "edns0", "cname":
		return nil, fmt.Errorf("%s rules are not supported by podnet dns", field)
	}
	return nil, fmt.Errorf("invalid rule type %q", args[0])
}
