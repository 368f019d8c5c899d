package kubernetes

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/dns/dnstest"
	_ "github.com/podnet/podnet/internal/dns/plugin/hosts"
	"github.com/podnet/podnet/internal/store"
	"github.com/podnet/podnet/internal/testutil"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// TestStore serves a real store (embedded etcd) and asks with dig: the
// plugin's endpoint option names the store, and Service changes made
// through the store's API reach the answers within a second.
func TestStore(t *testing.T) {
	s, cfg := testutil.Store(t)
	ctx := context.Background()
	if _, err := s.EnsureClusterConfig(ctx, api.ClusterConfig{ServiceCIDR: "10.96.0.0/16", NodePortRange: "30000-32767"}); err != nil {
		t.Fatal(err)
	}
	web := svc("default", "web", "10.96.0.20", port("http", corev1.ProtocolTCP, 80))
	web.Spec.Ports[0].TargetPort = intstr.FromInt32(8080)
	web.Spec.Selector = map[string]string{"app": "web"}
	if err := s.Create(ctx, web); err != nil {
		t.Fatal(err)
	}
	db := svc("default", "db", "None", port("pg", corev1.ProtocolTCP, 5432))
	db.Spec.ClusterIPs = nil
	if err := s.Create(ctx, db); err != nil {
		t.Fatal(err)
	}
	sl := slice("default", "db", "db-abcde", []discoveryv1.EndpointPort{eport("pg", corev1.ProtocolTCP, 5432)}, ep{ip: "10.0.1.5", hostname: "db-0"})
	if err := s.Create(ctx, sl); err != nil {
		t.Fatal(err)
	}
	srv := dnstest.Start(t, fmt.Sprintf(`.:0 {
    kubernetes cluster.local in-addr.arpa {
        endpoint %s
        pods insecure
    }
}
`, cfg.ClientURL))
	dig := func(args ...string) string {
		return strings.TrimSpace(dnstest.Dig(t, srv.Addr, append([]string{"+short"}, args...)...))
	}
	if got := dig("web.default.svc.cluster.local", "A"); got != "10.96.0.20" {
		t.Errorf("dig web: %q", got)
	}
	if got := dig("db-0.db.default.svc.cluster.local", "A"); got != "10.0.1.5" {
		t.Errorf("dig db-0.db: %q", got)
	}
	if got := dig("_pg._tcp.db.default.svc.cluster.local", "SRV"); got != "0 100 5432 db-0.db.default.svc.cluster.local." {
		t.Errorf("dig SRV: %q", got)
	}
	if got := dig("-x", "10.96.0.20"); got != "web.default.svc.cluster.local." {
		t.Errorf("dig -x: %q", got)
	}
	if got := dig("+tcp", "dns-version.cluster.local", "TXT"); got != `"1.1.0"` {
		t.Errorf("dig TXT over TCP: %q", got)
	}

	// Created, then deleted: each visible within a second.
	n := svc("default", "late", "", port("http", corev1.ProtocolTCP, 80))
	n.Spec.ClusterIPs = nil
	start := time.Now()
	if err := s.Create(ctx, n); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Get(ctx, mustKind("services"), "default", "late")
	ip := got.(*corev1.Service).Spec.ClusterIP
	for dig("late.default.svc.cluster.local", "A") != ip {
		if time.Since(start) > time.Second {
			t.Fatalf("late: not answered within 1s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("created → answered in %v", time.Since(start))
	start = time.Now()
	if _, err := s.Delete(ctx, mustKind("services"), "default", "late", store.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for !strings.Contains(dnstest.Dig(t, srv.Addr, "late.default.svc.cluster.local", "A"), "NXDOMAIN") {
		if time.Since(start) > time.Second {
			t.Fatalf("late: still answered 1s after its deletion")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("deleted → NXDOMAIN in %v", time.Since(start))
}

// TestExternalNameThroughTheServer: an ExternalName's outside target is
// resolved through the server's block for it (here a hosts block), and
// comes after the CNAME.
func TestExternalNameThroughTheServer(t *testing.T) {
	f := cluster()
	ext := svc("default", "outer", "")
	ext.Spec.Type = corev1.ServiceTypeExternalName
	ext.Spec.ExternalName = "db.example.test"
	f.add(ext)
	useFake(t, f)
	s := dnstest.Start(t, `.:0 {
    kubernetes cluster.local
    hosts {
        10.9.9.9 db.example.test
        fallthrough
    }
}
`)
	m := dnstest.Query(t, s.Addr, "outer.default.svc.cluster.local.", dns.TypeA)
	got := rrs(m.Answer)
	if len(got) != 2 || got[0] != "outer.default.svc.cluster.local. 5 IN CNAME db.example.test." || !strings.HasSuffix(got[1], "IN A 10.9.9.9") {
		t.Errorf("ExternalName through the server: %v", m)
	}
}
