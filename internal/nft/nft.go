// Package nft owns the node's one nftables table, `inet podnet`: masquerade
// for pod traffic leaving the node and DNAT for published host ports.
//
// Per-attachment state lives only in set and map elements (tagged with the
// attachment key as comment); rules never mention a pod, so removing an
// attachment's elements returns the table to its baseline. Every change is
// one transaction. It touches only elements when the table already has this
// build's layout, which it proves by adding an element to a marker set named
// after a hash of the layout: a missing table, or one an older podnet made,
// fails that transaction as a whole, and the change is redone together with
// a full declaration of the table (chains flushed and rules rewritten).
// Re-declaring chains costs the kernel a grace period on every nft run
// (about 10 ms), so the fast path skips it. Ensure re-declares on demand;
// the agent calls it when it starts. See README.md for chains and hooks.
package nft

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os/exec"
	"sort"
	"strings"
	"sync"

	"sigs.k8s.io/knftables"
)

// TableName is the one table podnet owns, in the inet family.
const TableName = "podnet"

// Chain names. Base chains only dispatch to the regular chains below, so
// future components (policy) add their own regular chain and one dispatch
// entry in baseChains.
const (
	ChainPrerouting    = "prerouting"     // nat, prerouting, dstnat
	ChainOutput        = "output"         // nat, output, dstnat
	ChainPostrouting   = "postrouting"    // nat, postrouting, srcnat
	ChainFilterInput   = "filter-input"   // filter, input, filter
	ChainFilterForward = "filter-forward" // filter, forward, filter
	ChainFilterOutput  = "filter-output"  // filter, output, filter
	ChainHostPorts     = "hostports"      // DNAT of published host ports (podnet-cni)
	ChainMasquerade    = "pod-masq"       // SNAT of pod traffic (podnet-cni)
)

// Chains the service proxy (internal/proxy) owns and fills; podnet-cni only
// declares them empty if they are missing, so the base chains' jumps
// resolve, and never flushes them.
const (
	ChainServices       = "services"        // DNAT dispatch: verdict maps on address . proto . port
	ChainServicesMasq   = "services-masq"   // SNAT decisions for service traffic, before pod-masq
	ChainServicesFilter = "services-filter" // reject: no endpoints, unallocated service IPs
)

// Set and map names.
const (
	SetMasqSrc4   = "masq-src4"  // pod IPv4 addresses whose egress is masqueraded
	SetMasqSrc6   = "masq-src6"  // same for IPv6
	SetPodNets4   = "pod-nets4"  // podIP . podSubnet: traffic within a pod's own network
	SetPodNets6   = "pod-nets6"  // same for IPv6
	MapHostPorts4 = "hostports4" // hostIP . proto . hostPort : podIP . containerPort
	MapHostPorts6 = "hostports6" // same for IPv6
)

type baseChain struct {
	name     string
	typ      knftables.BaseChainType
	hook     knftables.BaseChainHook
	priority knftables.BaseChainPriority
	jump     []string // regular chains this base chain dispatches to, in order
}

// baseChains is the table's hook layout, documented in README.md. Both
// owners of the table (podnet-cni and the service proxy) declare it
// identically through DeclareBase, so either may re-declare it: a
// transaction that flushes a base chain and re-adds its jumps is atomic,
// so no packet ever sees a base chain without its dispatch.
var baseChains = []baseChain{
	{ChainPrerouting, knftables.NATType, knftables.PreroutingHook, knftables.DNATPriority, []string{ChainServices, ChainHostPorts}},
	{ChainOutput, knftables.NATType, knftables.OutputHook, knftables.DNATPriority, []string{ChainServices, ChainHostPorts}},
	{ChainPostrouting, knftables.NATType, knftables.PostroutingHook, knftables.SNATPriority, []string{ChainServicesMasq, ChainMasquerade}},
	{ChainFilterInput, knftables.FilterType, knftables.InputHook, knftables.FilterPriority, []string{ChainServicesFilter}},
	{ChainFilterForward, knftables.FilterType, knftables.ForwardHook, knftables.FilterPriority, []string{ChainServicesFilter}},
	{ChainFilterOutput, knftables.FilterType, knftables.OutputHook, knftables.FilterPriority, []string{ChainServicesFilter}},
}

// TableComment is the comment of the table; every owner declares it alike.
const TableComment = "podnet: pod masquerade, published ports, services"

