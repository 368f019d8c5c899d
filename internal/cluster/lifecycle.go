package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/podnet/podnet/internal/agent"
	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/netns"
	"github.com/podnet/podnet/internal/store"
	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// RecordFile is the cluster's record inside its directory.
const RecordFile = "cluster.json"

// Record is everything a cluster is made of, written to its directory
// before anything is created, so Delete can undo a partial Create.
type Record struct {
	Topology Topology `json:"topology"`
	Dir      string   `json:"dir"`
	Binary   string   `json:"binary"`
	Server   Proc     `json:"server"`
	Agents   []Proc   `json:"agents"`
	// Etcd are the external etcd's members (none with the embedded store).
	Etcd []Proc `json:"etcd,omitempty"`
	// OutsideDNS is the LAN's DNS server on the outside host (`podnet dns`
	// with a hosts file and a zone); the nodes' DNS servers forward to it.
	OutsideDNS Proc      `json:"outsideDNS,omitempty"`
	CreatedAt  time.Time `json:"createdAt"`
}

// Entry is the record's context-file entry.
func (r *Record) Entry() Entry {
	e := Entry{
		Name:          r.Topology.Spec.Name,
		EtcdEndpoints: r.Topology.EtcdEndpoints(),
		NetNS:         r.Server.NetNS,
		Dir:           r.Dir,
		Backend:       r.Topology.Spec.Backend,
	}
	for _, h := range r.Topology.Nodes() {
		e.Nodes = append(e.Nodes, NodeEntry{Name: h.Name, NetNS: h.NetNS, IP: h.IP().String()})
	}
	return e
}

// Agent returns the named node's agent process, or nil.
func (r *Record) Agent(node string) *Proc {
	for i := range r.Agents {
		if r.Agents[i].Name == node {
			return &r.Agents[i]
		}
	}
	return nil
}

// StoreConfig says how to reach the cluster's store from the caller's
// namespace.
func (r *Record) StoreConfig() store.ClientConfig {
	return store.ClientConfig{Endpoints: r.Topology.EtcdEndpoints(), NetNS: r.Server.NetNS}
}

// NodeDir is where a node's files live: its conflist and CNI state.
func (r *Record) NodeDir(node string) string { return filepath.Join(r.Dir, "nodes", node) }

// EtcdMember returns the named external etcd member's process, or nil.
func (r *Record) EtcdMember(name string) *Proc {
	for i := range r.Etcd {
		if r.Etcd[i].Name == name {
			return &r.Etcd[i]
		}
	}
	return nil
}

// procs lists every long-running process of the cluster: the etcd
// members, the server, the agents.
func (r *Record) procs() []*Proc {
	var out []*Proc
	for i := range r.Etcd {
		out = append(out, &r.Etcd[i])
	}
	out = append(out, &r.Server)
	if r.OutsideDNS.Name != "" {
		out = append(out, &r.OutsideDNS)
	}
	for i := range r.Agents {
		out = append(out, &r.Agents[i])
	}
	return out
}

// AgentStateDir is the --state-dir of every agent; each keeps its pods
// under <AgentStateDir>/<node>/pods.
func (r *Record) AgentStateDir() string { return filepath.Join(r.Dir, "agent") }

// LoadRecord reads a cluster's record from its directory.
func LoadRecord(dir string) (*Record, error) {
	b, err := os.ReadFile(filepath.Join(dir, RecordFile))
	if err != nil {
		return nil, fmt.Errorf("cluster record: %w", err)
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("cluster record %s: %w", filepath.Join(dir, RecordFile), err)
	}
	return &r, nil
}

func (r *Record) save() error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	p := filepath.Join(r.Dir, RecordFile)
	if err := os.WriteFile(p+".tmp", b, 0o644); err != nil {
		return fmt.Errorf("cluster record: %w", err)
	}
	return os.Rename(p+".tmp", p)
}

// EtcdBinaryName is the external etcd's server binary, looked up in PATH.
const EtcdBinaryName = "etcd"

