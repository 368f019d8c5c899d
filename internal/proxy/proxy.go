// Package proxy owns the Service datapath: it turns Services and
// EndpointSlices into the service part of the node's `inet podnet` table
// (verdict-map dispatch, per-Service entry chains, one global endpoint
// map), one nft transaction per sync carrying only the delta, and deletes
// stale UDP conntrack entries when endpoints go away. It never flushes the
// table nor a chain podnet-cni owns; see README.md for the layout and the
// measurements behind it, and internal/nft/README.md for who owns what.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/podnet/podnet/internal/nft"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"sigs.k8s.io/knftables"
)

// LabelServiceName links an EndpointSlice to its Service.
const LabelServiceName = discoveryv1.LabelServiceName

// Config configures a Proxier.
type Config struct {
	NodeName string
	// NodeIP is the node's address. With the real kernel (NFT nil) the
	// first sync routes the service CIDR to lo with NodeIP as source, so
	// the node's own traffic reaches ClusterIPs (and is rejected for
	// unallocated ones) on a node without a default route; DNAT then
	// re-routes it to the endpoint. Invalid: no route.
	NodeIP netip.Addr
	// ClusterCIDR: sources outside it reaching a ClusterIP are
	// masqueraded. Invalid: never.
	ClusterCIDR netip.Prefix
	// ServiceCIDR: traffic still addressed to it after dstnat is rejected.
	ServiceCIDR netip.Prefix
	// NFT is the table `inet podnet` through knftables (a Fake in unit
	// tests). Nil: the real kernel, read over netlink and written with one
	// batched `nft -f` per sync (see kernel.go), in NetNS.
	NFT knftables.Interface
	// NetNS is the path of the network namespace whose table a nil NFT
	// programs; "" is the caller's own.
	NetNS string
	// Conntrack deletes stale UDP flows; nil: none.
	Conntrack Conntrack
	Logger    *slog.Logger
}

// Stats describe the programmed state after a sync (metrics later).
type Stats struct {
	Services  int           // Services with a datapath
	Ports     int           // Service ports
	Endpoints int           // endpoints programmed (cluster-wide lists)
	Changed   int           // Services whose state changed in this sync
	Pending   int           // Services already due for another sync (a frontend they were refused was released)
	Took      time.Duration // sync latency
}

// Proxier keeps the kernel in step with the Services and EndpointSlices
// it is told about. Its methods are safe for concurrent use; Sync calls
// are serialised.
type Proxier struct {
	cfg    Config
	log    *slog.Logger
	layout string
	be     backend

	mu       sync.Mutex
	services map[string]*corev1.Service                       // ns/name
	slices   map[string]map[string]*discoveryv1.EndpointSlice // service ns/name → slice name
	dirty    map[string]bool

	syncMu   sync.Mutex
	routed   bool
	restored bool
	applied  map[string]*svcState
	ids      map[string]uint32 // group → id
	usedIDs  map[uint32]string
	fresh    []string // groups given an id in this sync
	nextID   uint32
	hairRef  map[netip.Addr]int
	// claims: frontend (address . proto . port, or node port) → the one
	// Service that has it; losers: Services refused one, re-synced when it
	// is released.
	claims   map[string]string
	losers   map[string][]string
	hairKern map[netip.Addr]bool
	touchAll bool // first sync after restore: check every hairpin element
}

// New returns a Proxier; nothing touches the kernel before the first Sync.
func New(cfg Config) *Proxier {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	var be backend
	if cfg.NFT != nil {
		be = knftBackend{cfg.NFT}
	}
	return &Proxier{
		be:       be,
		cfg:      cfg,
		log:      cfg.Logger,
		layout:   layoutName(cfg.ClusterCIDR, cfg.ServiceCIDR),
		services: map[string]*corev1.Service{},
		slices:   map[string]map[string]*discoveryv1.EndpointSlice{},
		dirty:    map[string]bool{},
	}
}

func key(ns, name string) string { return ns + "/" + name }

// SetService records a Service (added or changed).
func (p *Proxier) SetService(s *corev1.Service) {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := key(s.Namespace, s.Name)
	p.services[k] = s
	p.dirty[k] = true
}

