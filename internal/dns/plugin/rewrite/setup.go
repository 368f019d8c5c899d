package rewrite

import (
	pdns "github.com/podnet/podnet/internal/dns"
	"github.com/podnet/podnet/internal/dns/plugin/plugutil"
)

const name = "rewrite"

func init() { pdns.Register(name, setup) }

func setup(c *pdns.Controller) error {
	rules, err := parse(c)
	if err != nil {
		return err
	}
	rw := &Rewrite{Rules: rules}
	c.AddPlugin(func(next pdns.Handler) pdns.Handler { rw.Next = next; return rw })
	return nil
}

// parse reads every `rewrite` line of the block. A line with fewer than
// two arguments takes its rule from the block after it, as CoreDNS does:
// `rewrite stop { name regex ... \n answer name ... }`.
func parse(c *pdns.Controller) ([]Rule, error) {
	var rules []Rule
	for c.Next() {
		line := c.Line()
		args := c.RemainingArgs()
		if len(args) < 2 {
			for c.NextBlock() {
				args = append(args, c.Val())
			}
		}
		r, err := NewRule(args...)
		if err != nil {
			return nil, pdns.Errorf(name, "%s:%d - Error during parsing: %v", c.File(), line, err)
		}
		rules = append(rules, r)
	}
	return rules, nil
}

var _ plugutil.Handler = (*Rewrite)(nil)