// NewRecord plans a cluster: topology, directory and process command lines.
// binary is the podnet binary; podnet-cni must sit next to it. An external
// etcd (Spec.EtcdMembers) needs `etcd` in PATH.
func NewRecord(spec Spec, parent, binary string) (*Record, error) {
	spec.Default()
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if parent == "" {
		parent = ClustersDir()
	}
	parent, err := filepath.Abs(parent)
	if err != nil {
		return nil, err
	}
	r := &Record{Topology: Plan(spec), Dir: filepath.Join(parent, spec.Name), Binary: binary}
	t := &r.Topology
	cp := t.Host(RoleControlPlane)
	ep := strings.Join(t.EtcdEndpoints(), ",")
	r.Server = Proc{
		Name: "server", NetNS: cp.NetNS,
		Log: filepath.Join(r.Dir, "server.log"), PIDFile: filepath.Join(r.Dir, "server.pid"),
	}
	if spec.EtcdMembers == 0 {
		r.Server.Args = []string{binary, "server",
			"--data-dir", filepath.Join(r.Dir, "etcd"),
			"--listen-client-url", ep,
			"--listen-peer-url", "http://127.0.0.1:2380",
		}
	} else {
		etcd, err := exec.LookPath(EtcdBinaryName)
		if err != nil {
			return nil, fmt.Errorf("--etcd-members %d: no %q in PATH: install Debian's etcd-server (apt-get install etcd-server): %w", spec.EtcdMembers, EtcdBinaryName, err)
		}
		if etcd, err = filepath.Abs(etcd); err != nil {
			return nil, err
		}
		r.Etcd = etcdProcs(r, etcd)
		// Only the controllers: the store is the members'.
		r.Server.Args = []string{binary, "server", "--etcd-endpoints", ep}
	}
	r.Server.Args = append(r.Server.Args, "--backend", spec.Backend, "--cluster-cidr", spec.ClusterCIDR, "--lb-range", spec.LBRange)
	if spec.ServiceCIDR != "" {
		r.Server.Args = append(r.Server.Args, "--service-cluster-ip-range", spec.ServiceCIDR)
	}
	if spec.NodePortRange != "" {
		r.Server.Args = append(r.Server.Args, "--service-node-port-range", spec.NodePortRange)
	}
	if spec.PodEvictionTimeout > 0 {
		r.Server.Args = append(r.Server.Args, "--pod-eviction-timeout", spec.PodEvictionTimeout.String())
	}
	if out := t.Host(RoleOutside); out != nil {
		d := r.OutsideDir()
		r.OutsideDNS = Proc{Name: "outside-dns", NetNS: out.NetNS,
			Args: []string{binary, "dns", "-conf", filepath.Join(d, "Corefile"), "-quiet"},
			Log:  filepath.Join(d, "dns.log"), PIDFile: filepath.Join(d, "dns.pid")}
	}
	for _, h := range t.Nodes() {
		r.Agents = append(r.Agents, r.agentProc(h))
	}
	return r, nil
}

// OutsideDir holds the outside host's DNS server: its Corefile, hosts
// file, zone file lan.db, and the resolv.conf nodes forward with.
func (r *Record) OutsideDir() string { return filepath.Join(r.Dir, "outside") }

// OutsideDNSZone is the zone the outside DNS server is authoritative for.
const OutsideDNSZone = "lan"

// writeOutsideDNS writes the outside DNS server's files: the hosts file
// names the LAN's hosts (outside, the control plane, the nodes), the zone
// lan holds outside.lan and www.lan; every other name fails at once
// (SERVFAIL), so nothing ever leaves the cluster's namespaces.
func (r *Record) writeOutsideDNS() error {
	out := r.Topology.Host(RoleOutside)
	if out == nil {
		return nil
	}
	d := r.OutsideDir()
	if err := os.MkdirAll(d, 0o755); err != nil {
		return err
	}
	ip := out.IP().String()
	var hosts strings.Builder
	fmt.Fprintf(&hosts, "%s\toutside\n", ip)
	if cp := r.Topology.Host(RoleControlPlane); cp != nil {
		fmt.Fprintf(&hosts, "%s\tcontrol-plane\n", cp.IP())
	}
	for _, h := range r.Topology.Nodes() {
		fmt.Fprintf(&hosts, "%s\t%s\n", h.IP(), h.Name)
	}
	zone := fmt.Sprintf(`$ORIGIN %[1]s.
@        3600 IN SOA ns.%[1]s. hostmaster.%[1]s. 1 7200 1800 86400 30
@        3600 IN NS  ns.%[1]s.
ns       3600 IN A   %[2]s
outside  3600 IN A   %[2]s
www      3600 IN CNAME outside
`, OutsideDNSZone, ip)
	corefile := fmt.Sprintf(`.:53 {
    bind %[1]s
    errors
    hosts %[2]s/hosts {
        fallthrough
    }
    file %[2]s/lan.db %[3]s
}
`, ip, d, OutsideDNSZone)
	for name, data := range map[string]string{"hosts": hosts.String(), "lan.db": zone, "Corefile": corefile, "upstream.conf": "nameserver " + ip + "\n"} {
		if err := os.WriteFile(filepath.Join(d, name), []byte(data), 0o644); err != nil {
			return fmt.Errorf("outside dns: %w", err)
		}
	}
	return nil
}

