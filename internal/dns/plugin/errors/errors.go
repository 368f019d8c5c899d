package errors

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	pdns "github.com/podnet/podnet/internal/dns"
)

// Handler logs the errors of the rest of the chain.
type Handler struct {
	next       pdns.Handler
	log        *slog.Logger
	patterns   []*pattern
	stacktrace bool

	mu   sync.Mutex
	stop func() error
	done chan struct{}
}

// Name implements pdns.Handler.
func (h *Handler) Name() string { return name }

// ServeDNS implements pdns.Handler.
func (h *Handler) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	rcode, err := pdns.NextOrFailure(name, h.next, ctx, w, r)
	if err == nil {
		return rcode, nil
	}
	st := pdns.NewRequest(w, r)
	msg := fmt.Sprintf("%d %s %s: %v", rcode, st.Name(), st.Type(), err)
	for _, p := range h.patterns {
		if p.re.MatchString(msg) {
			atomic.AddUint64(&p.count, 1)
			h.mu.Lock()
			p.last = msg
			h.mu.Unlock()
			return rcode, err
		}
	}
	attrs := []any{"rcode", rcode, "name", st.Name(), "type", st.Type(), "err", err.Error()}
	if h.stacktrace {
		attrs = append(attrs, "stack", string(debug.Stack()))
	}
	h.log.Error(msg, attrs...)
	return rcode, err
}

func (h *Handler) start() error {
	if len(h.patterns) == 0 {
		return nil
	}
	h.done = make(chan struct{})
	for _, p := range h.patterns {
		go h.consolidate(p)
	}
	var once sync.Once
	h.stop = func() error { once.Do(func() { close(h.done) }); return nil }
	return nil
}

func (h *Handler) consolidate(p *pattern) {
	t := time.NewTicker(p.period)
	defer t.Stop()
	for {
		select {
		case <-h.done:
			return
		case <-t.C:
			n := atomic.SwapUint64(&p.count, 0)
			if n == 0 {
				continue
			}
			h.mu.Lock()
			last := p.last
			h.mu.Unlock()
			h.log.Log(context.Background(), p.level, fmt.Sprintf("%d errors like '%s' occurred in last %s", n, p.re.String(), p.period), "last", last)
		}
	}
}
