package overlay

// The host-gw backend: each peer's pod CIDR is routed via the peer's node
// address on the interface that reaches it,
//
//	10.244.2.0/24 via 192.168.250.12 dev eth0 proto 110
//
// so pod packets cross the underlay unencapsulated, at the underlay's full
// MTU. That only works when the peer is a direct L2 neighbour: a router in
// between would have no route to pod CIDRs. Sync asks the kernel how it
// reaches each peer (`ip route get`); a peer reached through a gateway is
// refused with a SegmentError naming it and the gateway, and gets no
// route, while the other peers are programmed.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
)

type hostGW struct {
	cfg Config
	k   Kernel
	log *slog.Logger
	mu  sync.Mutex
}

func newHostGW(cfg Config) *hostGW {
	return &hostGW{cfg: cfg, k: cfg.Kernel, log: cfg.Logger.With("backend", "host-gw")}
}

func (h *hostGW) Name() string { return "host-gw" }

func (h *hostGW) Setup(ctx context.Context) (NodeData, int, error) {
	under, err := h.k.LinkByAddr(h.cfg.Self.IP)
	if err != nil {
		return NodeData{}, 0, fmt.Errorf("host-gw: find underlay of %s: %w", h.cfg.Self.IP, err)
	}
	if under == nil {
		return NodeData{}, 0, fmt.Errorf("host-gw: node IP %s is on no interface of this node", h.cfg.Self.IP)
	}
	return NodeData{}, under.MTU, nil
}

func (h *hostGW) Sync(ctx context.Context, peers []Node) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	valid, errs := validPeers(h.cfg.Self, peers)
	want := map[Route]Node{}
	var order []Route
	for _, p := range valid {
		path, err := h.k.PathTo(p.IP)
		if err != nil {
			errs = append(errs, fmt.Errorf("host-gw: node %s: %w", p, err))
			continue
		}
		if path.Gateway.IsValid() {
			errs = append(errs, &SegmentError{Peer: p, Gateway: path.Gateway})
			continue
		}
		r := Route{Dst: p.PodCIDR, Via: p.IP, Dev: path.Dev}
		want[r] = p
		order = append(order, r)
	}
	have, err := h.k.Routes()
	if err != nil {
		return fmt.Errorf("host-gw: %w", err)
	}
	present := map[Route]bool{}
	for _, r := range have {
		if _, ok := want[r]; ok {
			present[r] = true
			continue
		}
		if err := h.k.DelRoute(r); err != nil {
			errs = append(errs, fmt.Errorf("host-gw: %w", err))
		} else {
			h.log.Info("route removed", "route", r.String())
		}
	}
	for _, r := range order {
		p := want[r]
		if present[r] {
			continue
		}
		if err := h.k.ReplaceRoute(r); err != nil {
			errs = append(errs, fmt.Errorf("host-gw: node %s: %w", p, err))
			continue
		}
		h.log.Info("peer programmed", "peer", p.Name, "nodeIP", p.IP, "podCIDR", p.PodCIDR, "dev", r.Dev)
	}
	return peerErr("host-gw", errs)
}

func (h *hostGW) Teardown(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	have, err := h.k.Routes()
	if err != nil {
		return fmt.Errorf("host-gw: teardown: %w", err)
	}
	var errs []error
	for _, r := range have {
		if err := h.k.DelRoute(r); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("host-gw: teardown: %w", err)
	}
	return nil
}
