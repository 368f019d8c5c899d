package dns

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/podnet/podnet/internal/dns/corefile"
)

// Controller hands a directive's tokens to its setup, in the manner of
// Caddy's dispenser, and collects what the setup adds: the handler and
// the lifecycle hooks.
type Controller struct {
	name   string
	tokens []corefile.Token
	cursor int
	nest   int

	cfg  *Config
	inst *Instance
}

// NewTestController returns a Controller over the Corefile snippet input
// (e.g. "hosts example.org { fallthrough }"), for setup tests. Its server
// block has the zone ".", port 53, and it belongs to a fresh Instance.
func NewTestController(input string) *Controller {
	return NewTestControllerKeys(input, ".")
}

// NewTestControllerKeys is NewTestController for a server block with the
// given keys ("example.org:1053", "10.0.0.0/8"); it panics on a bad key.
func NewTestControllerKeys(input string, keys ...string) *Controller {
	toks, err := corefile.Lex("Testfile", []byte(input), func(string) string { return "" })
	if err != nil {
		panic(err)
	}
	inst := NewInstance(Input{File: "Testfile", Contents: []byte(input)})
	cfg := &Config{Port: "53", Transport: "dns", inst: inst, values: map[string]any{}}
	for _, ks := range keys {
		k, err := corefile.ParseKey(ks)
		if err != nil {
			panic(err)
		}
		if k.Port == "" {
			k.Port = "53"
		}
		cfg.Keys = append(cfg.Keys, k)
		cfg.Zones = append(cfg.Zones, k.Zone)
	}
	if len(cfg.Keys) > 0 {
		cfg.Port = cfg.Keys[0].Port
	}
	inst.Configs = append(inst.Configs, cfg)
	name := ""
	if len(toks) > 0 {
		name = toks[0].Text
	}
	return NewController(name, toks, cfg)
}

// NewController returns the Controller of directive name over tokens in
// server block cfg. The server calls it; tests use NewTestController.
func NewController(name string, tokens []corefile.Token, cfg *Config) *Controller {
	return &Controller{name: name, tokens: tokens, cursor: -1, cfg: cfg, inst: cfg.inst}
}

// Directive is the name of the directive being set up.
func (c *Controller) Directive() string { return c.name }

// Next moves to the next token and reports whether there was one.
func (c *Controller) Next() bool {
	if c.cursor+1 < len(c.tokens) {
		c.cursor++
		return true
	}
	return false
}

// NextArg moves to the next token if it is on the current token's line
// and does not open a block.
func (c *Controller) NextArg() bool {
	if c.cursor < 0 || c.cursor+1 >= len(c.tokens) {
		return false
	}
	n := c.tokens[c.cursor+1]
	if !corefile.SameLine(c.tokens[c.cursor], n) || n.IsOpen() || n.IsClose() {
		return false
	}
	c.cursor++
	return true
}

// Val is the current token's text.
func (c *Controller) Val() string {
	if c.cursor < 0 || c.cursor >= len(c.tokens) {
		return ""
	}
	return c.tokens[c.cursor].Text
}

// Token is the current token.
func (c *Controller) Token() corefile.Token {
	if c.cursor < 0 {
		if len(c.tokens) > 0 {
			return c.tokens[0]
		}
		return corefile.Token{File: c.inst.Input.File}
	}
	if c.cursor >= len(c.tokens) {
		return c.tokens[len(c.tokens)-1]
	}
	return c.tokens[c.cursor]
}

// Line is the current token's line.
func (c *Controller) Line() int { return c.Token().Line }

// File is the current token's file.
func (c *Controller) File() string { return c.Token().File }

// RemainingArgs returns the rest of the current line's arguments, up to
// a '{'.
func (c *Controller) RemainingArgs() []string {
	var args []string
	for c.NextArg() {
		args = append(args, c.Val())
	}
	return args
}

