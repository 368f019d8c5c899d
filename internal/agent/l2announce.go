package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/informer"
	"github.com/podnet/podnet/internal/l2announce"
	"github.com/podnet/podnet/internal/store"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// L2AnnounceConfig configures the load-balancer announcer.
type L2AnnounceConfig struct {
	NodeName string
	// NodeIP picks the interface answered on: the one holding it.
	NodeIP string
	// Source is the store (or any list/watch source).
	Source informer.Source
	// Store, if set, is where the node's segment is published
	// (annotation l2announce.AnnotationSegment on its Node).
	Store  *store.Store
	Logger *slog.Logger
	// Listen opens the ARP connection and says the segment it is on;
	// default: an AF_PACKET socket on the interface holding NodeIP.
	Listen func() (l2announce.Conn, net.HardwareAddr, netip.Prefix, error)
	// Services and Slices, if set, are caches another runner runs (the
	// service proxy's, see Services.Informers), shared instead of
	// list-watching the same objects twice.
	Services *informer.Informer[*corev1.Service]
	Slices   *informer.Informer[*discoveryv1.EndpointSlice]
	// OnAssign, if set, is called after every election with the addresses
	// this node announces (tests).
	OnAssign func(mine []netip.Addr)
}

// L2Announce is the Runner that answers ARP for the load-balancer
// addresses this node is elected for (l2announce.Assign over the cluster's
// Nodes, Services and EndpointSlices, the same on every agent) and sends
// gratuitous ARP on each takeover. Nothing is announced before all three
// kinds have a complete list. When the agent stops, or is killed, nothing
// answers from this node any more; the others take over once the node
// lifecycle controller has marked it not Ready.
type L2Announce struct {
	cfg    L2AnnounceConfig
	log    *slog.Logger
	nodes  *informer.Informer[*corev1.Node]
	svcs   *informer.Informer[*corev1.Service]
	slices *informer.Informer[*discoveryv1.EndpointSlice]
	kick   chan struct{}
	// ownSvcs, ownSlices: this runner runs those informers.
	ownSvcs, ownSlices bool

	mu         sync.Mutex
	resp       *l2announce.Responder // nil while the socket is not open
	mine       []netip.Addr          // the last election's result
	segment    netip.Prefix          // where resp answers
	publishing bool                  // a segment write is under way
}

// NewL2Announce returns the runner; add it to Config.Runners.
func NewL2Announce(cfg L2AnnounceConfig) (*L2Announce, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Listen == nil {
		ip, err := netip.ParseAddr(cfg.NodeIP)
		if err != nil {
			return nil, fmt.Errorf("l2 announce: node IP %q: %w", cfg.NodeIP, err)
		}
		cfg.Listen = func() (l2announce.Conn, net.HardwareAddr, netip.Prefix, error) {
			ifc, seg, err := l2announce.InterfaceOf(ip)
			if err != nil {
				return nil, nil, seg, err
			}
			c, err := l2announce.ListenARP(ifc.Index)
			return c, ifc.HardwareAddr, seg, err
		}
	}
	log := cfg.Logger.With("node", cfg.NodeName, "component", "l2announce")
	a := &L2Announce{cfg: cfg, log: log, kick: make(chan struct{}, 1)}
	nodeK, _ := api.KindOf(&corev1.Node{})
	svcK, _ := api.KindOf(&corev1.Service{})
	sliceK, _ := api.KindOf(&discoveryv1.EndpointSlice{})
	a.nodes = informer.New[*corev1.Node](cfg.Source, nodeK, "", log)
	a.svcs, a.slices = cfg.Services, cfg.Slices
	if a.svcs == nil {
		a.svcs = informer.New[*corev1.Service](cfg.Source, svcK, "", log)
		a.ownSvcs = true
	}
	if a.slices == nil {
		a.slices = informer.New[*discoveryv1.EndpointSlice](cfg.Source, sliceK, "", log)
		a.ownSlices = true
	}
	onAny := func() { poke(a.kick) }
	a.nodes.AddHandler(informer.Handler[*corev1.Node]{OnUpdate: func(*corev1.Node) { onAny() }, OnDelete: func(*corev1.Node) { onAny() }, Synced: onAny})
	a.svcs.AddHandler(informer.Handler[*corev1.Service]{OnUpdate: func(*corev1.Service) { onAny() }, OnDelete: func(*corev1.Service) { onAny() }, Synced: onAny})
	a.slices.AddHandler(informer.Handler[*discoveryv1.EndpointSlice]{OnUpdate: func(*discoveryv1.EndpointSlice) { onAny() }, OnDelete: func(*discoveryv1.EndpointSlice) { onAny() }, Synced: onAny})
	return a, nil
}

