// Package ingress is the node's ingress controller: the control loop of
// `podnet ingress`, the process every node runs next to its agent.
//
// Run keeps informer caches (internal/informer, list + watch) of
// Ingresses, IngressClasses, Services, EndpointSlices and Secrets in every
// namespace. On any change it compiles them into a routing table
// (route.Build) and hands the table to the proxy (Swapper.Swap, one
// pointer store in internal/ingress/proxy). Nothing is swapped in before
// every cache has synced: a table built from half a list would answer 404
// or 503 for Ingresses that exist.
//
// Changes are coalesced, not queued: the first change after a quiet spell
// is compiled at once, and a burst after it waits for MinInterval since the
// previous build, so there is at most one build per MinInterval however
// many objects change. Every swap is logged with the time from the first
// change it includes to the swap (the reload latency), and counted in the
// metrics; problems route.Build reports are logged when they appear and
// when they go away. The Ingresses' status and problem annotations are the
// ingress-status controller's (internal/controller), not this loop's: every
// node runs this loop, and one writer is enough.
package ingress

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/informer"
	"github.com/podnet/podnet/internal/ingress/route"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// Swapper installs a routing table; *proxy.Proxy is one.
type Swapper interface {
	Swap(*route.Table)
}

// DefaultMinInterval is the least time between two builds.
const DefaultMinInterval = 15 * time.Millisecond

// Config configures Run.
type Config struct {
	// Source lists and watches the objects; *store.Store is one.
	Source informer.Source
	// Proxy receives every table built.
	Proxy  Swapper
	Logger *slog.Logger
	// MinInterval is the least time between two builds (default
	// DefaultMinInterval).
	MinInterval time.Duration
	// Registry receives the controller's metrics; nil means none.
	Registry prometheus.Registerer
	// NodeName and Namespace are the metrics' controller_pod and
	// controller_namespace labels, as the proxy's.
	NodeName, Namespace string
	// OnSwap, if set, is called after every swap, from Run's goroutine.
	// The first call means every cache has synced and the proxy has a
	// table worth serving.
	OnSwap func(Swap)
}

// Swap describes one table swapped in.
type Swap struct {
	Table    *route.Table
	Problems []route.Problem
	// Changes is how many change events the table includes (coalesced).
	Changes int
	// Latency is the time from the first of those events to the swap;
	// Build is the part spent in route.Build.
	Latency, Build time.Duration
}

// Run runs the controller until ctx ends. It returns nil then; an error
// only for a configuration it cannot run with.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Source == nil || cfg.Proxy == nil {
		return errors.New("ingress controller: Source and Proxy are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MinInterval <= 0 {
		cfg.MinInterval = DefaultMinInterval
	}
	c := &controller{cfg: cfg, log: cfg.Logger.With("component", "ingress-controller"), kick: make(chan struct{}, 1),
		problems: map[route.Problem]bool{}}
	c.metrics = newControllerMetrics(cfg.Registry, cfg.Namespace, cfg.NodeName)
	for _, r := range []string{"ingresses", "ingressclasses", "services", "endpointslices", "secrets"} {
		if _, err := api.ResourceFor(r); err != nil {
			return fmt.Errorf("ingress controller: %w", err)
		}
	}
	c.ings = watch[*networkingv1.Ingress](ctx, c, "ingresses")
	c.classes = watch[*networkingv1.IngressClass](ctx, c, "ingressclasses")
	c.svcs = watch[*corev1.Service](ctx, c, "services")
	c.slices = watch[*discoveryv1.EndpointSlice](ctx, c, "endpointslices")
	c.secrets = watch[*corev1.Secret](ctx, c, "secrets")
	c.loop(ctx)
	return nil
}

type controller struct {
	cfg     Config
	log     *slog.Logger
	metrics *controllerMetrics

	ings    *informer.Informer[*networkingv1.Ingress]
	classes *informer.Informer[*networkingv1.IngressClass]
	svcs    *informer.Informer[*corev1.Service]
	slices  *informer.Informer[*discoveryv1.EndpointSlice]
	secrets *informer.Informer[*corev1.Secret]

	kick chan struct{}
	mu   sync.Mutex
	// first is when the oldest change not yet in a swapped table arrived;
	// pending counts those changes.
	first   time.Time
	pending int

	problems map[route.Problem]bool // reported by the last build
	swapped  bool
}

// watch starts an informer of resource (checked by Run) over every
// namespace whose every event and sync marks a change.
func watch[T api.Object](ctx context.Context, c *controller, resource string) *informer.Informer[T] {
	k, _ := api.ResourceFor(resource)
	inf := informer.New[T](c.cfg.Source, k, "", c.log)
	changed := func(T) { c.changed() }
	inf.AddHandler(informer.Handler[T]{OnUpdate: changed, OnDelete: changed, Synced: c.changed})
	go inf.Run(ctx)
	return inf
}

// changed notes a change and wakes the loop.
func (c *controller) changed() {
	c.mu.Lock()
	if c.pending == 0 {
		c.first = time.Now()
	}
	c.pending++
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *controller) synced() bool {
	return c.ings.HasSynced() && c.classes.HasSynced() && c.svcs.HasSynced() && c.slices.HasSynced() && c.secrets.HasSynced()
}