// NextBlock moves into the block that opens on the current line, then
// to each token of it in turn; it returns false at the closing '}' (or
// when there is no block). Nested blocks are walked as if flat; Nesting
// tells how deep the current token is.
func (c *Controller) NextBlock() bool {
	if c.nest == 0 {
		if c.cursor < 0 || c.cursor+1 >= len(c.tokens) {
			return false
		}
		n := c.tokens[c.cursor+1]
		if !n.IsOpen() || !corefile.SameLine(c.tokens[c.cursor], n) {
			return false
		}
		c.cursor++
		c.nest = 1
	}
	for c.Next() {
		t := c.tokens[c.cursor]
		switch {
		case t.IsOpen():
			c.nest++
		case t.IsClose():
			c.nest--
			if c.nest == 0 {
				return false
			}
		default:
			return true
		}
	}
	c.nest = 0
	return false
}

// Nesting is how many blocks deep the current token is.
func (c *Controller) Nesting() int { return c.nest }

// Errf returns an error at the current token: FILE:LINE - Error during
// parsing: MSG. The server prefixes it with plugin/NAME.
func (c *Controller) Errf(format string, args ...any) error {
	return corefile.Errorf(c.Token(), format, args...)
}

// Err is Errf without formatting.
func (c *Controller) Err(msg string) error { return c.Errf("%s", msg) }

// ArgErr is the error for a wrong number of arguments.
func (c *Controller) ArgErr() error {
	if c.cursor >= 0 && c.cursor < len(c.tokens) && c.tokens[c.cursor].IsOpen() {
		return c.Errf("unexpected '{' after '%s'", c.tokens[max(c.cursor-1, 0)].Text)
	}
	return c.Errf("Wrong argument count or unexpected line ending after '%s'", c.Val())
}

// SyntaxErr is the error for an unexpected token.
func (c *Controller) SyntaxErr(expected string) error {
	return c.Errf("syntax error: unexpected token '%s', expecting '%s'", c.Val(), expected)
}

// PropertyErr is the error for an unknown property inside a block.
func (c *Controller) PropertyErr() error {
	return c.Errf("unknown property '%s'", c.Val())
}

// Log is the plugin's logger: the server's, with plugin=NAME.
func (c *Controller) Log() *slog.Logger { return c.inst.Log.With("plugin", c.name) }

// Config is this server block's configuration.
func (c *Controller) Config() *Config { return c.cfg }

// Instance is the running configuration this server block belongs to.
func (c *Controller) Instance() *Instance { return c.inst }

// ServerBlockKeys are the block's keys as written.
func (c *Controller) ServerBlockKeys() []string {
	out := make([]string, len(c.cfg.Keys))
	for i, k := range c.cfg.Keys {
		out[i] = k.String()
	}
	return out
}

// Zones are the block's zones, qualified and lower-cased.
func (c *Controller) Zones() []string {
	out := make([]string, len(c.cfg.Zones))
	copy(out, c.cfg.Zones)
	return out
}

// AddPlugin adds the plugin to this server block's chain; chains are built
// in Directives order.
func (c *Controller) AddPlugin(p Plugin) {
	c.cfg.plugins = append(c.cfg.plugins, orderedPlugin{order: Order(c.name), p: p})
}

// OnStartup runs f once the whole Corefile is set up, before serving.
func (c *Controller) OnStartup(f func() error) { c.inst.onStartup = append(c.inst.onStartup, f) }

// OnShutdown runs f when this configuration stops serving (process exit
// or replaced by a reload).
func (c *Controller) OnShutdown(f func() error) { c.inst.onShutdown = append(c.inst.onShutdown, f) }

// OnRestart runs f on the old configuration before a reload starts the
// new one.
func (c *Controller) OnRestart(f func() error) { c.inst.onRestart = append(c.inst.onRestart, f) }

// OnRestartFailed runs f on the old configuration when a reload failed
// after its OnRestart hooks ran, so it can resume.
func (c *Controller) OnRestartFailed(f func() error) {
	c.inst.onRestartFailed = append(c.inst.onRestartFailed, f)
}

// OnFinalShutdown runs f only when the process stops, not on reloads.
func (c *Controller) OnFinalShutdown(f func() error) {
	c.inst.onFinalShutdown = append(c.inst.onFinalShutdown, f)
}

// String describes the controller for debugging.
func (c *Controller) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s:", c.name)
	for _, t := range c.tokens {
		b.WriteString(" " + t.Text)
	}
	return b.String()
}
