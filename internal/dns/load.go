package dns

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/podnet/podnet/internal/dns/corefile"
)

// LoadOptions tune Load.
type LoadOptions struct {
	// Port is the port of keys that name none ("53" when empty), the
	// -dns.port flag.
	Port string
	// Parse are the parser's options (environment, file access).
	Parse corefile.Options
	// Log is the server's logger (slog.Default() when nil).
	Log *slog.Logger
	// Stdout receives query logs (os.Stdout when nil).
	Stdout io.Writer
	// DefaultHosts are the addresses of blocks without bind (all
	// addresses when empty); tests use 127.0.0.1.
	DefaultHosts []string
}

// Load parses in and sets up every server block: keys, directives in
// Directives order, chains. Nothing is started; on error nothing needs
// undoing, since setups only register hooks.
func Load(in Input, o LoadOptions) (*Instance, error) {
	if o.Port == "" {
		o.Port = "53"
	}
	blocks, err := corefile.Parse(in.File, in.Contents, o.Parse)
	if err != nil {
		return nil, err
	}
	if len(blocks) == 0 {
		return nil, &corefile.Error{File: in.File, Msg: "no server blocks"}
	}
	inst := NewInstance(in)
	if o.Log != nil {
		inst.Log = o.Log
	}
	if o.Stdout != nil {
		inst.Stdout = o.Stdout
	}
	seen := map[string]bool{}
	for _, b := range blocks {
		cfg := NewConfig(inst)
		for _, kt := range b.Keys {
			k, err := corefile.ParseKey(kt.Text)
			if err != nil {
				return nil, corefile.Errorf(kt, "%v", err)
			}
			if k.Transport != "dns" {
				return nil, corefile.Errorf(kt, "transport %s:// is not supported, only dns://", k.Transport)
			}
			if k.Port == "" {
				k.Port = o.Port
			}
			cfg.Keys = append(cfg.Keys, k)
			dup := false
			for _, z := range cfg.Zones {
				dup = dup || z == k.Zone
			}
			if !dup {
				cfg.Zones = append(cfg.Zones, k.Zone)
			}
		}
		cfg.Port = cfg.Keys[0].Port
		// Group the block's occurrences by directive, checking names.
		byName := map[string][]corefile.Token{}
		for _, d := range b.Directives {
			if _, ok := Lookup(d.Name); !ok {
				return nil, corefile.Errorf(d.Tokens[0], "unknown directive '%s'", d.Name)
			}
			byName[d.Name] = append(byName[d.Name], d.Tokens...)
		}
		// Setups run in Directives order, as CoreDNS runs them, so that a
		// plugin set up late can see what earlier ones stored.
		for _, name := range Directives {
			toks, ok := byName[name]
			if !ok {
				continue
			}
			setup, _ := Lookup(name)
			c := NewController(name, toks, cfg)
			if err := setup(c); err != nil {
				return nil, Error(name, err)
			}
		}
		if len(cfg.ListenHosts) == 0 && len(o.DefaultHosts) > 0 {
			cfg.ListenHosts = append([]string(nil), o.DefaultHosts...)
		}
		// A zone may be served once per address: after bind has run,
		// two blocks claiming one zone on one address is an error.
		hosts := cfg.ListenHosts
		if len(hosts) == 0 {
			hosts = []string{""}
		}
		for ki, k := range cfg.Keys {
			for _, h := range hosts {
				id := k.String() + "@" + h
				if seen[id] {
					return nil, corefile.Errorf(b.Keys[ki], "cannot serve %s - it is already defined", k)
				}
				seen[id] = true
			}
		}
		inst.Configs = append(inst.Configs, cfg)
	}
	for _, cfg := range inst.Configs {
		cfg.BuildChain()
	}
	return inst, nil
}

// String renders a block's keys for logs.
func (c *Config) String() string {
	s := ""
	for i, k := range c.Keys {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprint(k)
	}
	return s
}
