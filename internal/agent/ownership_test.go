package agent

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/nft"
	"github.com/podnet/podnet/internal/proxy"
	"github.com/podnet/podnet/internal/testutil"
	vnetns "github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/knftables"
)

// enter locks the calling goroutine to a thread in the namespace at path
// for the rest of its life; the thread is discarded when it returns.
func enter(t *testing.T, path string) {
	runtime.LockOSThread()
	h, err := vnetns.GetFromPath(path)
	if err != nil {
		t.Error(err)
		return
	}
	defer h.Close()
	if err := vnetns.Set(h); err != nil {
		t.Error(err)
	}
}

// removeCNIMarker deletes the CNI's layout marker set(s) of the table in
// the calling thread's namespace, as on a node whose table predates this
// build's CNI layout.
func removeCNIMarker() error {
	list := func() (string, error) {
		out, err := exec.Command("nft", "list", "table", "inet", nft.TableName).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("nft list table: %w: %s", err, out)
		}
		return string(out), nil
	}
	table, err := list()
	if err != nil {
		return err
	}
	n := 0
	for _, l := range strings.Split(table, "\n") {
		if name, ok := strings.CutPrefix(strings.TrimSpace(l), "set layout-"); ok {
			name, _, _ = strings.Cut(name, " ")
			if out, err := exec.Command("nft", "delete", "set", "inet", nft.TableName, "layout-"+name).CombinedOutput(); err != nil {
				return fmt.Errorf("nft delete set: %w: %s", err, out)
			}
			n++
		}
	}
	if table, err = list(); err != nil {
		return err
	}
	if n == 0 || strings.Contains(table, "set layout-") {
		return fmt.Errorf("the CNI marker was not removed (%d found):\n%s", n, table)
	}
	return nil
}

func ownershipService(i int) (*corev1.Service, *discoveryv1.EndpointSlice) {
	name := fmt.Sprintf("s%d", i)
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeClusterIP, ClusterIP: fmt.Sprintf("10.96.1.%d", i), ClusterIPs: []string{fmt.Sprintf("10.96.1.%d", i)},
			Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	ready := true
	port, proto, pname := int32(8080), corev1.ProtocolTCP, "http"
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: name + "-x", Labels: map[string]string{api.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &pname, Port: &port, Protocol: &proto}},
	}
	for j := 1; j <= 2; j++ {
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{fmt.Sprintf("10.244.%d.%d", j, i)},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready},
		})
	}
	return svc, slice
}