// agentProc plans the agent of node host h.
func (r *Record) agentProc(h Host) Proc {
	nd := r.NodeDir(h.Name)
	p := Proc{
		Name: h.Name, NetNS: h.NetNS,
		Args: []string{r.Binary, "agent",
			"--node-name", h.Name,
			"--node-ip", h.IP().String(),
			"--netns", h.NetNS,
			"--etcd-endpoints", strings.Join(r.Topology.EtcdEndpoints(), ","),
			"--state-dir", r.AgentStateDir(),
			"--cni-conf-dir", filepath.Join(nd, "net.d"),
			"--cni-bin-dir", filepath.Dir(r.Binary),
			"--cni-data-dir", filepath.Join(nd, "cni"),
		},
		Log: filepath.Join(nd, "agent.log"), PIDFile: filepath.Join(nd, "agent.pid"),
	}
	if r.OutsideDNS.Name != "" {
		p.Args = append(p.Args, "--dns-upstream", filepath.Join(r.OutsideDir(), "upstream.conf"))
	}
	if v := r.Topology.Spec.CNIVersion; v != "" {
		p.Args = append(p.Args, "--cni-version", v)
	}
	if d := r.Topology.Spec.NodeLeaseTTL; d > 0 {
		p.Args = append(p.Args, "--node-lease-ttl", d.String())
	}
	return p
}

// etcdProcs plans the external etcd's members: each in its own host on
// the underlay, clients and peers on its address, data and log in the
// cluster directory.
func etcdProcs(r *Record, bin string) []Proc {
	t := &r.Topology
	var initial []string
	for _, h := range t.EtcdHosts() {
		initial = append(initial, fmt.Sprintf("%s=http://%s", h.Name, netip.AddrPortFrom(h.IP(), EtcdPeerPort)))
	}
	var out []Proc
	for _, h := range t.EtcdHosts() {
		dir := r.EtcdDir(h.Name)
		client := fmt.Sprintf("http://%s", netip.AddrPortFrom(h.IP(), EtcdPort))
		peer := fmt.Sprintf("http://%s", netip.AddrPortFrom(h.IP(), EtcdPeerPort))
		out = append(out, Proc{
			Name: h.Name, NetNS: h.NetNS,
			Args: []string{bin,
				"--name", h.Name,
				"--data-dir", filepath.Join(dir, "data"),
				"--listen-client-urls", client, "--advertise-client-urls", client,
				"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
				"--initial-cluster", strings.Join(initial, ","),
				"--initial-cluster-state", "new",
				"--initial-cluster-token", "podnet-" + t.Spec.Name,
				"--logger", "zap", "--log-outputs", "stderr",
			},
			Log: filepath.Join(dir, "etcd.log"), PIDFile: filepath.Join(dir, "etcd.pid"),
		})
	}
	return out
}

// EtcdDir is where an external etcd member keeps its data, log and pid.
func (r *Record) EtcdDir(member string) string { return filepath.Join(r.Dir, "etcd", member) }

// CreateOptions tune Create.
type CreateOptions struct {
	// Progress receives one line per step.
	Progress io.Writer
	Logger   *slog.Logger
	// Timeout bounds the whole creation (default 2 minutes).
	Timeout time.Duration
	Kernel  Kernel
}

