package proxy_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/knftables"

	"github.com/podnet/podnet/internal/netns"
	"github.com/podnet/podnet/internal/nft"
	"github.com/podnet/podnet/internal/proxy"
	"github.com/podnet/podnet/internal/testutil"
)

// cost is what a sync cost: wall time, the test process's CPU (Go) and
// its children's (nft: user is parsing, sys the kernel's commit).
type cost struct {
	wall, goCPU, nftUser, nftSys time.Duration
}

func rusage(who int) (user, sys time.Duration) {
	var ru syscall.Rusage
	_ = syscall.Getrusage(who, &ru)
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

func measure(fn func()) cost {
	su, ss := rusage(syscall.RUSAGE_SELF)
	cu, cs := rusage(syscall.RUSAGE_CHILDREN)
	start := time.Now()
	fn()
	c := cost{wall: time.Since(start)}
	su2, ss2 := rusage(syscall.RUSAGE_SELF)
	cu2, cs2 := rusage(syscall.RUSAGE_CHILDREN)
	c.goCPU = su2 - su + ss2 - ss
	c.nftUser, c.nftSys = cu2-cu, cs2-cs
	return c
}

func (c cost) String() string {
	r := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	return fmt.Sprintf("wall %v; CPU: Go %v, nft user %v, nft sys (kernel) %v", r(c.wall), r(c.goCPU), r(c.nftUser), r(c.nftSys))
}

func scaleService(i, eps int) (*corev1.Service, *discoveryv1.EndpointSlice) {
	ip := netip.AddrFrom4([4]byte{10, 96 + byte(i>>16), byte(i >> 8), byte(i)}).String()
	name := fmt.Sprintf("svc-%d", i)
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "scale", Name: name},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: ip, ClusterIPs: []string{ip},
			Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}
	return s, scaleSlice(s, i, eps, 0)
}

// scaleSlice has eps endpoints; gen shifts their addresses (a change).
func scaleSlice(s *corev1.Service, i, eps, gen int) *discoveryv1.EndpointSlice {
	pn, proto, port := "http", corev1.ProtocolTCP, int32(8080)
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: s.Namespace, Name: s.Name + "-1", Labels: map[string]string{proxy.LabelServiceName: s.Name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &pn, Protocol: &proto, Port: &port}},
	}
	yes, no := true, false
	node := "n1" // all local: a hairpin element per endpoint, the worst case
	if v := os.Getenv("PODNET_PROXY_SCALE_NODE"); v != "" {
		node = v
	}
	for j := 0; j < eps; j++ {
		k := i*eps + j + gen
		a := netip.AddrFrom4([4]byte{10, 128 + byte(k>>16), byte(k >> 8), byte(k)})
		sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{Addresses: []string{a.String()},
			Conditions: discoveryv1.EndpointConditions{Ready: &yes, Serving: &yes, Terminating: &no}, NodeName: &node})
	}
	return sl
}

