package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/overlay"
	"github.com/podnet/podnet/internal/store"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Overlay condition reasons (condition type NetworkUnavailable, which only
// the overlay runner writes).
const (
	ReasonOverlayReady    = "OverlayProgrammed"
	ReasonNotOnL2Segment  = "NotOnL2Segment"
	ReasonOverlayFailed   = "OverlaySyncFailed"
	defaultOverlayResync  = 30 * time.Second
	overlayRetryMax       = 10 * time.Second
	overlayStatusRetryMax = 10 * time.Second
)

// OverlayConfig configures the overlay runner.
type OverlayConfig struct {
	NodeName string
	Store    *store.Store
	// Backend has had Setup called; Data is what Setup returned.
	Backend overlay.Backend
	Data    overlay.NodeData
	Logger  *slog.Logger
	// Resync re-programs the datapath without an event, healing manual
	// damage. Default 30s.
	Resync time.Duration
	// OnSync, if set, is called after every Sync (tests measure with it).
	OnSync func(peers []overlay.Node, err error)
}

// Overlay is the Runner that keeps the node's overlay in step with the
// cluster's Nodes. It lists and watches Nodes; every change (and a
// periodic resync) runs Backend.Sync with every other node that has a pod
// CIDR and an InternalIP. Readiness does not matter: a NotReady node (an
// agent restarting) keeps its routes; a node leaves when its Node is
// deleted or its pod CIDR cleared. Until the first complete list nothing
// is synced, and while the store is unreachable the datapath stays as it
// is. It publishes Data on this node's Node (annotation
// api.AnnotationBackendData) and reports the outcome of Sync as the
// node's NetworkUnavailable condition.
type Overlay struct {
	cfg OverlayConfig
	log *slog.Logger

	mu     sync.Mutex
	nodes  map[string]*corev1.Node // the cluster's Nodes, after a complete list
	rev    int64                   // the store revision nodes reflect
	synced bool
	// syncedRev is the revision of the Nodes the last finished Sync was
	// computed from.
	syncedRev atomic.Int64
	status    syncStatus // wanted NetworkUnavailable condition

	kick       chan struct{} // datapath sync wanted
	statusKick chan struct{} // status write wanted
}

type syncStatus struct {
	set         bool
	unavailable bool
	reason      string
	message     string
}

// NewOverlay returns the runner; add it to Config.Runners.
func NewOverlay(cfg OverlayConfig) *Overlay {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Resync <= 0 {
		cfg.Resync = defaultOverlayResync
	}
	return &Overlay{
		cfg:        cfg,
		log:        cfg.Logger.With("node", cfg.NodeName, "backend", cfg.Backend.Name()),
		nodes:      map[string]*corev1.Node{},
		kick:       make(chan struct{}, 1),
		statusKick: make(chan struct{}, 1),
	}
}

func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Run works until ctx ends. It leaves the datapath as it is when it
// returns.
func (o *Overlay) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); o.syncLoop(ctx) }()
	go func() { defer wg.Done(); o.statusLoop(ctx) }()
	poke(o.statusKick) // publish our backend data now
	o.informer(ctx)
	wg.Wait()
	return nil
}

// SyncedRevision returns the store revision of the Nodes the last
// finished Sync was computed from (0 before the first): once it reaches a
// change's revision, the datapath reflects that change, so a test can
// assert that a change did nothing.
func (o *Overlay) SyncedRevision() int64 { return o.syncedRev.Load() }