// Create builds the planned cluster: namespaces and cables, the control
// plane, then every node's agent, and waits until every node is Ready.
// On failure it removes everything it made.
func Create(ctx context.Context, r *Record, o CreateOptions) (err error) {
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Kernel == nil {
		o.Kernel = HostKernel{}
	}
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	t := &r.Topology
	name := t.Spec.Name
	if left := leftovers(r); len(left) > 0 {
		return fmt.Errorf("cluster %q already exists (%s); delete it first: podnet cluster delete --name %s", name, strings.Join(left, ", "), name)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(r.Binary), "podnet-cni")); err != nil {
		return fmt.Errorf("podnet-cni must sit next to %s: %w", r.Binary, err)
	}
	if err := os.MkdirAll(r.Dir, 0o755); err != nil {
		return fmt.Errorf("cluster dir: %w", err)
	}
	defer func() {
		if err != nil {
			fmt.Fprintf(o.Progress, " ✗ %v\n   removing what was made...\n", err)
			if derr := Delete(r, o.Kernel); derr != nil {
				err = errors.Join(err, fmt.Errorf("clean-up: %w", derr))
			}
		}
	}()
	r.CreatedAt = time.Now().UTC()
	for _, p := range r.procs() {
		if err := os.MkdirAll(filepath.Dir(p.Log), 0o755); err != nil {
			return err
		}
	}
	if err := r.save(); err != nil {
		return err
	}
	subnets := ""
	if t.Spec.TwoSubnets {
		subnets = ", two subnets joined by a router"
	}
	storeKind := "embedded etcd"
	if len(r.Etcd) > 0 {
		storeKind = fmt.Sprintf("external etcd of %d members", len(r.Etcd))
	}
	fmt.Fprintf(o.Progress, "Creating cluster %q: %d nodes, backend %s%s, %s\n", name, t.Spec.Nodes, t.Spec.Backend, subnets, storeKind)
	start := time.Now()
	step := func(format string, args ...any) {
		fmt.Fprintf(o.Progress, " ✓ %-62s %5.1fs\n", fmt.Sprintf(format, args...), time.Since(start).Seconds())
	}

	if err := Build(o.Kernel, t); err != nil {
		return err
	}
	var nets []string
	for _, s := range t.Switches {
		nets = append(nets, s.Subnet.String())
	}
	step("%d namespaces, underlay %s", len(t.Namespaces()), strings.Join(nets, " + "))

	cli, err := store.Connect(r.StoreConfig())
	if err != nil {
		return err
	}
	defer cli.Close()
	s := store.New(cli)
	if len(r.Etcd) > 0 {
		if err := startEtcd(ctx, r, cli); err != nil {
			return err
		}
		step("etcd: %d members at %s", len(r.Etcd), strings.Join(t.EtcdEndpoints(), ","))
	}
	if _, err := r.Server.Start(); err != nil {
		return err
	}
	if err := waitFor(ctx, "control plane", func(ctx context.Context) (bool, error) {
		if r.Server.Gone() {
			return false, fmt.Errorf("podnet server %s: %s", ended(&r.Server), LogTail(r.Server.Log))
		}
		_, ok, err := s.ClusterConfig(ctx)
		return err == nil && ok, nil
	}); err != nil {
		return err
	}
	if len(r.Etcd) > 0 {
		step("control plane %s: controllers", t.Host(RoleControlPlane).NetNS)
	} else {
		step("control plane %s: etcd at %s", t.Host(RoleControlPlane).NetNS, t.EtcdEndpoint())
	}

	if r.OutsideDNS.Name != "" {
		if err := r.writeOutsideDNS(); err != nil {
			return err
		}
		if _, err := r.OutsideDNS.Start(); err != nil {
			return err
		}
		step("outside DNS server at %s:53 (zone %s)", t.Host(RoleOutside).IP(), OutsideDNSZone)
	}
	for i := range r.Agents {
		if _, err := r.Agents[i].Start(); err != nil {
			return err
		}
	}
	return startedNodesReady(ctx, r, s, t.Nodes(), step)
}

