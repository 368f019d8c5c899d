package dns

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"sort"
	"sync"

	"github.com/podnet/podnet/internal/dns/corefile"
)

// Input is a Corefile's name and contents.
type Input struct {
	File     string
	Contents []byte
}

// Config is one server block: its keys, where it listens, and its chain.
type Config struct {
	// Keys are the block's parsed keys.
	Keys []corefile.Key
	// Zones are the keys' zones, in key order, without duplicates.
	Zones []string
	// Port is the block's port (all keys of a block share one).
	Port string
	// Transport is "dns".
	Transport string
	// ListenHosts are the addresses to bind (the bind plugin); empty
	// means all addresses.
	ListenHosts []string
	// Debug is set by the debug plugin: panics are not recovered.
	Debug bool

	// listenAddrs are the bound addresses, set by the server before the
	// OnStartup hooks run.
	listenAddrs []string

	plugins  []orderedPlugin
	chain    Handler
	handlers []Handler

	mu     sync.Mutex
	values map[string]any
	inst   *Instance
}

type orderedPlugin struct {
	order int
	p     Plugin
}

// Chain is the first handler of the block's chain, built after setup.
func (c *Config) Chain() Handler { return c.chain }

// Handlers are the chain's handlers, first to last.
func (c *Config) Handlers() []Handler { return c.handlers }

// Handler returns the chain's handler named name, or nil.
func (c *Config) Handler(name string) Handler {
	for _, h := range c.handlers {
		if h.Name() == name {
			return h
		}
	}
	return nil
}

// ListenAddrs are the addresses (host:port, as bound, port 0 resolved)
// the block is served on; known from the OnStartup hooks on.
func (c *Config) ListenAddrs() []string { return c.listenAddrs }

// SetListenAddrs is called by the server once the block's sockets exist.
func (c *Config) SetListenAddrs(a []string) { c.listenAddrs = a }

// Instance is the configuration the block belongs to.
func (c *Config) Instance() *Instance { return c.inst }

// Set stores a value for other plugins of this block to find (for example
// a plugin's shared state).
func (c *Config) Set(key string, v any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.values == nil {
		c.values = map[string]any{}
	}
	c.values[key] = v
}

// Get returns the value stored under key.
func (c *Config) Get(key string) (any, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.values[key]
	return v, ok
}

// NewConfig returns an empty server block of inst; the server fills in
// keys and zones.
func NewConfig(inst *Instance) *Config {
	return &Config{Transport: "dns", inst: inst, values: map[string]any{}}
}

// BuildChain stacks the added plugins in Directives order (a stable sort,
// so two occurrences keep Corefile order) and returns the first handler.
// The chain ends with nil: the last plugin's NextOrFailure answers
// SERVFAIL.
func (c *Config) BuildChain() Handler {
	ps := make([]orderedPlugin, len(c.plugins))
	copy(ps, c.plugins)
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].order < ps[j].order })
	var next Handler
	c.handlers = make([]Handler, len(ps))
	for i := len(ps) - 1; i >= 0; i-- {
		next = ps[i].p(next)
		c.handlers[i] = next
	}
	c.chain = next
	return next
}

// Readiness is implemented by plugins that are not ready to answer
// right away; the ready plugin reports 200 only when all are Ready.
type Readiness interface {
	Ready() bool
}

// Instance is one loaded Corefile: its server blocks and lifecycle hooks.
// A reload builds a new Instance and swaps it in.
type Instance struct {
	Input   Input
	Configs []*Config

	// Restart, set by the server, loads a new Corefile in place of this
	// one (the reload plugin calls it).
	Restart func(Input) error

	// Log is the server's logger; plugins get it with their name through
	// Controller.Log.
	Log *slog.Logger
	// Stdout receives query logs (the log plugin); os.Stdout by default.
	Stdout io.Writer

	onStartup, onShutdown, onRestart, onRestartFailed, onFinalShutdown []func() error

	mu     sync.Mutex
	values map[string]any
}

// NewInstance returns an empty Instance of input.
func NewInstance(in Input) *Instance {
	return &Instance{Input: in, values: map[string]any{}, Log: slog.Default(), Stdout: os.Stdout}
}

// Set stores a value shared by all blocks of the instance.
func (i *Instance) Set(key string, v any) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.values[key] = v
}

// Get returns the instance value stored under key.
func (i *Instance) Get(key string) (any, bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	v, ok := i.values[key]
	return v, ok
}

// Handlers returns every handler of every block.
func (i *Instance) Handlers() []Handler {
	var out []Handler
	for _, c := range i.Configs {
		out = append(out, c.handlers...)
	}
	return out
}

func runHooks(hs []func() error) error {
	var errs []error
	for _, h := range hs {
		if err := h(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Startup runs the OnStartup hooks; it stops at the first error.
func (i *Instance) Startup() error {
	for _, h := range i.onStartup {
		if err := h(); err != nil {
			return err
		}
	}
	return nil
}

// Shutdown runs the OnShutdown hooks.
func (i *Instance) Shutdown() error { return runHooks(i.onShutdown) }

// RestartHooks runs the OnRestart hooks.
func (i *Instance) RestartHooks() error { return runHooks(i.onRestart) }

// RestartFailed runs the OnRestartFailed hooks.
func (i *Instance) RestartFailed() error { return runHooks(i.onRestartFailed) }

// FinalShutdown runs the OnFinalShutdown hooks, then OnShutdown.
func (i *Instance) FinalShutdown() error {
	return errors.Join(runHooks(i.onFinalShutdown), runHooks(i.onShutdown))
}