// DeclareBase adds to tx the table, every chain a base chain jumps to
// (added, never flushed: each owner flushes only its own chains) and the
// base chains with their jumps (flushed and re-added, identical for every
// owner). podnet-cni's full declaration and the service proxy's both call
// it.
func DeclareBase(tx *knftables.Transaction) {
	tx.Add(&knftables.Table{Comment: ptr(TableComment)})
	seen := map[string]bool{}
	for _, bc := range baseChains {
		for _, j := range bc.jump {
			if !seen[j] {
				seen[j] = true
				tx.Add(&knftables.Chain{Name: j})
			}
		}
	}
	for _, bc := range baseChains {
		tx.Add(&knftables.Chain{Name: bc.name, Type: ptr(bc.typ), Hook: ptr(bc.hook), Priority: ptr(bc.priority)})
		tx.Flush(&knftables.Chain{Name: bc.name})
		for _, j := range bc.jump {
			tx.Add(&knftables.Rule{Chain: bc.name, Rule: "jump " + j})
		}
	}
}

// BaseLayout describes the base chains, for owners' layout markers.
func BaseLayout() string { return fmt.Sprintf("%v", baseChains) }

// staticRules are the rules of each regular chain.
var staticRules = map[string][]string{
	ChainHostPorts: {
		"fib daddr type local meta l4proto { tcp, udp } dnat ip to ip daddr . meta l4proto . th dport map @" + MapHostPorts4,
		"fib daddr type local meta l4proto { tcp, udp } dnat ip6 to ip6 daddr . meta l4proto . th dport map @" + MapHostPorts6,
	},
	ChainMasquerade: {
		// Published ports reached from the node's loopback: the pod must
		// answer to something routable.
		"ct status dnat ip saddr 127.0.0.0/8 masquerade",
		"ct status dnat ip6 saddr ::1 masquerade",
		// Hairpin: a pod reaching a published port (its own or a
		// neighbour's) through a node address; without SNAT the reply
		// would bypass the node's conntrack on the bridge.
		"ct status dnat ip saddr . ip daddr @" + SetPodNets4 + " masquerade",
		"ct status dnat ip6 saddr . ip6 daddr @" + SetPodNets6 + " masquerade",
		// Pod to its own pod network: never NATed.
		"ip saddr . ip daddr @" + SetPodNets4 + " return",
		"ip6 saddr . ip6 daddr @" + SetPodNets6 + " return",
		"ip saddr @" + SetMasqSrc4 + " masquerade",
		"ip6 saddr @" + SetMasqSrc6 + " masquerade",
	},
}

var regularChains = []string{ChainHostPorts, ChainMasquerade}

var sets = []knftables.Set{
	{Name: SetMasqSrc4, Type: "ipv4_addr"},
	{Name: SetMasqSrc6, Type: "ipv6_addr"},
	{Name: SetPodNets4, Type: "ipv4_addr . ipv4_addr", Flags: []knftables.SetFlag{knftables.IntervalFlag}},
	{Name: SetPodNets6, Type: "ipv6_addr . ipv6_addr", Flags: []knftables.SetFlag{knftables.IntervalFlag}},
}

var maps = []knftables.Map{
	{Name: MapHostPorts4, Type: "ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service", Flags: []knftables.SetFlag{knftables.IntervalFlag}},
	{Name: MapHostPorts6, Type: "ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service", Flags: []knftables.SetFlag{knftables.IntervalFlag}},
}

// Attachment is what the datapath needs to know about one pod interface.
type Attachment struct {
	// Key identifies the attachment; it is the comment of every element.
	Key string
	// IPs are the pod's addresses with their pod network's prefix length.
	IPs []netip.Prefix
	// Masquerade makes traffic from the pod to outside its network SNAT to
	// the node.
	Masquerade bool
	// Ports are the published host ports.
	Ports []PortMapping
	// NonMasquerade are more destinations, beyond the pod's own network,
	// that the pod reaches with its own address (the cluster CIDR: pods on
	// other nodes). Each adds a podIP . cidr element to pod-nets; a CIDR
	// holding the pod's own network replaces that network's element
	// (interval elements of one set must not overlap).
	NonMasquerade []netip.Prefix
}

// PortMapping publishes ContainerPort of the pod on HostPort of the node.
type PortMapping struct {
	HostIP        netip.Addr // invalid: every node address of the pod's family
	Proto         string     // "tcp" or "udp"
	HostPort      uint16
	ContainerPort uint16
}