// informer lists and watches Nodes; it re-lists after a failed watch.
func (o *Overlay) informer(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		objs, rev, err := o.cfg.Store.List(lctx, nodeKind, "")
		cancel()
		if err != nil {
			o.log.Warn("cannot list nodes; keeping the overlay as it is", "err", err)
			sleep(ctx, backoff)
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		fresh := map[string]*corev1.Node{}
		for _, obj := range objs {
			n := obj.(*corev1.Node)
			fresh[n.Name] = n
		}
		o.mu.Lock()
		o.nodes, o.rev, o.synced = fresh, rev, true
		o.mu.Unlock()
		poke(o.kick)
		poke(o.statusKick)
		for ev := range o.cfg.Store.Watch(ctx, nodeKind, "", rev) {
			if ev.Err != nil {
				o.log.Warn("node watch ended; re-listing", "err", ev.Err)
				break
			}
			n := ev.Object.(*corev1.Node)
			o.mu.Lock()
			if ev.Type == store.Deleted {
				delete(o.nodes, n.Name)
			} else {
				o.nodes[n.Name] = n
			}
			o.rev = max(o.rev, ev.Revision)
			o.mu.Unlock()
			if n.Name == o.cfg.NodeName {
				poke(o.statusKick)
			} else {
				poke(o.kick)
			}
		}
	}
}

