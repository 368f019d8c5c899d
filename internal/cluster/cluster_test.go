package cluster

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestSpecValidate(t *testing.T) {
	cases := []struct {
		spec Spec
		err  string
	}{
		{Spec{}, ""},
		{Spec{Name: "a-1", Nodes: 20, Backend: "host-gw"}, ""},
		{Spec{Name: "Bad"}, "--name"},
		{Spec{Name: "a-"}, "--name"},
		{Spec{Name: strings.Repeat("a", 25)}, "--name"},
		{Spec{Nodes: -1}, "--nodes"},
		{Spec{Nodes: 201}, "--nodes"},
		{Spec{Backend: "udp"}, "--backend"},
		{Spec{ClusterCIDR: "10.244.0.1/16"}, "--cluster-cidr"},
		{Spec{ClusterCIDR: "10.244.0.0/24"}, "--cluster-cidr"},
		{Spec{CNIVersion: "1.1.0"}, ""},
		{Spec{CNIVersion: "1.2.0"}, "--cni-version"},
	}
	for _, c := range cases {
		s := c.spec
		s.Default()
		err := s.Validate()
		if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%+v: got %v, want %q", c.spec, err, c.err)
		}
	}
}

func TestPlanNames(t *testing.T) {
	s := Spec{Name: "c", Nodes: 3}
	s.Default()
	tp := Plan(s)
	want := []string{"podnet-c-sw", "podnet-c-cp", "podnet-c-outside", "podnet-c-n1", "podnet-c-n2", "podnet-c-n3"}
	if got := tp.Namespaces(); !reflect.DeepEqual(got, want) {
		t.Fatalf("namespaces %v, want %v", got, want)
	}
	if ep := tp.EtcdEndpoint(); ep != "http://192.168.250.2:2379" {
		t.Errorf("etcd endpoint %s", ep)
	}
	for i, h := range tp.Nodes() {
		if h.Name != NodeName("c", i+1) || h.IP().String() != []string{"192.168.250.11", "192.168.250.12", "192.168.250.13"}[i] || len(h.Routes) != 0 {
			t.Errorf("node %d: %+v", i, h)
		}
	}
	for _, name := range []string{"outside", "cp", "control-plane", "c-n2", "n2", "podnet-c-n2", "sw"} {
		if _, ok := tp.Lookup(name); !ok {
			t.Errorf("Lookup(%q) failed", name)
		}
	}
	if ns, _ := tp.Lookup("n2"); ns != "podnet-c-n2" {
		t.Errorf("Lookup(n2) = %s", ns)
	}
	if _, ok := tp.Lookup("router"); ok {
		t.Errorf("one subnet has no router")
	}
	// Names of links fit the kernel's 15 characters.
	s.Nodes = MaxNodes
	for _, h := range Plan(s).Hosts {
		for _, c := range h.Ifaces {
			if len(c.Name) > 15 || len(c.Port) > 15 || !strings.HasPrefix(c.Name, "pn") || !strings.HasPrefix(c.Port, "pn") {
				t.Errorf("link names %q/%q", c.Name, c.Port)
			}
		}
	}
}

func TestPlanTwoSubnets(t *testing.T) {
	s := Spec{Name: "c", Nodes: 3, TwoSubnets: true}
	s.Default()
	tp := Plan(s)
	n := tp.Nodes()
	if n[0].IP().String() != "192.168.250.11" || n[1].IP().String() != "192.168.251.12" || n[2].IP().String() != "192.168.250.13" {
		t.Fatalf("node addresses %v %v %v", n[0].IP(), n[1].IP(), n[2].IP())
	}
	if r := n[1].Routes; len(r) != 1 || r[0].Dst.String() != "192.168.250.0/24" || r[0].Via.String() != "192.168.251.1" {
		t.Errorf("n2 routes %+v", r)
	}
	if r := n[0].Routes; len(r) != 1 || r[0].Dst.String() != "192.168.251.0/24" || r[0].Via.String() != "192.168.250.1" {
		t.Errorf("n1 routes %+v", r)
	}
	rt := tp.Host(RoleRouter)
	if rt == nil || !rt.Forward || len(rt.Ifaces) != 2 || rt.Ifaces[1].Switch != "podnet-c-sw2" {
		t.Fatalf("router %+v", rt)
	}
	if len(tp.Host(RoleControlPlane).Routes) != 1 || len(tp.Host(RoleOutside).Routes) != 1 {
		t.Errorf("cp and outside need a route to the second subnet")
	}
}