// Datapath programs attachments into the kernel. Add and Remove are
// idempotent.
type Datapath interface {
	Add(ctx context.Context, a Attachment) error
	Remove(ctx context.Context, a Attachment) error
	Check(ctx context.Context, a Attachment) error
}

// Tables implements Datapath over a knftables.Interface.
type Tables struct {
	nft knftables.Interface
}

var _ Datapath = (*Tables)(nil)

// New returns a Datapath using nft through the given interface (a
// knftables.Fake in unit tests; see NewExec for the real one).
func New(nft knftables.Interface) *Tables { return &Tables{nft: nft} }

func ptr[T any](v T) *T { return &v }

// layoutSet is the marker set of this build's table layout.
var layoutSet = "layout-" + layoutHash()

func layoutHash() string {
	h := sha256.New()
	fmt.Fprintf(h, "%v|%v|%v|%v|", baseChains, sets, maps, regularChains)
	for _, c := range regularChains {
		fmt.Fprintf(h, "%s:%q|", c, staticRules[c])
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

func layoutMarker() *knftables.Element {
	return &knftables.Element{Set: layoutSet, Key: []string{"1"}}
}

// declare adds the table skeleton and podnet-cni's static rules to tx.
func declare(tx *knftables.Transaction) {
	tx.Add(&knftables.Table{Comment: ptr(TableComment)})
	tx.Add(&knftables.Set{Name: layoutSet, Type: "inet_service", Comment: ptr("podnet table layout marker")})
	tx.Add(layoutMarker())
	for _, s := range sets {
		s := s
		tx.Add(&s)
	}
	for _, m := range maps {
		m := m
		tx.Add(&m)
	}
	for _, c := range regularChains {
		tx.Add(&knftables.Chain{Name: c})
		tx.Flush(&knftables.Chain{Name: c})
		for _, r := range staticRules[c] {
			tx.Add(&knftables.Rule{Chain: c, Rule: r})
		}
	}
	DeclareBase(tx)
}

// elements returns the set and map elements of a.
func elements(a Attachment) []*knftables.Element {
	var out []*knftables.Element
	c := ptr(a.Key)
	for _, p := range a.IPs {
		ip := p.Addr()
		v4 := ip.Is4()
		podNets, masq, hp, any := SetPodNets6, SetMasqSrc6, MapHostPorts6, "::/0"
		if v4 {
			podNets, masq, hp, any = SetPodNets4, SetMasqSrc4, MapHostPorts4, "0.0.0.0/0"
		}
		for _, n := range podNets4or6(p, a.NonMasquerade) {
			out = append(out, &knftables.Element{Set: podNets, Key: []string{ip.String(), n.String()}, Comment: c})
		}
		if a.Masquerade {
			out = append(out, &knftables.Element{Set: masq, Key: []string{ip.String()}, Comment: c})
		}
		for _, pm := range a.Ports {
			host := any
			if pm.HostIP.IsValid() {
				if pm.HostIP.Is4() != v4 {
					continue
				}
				host = pm.HostIP.String()
			}
			out = append(out, &knftables.Element{
				Map:     hp,
				Key:     []string{host, pm.Proto, fmt.Sprint(pm.HostPort)},
				Value:   []string{ip.String(), fmt.Sprint(pm.ContainerPort)},
				Comment: c,
			})
		}
	}
	return out
}

// podNets4or6 returns the destinations pod address p reaches un-NATed: its
// own network and the extra CIDRs of its family, minus any contained in
// another, so that no two elements of the pod's overlap.
func podNets4or6(p netip.Prefix, extra []netip.Prefix) []netip.Prefix {
	nets := []netip.Prefix{p.Masked()}
	for _, e := range extra {
		if e.Addr().Is4() == p.Addr().Is4() {
			nets = append(nets, e.Masked())
		}
	}
	var out []netip.Prefix
	for i, n := range nets {
		covered := false
		for j, o := range nets {
			if i == j {
				continue
			}
			// n is dropped if a wider (or an earlier equal) prefix holds it.
			if o.Bits() <= n.Bits() && o.Contains(n.Addr()) && (o.Bits() < n.Bits() || j < i) {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, n)
		}
	}
	return out
}

// Add programs a's elements in one transaction (declaring the table first
// if it is missing or of another layout).
func (t *Tables) Add(ctx context.Context, a Attachment) error {
	els := elements(a)
	err := t.run(ctx, func(tx *knftables.Transaction) {
		for _, e := range els {
			tx.Add(e)
		}
	})
	if err != nil {
		return fmt.Errorf("nft: add attachment %s: %w", a.Key, err)
	}
	return nil
}

// Remove deletes a's elements in one transaction. Elements are added before
// they are deleted, so a missing element (a repeated DEL) is not an error.
func (t *Tables) Remove(ctx context.Context, a Attachment) error {
	els := elements(a)
	err := t.run(ctx, func(tx *knftables.Transaction) {
		for _, e := range els {
			tx.Add(e)
		}
		for _, e := range els {
			tx.Delete(&knftables.Element{Set: e.Set, Map: e.Map, Key: e.Key})
		}
	})
	if err != nil {
		return fmt.Errorf("nft: remove attachment %s: %w", a.Key, err)
	}
	return nil
}

// Ensure declares the whole table, rewriting every static rule, in one
// transaction: it heals a table damaged by hand and upgrades an old layout.
func (t *Tables) Ensure(ctx context.Context) error {
	if err := t.full(ctx, func(*knftables.Transaction) {}); err != nil {
		return fmt.Errorf("nft: ensure table: %w", err)
	}
	return nil
}

// run applies change on the fast path, falling back to a full declaration.
func (t *Tables) run(ctx context.Context, change func(*knftables.Transaction)) error {
	tx := t.nft.NewTransaction()
	tx.Add(layoutMarker())
	change(tx)
	if err := t.nft.Run(ctx, tx); err == nil {
		return nil
	}
	return t.full(ctx, change)
}

// full applies change together with a declaration of the whole table, and
// drops marker sets of older layouts.
func (t *Tables) full(ctx context.Context, change func(*knftables.Transaction)) error {
	tx := t.nft.NewTransaction()
	declare(tx)
	if names, err := t.nft.List(ctx, "sets"); err == nil {
		for _, n := range names {
			if strings.HasPrefix(n, "layout-") && n != layoutSet {
				tx.Delete(&knftables.Set{Name: n})
			}
		}
	}
	change(tx)
	return t.nft.Run(ctx, tx)
}

// Check verifies that every element of a is present with the right value.
func (t *Tables) Check(ctx context.Context, a Attachment) error {
	have := map[string]map[string]string{} // set/map → key → value
	for _, e := range elements(a) {
		name := e.Set + e.Map
		if _, ok := have[name]; !ok {
			typ := "set"
			if e.Map != "" {
				typ = "map"
			}
			els, err := t.nft.ListElements(ctx, typ, name)
			if err != nil {
				return fmt.Errorf("nft: list %s %s: %w", typ, name, err)
			}
			have[name] = map[string]string{}
			for _, x := range els {
				have[name][normKey(x.Key)] = normKey(x.Value)
			}
		}
		v, ok := have[name][normKey(e.Key)]
		if !ok {
			return fmt.Errorf("nft: %s has no element %s for attachment %s", name, strings.Join(e.Key, " . "), a.Key)
		}
		if e.Map != "" && v != normKey(e.Value) {
			return fmt.Errorf("nft: %s element %s maps to %s, want %s", name, strings.Join(e.Key, " . "), v, strings.Join(e.Value, " . "))
		}
	}
	return nil
}

var protoNums = map[string]string{"6": "tcp", "17": "udp", "132": "sctp"}

func normKey(k []string) string {
	out := make([]string, len(k))
	for i, s := range k {
		if p, ok := protoNums[s]; ok {
			s = p
		}
		if s == "0.0.0.0/0" || s == "::/0" {
			s = "*"
		}
		out[i] = s
	}
	return strings.Join(out, " . ")
}

// Keys returns the attachment keys that own any element in the table
// (the comments of all elements). Used to find elements a crash left.
func (t *Tables) Keys(ctx context.Context) (map[string]bool, error) {
	out := map[string]bool{}
	for _, s := range sets {
		if err := t.collect(ctx, "set", s.Name, out); err != nil {
			return nil, err
		}
	}
	for _, m := range maps {
		if err := t.collect(ctx, "map", m.Name, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (t *Tables) collect(ctx context.Context, typ, name string, out map[string]bool) error {
	els, err := t.nft.ListElements(ctx, typ, name)
	if knftables.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("nft: list %s %s: %w", typ, name, err)
	}
	for _, e := range els {
		if e.Comment != nil {
			out[*e.Comment] = true
		}
	}
	return nil
}

// execNFT is a knftables.Interface whose Run pipes the transaction to one
// `nft -f -` exec and nothing else. knftables.New runs `nft --version` and
// one or two `nft --check` probes before the first real transaction; a CNI
// plugin is a new process per call, so those probes would triple the cost
// of every ADD and DEL (see README.md for the numbers). The List methods,
// needed only by CHECK and GC, go through a full knftables.New interface
// created on first use.
type execNFT struct {
	*knftables.Fake // only for NewTransaction; never Run
	path            string
	once            sync.Once
	full            knftables.Interface
	fullErr         error
}

// NewExec returns the Datapath for the real kernel, through the nft binary.
func NewExec() (*Tables, error) {
	path, err := exec.LookPath("nft")
	if err != nil {
		return nil, fmt.Errorf("nft: %w", err)
	}
	return New(&execNFT{Fake: knftables.NewFake(knftables.InetFamily, TableName), path: path}), nil
}

func (e *execNFT) Run(ctx context.Context, tx *knftables.Transaction) error {
	cmd := exec.CommandContext(ctx, e.path, "-f", "-")
	cmd.Stdin = strings.NewReader(tx.String())
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("nft -f: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (e *execNFT) Check(ctx context.Context, tx *knftables.Transaction) error {
	cmd := exec.CommandContext(ctx, e.path, "--check", "-f", "-")
	cmd.Stdin = strings.NewReader(tx.String())
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("nft --check: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (e *execNFT) real() (knftables.Interface, error) {
	e.once.Do(func() { e.full, e.fullErr = knftables.New(knftables.InetFamily, TableName) })
	return e.full, e.fullErr
}

func (e *execNFT) List(ctx context.Context, objectType string) ([]string, error) {
	r, err := e.real()
	if err != nil {
		return nil, err
	}
	return r.List(ctx, objectType)
}

func (e *execNFT) ListRules(ctx context.Context, chain string) ([]*knftables.Rule, error) {
	r, err := e.real()
	if err != nil {
		return nil, err
	}
	return r.ListRules(ctx, chain)
}

func (e *execNFT) ListElements(ctx context.Context, objectType, name string) ([]*knftables.Element, error) {
	r, err := e.real()
	if err != nil {
		return nil, err
	}
	return r.ListElements(ctx, objectType, name)
}

func (e *execNFT) ListCounters(ctx context.Context) ([]*knftables.Counter, error) {
	r, err := e.real()
	if err != nil {
		return nil, err
	}
	return r.ListCounters(ctx)
}

func (e *execNFT) ListAll(ctx context.Context) (map[string][]string, error) {
	r, err := e.real()
	if err != nil {
		return nil, err
	}
	return r.ListAll(ctx)
}

// Probe checks that nft works and may change this namespace's ruleset
// (used by STATUS). It changes nothing.
func Probe(ctx context.Context) error {
	d, err := NewExec()
	if err != nil {
		return err
	}
	tx := d.nft.NewTransaction()
	declare(tx)
	return d.nft.Check(ctx, tx)
}

// SortedDump returns the lines of a Fake's dump, sorted, for tests.
func SortedDump(f *knftables.Fake) string {
	lines := strings.Split(strings.TrimSpace(f.Dump()), "\n")
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// Sweep deletes, in one transaction, every element whose comment starts
// with prefix and whose key (the comment after prefix) keep rejects: the
// elements of attachments that no longer exist.
func (t *Tables) Sweep(ctx context.Context, prefix string, keep func(key string) bool) error {
	tx := t.nft.NewTransaction()
	n := 0
	for _, s := range sets {
		els, err := t.nft.ListElements(ctx, "set", s.Name)
		if knftables.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("nft: list set %s: %w", s.Name, err)
		}
		n += sweepInto(tx, els, prefix, keep, s.Name, "")
	}
	for _, m := range maps {
		els, err := t.nft.ListElements(ctx, "map", m.Name)
		if knftables.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("nft: list map %s: %w", m.Name, err)
		}
		n += sweepInto(tx, els, prefix, keep, "", m.Name)
	}
	if n == 0 {
		return nil
	}
	if err := t.nft.Run(ctx, tx); err != nil {
		return fmt.Errorf("nft: sweep: %w", err)
	}
	return nil
}

func sweepInto(tx *knftables.Transaction, els []*knftables.Element, prefix string, keep func(string) bool, set, mp string) int {
	n := 0
	for _, e := range els {
		if e.Comment == nil {
			continue
		}
		key, ok := strings.CutPrefix(*e.Comment, prefix)
		if !ok || keep(key) {
			continue
		}
		tx.Delete(&knftables.Element{Set: set, Map: mp, Key: e.Key})
		n++
	}
	return n
}
