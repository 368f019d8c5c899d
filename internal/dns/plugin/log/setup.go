// Package log is the log plugin: one line per query in CoreDNS's common
// log format (or a format of placeholders such as {type} and {>rflags}),
// for the names and the response classes chosen.
package log

import (
	"strings"

	pdns "github.com/podnet/podnet/internal/dns"
)

const name = "log"

func init() { pdns.Register(name, setup) }

// CommonLogFormat is CoreDNS's default log line.
const CommonLogFormat = `{remote}:{port} - {>id} "{type} {class} {name} {proto} {size} {>do} {>bufsize}" {rcode} {>rflags} {rsize} {duration}`

// CombinedLogFormat is the common format plus the opcode.
const CombinedLogFormat = CommonLogFormat + ` "{>opcode}"`

// Rule is one log directive: which names, which classes, which format.
type Rule struct {
	Zones   pdns.Zones
	Classes map[Class]bool
	Format  []segment
	raw     string
}

func setup(c *pdns.Controller) error {
	h := &Handler{out: c.Instance().Stdout}
	for c.Next() {
		args := c.RemainingArgs()
		format := CommonLogFormat
		names := args
		if len(args) > 0 && strings.Contains(args[len(args)-1], "{") {
			format = args[len(args)-1]
			names = args[:len(args)-1]
		}
		switch format {
		case "{common}":
			format = CommonLogFormat
		case "{combined}":
			format = CombinedLogFormat
		}
		r := Rule{Classes: map[Class]bool{}, raw: format, Format: parseFormat(format)}
		if len(names) == 0 {
			r.Zones = pdns.Zones{"."}
		}
		for _, n := range names {
			z, err := pdns.NormalizeZone(n)
			if err != nil {
				return c.Errf("%v", err)
			}
			r.Zones = append(r.Zones, z)
		}
		for c.NextBlock() {
			switch c.Val() {
			case "class":
				cs := c.RemainingArgs()
				if len(cs) == 0 {
					return c.ArgErr()
				}
				for _, s := range cs {
					cl, ok := classes[strings.ToLower(s)]
					if !ok {
						return c.Errf("unknown class '%s' (want success, denial, error or all)", s)
					}
					r.Classes[cl] = true
				}
			default:
				return c.PropertyErr()
			}
		}
		if len(r.Classes) == 0 {
			r.Classes[All] = true
		}
		h.rules = append(h.rules, r)
	}
	c.AddPlugin(func(next pdns.Handler) pdns.Handler { h.next = next; return h })
	return nil
}