// fakeKernel records calls and fails the one whose text contains failOn.
type fakeKernel struct {
	calls  []string
	failOn string
	ns     map[string]bool
}

func (k *fakeKernel) do(s string) error {
	k.calls = append(k.calls, s)
	if k.failOn != "" && strings.Contains(s, k.failOn) {
		return errors.New("injected")
	}
	return nil
}
func (k *fakeKernel) CreateNS(n string) error {
	if err := k.do("netns add " + n); err != nil {
		return err
	}
	k.ns[n] = true
	return nil
}
func (k *fakeKernel) DeleteNS(n string) error { delete(k.ns, n); return k.do("netns del " + n) }
func (k *fakeKernel) IP(a ...string) error    { return k.do("ip " + strings.Join(a, " ")) }
func (k *fakeKernel) Sysctl(ns, key, v string) error {
	return k.do("sysctl " + ns + " " + key + "=" + v)
}

func TestBuildCommands(t *testing.T) {
	s := Spec{Name: "c", Nodes: 2, TwoSubnets: true}
	s.Default()
	tp := Plan(s)
	k := &fakeKernel{ns: map[string]bool{}}
	if err := Build(k, &tp); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(k.calls, "\n")
	for _, want := range []string{
		"ip -n podnet-c-sw link add pnbr0 type bridge",
		"ip -n podnet-c-sw2 link set pnbr0 up",
		"ip -n podnet-c-router link add pneth1 type veth peer name pnp-rt netns podnet-c-sw2",
		"ip -n podnet-c-sw2 link set pnp-n2 master pnbr0 up",
		"ip -n podnet-c-n2 addr add 192.168.251.12/24 dev pneth0",
		"ip -n podnet-c-n2 route add 192.168.250.0/24 via 192.168.251.1",
		"ip -n podnet-c-cp route add 192.168.251.0/24 via 192.168.250.1",
		"sysctl podnet-c-router net/ipv4/ip_forward=1",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
}

func TestBuildRollsBack(t *testing.T) {
	s := Spec{Name: "c", Nodes: 3}
	s.Default()
	tp := Plan(s)
	k := &fakeKernel{ns: map[string]bool{}, failOn: "addr add 192.168.250.12"}
	if err := Build(k, &tp); err == nil || !strings.Contains(err.Error(), "c-n2") {
		t.Fatalf("want an error naming the host, got %v", err)
	}
	if len(k.ns) != 0 {
		t.Errorf("namespaces left after a failed build: %v", k.ns)
	}
}

func TestConfigFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "config")
	c, err := LoadConfig(path)
	if err != nil || len(c.Clusters) != 0 {
		t.Fatalf("missing file: %v %+v", err, c)
	}
	if e, err := c.Select("", path); e != nil || err != nil {
		t.Fatalf("empty select: %v %v", e, err)
	}
	put := func(name string) {
		if err := UpdateConfig(path, func(c *Config) error {
			c.Put(Entry{Name: name, EtcdEndpoints: []string{"http://x:2379"}, NetNS: "podnet-" + name + "-cp", Nodes: []NodeEntry{{Name: name + "-n1", NetNS: "podnet-" + name + "-n1"}}})
			c.CurrentCluster = name
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	put("b")
	put("a")
	c, err = LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.CurrentCluster != "a" || len(c.Clusters) != 2 || c.Clusters[0].Name != "a" {
		t.Fatalf("config %+v", c)
	}
	if e, _ := c.Select("", path); e == nil || e.Name != "a" {
		t.Errorf("current: %+v", e)
	}
	if e, _ := c.Select("b", path); e == nil || e.NodeNetNS("b-n1") != "podnet-b-n1" {
		t.Errorf("select b: %+v", e)
	}
	if _, err := c.Select("zz", path); err == nil || !strings.Contains(err.Error(), `"zz"`) {
		t.Errorf("unknown cluster: %v", err)
	}
	if err := UpdateConfig(path, func(c *Config) error { c.Remove("a"); return nil }); err != nil {
		t.Fatal(err)
	}
	c, _ = LoadConfig(path)
	if c.CurrentCluster != "" || len(c.Clusters) != 1 {
		t.Errorf("after remove: %+v", c)
	}
	if err := os.WriteFile(path, []byte("apiVersion: podnet.io/v1\nkind: Config\nclusterz: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(path); err == nil || !strings.Contains(err.Error(), "clusterz") {
		t.Errorf("unknown field: %v", err)
	}
}

func TestPlanExternalEtcd(t *testing.T) {
	s := Spec{Name: "c", Nodes: 2, EtcdMembers: 3, TwoSubnets: true}
	s.Default()
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	tp := Plan(s)
	want := []string{"podnet-c-sw", "podnet-c-sw2", "podnet-c-router", "podnet-c-cp", "podnet-c-outside",
		"podnet-c-etcd1", "podnet-c-etcd2", "podnet-c-etcd3", "podnet-c-n1", "podnet-c-n2"}
	if got := tp.Namespaces(); !reflect.DeepEqual(got, want) {
		t.Fatalf("namespaces %v, want %v", got, want)
	}
	eps := []string{"http://192.168.250.4:2379", "http://192.168.250.5:2379", "http://192.168.250.6:2379"}
	if got := tp.EtcdEndpoints(); !reflect.DeepEqual(got, eps) {
		t.Errorf("endpoints %v, want %v", got, eps)
	}
	for _, h := range tp.EtcdHosts() {
		if len(h.Routes) != 1 || h.Ifaces[0].Switch != "podnet-c-sw" || !strings.HasPrefix(h.Ifaces[0].Port, "pnp-e") {
			t.Errorf("etcd host %+v: want subnet A with a route to B", h)
		}
	}
	if len(tp.Nodes()) != 2 {
		t.Errorf("nodes %v", tp.Nodes())
	}
	if ns, ok := tp.Lookup("etcd2"); !ok || ns != "podnet-c-etcd2" {
		t.Errorf("Lookup(etcd2) = %s %v", ns, ok)
	}
	s.TwoSubnets, s.EtcdMembers = false, 0
	if tp = Plan(s); !reflect.DeepEqual(tp.EtcdEndpoints(), []string{"http://192.168.250.2:2379"}) {
		t.Errorf("embedded endpoints %v", tp.EtcdEndpoints())
	}
	for _, n := range []int{-1, MaxEtcdMembers + 1} {
		s.EtcdMembers = n
		if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "--etcd-members") {
			t.Errorf("etcd members %d: %v", n, err)
		}
	}
}

// fakeEtcdPath puts an `etcd` in a directory of PATH for NewRecord: a
// link to /bin/sh, so a test can also run it as a stand-in process.
func fakeEtcdPath(t *testing.T) string {
	bin := t.TempDir()
	p := filepath.Join(bin, EtcdBinaryName)
	if err := os.Symlink("/bin/sh", p); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	return p
}

func TestNewRecordExternalEtcd(t *testing.T) {
	etcd := fakeEtcdPath(t)
	parent := t.TempDir()
	r, err := NewRecord(Spec{Name: "c", Nodes: 2, EtcdMembers: 3}, parent, "/opt/podnet/podnet")
	if err != nil {
		t.Fatal(err)
	}
	eps := "http://192.168.250.4:2379,http://192.168.250.5:2379,http://192.168.250.6:2379"
	srv := strings.Join(r.Server.Args, " ")
	if !strings.Contains(srv, "server --etcd-endpoints "+eps) || strings.Contains(srv, "--data-dir") {
		t.Errorf("server args: %s", srv)
	}
	if r.Server.NetNS != "podnet-c-cp" {
		t.Errorf("server netns %s", r.Server.NetNS)
	}
	for i, a := range r.Agents {
		args := strings.Join(a.Args, " ")
		if !strings.Contains(args, "--etcd-endpoints "+eps) || !strings.Contains(args, "--netns podnet-c-n"+string(rune('1'+i))) {
			t.Errorf("agent args: %s", args)
		}
	}
	if len(r.Etcd) != 3 {
		t.Fatalf("etcd members %+v", r.Etcd)
	}
	m := r.Etcd[1]
	args := strings.Join(m.Args, " ")
	dir := filepath.Join(parent, "c", "etcd", "etcd2")
	for _, want := range []string{
		etcd + " --name etcd2 --data-dir " + dir + "/data",
		"--listen-client-urls http://192.168.250.5:2379",
		"--listen-peer-urls http://192.168.250.5:2380",
		"--initial-cluster etcd1=http://192.168.250.4:2380,etcd2=http://192.168.250.5:2380,etcd3=http://192.168.250.6:2380",
		"--initial-cluster-token podnet-c",
	} {
		if !strings.Contains(args, want) {
			t.Errorf("member args lack %q: %s", want, args)
		}
	}
	if m.NetNS != "podnet-c-etcd2" || m.Log != filepath.Join(dir, "etcd.log") || r.EtcdMember("etcd2") == nil {
		t.Errorf("member %+v", m)
	}
	e := r.Entry()
	if strings.Join(e.EtcdEndpoints, ",") != eps || e.NetNS != "podnet-c-cp" {
		t.Errorf("context entry %+v", e)
	}
	if sc := r.StoreConfig(); strings.Join(sc.Endpoints, ",") != eps {
		t.Errorf("store config %+v", sc)
	}

	// Embedded: the server holds the store; agents still get --netns.
	r, err = NewRecord(Spec{Name: "c", Nodes: 1}, parent, "/opt/podnet/podnet")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Etcd) != 0 || !strings.Contains(strings.Join(r.Server.Args, " "), "--listen-client-url http://192.168.250.2:2379") ||
		!strings.Contains(strings.Join(r.Agents[0].Args, " "), "--netns podnet-c-n1") {
		t.Errorf("embedded record: %+v", r)
	}
}

func TestNewRecordNoEtcd(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := NewRecord(Spec{Name: "c", EtcdMembers: 3}, t.TempDir(), "/opt/podnet/podnet")
	if err == nil || !strings.Contains(err.Error(), "install Debian's etcd-server") {
		t.Fatalf("want a clear error without etcd, got %v", err)
	}
}

// TestProcessMatcherEtcd: an etcd whose arguments point into the cluster
// directory is the cluster's; one elsewhere is not.
func TestProcessMatcherEtcd(t *testing.T) {
	etcd := fakeEtcdPath(t)
	dir := filepath.Join(t.TempDir(), "c")
	start := func(arg string) *exec.Cmd {
		// sh -c SCRIPT NAME: NAME stands for the data dir; "; :" keeps the
		// shell from exec'ing sleep.
		c := exec.Command(etcd, "-c", "sleep 30; :", arg)
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Process.Kill(); c.Wait() })
		return c
	}
	mine := start(filepath.Join(dir, "etcd", "etcd1", "data"))
	other := start(filepath.Join(t.TempDir(), "data"))
	m := ProcessMatcher{Dir: dir}
	var found []int
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if found = m.Find(); len(found) > 0 {
			break
		}
	}
	if !reflect.DeepEqual(found, []int{mine.Process.Pid}) {
		t.Fatalf("found %v, want only %d (not %d)", found, mine.Process.Pid, other.Process.Pid)
	}
	// (It may also kill a child the shell forked, before that exec'd.)
	if n, err := m.KillAll(5 * time.Second); err != nil || n < 1 {
		t.Fatalf("KillAll: %d %v", n, err)
	}
	if pids := m.Find(); len(pids) != 0 {
		t.Errorf("left after KillAll: %v", pids)
	}
	if err := other.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("the other etcd was touched: %v", err)
	}
}

