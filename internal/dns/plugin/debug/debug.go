// Package debug is the debug plugin: panics while serving a query are
// not recovered (the process crashes with the stack), and plugins may log
// more (pdns.IsDebug on the query's context).
package debug

import pdns "github.com/podnet/podnet/internal/dns"

func init() {
	pdns.Register("debug", func(c *pdns.Controller) error {
		for c.Next() {
			if c.NextArg() {
				return c.ArgErr()
			}
		}
		c.Config().Debug = true
		return nil
	})
}