// startedNodesReady waits until the started agents of hosts have their
// nodes Ready, calling step for each; it fails at once when an agent exits.
func startedNodesReady(ctx context.Context, r *Record, s *store.Store, hosts []Host, step func(string, ...any)) error {
	ready := map[string]bool{}
	nodeKind, _ := api.KindOf(&corev1.Node{})
	if err := waitFor(ctx, "nodes Ready", func(ctx context.Context) (bool, error) {
		for _, h := range hosts {
			if ready[h.Name] {
				continue
			}
			a := r.Agent(h.Name)
			if a.Gone() {
				return false, fmt.Errorf("agent of %s %s: %s", h.Name, ended(a), LogTail(a.Log))
			}
			ok, err := nodeReady(ctx, s, nodeKind, r, h.Name)
			if err != nil {
				return false, err
			}
			if ok {
				ready[h.Name] = true
				step("node %s %s Ready", h.Name, h.IP())
			}
		}
		return len(ready) == len(hosts), nil
	}); err != nil {
		var waiting []string
		for _, h := range hosts {
			if !ready[h.Name] {
				waiting = append(waiting, h.Name+": "+LogTail(r.Agent(h.Name).Log))
			}
		}
		return fmt.Errorf("%w; not Ready: %s", err, strings.Join(waiting, "; "))
	}
	return nil
}

// startEtcd starts the external etcd's members and waits until every
// member serves with a leader elected, so a member that cannot start fails
// the create even though the others make a quorum.
func startEtcd(ctx context.Context, r *Record, cli *clientv3.Client) error {
	for i := range r.Etcd {
		if _, err := r.Etcd[i].Start(); err != nil {
			return err
		}
	}
	eps := r.Topology.EtcdEndpoints()
	return waitFor(ctx, "etcd members", func(ctx context.Context) (bool, error) {
		for i := range r.Etcd {
			m := &r.Etcd[i]
			if m.Gone() {
				return false, fmt.Errorf("etcd member %s %s: %s", m.Name, ended(m), LogTail(m.Log))
			}
			if st, err := cli.Status(ctx, eps[i]); err != nil || st.Leader == 0 {
				return false, nil
			}
		}
		return true, nil
	})
}

// nodeReady: the agent registered (its conflist is written after
// registration) and the Node, if the agent publishes one, is Ready.
func nodeReady(ctx context.Context, s *store.Store, k *api.Kind, r *Record, node string) (bool, error) {
	if _, err := os.Stat(filepath.Join(r.NodeDir(node), "net.d", agent.ConfListName)); err != nil {
		return false, nil
	}
	o, err := s.Get(ctx, k, "", node)
	if err != nil {
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, nil // the store may be busy; try again
	}
	return api.NodeReady(o.(*corev1.Node)) == corev1.ConditionTrue, nil
}

func waitFor(ctx context.Context, what string, f func(context.Context) (bool, error)) error {
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ok, err := f(cctx)
		cancel()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ended says how a process that is no longer running ended: "exited
// (exit status 1)", "exited (signal: killed)", or "exited".
func ended(p *Proc) string {
	for range 20 { // Wait may lag behind the pid file check a moment
		if st := p.ExitStatus(); st != "" {
			return "exited (" + st + ")"
		}
		time.Sleep(5 * time.Millisecond)
	}
	return "exited"
}

// LogTail returns the last lines of a log, for error messages.
func LogTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log)"
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return strings.Join(lines, " | ")
}

// leftovers lists what of the cluster already exists.
func leftovers(r *Record) []string {
	var out []string
	for _, ns := range r.Topology.Namespaces() {
		if netns.Exists(ns) {
			out = append(out, "namespace "+ns)
		}
	}
	if _, err := os.Stat(filepath.Join(r.Dir, RecordFile)); err == nil {
		out = append(out, "record "+filepath.Join(r.Dir, RecordFile))
	}
	return out
}

var nodeNSSuffix = regexp.MustCompile(`^(sw|sw2|router|cp|outside|n[0-9]+|etcd[0-9]+)$`)