// TestSyncScale programs N Services × 10 endpoints into a real table (N =
// $PODNET_PROXY_SCALE, default 1000) and reports where a full sync, a
// one-Service change and a restart's first sync spend their time. With
// PODNET_PROXY_SCALE_BUDGET=1 it enforces the goals at 10k: full
// sync ≤ 1 s, one change ≤ 50 ms.
func TestSyncScale(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.LookTool(t, "nft", "nftables")
	n := 1000
	if v := os.Getenv("PODNET_PROXY_SCALE"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			t.Fatalf("PODNET_PROXY_SCALE=%q: %v", v, err)
		}
	}
	const eps = 10
	ns, path := testutil.NewNS(t)
	ctx := context.Background()
	if err := netns.Do(path, func() error {
		dp, err := nft.NewExec()
		if err != nil {
			return err
		}
		return dp.Ensure(ctx)
	}); err != nil {
		t.Fatal(err)
	}
	// PODNET_PROXY_SCALE_BACKEND=knftables measures the generic path (the
	// one before kernel.go: knftables' nft -f and List calls);
	// PODNET_PROXY_NFT_TEXT=1 the batched nft -f writer.
	var nftIf knftables.Interface
	if os.Getenv("PODNET_PROXY_SCALE_BACKEND") == "knftables" {
		nftIf = newNSNFT(t, path)
	}
	mk := func() *proxy.Proxier {
		return proxy.New(proxy.Config{NodeName: "n1", ClusterCIDR: netip.MustParsePrefix("10.128.0.0/9"),
			ServiceCIDR: netip.MustParsePrefix("10.96.0.0/12"), NetNS: path, NFT: nftIf})
	}
	feed := func(p *proxy.Proxier) {
		for i := 0; i < n; i++ {
			s, sl := scaleService(i, eps)
			p.SetService(s)
			p.SetSlice(sl)
		}
	}
	p := mk()
	feed(p)
	var st proxy.Stats
	var err error
	sync := func(p *proxy.Proxier) cost {
		return measure(func() { st, err = p.Sync(ctx) })
	}
	full := sync(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("full sync of %d Services × %d endpoints: %s", n, eps, full)
	if st.Services != n || st.Endpoints != n*eps {
		t.Fatalf("stats %+v, want %d Services and %d endpoints", st, n, n*eps)
	}
	out := testutil.Run(t, "ip", "netns", "exec", ns, "nft", "list", "map", "inet", nft.TableName, proxy.MapServiceIPs)
	if c := strings.Count(out, "goto svc-"); c != n {
		t.Fatalf("service-ips has %d entries, want %d", c, n)
	}
	if n <= 3 {
		t.Logf("table:\n%s", testutil.Run(t, "ip", "netns", "exec", ns, "nft", "list", "table", "inet", nft.TableName))
	}

	// One Service changes one endpoint.
	var one cost
	for gen := 1; gen <= 5; gen++ {
		s, _ := scaleService(n/2, eps)
		p.SetSlice(scaleSlice(s, n/2, eps, gen*n*eps))
		c := sync(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Changed != 1 {
			t.Fatalf("one change: %d Services changed", st.Changed)
		}
		if gen == 1 || c.wall < one.wall {
			one = c
		}
		t.Logf("one Service changed: %s", c)
	}

	// A restart over the same table: a pure diff.
	p2 := mk()
	feed(p2)
	s, _ := scaleService(n/2, eps)
	p2.SetSlice(scaleSlice(s, n/2, eps, 5*n*eps))
	restart := sync(p2)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("restart's first sync (%d changed): %s", st.Changed, restart)
	if st.Changed != 0 {
		t.Errorf("restart with unchanged inputs changed %d Services", st.Changed)
	}
	if os.Getenv("PODNET_PROXY_SCALE_BUDGET") != "" {
		if full.wall > time.Second {
			t.Errorf("full sync %v, goal ≤ 1s", full.wall)
		}
		if one.wall > 50*time.Millisecond {
			t.Errorf("one change %v (best of 5), goal ≤ 50ms", one.wall)
		}
	}
}

// The netlink writer programs exactly what the nft text writer does: the
// same Services through each, in two namespaces, list identically (also
// after a round of changes and deletions).
func TestNetlinkWriterEqualsText(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.LookTool(t, "nft", "nftables")
	ctx := context.Background()
	type side struct {
		ns string
		p  *proxy.Proxier
	}
	var sides []side
	for _, text := range []bool{false, true} {
		ns, path := testutil.NewNS(t)
		if text {
			t.Setenv("PODNET_PROXY_NFT_TEXT", "1")
		}
		p := proxy.New(proxy.Config{NodeName: "n1", ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16"),
			ServiceCIDR: netip.MustParsePrefix("10.96.0.0/12"), NetNS: path})
		if _, err := p.Sync(ctx); err != nil { // the backend is chosen here
			t.Fatal(err)
		}
		sides = append(sides, side{ns, p})
	}
	mk := func(i int, mut func(*corev1.Service)) (*corev1.Service, *discoveryv1.EndpointSlice) {
		s, sl := scaleService(i, 3)
		s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53, TargetPort: intstr.FromInt32(53)})
		pn, udp, port := "dns", corev1.ProtocolUDP, int32(53)
		sl.Ports = append(sl.Ports, discoveryv1.EndpointPort{Name: &pn, Protocol: &udp, Port: &port})
		if mut != nil {
			mut(s)
		}
		return s, sl
	}
	nodePort := func(np int32) func(*corev1.Service) {
		return func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.Ports[0].NodePort = np
			s.Spec.ExternalIPs = []string{fmt.Sprintf("192.168.60.%d", np%100)}
		}
	}
	local := corev1.ServiceInternalTrafficPolicyLocal
	objs := map[int]func(*corev1.Service){
		0: nil,
		1: nodePort(30001),
		2: func(s *corev1.Service) {
			nodePort(30002)(s)
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		},
		3: func(s *corev1.Service) { s.Spec.InternalTrafficPolicy = &local },
		4: nil, // gets no endpoints
		5: func(s *corev1.Service) {
			s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
			s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptrTo[int32](30)}}
		},
	}
	apply := func(round int) {
		for _, sd := range sides {
			for i, mut := range objs {
				s, sl := mk(i, mut)
				if round == 1 && i == 0 {
					sd.p.DeleteService(s.Namespace, s.Name)
					sd.p.DeleteSlice(sl)
					continue
				}
				sd.p.SetService(s)
				if i == 4 {
					continue
				}
				if round == 1 {
					sl = scaleSlice(s, i, 2, 100)
				}
				sd.p.SetSlice(sl)
			}
			if _, err := sd.p.Sync(ctx); err != nil {
				t.Fatal(err)
			}
		}
		a := testutil.Run(t, "ip", "netns", "exec", sides[0].ns, "nft", "list", "table", "inet", nft.TableName)
		b := testutil.Run(t, "ip", "netns", "exec", sides[1].ns, "nft", "list", "table", "inet", nft.TableName)
		if a != b {
			t.Fatalf("round %d: netlink and text writers differ:\n%s", round, diffLines(b, a))
		}
		if !strings.Contains(a, "30002") || !strings.Contains(a, "fib saddr type local goto svc-") {
			t.Fatalf("round %d: table lacks the Services:\n%s", round, a)
		}
	}
	apply(0)
	apply(1)
}

