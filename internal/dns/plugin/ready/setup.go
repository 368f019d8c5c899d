// Package ready is the ready plugin: an HTTP endpoint, /ready, that
// answers 200 once every plugin implementing pdns.Readiness says it is
// ready, and 503 with the names of those that are not yet.
package ready

import (
	"net/http"
	"sort"
	"strings"
	"sync"

	pdns "github.com/podnet/podnet/internal/dns"
)

const name = "ready"

// DefaultAddr is where /ready listens when no address is given.
const DefaultAddr = ":8181"

func init() { pdns.Register(name, setup) }

// Ready is the parsed directive and its state.
type Ready struct {
	Addr string
	inst *pdns.Instance
	stop func() error

	mu   sync.Mutex
	done map[pdns.Handler]bool // handlers that said ready once: never asked again
}

func setup(c *pdns.Controller) error {
	rd := &Ready{Addr: DefaultAddr, inst: c.Instance(), done: map[pdns.Handler]bool{}}
	n := 0
	for c.Next() {
		if n++; n > 1 {
			return c.Err("ready: only one ready directive per server block")
		}
		args := c.RemainingArgs()
		switch len(args) {
		case 0:
		case 1:
			if err := pdns.CheckHostPort(args[0]); err != nil {
				return c.Errf("invalid address '%s': %v", args[0], err)
			}
			rd.Addr = args[0]
		default:
			return c.ArgErr()
		}
		if c.NextBlock() {
			return c.ArgErr()
		}
	}
	// One /ready per address and Corefile, even when several blocks ask.
	key := name + "@" + rd.Addr
	if _, dup := c.Instance().Get(key); dup {
		return nil
	}
	c.Instance().Set(key, rd)
	c.OnStartup(func() error {
		mux := http.NewServeMux()
		mux.HandleFunc("/ready", rd.serveHTTP)
		stop, err := pdns.ServeHTTP(rd.Addr, mux)
		if err != nil {
			return pdns.Errorf(name, "listen %s: %w", rd.Addr, err)
		}
		rd.stop = stop
		return nil
	})
	c.OnShutdown(func() error {
		if rd.stop != nil {
			return rd.stop()
		}
		return nil
	})
	return nil
}

// NotReady lists the plugins not ready yet, sorted.
func (rd *Ready) NotReady() []string {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	set := map[string]bool{}
	for _, h := range rd.inst.Handlers() {
		r, ok := h.(pdns.Readiness)
		if !ok || rd.done[h] {
			continue
		}
		if r.Ready() {
			rd.done[h] = true
			continue
		}
		set[h.Name()] = true
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (rd *Ready) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if nr := rd.NotReady(); len(nr) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(strings.Join(nr, ",")))
		return
	}
	w.Write([]byte("OK"))
}
