package dns

import (
	"fmt"
	"slices"
	"sort"
	"sync"
)

// SetupFunc parses one directive of a server block and adds the plugin's
// handler and hooks through c. It is called once per server block that
// uses the directive; `for c.Next()` walks its occurrences.
type SetupFunc func(c *Controller) error

var (
	regMu   sync.RWMutex
	plugins = map[string]SetupFunc{}
)

// Register makes the directive name known, with its setup. It panics when
// name is registered twice or missing from Directives: the order is data
// and every plugin must have a place in it.
func Register(name string, setup SetupFunc) {
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := plugins[name]; dup {
		panic(fmt.Sprintf("dns: plugin %q registered twice", name))
	}
	if !slices.Contains(Directives, name) {
		panic(fmt.Sprintf("dns: plugin %q is not in Directives (internal/dns/directives.go)", name))
	}
	plugins[name] = setup
}

// Lookup returns the setup of directive name.
func Lookup(name string) (SetupFunc, bool) {
	regMu.RLock()
	defer regMu.RUnlock()
	s, ok := plugins[name]
	return s, ok
}

// Plugins lists the registered directive names, sorted.
func Plugins() []string {
	regMu.RLock()
	defer regMu.RUnlock()
	out := make([]string, 0, len(plugins))
	for n := range plugins {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Order returns the position of directive name in Directives, -1 if none.
func Order(name string) int { return slices.Index(Directives, name) }
