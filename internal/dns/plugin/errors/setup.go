// Package errors is the errors plugin: errors returned by the plugins
// after it are logged, one line per query, or consolidated: errors
// matching a pattern are counted over a period and logged once.
package errors

import (
	"log/slog"
	"regexp"
	"time"

	pdns "github.com/podnet/podnet/internal/dns"
)

const name = "errors"

func init() { pdns.Register(name, setup) }

// pattern is one `consolidate DURATION REGEXP [LEVEL]`.
type pattern struct {
	period time.Duration
	re     *regexp.Regexp
	level  slog.Level
	count  uint64 // atomic
	last   string // last message matched, for the summary
}

func setup(c *pdns.Controller) error {
	h := &Handler{log: c.Log()}
	n := 0
	for c.Next() {
		n++
		if n > 1 {
			return c.Err("errors: only one errors directive per server block")
		}
		if c.NextArg() {
			return c.ArgErr()
		}
		for c.NextBlock() {
			switch c.Val() {
			case "stacktrace":
				if c.NextArg() {
					return c.ArgErr()
				}
				h.stacktrace = true
			case "consolidate":
				args := c.RemainingArgs()
				if len(args) < 2 || len(args) > 3 {
					return c.ArgErr()
				}
				d, err := time.ParseDuration(args[0])
				if err != nil || d <= 0 {
					return c.Errf("consolidate: invalid duration '%s'", args[0])
				}
				re, err := regexp.Compile(args[1])
				if err != nil {
					return c.Errf("consolidate: invalid regexp '%s': %v", args[1], err)
				}
				p := &pattern{period: d, re: re, level: slog.LevelError}
				if len(args) == 3 {
					switch args[2] {
					case "warning":
						p.level = slog.LevelWarn
					case "error":
						p.level = slog.LevelError
					case "info":
						p.level = slog.LevelInfo
					case "debug":
						p.level = slog.LevelDebug
					default:
						return c.Errf("consolidate: unknown log level '%s' (want warning, error, info or debug)", args[2])
					}
				}
				h.patterns = append(h.patterns, p)
			default:
				return c.PropertyErr()
			}
		}
	}
	c.OnStartup(h.start)
	c.OnShutdown(func() error {
		if h.stop != nil {
			return h.stop()
		}
		return nil
	})
	c.AddPlugin(func(next pdns.Handler) pdns.Handler { h.next = next; return h })
	return nil
}