// TestOwnershipPodChurnDuringServiceSyncs: the table's two owners, the CNI
// plugin's pod elements and the agent's service proxy, work side by side
// in one namespace. 1000 pod ADD/DELs, some of them on a table whose CNI
// layout marker was removed (a fresh node, or an upgrade: the plugin then
// re-declares its part), run while the proxy syncs; a watcher lists the
// service verdicts throughout, and none may ever be missing.
func TestOwnershipPodChurnDuringServiceSyncs(t *testing.T) {
	testutil.RequireRoot(t)
	if testing.Short() {
		t.Skip("root integration test")
	}
	ns, path := testutil.NewNS(t)
	const services = 50
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// The agent's order at start: the CNI's table first, then the proxy.
	var p *proxy.Proxier
	setup := make(chan error, 1)
	go func() {
		enter(t, path)
		dp, err := nft.NewExec()
		if err == nil {
			err = dp.Ensure(ctx)
		}
		if err != nil {
			setup <- err
			return
		}
		iface, err := knftables.New(knftables.InetFamily, nft.TableName)
		if err != nil {
			setup <- err
			return
		}
		p = proxy.New(proxy.Config{NodeName: "n1", ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16"),
			ServiceCIDR: netip.MustParsePrefix("10.96.0.0/12"), NFT: iface, Logger: testutil.Logger(t)})
		for i := 1; i <= services; i++ {
			svc, slice := ownershipService(i)
			p.SetService(svc)
			p.SetSlice(slice)
		}
		_, err = p.Sync(ctx)
		setup <- err
	}()
	if err := <-setup; err != nil {
		t.Fatal(err)
	}
	// verdicts counts the service verdicts in the table, 0 if the dispatch
	// to them from the base chains is broken.
	verdicts := func() (int, string) {
		out, err := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "nft", "list", "table", "inet", nft.TableName).CombinedOutput()
		if err != nil {
			return -1, string(out)
		}
		table := string(out)
		if !strings.Contains(table, "jump services") || !strings.Contains(table, "vmap @service-ips") {
			return 0, table
		}
		i := strings.Index(table, "map service-ips {")
		if i < 0 {
			return 0, table
		}
		m, _, _ := strings.Cut(table[i:], "\n\t}")
		// Distinct elements: a listing that runs while the kernel's hash
		// table rehashes in the background (rhashtable resizes
		// asynchronously after many changes) may show an element twice.
		seen := map[string]bool{}
		for _, line := range strings.Split(m, "\n") {
			if i := strings.Index(line, "goto "); i >= 0 {
				key := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "elements = {"))
				seen[key] = true
			}
		}
		return len(seen), m
	}
	if n, out := verdicts(); n != services {
		t.Fatalf("after the first sync: %d service verdicts, want %d:\n%s", n, services, out)
	}

	var done atomic.Bool
	// quiet holds the proxy between syncs: an ADD on a fresh table is then
	// checked before the next sync could repair what it broke.
	var quiet sync.Mutex
	var wg sync.WaitGroup
	var syncs, checks atomic.Int64
	errs := make(chan error, 16)
	// The proxy: endpoint changes of one Service after another, each a sync.
	wg.Add(1)
	go func() {
		defer wg.Done()
		enter(t, path)
		for i := 0; !done.Load(); i++ {
			_, slice := ownershipService(1 + i%services)
			slice.Endpoints = slice.Endpoints[:1+(i/services)%2] // every sync a change
			p.SetSlice(slice)
			quiet.Lock()
			_, err := p.Sync(ctx)
			quiet.Unlock()
			if err != nil {
				errs <- fmt.Errorf("proxy sync %d: %w", i, err)
				return
			}
			syncs.Add(1)
		}
	}()
	// The watcher.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !done.Load() {
			if n, out := verdicts(); n != services {
				errs <- fmt.Errorf("after %d syncs: %d service verdicts, want %d:\n%s", syncs.Load(), n, services, out)
				return
			}
			checks.Add(1)
		}
	}()
	// The CNI: ADD and DEL of pods; every 100th ADD finds the table without
	// its CNI layout marker.
	churn := make(chan error, 1)
	go func() {
		enter(t, path)
		dp, err := nft.NewExec()
		if err != nil {
			churn <- err
			return
		}
		for i := range 1000 {
			a := nft.Attachment{Key: fmt.Sprintf("pod-%d", i), IPs: []netip.Prefix{netip.MustParsePrefix(fmt.Sprintf("10.244.0.%d/24", 2+i%250))}, Masquerade: true,
				NonMasquerade: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}}
			if i%100 == 50 {
				quiet.Lock()
				err := removeCNIMarker()
				if err == nil {
					err = dp.Add(ctx, a)
				}
				n, table := verdicts()
				quiet.Unlock()
				if err != nil {
					churn <- fmt.Errorf("ADD %d on a table without the CNI marker: %w", i, err)
					return
				}
				if n != services {
					churn <- fmt.Errorf("ADD %d on a table without the CNI marker left %d service verdicts, want %d:\n%s", i, n, services, table)
					return
				}
			} else if err := dp.Add(ctx, a); err != nil {
				churn <- fmt.Errorf("ADD %d: %w", i, err)
				return
			}
			if err := dp.Remove(ctx, a); err != nil {
				churn <- fmt.Errorf("DEL %d: %w", i, err)
				return
			}
		}
		churn <- nil
	}()
	var err error
	select {
	case err = <-churn:
	case err = <-errs:
	}
	done.Store(true)
	wg.Wait()
	close(errs)
	if err != nil {
		t.Fatal(err)
	}
	for e := range errs {
		t.Fatal(e)
	}
	if syncs.Load() < 10 || checks.Load() < 10 {
		t.Fatalf("too little overlap: %d proxy syncs and %d checks during the churn", syncs.Load(), checks.Load())
	}
	if n, out := verdicts(); n != services {
		t.Fatalf("after the churn: %d service verdicts, want %d:\n%s", n, services, out)
	}
	t.Logf("1000 ADD/DEL, %d proxy syncs, %d checks: no service verdict missing", syncs.Load(), checks.Load())
}