func TestNewRecordCNIVersion(t *testing.T) {
	r, err := NewRecord(Spec{Name: "c", Nodes: 2, CNIVersion: "1.1.0"}, t.TempDir(), "/opt/podnet/podnet")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range r.Agents {
		if args := strings.Join(a.Args, " "); !strings.Contains(args, "--cni-version 1.1.0") {
			t.Errorf("agent args lack --cni-version: %s", args)
		}
	}
	r, err = NewRecord(Spec{Name: "c", Nodes: 1}, t.TempDir(), "/opt/podnet/podnet")
	if err != nil {
		t.Fatal(err)
	}
	if args := strings.Join(r.Agents[0].Args, " "); strings.Contains(args, "--cni-version") {
		t.Errorf("agent args without a version: %s", args)
	}
}

func TestSpecLBRange(t *testing.T) {
	for in, want := range map[string]string{
		"":                                "",
		"192.168.250.100/30":              "",
		"192.168.250.12-192.168.250.20":   "overlaps the hosts' addresses 192.168.250.1-192.168.250.13",
		"192.168.251.200-192.168.251.210": "outside host's segment",
		"bad":                             "--lb-range",
	} {
		s := Spec{LBRange: in}
		s.Default()
		err := s.Validate()
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("--lb-range %q: %v, want %q", in, err, want)
		}
	}
	r, err := NewRecord(Spec{Name: "c"}, t.TempDir(), "/opt/podnet/podnet")
	if err != nil || !strings.Contains(strings.Join(r.Server.Args, " "), "--lb-range "+DefaultLBRange) {
		t.Fatalf("server args %v %v", r.Server.Args, err)
	}
}