var _ Runner = (*L2Announce)(nil)

// Announced returns the addresses this node answers for now.
func (a *L2Announce) Announced() []netip.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.resp == nil {
		return nil
	}
	return a.resp.Owned()
}

// Run works until ctx ends.
func (a *L2Announce) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	run := func(f func(context.Context)) { wg.Add(1); go func() { defer wg.Done(); f(ctx) }() }
	run(a.nodes.Run)
	if a.ownSvcs {
		run(a.svcs.Run)
	}
	if a.ownSlices {
		run(a.slices.Run)
	}
	run(a.serve)
	a.electLoop(ctx)
	wg.Wait()
	return nil
}

// serve keeps a responder open, re-opening it with backoff when its
// socket fails (an interface that went away and came back).
func (a *L2Announce) serve(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		conn, mac, seg, err := a.cfg.Listen()
		if err != nil {
			a.log.Error("cannot listen for ARP; load-balancer addresses are not announced from this node", "err", err, "retry", backoff)
			sleep(ctx, backoff)
			backoff = min(backoff*2, 10*time.Second)
			continue
		}
		r := l2announce.NewResponder(conn, mac, a.log)
		a.mu.Lock()
		a.resp, a.segment = r, seg
		r.Set(a.mine)
		a.mu.Unlock()
		poke(a.kick) // publish the segment if it is not yet
		a.log.Info("answering ARP for load-balancer addresses", "mac", mac.String(), "segment", seg)
		err = r.Run(ctx)
		a.mu.Lock()
		a.resp = nil
		a.mu.Unlock()
		if err != nil {
			a.log.Error("ARP responder stopped", "err", err)
			sleep(ctx, backoff)
			backoff = min(backoff*2, 10*time.Second)
		} else {
			backoff = 100 * time.Millisecond
		}
	}
}

func (a *L2Announce) electLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.kick:
		}
		if !a.nodes.HasSynced() || !a.svcs.HasSynced() || !a.slices.HasSynced() {
			continue
		}
		a.publishSegment(ctx)
		assigned := l2announce.Assign(a.svcs.List(), a.nodes.List(), a.slices.List())
		var mine []netip.Addr
		for ip, n := range assigned {
			if n == a.cfg.NodeName {
				mine = append(mine, ip)
			}
		}
		a.mu.Lock()
		a.mine = mine
		var taken, released []netip.Addr
		if a.resp != nil {
			taken, released = a.resp.Set(mine)
		}
		a.mu.Unlock()
		for _, ip := range taken {
			a.log.Info("announcing load-balancer address", "ip", ip)
		}
		for _, ip := range released {
			a.log.Info("no longer announcing load-balancer address", "ip", ip, "announcer", orNobody(assigned[ip]))
		}
		if a.cfg.OnAssign != nil {
			a.cfg.OnAssign(mine)
		}
	}
}

// publishSegment writes this node's segment on its Node when the cache
// shows it missing or different, in the background; the write's echo
// through the informer ends it.
func (a *L2Announce) publishSegment(ctx context.Context) {
	if a.cfg.Store == nil {
		return
	}
	a.mu.Lock()
	seg, busy := a.segment, a.publishing
	a.mu.Unlock()
	n, ok := a.nodes.Get("", a.cfg.NodeName)
	if busy || !seg.IsValid() || !ok || n.Annotations[l2announce.AnnotationSegment] == seg.String() {
		return
	}
	a.mu.Lock()
	a.publishing = true
	a.mu.Unlock()
	go func() {
		defer func() { a.mu.Lock(); a.publishing = false; a.mu.Unlock() }()
		for backoff := 500 * time.Millisecond; ctx.Err() == nil; backoff = min(backoff*2, 10*time.Second) {
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := a.cfg.Store.Mutate(wctx, nodeKind, "", a.cfg.NodeName, func(o api.Object) error {
				n := o.(*corev1.Node)
				if n.Annotations == nil {
					n.Annotations = map[string]string{}
				}
				n.Annotations[l2announce.AnnotationSegment] = seg.String()
				return nil
			})
			cancel()
			if err == nil {
				a.log.Info("segment published", "segment", seg)
				return
			}
			a.log.Warn("cannot publish the node's segment; retrying", "err", err, "retry", backoff)
			sleep(ctx, backoff)
		}
	}()
}

func orNobody(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