// clusterNamespaces lists the namespaces that exist and belong to the named
// cluster: exactly the names Plan gives, so cluster "a" never takes
// "podnet-a-b-n1" of cluster "a-b".
func clusterNamespaces(name string) []string {
	ents, _ := os.ReadDir(netns.Dir)
	pre := NetNSPrefix(name)
	var out []string
	for _, e := range ents {
		if s, ok := strings.CutPrefix(e.Name(), pre); ok && nodeNSSuffix.MatchString(s) {
			out = append(out, e.Name())
		}
	}
	return out
}

// podNamespaces reads the pod namespaces from the agents' on-disk records
// (of one node, or of all with node "*").
func podNamespaces(stateDir, node string) []string {
	recs, _ := filepath.Glob(filepath.Join(stateDir, node, "pods", "*", "pod.json"))
	var out []string
	for _, p := range recs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var rec struct {
			NetNS string `json:"netns"`
		}
		if json.Unmarshal(b, &rec) == nil && rec.NetNS != "" && filepath.Base(rec.NetNS) == rec.NetNS {
			out = append(out, rec.NetNS)
		}
	}
	return out
}

// Delete removes everything of the cluster: its processes (server, agents,
// shims, containers, anything running in its namespaces), pod namespaces
// and their /etc/netns entries, the cluster's namespaces (taking their
// links, routes and nftables tables along) and its directory. Missing
// pieces are fine; it can be repeated.
func Delete(r *Record, k Kernel) error {
	if k == nil {
		k = HostKernel{}
	}
	name := r.Topology.Spec.Name
	nss := uniq(append(r.Topology.Namespaces(), clusterNamespaces(name)...))
	pods := podNamespaces(r.AgentStateDir(), "*")
	var paths []string
	for _, ns := range append(append([]string{}, nss...), pods...) {
		if netns.Exists(ns) {
			paths = append(paths, netns.Path(ns))
		}
	}
	var errs []error
	// The server and agents first, so none starts a shim while shims die;
	// then the etcd members and the rest.
	for _, p := range append(append([]Proc{r.Server, r.OutsideDNS}, r.Agents...), r.Etcd...) {
		if p.Name != "" {
			p.Kill(syscall.SIGKILL)
		}
	}
	m := ProcessMatcher{NetNS: paths}
	if r.Dir != "" {
		m.Dir = r.Dir
	}
	if _, err := m.KillAll(10 * time.Second); err != nil {
		errs = append(errs, err)
	}
	for _, ns := range pods {
		if err := netns.Delete(ns); err != nil {
			errs = append(errs, err)
		}
		if err := os.RemoveAll(filepath.Join("/etc/netns", ns)); err != nil {
			errs = append(errs, err)
		}
	}
	if err := DeleteNamespaces(k, nss); err != nil {
		errs = append(errs, err)
	}
	if r.Dir != "" && filepath.Base(r.Dir) != name {
		errs = append(errs, fmt.Errorf("cluster dir %s: not removed: not named after the cluster", r.Dir))
	} else if r.Dir != "" {
		if err := os.RemoveAll(r.Dir); err != nil {
			errs = append(errs, fmt.Errorf("cluster dir: %w", err))
		}
	}
	return errors.Join(errs...)
}

func uniq(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// Status summarises a cluster from its processes and namespaces:
// Running, Degraded (some agent, the server or an etcd member down, e.g.
// "Degraded (3/3 agents, etcd 2/3 members)"), Stopped or Missing.
func Status(r *Record) string {
	if len(clusterNamespaces(r.Topology.Spec.Name)) == 0 {
		return "Missing"
	}
	alive := func(ps []Proc) int {
		n := 0
		for i := range ps {
			if ps[i].PID() != 0 {
				n++
			}
		}
		return n
	}
	up, etcd := alive(r.Agents), alive(r.Etcd)
	server := r.Server.PID() != 0
	switch {
	case server && up == len(r.Agents) && etcd == len(r.Etcd):
		return "Running"
	case !server && up == 0 && etcd == 0:
		return "Stopped"
	}
	var parts []string
	if !server {
		parts = append(parts, "server down")
	}
	parts = append(parts, fmt.Sprintf("%d/%d agents", up, len(r.Agents)))
	if etcd < len(r.Etcd) {
		parts = append(parts, fmt.Sprintf("etcd %d/%d members", etcd, len(r.Etcd)))
	}
	return "Degraded (" + strings.Join(parts, ", ") + ")"
}