func ptrTo[T any](v T) *T { return &v }

// A table made by another static layout (an upgrade, or other CIDRs) has
// the proxy's part re-made on the first sync: the Services are programmed
// again, the old marker is gone, and the next restart is a pure diff.
func TestLayoutChangeRemakes(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.LookTool(t, "nft", "nftables")
	ctx := context.Background()
	ns, path := testutil.NewNS(t)
	mk := func(svcCIDR string) *proxy.Proxier {
		p := proxy.New(proxy.Config{NodeName: "n1", ClusterCIDR: netip.MustParsePrefix("10.128.0.0/9"),
			ServiceCIDR: netip.MustParsePrefix(svcCIDR), NetNS: path})
		for i := 0; i < 20; i++ {
			s, sl := scaleService(i, 3)
			p.SetService(s)
			p.SetSlice(sl)
		}
		return p
	}
	table := func() string {
		return testutil.Run(t, "ip", "netns", "exec", ns, "nft", "list", "table", "inet", nft.TableName)
	}
	if _, err := mk("10.96.0.0/12").Sync(ctx); err != nil {
		t.Fatal(err)
	}
	before := table()
	if _, err := mk("10.96.0.0/16").Sync(ctx); err != nil {
		t.Fatalf("sync over another layout: %v", err)
	}
	after := table()
	if strings.Count(after, "services-layout-") != 1 || strings.Count(after, "goto svc-") != 20 {
		t.Fatalf("after the layout change:\n%s", after)
	}
	if after == before || !strings.Contains(after, "10.96.0.0/16") {
		t.Fatalf("the static part was not re-made:\n%s", after)
	}
	st, err := mk("10.96.0.0/16").Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Changed != 0 || table() != after {
		t.Errorf("restart after the re-make changed %d Services", st.Changed)
	}
}
