package kubernetes

import (
	"context"
	"strings"
	"testing"

	"github.com/miekg/dns"
	pdns "github.com/podnet/podnet/internal/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// FuzzLookup feeds arbitrary query names and types (outside input) to the
// record lookup over a small cluster: it must never panic, and NXDOMAIN
// never comes with answers.
func FuzzLookup(f *testing.F) {
	for _, s := range []string{
		"web.default.svc.cluster.local.", "_http._tcp.web.default.svc.cluster.local.", "db-0.db.default.svc.cluster.local.",
		"10-0-1-5.default.pod.cluster.local.", "ext.default.svc.cluster.local.", "fd00--5.default.pod.cluster.local.", "5.1.0.10.in-addr.arpa.",
		"*.*.svc.cluster.local.", "a.b.c.d.e.svc.cluster.local.", "..cluster.local.", "-.-.pod.cluster.local.",
		"5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.",
	} {
		f.Add(s, uint16(dns.TypeA))
		f.Add(s, uint16(dns.TypeSRV))
	}
	k := &Kubernetes{Zones: pdns.Zones{"cluster.local.", "in-addr.arpa.", "ip6.arpa."}, ttl: 5, podMode: podsVerified, cache: newCache()}
	k.cache.setNamespace(ns("default"), false)
	k.cache.setService(svc("default", "web", "10.96.0.20", port("http", corev1.ProtocolTCP, 80)), false)
	k.cache.setService(svc("default", "db", "None"), false)
	k.cache.setSlice(slice("default", "db", "db-a", []discoveryv1.EndpointPort{eport("pg", corev1.ProtocolTCP, 5432)}, ep{ip: "10.0.1.5", hostname: "db-0"}, ep{ip: "fd00::5"}), false)
	k.cache.setPod(pod("default", "p", "10.0.1.5"), false)
	ext := svc("default", "ext", "")
	ext.Spec.Type = corev1.ServiceTypeExternalName
	ext.Spec.ExternalName = "web.default.svc.cluster.local"
	k.cache.setService(ext, false)
	f.Fuzz(func(t *testing.T, name string, qtype uint16) {
		if _, ok := dns.IsDomainName(name); !ok {
			return
		}
		q := new(dns.Msg)
		q.SetQuestion(dns.Fqdn(name), qtype)
		st := pdns.NewRequest(nil, q)
		zone := k.Zones.Matches(st.Name())
		if zone == "" {
			return
		}
		k.cache.mu.RLock()
		ans, _, err := k.lookup(context.Background(), st, zone, qtype)
		k.cache.mu.RUnlock()
		if err != nil && len(ans) > 0 {
			t.Fatalf("%q: error %v with answers %v", name, err, ans)
		}
		if len(ans) > 0 && !strings.EqualFold(ans[0].Header().Name, dns.Fqdn(name)) {
			t.Fatalf("%q: answer owner %q", name, ans[0].Header().Name)
		}
	})
}