// DeleteService forgets a Service.
func (p *Proxier) DeleteService(ns, name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := key(ns, name)
	delete(p.services, k)
	p.dirty[k] = true
}

// SetSlice records an EndpointSlice; a slice without the service-name
// label is ignored.
func (p *Proxier) SetSlice(s *discoveryv1.EndpointSlice) {
	svc := s.Labels[LabelServiceName]
	if svc == "" {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	k := key(s.Namespace, svc)
	if p.slices[k] == nil {
		p.slices[k] = map[string]*discoveryv1.EndpointSlice{}
	}
	p.slices[k][s.Name] = s
	p.dirty[k] = true
}

// DeleteSlice forgets an EndpointSlice.
func (p *Proxier) DeleteSlice(s *discoveryv1.EndpointSlice) {
	svc := s.Labels[LabelServiceName]
	if svc == "" {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	k := key(s.Namespace, svc)
	delete(p.slices[k], s.Name)
	if len(p.slices[k]) == 0 {
		delete(p.slices, k)
	}
	p.dirty[k] = true
}

// Sync programs every change since the last Sync in one transaction. The
// first Sync of a Proxier reads the kernel's state first (a restart after
// kill -9 converges by diff) and declares the static part.
func (p *Proxier) Sync(ctx context.Context) (Stats, error) {
	p.syncMu.Lock()
	defer p.syncMu.Unlock()
	start := time.Now()
	if p.be == nil {
		k, err := newKernelBackend(p.cfg.NetNS)
		if err != nil {
			return Stats{}, err
		}
		p.be = k
	}
	if k, ok := p.be.(*kernelBackend); ok && !p.routed && p.cfg.NodeIP.IsValid() && p.cfg.ServiceCIDR.IsValid() {
		if err := k.ensureRoute(p.cfg.ServiceCIDR.Masked(), p.cfg.NodeIP); err != nil {
			return Stats{}, err
		}
		p.routed = true
	}
	var static *knftables.Transaction
	if !p.restored {
		static = p.newTx()
		if err := p.restore(ctx, static); err != nil {
			return Stats{}, err
		}
	}
	p.mu.Lock()
	dirty := p.dirty
	p.dirty = map[string]bool{}
	type input struct {
		svc    *corev1.Service
		slices []*discoveryv1.EndpointSlice
	}
	inputs := make(map[string]input, len(dirty))
	for k := range dirty {
		in := input{svc: p.services[k]}
		for _, s := range p.slices[k] {
			in.slices = append(in.slices, s)
		}
		sort.Slice(in.slices, func(i, j int) bool { return in.slices[i].Name < in.slices[j].Name })
		inputs[k] = in
	}
	p.mu.Unlock()

	b := &builder{node: p.cfg.NodeName, clusterCIDR: p.cfg.ClusterCIDR, group: p.groupID}
	d := newDelta()
	next := map[string]*svcState{}
	changed := 0
	var buildErr error
	keys := make([]string, 0, len(inputs))
	for k := range inputs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	built := make(map[string]*svcState, len(keys))
	for _, k := range keys {
		in := inputs[k]
		ns := newState()
		if in.svc != nil {
			s, err := b.build(in.svc, in.slices)
			if err != nil {
				buildErr = errors.Join(buildErr, fmt.Errorf("service %s: %w", k, err))
				s = newState()
			}
			ns = s
		}
		built[k] = ns
	}
	p.claim(keys, built)
	for _, k := range keys {
		ns := built[k]
		old := p.applied[k]
		if old == nil {
			old = newState()
		}
		if d.diff(old, ns) {
			changed++
		}
		next[k] = ns
	}
	// Hairpin set: refcounted over all Services.
	touched := map[netip.Addr]bool{}
	for a := range p.hairKern {
		if p.touchAll {
			touched[a] = true
		}
	}
	p.touchAll = false
	for k, ns := range next {
		if old := p.applied[k]; old != nil {
			for a := range old.hairpin {
				p.hairRef[a]--
				touched[a] = true
			}
		}
		for a := range ns.hairpin {
			p.hairRef[a]++
			touched[a] = true
		}
	}
	hairAdd, hairDel := []netip.Addr{}, []netip.Addr{}
	for a := range touched {
		want := p.hairRef[a] > 0
		if p.hairRef[a] <= 0 {
			delete(p.hairRef, a)
		}
		if want && !p.hairKern[a] {
			hairAdd = append(hairAdd, a)
		} else if !want && p.hairKern[a] {
			hairDel = append(hairDel, a)
		}
	}
	for _, a := range hairAdd {
		d.elemAdd = append(d.elemAdd, elem{set: SetHairpin, key: a.String() + " . " + a.String()})
	}
	for _, a := range hairDel {
		d.elemDel = append(d.elemDel, elem{set: SetHairpin, key: a.String() + " . " + a.String()})
	}
	if !d.empty() || static != nil {
		if err := p.be.run(ctx, static, d); err != nil {
			// Undo the bookkeeping: the next Sync re-reads the kernel.
			p.restored = false
			p.mu.Lock()
			for k := range dirty {
				p.dirty[k] = true
			}
			p.mu.Unlock()
			return Stats{}, fmt.Errorf("proxy: sync %d services: %w", len(dirty), err)
		}
	}
	for _, a := range hairAdd {
		p.hairKern[a] = true
	}
	for _, a := range hairDel {
		delete(p.hairKern, a)
	}
	// Commit: flows to endpoints that went away, then the new state.
	var stale []Flow
	release := p.fresh
	p.fresh = nil
	for k, ns := range next {
		old := p.applied[k]
		if old != nil {
			stale = append(stale, staleFlows(old, ns)...)
			for g := range old.groups {
				release = append(release, g)
			}
		}
		if len(ns.chains) == 0 && len(ns.elems) == 0 && len(ns.sets) == 0 {
			delete(p.applied, k)
		} else {
			p.applied[k] = ns
		}
	}
	p.releaseIDs(release)
	if len(stale) > 0 && p.cfg.Conntrack != nil {
		if err := p.cfg.Conntrack.Delete(stale); err != nil {
			p.log.Warn("delete stale UDP conntrack entries", "flows", len(stale), "err", err)
		}
	}
	st := p.stats()
	st.Changed = changed
	p.mu.Lock()
	st.Pending = len(p.dirty)
	p.mu.Unlock()
	st.Took = time.Since(start)
	return st, buildErr
}

func (p *Proxier) stats() Stats {
	var st Stats
	for _, s := range p.applied {
		if len(s.chains) > 0 || len(s.elems) > 0 {
			st.Services++
		}
		st.Ports += s.ports
		st.Endpoints += s.endpoints
	}
	return st
}

// frontID names what an element claims: a frontend, which only one
// Service may have (two map elements with one key and different verdicts
// would fail the whole transaction, every sync).
func frontID(e elem) (string, bool) {
	switch e.set {
	case MapServiceIPs, MapNoEndpoints:
		return "ip|" + e.key, true
	case MapServiceNodePorts, MapNoEndpointPorts:
		return "np|" + e.key, true
	}
	return "", false
}

// claim gives each frontend of the Services being synced to one of them:
// the one that already had it, else the first by namespace/name. A
// Service refused a frontend keeps its others and is synced again when
// the frontend is released.
func (p *Proxier) claim(keys []string, built map[string]*svcState) {
	var retry []string
	for _, k := range keys {
		if old := p.applied[k]; old != nil {
			keep := map[string]bool{}
			for _, e := range built[k].elems {
				if fid, ok := frontID(e); ok {
					keep[fid] = true
				}
			}
			for _, e := range old.elems {
				if fid, ok := frontID(e); ok && p.claims[fid] == k && !keep[fid] {
					delete(p.claims, fid)
					retry = append(retry, p.losers[fid]...)
					delete(p.losers, fid)
				}
			}
		}
	}
	for _, k := range keys {
		ns := built[k]
		for id, e := range ns.elems {
			fid, ok := frontID(e)
			if !ok {
				continue
			}
			if c, taken := p.claims[fid]; taken && c != k {
				delete(ns.elems, id)
				p.losers[fid] = append(p.losers[fid], k)
				p.log.Warn("two Services have the same frontend; the first keeps it", "frontend", e.key, "kept", c, "refused", k)
				continue
			}
			p.claims[fid] = k
		}
	}
	if len(retry) > 0 {
		p.mu.Lock()
		for _, k := range retry {
			p.dirty[k] = true
		}
		p.mu.Unlock()
	}
}

// groupID returns the id of an endpoint group, allocating one.
func (p *Proxier) groupID(group string) (uint32, error) {
	if id, ok := p.ids[group]; ok {
		return id, nil
	}
	for range maxGroupID {
		p.nextID++
		if p.nextID > maxGroupID {
			p.nextID = 1
		}
		if _, used := p.usedIDs[p.nextID]; !used {
			p.ids[group] = p.nextID
			p.usedIDs[p.nextID] = group
			p.fresh = append(p.fresh, group)
			return p.nextID, nil
		}
	}
	return 0, fmt.Errorf("no free endpoint group id (%d in use)", len(p.usedIDs))
}

// releaseIDs frees the ids of those groups (the ones the synced Services
// had or were given) that no applied Service uses.
func (p *Proxier) releaseIDs(groups []string) {
	for _, g := range groups {
		id, ok := p.ids[g]
		if !ok {
			continue
		}
		s := p.applied[groupOwner(g)]
		if s == nil || !s.groups[g] {
			delete(p.ids, g)
			delete(p.usedIDs, id)
		}
	}
}

// delta collects a sync's changes, applied in a safe order.
type delta struct {
	setAdd, setDel   map[string]affSet
	chainAdd         map[string][]string
	chainDel         map[string]bool
	elemAdd, elemDel []elem
}

// newTx returns a transaction for the static declaration (rendered as
// text by the kernel backend).
func (p *Proxier) newTx() *knftables.Transaction {
	if p.cfg.NFT != nil {
		return p.cfg.NFT.NewTransaction()
	}
	return knftables.NewFake(knftables.InetFamily, nft.TableName).NewTransaction()
}

func (d *delta) empty() bool {
	return len(d.setAdd) == 0 && len(d.setDel) == 0 && len(d.chainAdd) == 0 && len(d.chainDel) == 0 &&
		len(d.elemAdd) == 0 && len(d.elemDel) == 0
}

// sortElems orders element operations by set, then key.
func (d *delta) sortElems() {
	sort.Slice(d.elemDel, func(i, j int) bool { return d.elemDel[i].less(d.elemDel[j]) })
	sort.Slice(d.elemAdd, func(i, j int) bool { return d.elemAdd[i].less(d.elemAdd[j]) })
}

func newDelta() *delta {
	return &delta{setAdd: map[string]affSet{}, setDel: map[string]affSet{}, chainAdd: map[string][]string{}, chainDel: map[string]bool{}}
}

// diff adds old → new to d and reports whether anything changed.
func (d *delta) diff(old, new *svcState) bool {
	changed := false
	for n, s := range new.sets {
		if _, ok := old.sets[n]; !ok {
			d.setAdd[n] = s
			changed = true
		}
	}
	for n, s := range old.sets {
		if _, ok := new.sets[n]; !ok {
			d.setDel[n] = s
			changed = true
		}
	}
	for n, r := range new.chains {
		if _, ok := old.chains[n]; !ok {
			d.chainAdd[n] = r
			changed = true
		}
	}
	for n := range old.chains {
		if _, ok := new.chains[n]; !ok {
			d.chainDel[n] = true
			changed = true
		}
	}
	for id, e := range new.elems {
		o, ok := old.elems[id]
		if ok && o.value == e.value {
			continue
		}
		if ok {
			d.elemDel = append(d.elemDel, o)
		}
		d.elemAdd = append(d.elemAdd, e)
		changed = true
	}
	for id, o := range old.elems {
		if _, ok := new.elems[id]; !ok {
			d.elemDel = append(d.elemDel, o)
			changed = true
		}
	}
	return changed
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func ptr[T any](v T) *T { return &v }

func splitKey(s string) []string { return strings.Split(s, " . ") }

// apply writes d to tx: new sets, new chains, element deletes, element
// adds, old chains, old sets — so that nothing is ever referenced before
// it exists or deleted while referenced.
func (d *delta) apply(tx *knftables.Transaction) {
	for _, n := range sortedKeys(d.setAdd) {
		tx.Add(&knftables.Set{Name: n, Type: "ipv4_addr", Flags: []knftables.SetFlag{knftables.DynamicFlag, knftables.TimeoutFlag}, Timeout: ptr(d.setAdd[n].timeout)})
	}
	for _, n := range sortedKeys(d.chainAdd) {
		tx.Add(&knftables.Chain{Name: n})
	}
	// A chain to add is absent from the kernel (restore read the names),
	// and its name is its content: no flush needed.
	for _, n := range sortedKeys(d.chainAdd) {
		for _, r := range d.chainAdd[n] {
			tx.Add(&knftables.Rule{Chain: n, Rule: r})
		}
	}
	d.sortElems()
	for _, e := range d.elemDel {
		el := &knftables.Element{Key: splitKey(e.key)}
		if e.isMap {
			el.Map = e.set
		} else {
			el.Set = e.set
		}
		tx.Delete(el)
	}
	for _, e := range d.elemAdd {
		el := &knftables.Element{Key: splitKey(e.key)}
		if e.isMap {
			el.Map = e.set
			el.Value = splitKey(e.value)
		} else {
			el.Set = e.set
		}
		if e.comment != "" {
			el.Comment = ptr(e.comment)
		}
		tx.Add(el)
	}
	for _, n := range sortedKeys(d.chainDel) {
		tx.Delete(&knftables.Chain{Name: n})
	}
	for _, n := range sortedKeys(d.setDel) {
		tx.Delete(&knftables.Set{Name: n})
	}
}

// restore reads what the kernel holds of the proxy's part of the table
// into p.applied (so the first sync is a diff, not a rewrite), and adds
// the static declaration to tx. A table of another static layout (another
// build, other CIDRs) has the proxy's part deleted and re-made.
func (p *Proxier) restore(ctx context.Context, tx *knftables.Transaction) error {
	p.applied = map[string]*svcState{}
	p.fresh = nil
	p.ids = map[string]uint32{}
	p.usedIDs = map[uint32]string{}
	p.hairRef = map[netip.Addr]int{}
	p.claims = map[string]string{}
	p.losers = map[string][]string{}
	p.hairKern = map[netip.Addr]bool{}
	p.mu.Lock()
	for k := range p.services {
		p.dirty[k] = true
	}
	p.mu.Unlock()

	snap, err := p.be.read(ctx)
	if err != nil {
		return err
	}
	sets, chains := snap.sets, snap.chains
	current := false
	var oldLayouts []string
	for _, s := range sets {
		if s == p.layout {
			current = true
		} else if strings.HasPrefix(s, layoutPrefix) {
			oldLayouts = append(oldLayouts, s)
		}
	}
	fresh := !current && len(oldLayouts) > 0 // another layout: remake our part
	state := func(owner string) *svcState {
		s := p.applied[owner]
		if s == nil {
			s = newState()
			p.applied[owner] = s
		}
		return s
	}
	if fresh {
		p.log.Info("service table layout changed; re-making the service part of the table", "old", oldLayouts, "new", p.layout)
		for _, c := range staticChains(p.cfg.ClusterCIDR, p.cfg.ServiceCIDR) {
			tx.Add(&knftables.Chain{Name: c.name})
			tx.Flush(&knftables.Chain{Name: c.name})
		}
		for _, m := range snap.maps {
			for _, sm := range staticMaps() {
				if m == sm.Name {
					tx.Delete(&knftables.Map{Name: m})
				}
			}
		}
		for _, c := range chains {
			if _, ok := ownerOf(c); ok {
				tx.Delete(&knftables.Chain{Name: c})
			}
		}
		for _, s := range sets {
			if _, ok := ownerOf(s); ok || s == SetHairpin || strings.HasPrefix(s, layoutPrefix) {
				tx.Delete(&knftables.Set{Name: s})
			}
		}
	} else {
		for _, c := range chains {
			if o, ok := ownerOf(c); ok {
				state(o).chains[c] = nil
			}
		}
		for _, s := range sets {
			if o, ok := ownerOf(s); ok {
				state(o).sets[s] = affSet{}
			}
		}
		for _, m := range staticMaps() {
			for _, e := range snap.elems[m.Name] {
				if e.Comment == nil {
					continue
				}
				el := elem{set: m.Name, isMap: true, key: normJoin(e.Key), value: normJoin(e.Value), comment: *e.Comment}
				if m.Name == MapEndpoints {
					// nft lists marks in decimal; we write them in hex.
					if v, err := strconv.ParseUint(el.key, 0, 32); err == nil {
						el.key = fmt.Sprintf("0x%08x", v)
					}
				}
				owner := *e.Comment
				if m.Name == MapEndpoints {
					owner = groupOwner(el.comment)
					if v, err := strconv.ParseUint(el.key, 0, 32); err == nil {
						id := uint32(v&keyMask&^markService) >> groupShift
						p.ids[el.comment] = id
						p.usedIDs[id] = el.comment
						state(owner).groups[el.comment] = true
					}
				}
				if owner != "" {
					state(owner).add(el)
				}
			}
		}
		for _, e := range snap.elems[SetHairpin] {
			if a, err := netip.ParseAddr(e.Key[0]); err == nil {
				p.hairKern[a] = true
			}
		}
		// Services in the kernel that we no longer know of are dirty too.
		p.mu.Lock()
		for k := range p.applied {
			p.dirty[k] = true
		}
		p.mu.Unlock()
	}
	for owner, s := range p.applied {
		for _, e := range s.elems {
			if fid, ok := frontID(e); ok {
				p.claims[fid] = owner
			}
		}
	}
	// The hairpin refcounts start from the restored endpoint elements;
	// every restored Service is re-diffed, which recounts them.
	for _, s := range p.applied {
		for _, e := range s.elems {
			if e.set == MapEndpoints {
				if a, err := netip.ParseAddr(splitKey(e.value)[0]); err == nil {
					s.hairpin[a] = true
				}
			}
		}
		for a := range s.hairpin {
			p.hairRef[a]++
		}
	}
	// The static part: shared base chains, our maps and chains.
	nft.DeclareBase(tx)
	for _, s := range staticSets() {
		tx.Add(&s)
	}
	for _, m := range staticMaps() {
		tx.Add(&m)
	}
	tx.Add(&knftables.Chain{Name: ChainReject})
	for _, c := range staticChains(p.cfg.ClusterCIDR, p.cfg.ServiceCIDR) {
		tx.Add(&knftables.Chain{Name: c.name})
		tx.Flush(&knftables.Chain{Name: c.name})
		for _, r := range c.rules {
			tx.Add(&knftables.Rule{Chain: c.name, Rule: r})
		}
	}
	tx.Add(&knftables.Set{Name: p.layout, Type: "inet_service", Comment: ptr("podnet service table layout marker")})
	for _, s := range oldLayouts {
		if !fresh {
			tx.Delete(&knftables.Set{Name: s})
		}
	}
	p.restored = true
	p.touchAll = true
	return nil
}

// normJoin joins an element key or value as the proxy writes it (nft
// lists protocols by name or number, marks in hex).
func normJoin(parts []string) string {
	out := make([]string, len(parts))
	for i, s := range parts {
		switch s {
		case "6":
			s = "tcp"
		case "17":
			s = "udp"
		case "132":
			s = "sctp"
		}
		if strings.HasPrefix(s, "goto ") || strings.HasPrefix(s, "jump ") {
			// verdicts come back as is
		} else if v, err := strconv.ParseUint(s, 0, 32); err == nil && strings.HasPrefix(s, "0x") {
			s = fmt.Sprintf("0x%08x", v)
		}
		out[i] = s
	}
	return strings.Join(out, " . ")
}
