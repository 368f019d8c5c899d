// Package controller runs the cluster's once-per-cluster loops, under
// leader election through etcd so that several `podnet server`s can run at
// once with exactly one of them active:
//
//   - node lifecycle (nodelifecycle.go): a node whose lease key is gone
//     turns Ready=Unknown; a node not Ready for longer than the cluster's
//     node grace period has its pod CIDR reclaimed; a deleted node's CIDR
//     is released at once; claims of nodes that no longer exist are
//     collected.
//   - scheduler (scheduler.go): binds pods without spec.nodeName to the
//     Ready node with the fewest pods that matches their nodeSelector, or
//     leaves them Pending with PodScheduled=False, reason Unschedulable.
//   - load balancer (loadbalancer.go): gives type LoadBalancer Services an
//     address from the cluster's pool (lbipam) in status.loadBalancer.
//   - namespaces (namespace.go): a Terminating namespace's content is
//     deleted, then the namespace.
//   - endpoint slices (endpointslice.go): EndpointSlices of every Service
//     with a selector, from the pods it matches and their readiness.
//   - replica sets (replicaset.go): spec.replicas pods of the template.
//   - deployments (deployment.go): rollouts through ReplicaSets
//     (RollingUpdate, Recreate), revisions, history, status.
//   - pod GC (podgc.go): pods of a NotReady node turn not Ready at once
//     and are evicted after the pod eviction timeout; pods of a deleted
//     node are removed.
//   - garbage collector (gc.go): objects whose owners (by UID) are all
//     gone are deleted, so deletes cascade Deployment → ReplicaSet → pod.
//   - ingress status (ingressstatus.go): Ingresses podnet serves list the
//     Ready nodes' addresses in status.loadBalancer; every Ingress carries
//     its routing problems (route.Build's) in ingress.podnet.io/problems.
//
// Each loop reconciles from a fresh list on a short period and at once on
// a watch event, so a missed event costs at most one period. Lists are
// read from etcd (linearizable), so a pass never acts on a stale cache and
// needs no expectations bookkeeping; a pass writes only what differs, so
// an unchanged cluster causes no writes. The EndpointSlice loop, which
// must stay fast with thousands of Services, reads watch-fed caches
// instead and remembers its own writes until the caches show them; so
// does the ingress status loop, which compiles every Ingress per pass.
package controller

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/podnet/podnet/internal/store"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// DefaultElectionKey is the election prefix of the controller manager.
const DefaultElectionKey = "/podnet/leader/controllers"

// Loop is one controller: Run works until ctx ends.
type Loop interface {
	Name() string
	Run(ctx context.Context) error
}

// Config configures a Manager.
type Config struct {
	Store  *store.Store
	Logger *slog.Logger
	// Identity names this manager in the election (default host/pid).
	Identity string
	// ElectionKey is the election's key prefix (default DefaultElectionKey).
	ElectionKey string
	// SessionTTL bounds how long a dead leader holds the lead (default 5s).
	SessionTTL time.Duration
	// Resync is each loop's period (default 1s).
	Resync time.Duration
	// Loops override the default loops (all of this package's).
	Loops []Loop
}

// Manager runs the controllers while it is the elected leader.
type Manager struct {
	cfg     Config
	log     *slog.Logger
	leading atomic.Bool
}

// NewManager returns a manager; call Run.
func NewManager(cfg Config) *Manager {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Identity == "" {
		h, _ := os.Hostname()
		cfg.Identity = fmt.Sprintf("%s/%d", h, os.Getpid())
	}
	if cfg.ElectionKey == "" {
		cfg.ElectionKey = DefaultElectionKey
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 5 * time.Second
	}
	if cfg.Resync <= 0 {
		cfg.Resync = time.Second
	}
	log := cfg.Logger.With("controller-manager", cfg.Identity)
	if cfg.Loops == nil {
		cfg.Loops = []Loop{
			NewNodeLifecycle(cfg.Store, log, cfg.Resync),
			NewScheduler(cfg.Store, log, cfg.Resync),
			NewLoadBalancer(cfg.Store, log, cfg.Resync),
			NewNamespaces(cfg.Store, log, cfg.Resync),
			NewEndpointSlices(cfg.Store, log, cfg.Resync),
			NewReplicaSets(cfg.Store, log, cfg.Resync),
			NewDeployments(cfg.Store, log, cfg.Resync),
			NewPodGC(cfg.Store, log, cfg.Resync),
			NewGarbageCollector(cfg.Store, log, max(cfg.Resync, GCResync)),
			NewIngressStatus(cfg.Store, log, cfg.Resync),
		}
	}
	return &Manager{cfg: cfg, log: log}
}

// Leading reports whether this manager is the active one.
func (m *Manager) Leading() bool { return m.leading.Load() }

// Run campaigns for the lead and runs the loops while leading, until ctx
// ends. Losing the etcd session (the store unreachable past the session
// TTL) stops the loops; the manager then campaigns again.
func (m *Manager) Run(ctx context.Context) error {
	cli := m.cfg.Store.Client()
	backoff := 500 * time.Millisecond
	for ctx.Err() == nil {
		sess, err := concurrency.NewSession(cli, concurrency.WithTTL(int(max(m.cfg.SessionTTL/time.Second, 1))), concurrency.WithContext(ctx))
		if err != nil {
			m.log.Warn("controller election: no session; retrying", "err", err)
			sleep(ctx, backoff)
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 500 * time.Millisecond
		el := concurrency.NewElection(sess, m.cfg.ElectionKey)
		if err := m.campaign(ctx, sess, el); err != nil {
			sess.Close()
			if ctx.Err() == nil {
				m.log.Warn("controller election: campaign failed; retrying", "err", err)
				sleep(ctx, backoff)
			}
			continue
		}
		m.log.Info("leading: controllers started")
		m.leading.Store(true)
		lctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		for _, l := range m.cfg.Loops {
			wg.Add(1)
			go func(l Loop) {
				defer wg.Done()
				if err := l.Run(lctx); err != nil && lctx.Err() == nil {
					m.log.Error("controller ended", "controller", l.Name(), "err", err)
				}
			}(l)
		}
		select {
		case <-ctx.Done():
		case <-sess.Done():
			m.log.Warn("controller election: session lost; controllers stopped")
		}
		cancel()
		wg.Wait()
		m.leading.Store(false)
		rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = el.Resign(rctx)
		rcancel()
		sess.Close()
	}
	return nil
}

// campaign waits to be elected; it gives up if the session ends first.
func (m *Manager) campaign(ctx context.Context, sess *concurrency.Session, el *concurrency.Election) error {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-sess.Done():
			cancel()
		case <-cctx.Done():
		}
	}()
	return el.Campaign(cctx, m.cfg.Identity)
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// kick is a one-slot wake-up channel.
type kick chan struct{}

func (k kick) poke() {
	select {
	case k <- struct{}{}:
	default:
	}
}