// loop builds and swaps a table on every wake-up, at most once per
// MinInterval: changes arriving meanwhile wait in the kick channel (one
// slot) and in pending, and are all taken by the next build.
func (c *controller) loop(ctx context.Context) {
	var last time.Time
	wait := time.NewTimer(0)
	<-wait.C
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
		}
		if !c.synced() {
			continue // the last cache to sync kicks again
		}
		if d := c.cfg.MinInterval - time.Since(last); d > 0 {
			wait.Reset(d)
			select {
			case <-ctx.Done():
				wait.Stop()
				return
			case <-wait.C:
			}
		}
		// A kick left over from changes this build takes anyway; drained
		// before pending is read, so a change after the read kicks again.
		select {
		case <-c.kick:
		default:
		}
		c.mu.Lock()
		first, n := c.first, c.pending
		c.pending = 0
		c.mu.Unlock()
		if n == 0 {
			continue
		}
		last = time.Now()
		c.build(first, n)
	}
}

// build compiles the caches into a table and swaps it in.
func (c *controller) build(first time.Time, n int) {
	start := time.Now()
	in := route.Input{
		Ingresses:      c.ings.List(),
		IngressClasses: c.classes.List(),
		Services:       c.svcs.List(),
		EndpointSlices: c.slices.List(),
		Secrets:        c.secrets.List(),
	}
	t, problems := route.Build(in)
	built := time.Now()
	c.cfg.Proxy.Swap(t)
	done := time.Now()
	s := Swap{Table: t, Problems: problems, Changes: n, Latency: done.Sub(first), Build: built.Sub(start)}
	c.metrics.swapped(s, done)
	msg := "routing table swapped"
	if !c.swapped {
		msg = "every cache synced; first routing table swapped"
		c.swapped = true
	}
	c.log.Info(msg, "routes", len(t.Routes()), "ingresses", len(in.Ingresses), "problems", len(problems),
		"changes", n, "latency", s.Latency, "build", s.Build)
	c.reportProblems(problems)
	if c.cfg.OnSwap != nil {
		c.cfg.OnSwap(s)
	}
}

// reportProblems logs problems that are new since the last build, and
// those that went away.
func (c *controller) reportProblems(ps []route.Problem) {
	now := make(map[route.Problem]bool, len(ps))
	for _, p := range ps {
		now[p] = true
		if !c.problems[p] {
			c.log.Warn("ingress problem", "ingress", p.Ingress.String(), "problem", p.Message)
		}
	}
	for p := range c.problems {
		if !now[p] {
			c.log.Info("ingress problem resolved", "ingress", p.Ingress.String(), "problem", p.Message)
		}
	}
	c.problems = now
}

// controllerMetrics are ingress-nginx's reload series (a swap is podnet's
// reload, and it never fails) and podnet's own latency and size series.
type controllerMetrics struct {
	reloads      prometheus.Counter
	lastOK       prometheus.Gauge
	lastOKTime   prometheus.Gauge
	latency      prometheus.Histogram
	build        prometheus.Histogram
	routes       prometheus.Gauge
	problemCount prometheus.Gauge
}

func newControllerMetrics(reg prometheus.Registerer, namespace, pod string) *controllerMetrics {
	cl := prometheus.Labels{
		"controller_class":     route.ControllerName,
		"controller_namespace": namespace,
		"controller_pod":       pod,
	}
	buckets := []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}
	m := &controllerMetrics{
		reloads: prometheus.NewCounter(prometheus.CounterOpts{Name: "nginx_ingress_controller_success", ConstLabels: cl,
			Help: "Cumulative number of Ingress controller reload operations (routing table swaps)"}),
		lastOK: prometheus.NewGauge(prometheus.GaugeOpts{Name: "nginx_ingress_controller_config_last_reload_successful", ConstLabels: cl,
			Help: "Whether the last configuration reload attempt was successful"}),
		lastOKTime: prometheus.NewGauge(prometheus.GaugeOpts{Name: "nginx_ingress_controller_config_last_reload_successful_timestamp_seconds", ConstLabels: cl,
			Help: "Timestamp of the last successful configuration reload"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "podnet_ingress_sync_latency_seconds", ConstLabels: cl, Buckets: buckets,
			Help: "Time from a change event (Ingress, Service, EndpointSlice, Secret, IngressClass) to the routing table that includes it being swapped in"}),
		build: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "podnet_ingress_build_duration_seconds", ConstLabels: cl, Buckets: buckets,
			Help: "Time spent compiling the routing table"}),
		routes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "podnet_ingress_routes", ConstLabels: cl,
			Help: "Routes in the current routing table"}),
		problemCount: prometheus.NewGauge(prometheus.GaugeOpts{Name: "podnet_ingress_problems", ConstLabels: cl,
			Help: "Problems found by the last build (Ingresses not fully served)"}),
	}
	if reg != nil {
		// One controller per registry: a second one is a programming error.
		reg.MustRegister(m.reloads, m.lastOK, m.lastOKTime, m.latency, m.build, m.routes, m.problemCount)
	}
	return m
}

func (m *controllerMetrics) swapped(s Swap, at time.Time) {
	m.reloads.Inc()
	m.lastOK.Set(1)
	m.lastOKTime.Set(float64(at.UnixNano()) / 1e9)
	m.latency.Observe(s.Latency.Seconds())
	m.build.Observe(s.Build.Seconds())
	m.routes.Set(float64(len(s.Table.Routes())))
	m.problemCount.Set(float64(len(s.Problems)))
}