// Peers returns the peers among nodes for node self: every other node with
// a pod CIDR and an InternalIP, with its published backend data.
func Peers(self string, nodes map[string]*corev1.Node, log *slog.Logger) []overlay.Node {
	var out []overlay.Node
	for name, n := range nodes {
		if name == self || n.Spec.PodCIDR == "" {
			continue
		}
		cidr, err := netip.ParsePrefix(n.Spec.PodCIDR)
		if err != nil {
			continue
		}
		ip, err := netip.ParseAddr(api.NodeInternalIP(n))
		if err != nil {
			continue
		}
		p := overlay.Node{Name: name, IP: ip, PodCIDR: cidr}
		if raw := n.Annotations[api.AnnotationBackendData]; raw != "" {
			if err := json.Unmarshal([]byte(raw), &p.Data); err != nil && log != nil {
				log.Warn("node has unreadable backend data", "peer", name, "annotation", api.AnnotationBackendData, "err", err)
			}
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// syncLoop runs Backend.Sync on every kick, on a timer, and after
// failures with backoff. It never syncs before a complete list.
func (o *Overlay) syncLoop(ctx context.Context) {
	resync := time.NewTicker(o.cfg.Resync)
	defer resync.Stop()
	var retry <-chan time.Time
	delay := 200 * time.Millisecond
	var last []overlay.Node
	for {
		select {
		case <-ctx.Done():
			return
		case <-o.kick:
		case <-resync.C:
		case <-retry:
		}
		retry = nil
		o.mu.Lock()
		synced, rev := o.synced, o.rev
		peers := Peers(o.cfg.NodeName, o.nodes, nil)
		o.mu.Unlock()
		if !synced {
			continue
		}
		start := time.Now()
		err := o.cfg.Backend.Sync(ctx, peers)
		if ctx.Err() != nil {
			return
		}
		o.syncedRev.Store(rev)
		if o.cfg.OnSync != nil {
			o.cfg.OnSync(peers, err)
		}
		changed := !reflect.DeepEqual(peers, last)
		last = peers
		st := syncStatus{set: true, reason: ReasonOverlayReady, message: fmt.Sprintf("podnet %s backend programmed", o.cfg.Backend.Name())}
		if err != nil {
			st.unavailable, st.reason, st.message = true, ReasonOverlayFailed, err.Error()
			if overlay.IsSegmentError(err) {
				st.reason = ReasonNotOnL2Segment
			}
			o.log.Error("overlay sync", "err", err)
			if !overlay.IsSegmentError(err) {
				// A topology refusal does not heal by retrying; the
				// resync and the next event retry it.
				retry = time.After(delay)
				delay = min(delay*2, overlayRetryMax)
			}
		} else {
			delay = 200 * time.Millisecond
			if changed {
				o.log.Info("overlay synced", "peers", len(peers), "took", time.Since(start).Round(time.Microsecond))
			}
		}
		o.mu.Lock()
		if o.status != st {
			o.status = st
			poke(o.statusKick)
		}
		o.mu.Unlock()
	}
}

// statusLoop writes our backend data and NetworkUnavailable condition to
// our Node when they differ from what the store has, retrying while the
// store is away or the Node does not exist yet.
func (o *Overlay) statusLoop(ctx context.Context) {
	data, err := json.Marshal(o.cfg.Data)
	if err != nil {
		o.log.Error("encode backend data", "err", err)
		return
	}
	delay := 200 * time.Millisecond
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-o.statusKick:
		case <-retry:
		}
		retry = nil
		o.mu.Lock()
		st := o.status
		cur := o.nodes[o.cfg.NodeName]
		o.mu.Unlock()
		if cur != nil && nodeStatusCurrent(cur, string(data), st) {
			continue
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := o.cfg.Store.Mutate(wctx, nodeKind, "", o.cfg.NodeName, func(obj api.Object) error {
			n := obj.(*corev1.Node)
			if n.Annotations == nil {
				n.Annotations = map[string]string{}
			}
			n.Annotations[api.AnnotationBackendData] = string(data)
			if st.set && !conditionCurrent(n, st) {
				s := corev1.ConditionFalse
				if st.unavailable {
					s = corev1.ConditionTrue
				}
				SetNodeCondition(n, corev1.NodeCondition{Type: corev1.NodeNetworkUnavailable, Status: s, Reason: st.reason, Message: st.message}, metav1.NewTime(time.Now().UTC().Truncate(time.Second)))
			}
			return nil
		})
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if apierrors.IsNotFound(err) {
				o.log.Debug("node not registered yet; will publish backend data when it is")
			} else {
				o.log.Warn("publish overlay status on node", "err", err)
			}
			retry = time.After(delay)
			delay = min(delay*2, overlayStatusRetryMax)
			continue
		}
		delay = 200 * time.Millisecond
	}
}

func nodeStatusCurrent(n *corev1.Node, data string, st syncStatus) bool {
	return n.Annotations[api.AnnotationBackendData] == data && (!st.set || conditionCurrent(n, st))
}

func conditionCurrent(n *corev1.Node, st syncStatus) bool {
	want := corev1.ConditionFalse
	if st.unavailable {
		want = corev1.ConditionTrue
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeNetworkUnavailable {
			return c.Status == want && c.Reason == st.reason && c.Message == st.message
		}
	}
	return false
}

// OverlaySetup says what SetupOverlay needs about this node.
type OverlaySetup struct {
	Store    *store.Store
	NodeName string
	NodeIP   string
	PodCIDR  string
	Backend  string // api.ClusterConfig.Backend
	StateDir string // the VTEP MAC is kept here
	Logger   *slog.Logger
	// Kernel defaults to netlink in the agent's own network namespace.
	Kernel overlay.Kernel
}

// SetupOverlay creates the cluster's backend for this node and runs its
// Setup (device, address, VTEP MAC). It returns the runner to add to
// Config.Runners, which publishes the backend data and keeps peers
// programmed, and the MTU pod interfaces must use.
func SetupOverlay(ctx context.Context, c OverlaySetup) (*Overlay, int, error) {
	ip, err := netip.ParseAddr(c.NodeIP)
	if err != nil {
		return nil, 0, fmt.Errorf("overlay: node %s: IP %q: %w", c.NodeName, c.NodeIP, err)
	}
	cidr, err := netip.ParsePrefix(c.PodCIDR)
	if err != nil {
		return nil, 0, fmt.Errorf("overlay: node %s: pod CIDR %q: %w", c.NodeName, c.PodCIDR, err)
	}
	k := c.Kernel
	if k == nil {
		k = overlay.NewNetlink(nil)
	}
	b, err := overlay.New(c.Backend, overlay.Config{
		Self:     overlay.Node{Name: c.NodeName, IP: ip, PodCIDR: cidr},
		StateDir: c.StateDir,
		Kernel:   k,
		Logger:   c.Logger,
	})
	if err != nil {
		return nil, 0, err
	}
	data, mtu, err := b.Setup(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("overlay: node %s: %w", c.NodeName, err)
	}
	if c.Logger != nil {
		c.Logger.Info("overlay ready", "backend", b.Name(), "podMTU", mtu, "vtepMAC", data.VTEPMAC)
	}
	return NewOverlay(OverlayConfig{NodeName: c.NodeName, Store: c.Store, Backend: b, Data: data, Logger: c.Logger}), mtu, nil
}
