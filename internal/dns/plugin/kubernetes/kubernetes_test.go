package kubernetes

import (
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	pdns "github.com/podnet/podnet/internal/dns"
	"github.com/podnet/podnet/internal/dns/dnstest"
	_ "github.com/podnet/podnet/internal/dns/plugin/whoami"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

func cluster() *fakeSource {
	f := newFake()
	f.add(ns("default"), ns("kube-system"), ns("other"))
	f.add(svc("kube-system", "kube-dns", "10.96.0.10", port("dns", corev1.ProtocolUDP, 53), port("dns-tcp", corev1.ProtocolTCP, 53)))
	f.add(svc("default", "web", "10.96.0.20", port("http", corev1.ProtocolTCP, 80)))
	f.add(slice("default", "web", "web-abcde", []discoveryv1.EndpointPort{eport("http", corev1.ProtocolTCP, 8080)}, ep{ip: "10.0.1.9"}))
	db := svc("default", "db", "None", port("pg", corev1.ProtocolTCP, 5432))
	db.Spec.ClusterIPs = []string{"None"}
	f.add(db)
	f.add(slice("default", "db", "db-fghij", []discoveryv1.EndpointPort{eport("pg", corev1.ProtocolTCP, 5432)},
		ep{ip: "10.0.1.5", hostname: "db-0"}, ep{ip: "10.0.2.6", pod: "db-x"}, ep{ip: "10.0.3.7", notReady: true}))
	empty := svc("default", "empty", "None")
	f.add(empty)
	f.add(slice("default", "empty", "empty-klmno", nil, ep{ip: "10.0.3.8", notReady: true}))
	ext := svc("default", "ext", "")
	ext.Spec.Type = corev1.ServiceTypeExternalName
	ext.Spec.ExternalName = "example.test"
	f.add(ext)
	return f
}

const k8sCorefile = `.:0 {
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
    }
}
`

func rrs(rr []dns.RR) []string {
	var out []string
	for _, r := range rr {
		if r.Header().Rrtype == dns.TypeOPT {
			continue
		}
		out = append(out, strings.ReplaceAll(r.String(), "\t", " "))
	}
	return out
}

type want struct {
	rcode  int
	answer []string
	extra  []string
	soa    string // the authority section's SOA owner, "" for none
}

func check(t *testing.T, addr, name string, qtype uint16, w want) {
	t.Helper()
	m := dnstest.Query(t, addr, name, qtype)
	if m.Rcode != w.rcode {
		t.Errorf("%s %s: rcode %s, want %s\n%v", name, dns.TypeToString[qtype], dns.RcodeToString[m.Rcode], dns.RcodeToString[w.rcode], m)
		return
	}
	if got := rrs(m.Answer); strings.Join(got, "\n") != strings.Join(w.answer, "\n") {
		t.Errorf("%s %s: answer\n%s\nwant\n%s", name, dns.TypeToString[qtype], strings.Join(got, "\n"), strings.Join(w.answer, "\n"))
	}
	if got := rrs(m.Extra); strings.Join(got, "\n") != strings.Join(w.extra, "\n") {
		t.Errorf("%s %s: extra\n%s\nwant\n%s", name, dns.TypeToString[qtype], strings.Join(got, "\n"), strings.Join(w.extra, "\n"))
	}
	soa := ""
	if len(m.Ns) == 1 {
		if s, ok := m.Ns[0].(*dns.SOA); ok {
			soa = s.Hdr.Name
			if s.Ns != "ns.dns."+soa || s.Mbox != "hostmaster."+soa || s.Refresh != 7200 || s.Retry != 1800 || s.Expire != 86400 || s.Minttl != 5 || s.Hdr.Ttl != 5 {
				t.Errorf("%s: SOA %v", name, s)
			}
		}
	}
	if soa != w.soa {
		t.Errorf("%s %s: authority %v, want SOA %q", name, dns.TypeToString[qtype], m.Ns, w.soa)
	}
	if m.Rcode != dns.RcodeServerFailure && !m.Authoritative {
		t.Errorf("%s: not authoritative", name)
	}
}

func TestRecords(t *testing.T) {
	useFake(t, cluster())
	s := dnstest.Start(t, k8sCorefile)
	const z = "cluster.local."
	nx := want{rcode: dns.RcodeNameError, soa: z}
	nodata := want{rcode: dns.RcodeSuccess, soa: z}
	for _, tt := range []struct {
		name  string
		qtype uint16
		want  want
	}{
		{"dns-version.cluster.local.", dns.TypeTXT, want{answer: []string{`dns-version.cluster.local. 5 IN TXT "1.1.0"`}}},
		{"dns-version.cluster.local.", dns.TypeA, nodata},
		// ClusterIP
		{"web.default.svc.cluster.local.", dns.TypeA, want{answer: []string{"web.default.svc.cluster.local. 5 IN A 10.96.0.20"}}},
		{"Web.Default.svc.Cluster.Local.", dns.TypeA, want{answer: []string{"Web.Default.svc.Cluster.Local. 5 IN A 10.96.0.20"}}},
		{"web.default.svc.cluster.local.", dns.TypeAAAA, nodata},
		{"web.default.svc.cluster.local.", dns.TypeTXT, nodata},
		{"web.default.svc.cluster.local.", dns.TypeMX, nodata},
		{"nope.default.svc.cluster.local.", dns.TypeA, nx},
		{"nope.default.svc.cluster.local.", dns.TypeAAAA, nx},
		{"web.other.svc.cluster.local.", dns.TypeA, nx},
		{"web.nons.svc.cluster.local.", dns.TypeA, nx},
		// A ClusterIP Service's endpoints by name, as CoreDNS answers them.
		{"10-0-1-9.web.default.svc.cluster.local.", dns.TypeA, want{answer: []string{"10-0-1-9.web.default.svc.cluster.local. 5 IN A 10.0.1.9"}}},
		// SRV
		{"_http._tcp.web.default.svc.cluster.local.", dns.TypeSRV, want{
			answer: []string{"_http._tcp.web.default.svc.cluster.local. 5 IN SRV 0 100 80 web.default.svc.cluster.local."},
			extra:  []string{"web.default.svc.cluster.local. 5 IN A 10.96.0.20"}}},
		{"web.default.svc.cluster.local.", dns.TypeSRV, want{
			answer: []string{"web.default.svc.cluster.local. 5 IN SRV 0 100 80 web.default.svc.cluster.local."},
			extra:  []string{"web.default.svc.cluster.local. 5 IN A 10.96.0.20"}}},
		{"_http._udp.web.default.svc.cluster.local.", dns.TypeSRV, nx},
		{"_nope._tcp.web.default.svc.cluster.local.", dns.TypeSRV, nx},
		{"_http._tcp.web.default.svc.cluster.local.", dns.TypeA, want{answer: []string{"_http._tcp.web.default.svc.cluster.local. 5 IN A 10.96.0.20"}}},
		{"a.b.web.default.svc.cluster.local.", dns.TypeA, nx},
		// headless: the ready endpoints only
		{"db.default.svc.cluster.local.", dns.TypeA, want{answer: []string{
			"db.default.svc.cluster.local. 5 IN A 10.0.1.5", "db.default.svc.cluster.local. 5 IN A 10.0.2.6"}}},
		{"db-0.db.default.svc.cluster.local.", dns.TypeA, want{answer: []string{"db-0.db.default.svc.cluster.local. 5 IN A 10.0.1.5"}}},
		{"10-0-2-6.db.default.svc.cluster.local.", dns.TypeA, want{answer: []string{"10-0-2-6.db.default.svc.cluster.local. 5 IN A 10.0.2.6"}}},
		{"10-0-3-7.db.default.svc.cluster.local.", dns.TypeA, nx},
		{"db-x.db.default.svc.cluster.local.", dns.TypeA, nx},
		{"_pg._tcp.db.default.svc.cluster.local.", dns.TypeSRV, want{
			answer: []string{
				"_pg._tcp.db.default.svc.cluster.local. 5 IN SRV 0 50 5432 db-0.db.default.svc.cluster.local.",
				"_pg._tcp.db.default.svc.cluster.local. 5 IN SRV 0 50 5432 10-0-2-6.db.default.svc.cluster.local."},
			extra: []string{
				"db-0.db.default.svc.cluster.local. 5 IN A 10.0.1.5",
				"10-0-2-6.db.default.svc.cluster.local. 5 IN A 10.0.2.6"}}},
		{"empty.default.svc.cluster.local.", dns.TypeA, nx},
		// ExternalName
		{"ext.default.svc.cluster.local.", dns.TypeCNAME, want{answer: []string{"ext.default.svc.cluster.local. 5 IN CNAME example.test."}}},
		{"ext.default.svc.cluster.local.", dns.TypeA, want{answer: []string{"ext.default.svc.cluster.local. 5 IN CNAME example.test."}}},
		// pods insecure
		{"10-0-1-5.default.pod.cluster.local.", dns.TypeA, want{answer: []string{"10-0-1-5.default.pod.cluster.local. 5 IN A 10.0.1.5"}}},
		{"10-0-1-5.default.pod.cluster.local.", dns.TypeAAAA, nodata},
		{"fd00--5.default.pod.cluster.local.", dns.TypeAAAA, want{answer: []string{"fd00--5.default.pod.cluster.local. 5 IN AAAA fd00::5"}}},
		{"not-an-ip.default.pod.cluster.local.", dns.TypeA, nx},
		{"10-0-1-5.nons.pod.cluster.local.", dns.TypeA, nx},
		// the names above the records
		{"cluster.local.", dns.TypeA, nodata},
		{"svc.cluster.local.", dns.TypeA, nodata},
		{"pod.cluster.local.", dns.TypeA, nodata},
		{"default.svc.cluster.local.", dns.TypeA, nodata},
		{"nons.svc.cluster.local.", dns.TypeA, nx},
		{"default.pod.cluster.local.", dns.TypeA, nodata},
		{"foo.cluster.local.", dns.TypeA, nx},
		{"cluster.local.", dns.TypeSOA, want{answer: []string{"cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. SERIAL 7200 1800 86400 5"}}},
		{"cluster.local.", dns.TypeNS, want{
			answer: []string{"cluster.local. 5 IN NS ns.dns.cluster.local."},
			extra:  []string{"ns.dns.cluster.local. 5 IN A 10.96.0.10"}}},
		{"ns.dns.cluster.local.", dns.TypeA, want{answer: []string{"ns.dns.cluster.local. 5 IN A 10.96.0.10"}}},
		// PTR: cluster IPs, then endpoint addresses
		{"20.0.96.10.in-addr.arpa.", dns.TypePTR, want{answer: []string{"20.0.96.10.in-addr.arpa. 5 IN PTR web.default.svc.cluster.local."}}},
		{"5.1.0.10.in-addr.arpa.", dns.TypePTR, want{answer: []string{"5.1.0.10.in-addr.arpa. 5 IN PTR db-0.db.default.svc.cluster.local."}}},
		{"6.2.0.10.in-addr.arpa.", dns.TypePTR, want{answer: []string{"6.2.0.10.in-addr.arpa. 5 IN PTR 10-0-2-6.db.default.svc.cluster.local."}}},
		{"9.1.0.10.in-addr.arpa.", dns.TypePTR, want{answer: []string{"9.1.0.10.in-addr.arpa. 5 IN PTR 10-0-1-9.web.default.svc.cluster.local."}}},
		{"20.0.96.10.in-addr.arpa.", dns.TypeA, want{soa: "in-addr.arpa."}},
		{"9.9.9.10.in-addr.arpa.", dns.TypePTR, want{rcode: dns.RcodeNameError, soa: "in-addr.arpa."}},
		{"10.in-addr.arpa.", dns.TypePTR, want{rcode: dns.RcodeNameError, soa: "in-addr.arpa."}},
	} {
		if tt.want.rcode == 0 && tt.name == "cluster.local." && tt.qtype == dns.TypeSOA {
			m := dnstest.Query(t, s.Addr, tt.name, tt.qtype)
			if len(m.Answer) != 1 || m.Rcode != 0 {
				t.Errorf("SOA: %v", m)
				continue
			}
			soa := m.Answer[0].(*dns.SOA)
			if soa.Serial == 0 || soa.Ns != "ns.dns.cluster.local." || soa.Mbox != "hostmaster.cluster.local." || soa.Minttl != 5 {
				t.Errorf("SOA %v", soa)
			}
			continue
		}
		check(t, s.Addr, tt.name, tt.qtype, tt.want)
	}
}

func TestWatchReachesAnswers(t *testing.T) {
	f := cluster()
	useFake(t, f)
	s := dnstest.Start(t, k8sCorefile)
	check(t, s.Addr, "new.default.svc.cluster.local.", dns.TypeA, want{rcode: dns.RcodeNameError, soa: "cluster.local."})
	n := svc("default", "new", "10.96.0.30", port("http", corev1.ProtocolTCP, 80))
	start := time.Now()
	f.add(n)
	waitFor(t, s.Addr, "new.default.svc.cluster.local.", dns.RcodeSuccess, 1)
	t.Logf("created → answered in %v", time.Since(start))
	start = time.Now()
	f.del(n)
	waitFor(t, s.Addr, "new.default.svc.cluster.local.", dns.RcodeNameError, 0)
	t.Logf("deleted → NXDOMAIN in %v", time.Since(start))
	// a headless Service's endpoints coming and going
	f.add(slice("default", "empty", "empty-klmno", nil, ep{ip: "10.0.3.8"}))
	waitFor(t, s.Addr, "empty.default.svc.cluster.local.", dns.RcodeSuccess, 1)
	f.add(slice("default", "empty", "empty-klmno", nil, ep{ip: "10.0.3.8", notReady: true}))
	waitFor(t, s.Addr, "empty.default.svc.cluster.local.", dns.RcodeNameError, 0)
}

func waitFor(t *testing.T, addr, name string, rcode, answers int) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for {
		m := dnstest.Query(t, addr, name, dns.TypeA)
		if m.Rcode == rcode && len(m.Answer) == answers {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: after 1s still %v", name, m)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestOptions(t *testing.T) {
	f := cluster()
	f.add(pod("default", "db-x", "10.0.2.6"))
	useFake(t, f)
	s := dnstest.Start(t, `.:0 {
    kubernetes cluster.local in-addr.arpa {
        pods verified
        endpoint_pod_names
        namespaces default
        ttl 30
    }
}
`)
	a := func(name, ip string) want {
		return want{answer: []string{name + " 30 IN A " + ip}}
	}
	nx := want{rcode: dns.RcodeNameError, soa: "cluster.local."}
	for _, tt := range []struct {
		name string
		want want
	}{
		{"db-x.db.default.svc.cluster.local.", a("db-x.db.default.svc.cluster.local.", "10.0.2.6")},
		// a hostname still wins over the pod's name
		{"db-0.db.default.svc.cluster.local.", a("db-0.db.default.svc.cluster.local.", "10.0.1.5")},
		{"10-0-2-6.default.pod.cluster.local.", a("10-0-2-6.default.pod.cluster.local.", "10.0.2.6")},
		{"10-0-1-5.default.pod.cluster.local.", nx}, // no such pod
		{"kube-dns.kube-system.svc.cluster.local.", nx},
	} {
		m := dnstest.Query(t, s.Addr, tt.name, dns.TypeA)
		if m.Rcode != tt.want.rcode || strings.Join(rrs(m.Answer), "\n") != strings.Join(tt.want.answer, "\n") {
			t.Errorf("%s: %v, want %v", tt.name, m, tt.want)
		}
	}
	m := dnstest.Query(t, s.Addr, "6.2.0.10.in-addr.arpa.", dns.TypePTR)
	if got := rrs(m.Answer); len(got) != 1 || got[0] != "6.2.0.10.in-addr.arpa. 30 IN PTR db-x.db.default.svc.cluster.local." {
		t.Errorf("PTR with endpoint_pod_names: %v", m)
	}
}

func TestFallthroughAndDisabledPods(t *testing.T) {
	useFake(t, cluster())
	s := dnstest.Start(t, `.:0 {
    kubernetes cluster.local in-addr.arpa {
        fallthrough in-addr.arpa
    }
    whoami
}
`)
	// An unknown reverse name goes on to whoami (which answers with
	// the client's address in the additional section).
	m := dnstest.Query(t, s.Addr, "9.9.9.10.in-addr.arpa.", dns.TypePTR)
	if m.Rcode != dns.RcodeSuccess || len(m.Extra) == 0 || m.Extra[0].Header().Rrtype != dns.TypeA {
		t.Errorf("fallthrough in-addr.arpa: %v", m)
	}
	// cluster.local does not fall through; pods are disabled by default.
	check(t, s.Addr, "10-0-1-5.default.pod.cluster.local.", dns.TypeA, want{rcode: dns.RcodeNameError, soa: "cluster.local."})
	check(t, s.Addr, "nope.default.svc.cluster.local.", dns.TypeA, want{rcode: dns.RcodeNameError, soa: "cluster.local."})
	// a name outside the plugin's zones goes on
	m = dnstest.Query(t, s.Addr, "example.org.", dns.TypeA)
	if m.Rcode != dns.RcodeSuccess || len(m.Extra) == 0 {
		t.Errorf("example.org: %v", m)
	}
}

func TestWildcard(t *testing.T) {
	useFake(t, cluster())
	s := dnstest.Start(t, k8sCorefile)
	m := dnstest.Query(t, s.Addr, "*.default.svc.cluster.local.", dns.TypeA)
	got := strings.Join(rrs(m.Answer), "\n")
	for _, ip := range []string{"10.96.0.20", "10.0.1.5", "10.0.2.6"} {
		if !strings.Contains(got, ip) {
			t.Errorf("wildcard: no %s in\n%s", ip, got)
		}
	}
	m = dnstest.Query(t, s.Addr, "web.*.svc.cluster.local.", dns.TypeA)
	if got := rrs(m.Answer); len(got) != 1 || !strings.HasSuffix(got[0], "10.96.0.20") {
		t.Errorf("web.*: %v", m)
	}
}

func TestSetup(t *testing.T) {
	for _, tt := range []struct{ in, err string }{
		{"kubernetes", ""},
		{"kubernetes cluster.local in-addr.arpa ip6.arpa {\n pods insecure\n fallthrough in-addr.arpa ip6.arpa\n ttl 30\n}", ""},
		{"kubernetes cluster.local {\n endpoint http://127.0.0.1:2379,http://127.0.0.2:2379\n kubeconfig /x ctx\n namespaces a b\n labels app=web\n namespace_labels team in (a,b)\n endpoint_pod_names\n noendpoints\n ignore empty_service\n startup_timeout 1s\n}", ""},
		{"kubernetes {\n pods bogus\n}", "Testfile:2 - Error during parsing: wrong value for pods: bogus,  must be one of: disabled, verified, insecure"},
		{"kubernetes {\n ttl 3601\n}", "Testfile:2 - Error during parsing: ttl must be in range [0, 3600]: 3601"},
		{"kubernetes {\n ttl x\n}", "Testfile:2 - Error during parsing: ttl must be an integer: x"},
		{"kubernetes {\n ttl\n}", "Testfile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'ttl'"},
		{"kubernetes {\n forgery\n}", "Testfile:2 - Error during parsing: unknown property 'forgery'"},
		{"kubernetes {\n labels a=b=c\n}", "Testfile:2 - Error during parsing: unable to parse label selector value: 'a=b=c'"},
		{"kubernetes {\n ignore x\n}", "Testfile:2 - Error during parsing: unable to parse ignore value: 'x'"},
		{"kubernetes\nkubernetes", "Testfile:2 - Error during parsing: this plugin can only be used once per Server Block"},
		{"kubernetes cluster.local:53", "Testfile:1 - Error during parsing: zone \"cluster.local:53\": only a name is allowed here, not a transport or port"},
	} {
		err := setup(pdns.NewTestController(tt.in))
		if (err == nil) != (tt.err == "") || err != nil && !strings.HasPrefix(err.Error(), tt.err) {
			t.Errorf("%q: error %v, want %q", tt.in, err, tt.err)
		}
	}
}

func TestReverseIP(t *testing.T) {
	for in, want := range map[string]string{
		"5.0.96.10.in-addr.arpa.": "10.96.0.5",
		"0.96.10.in-addr.arpa.":   "",
		"x.0.96.10.in-addr.arpa.": "",
		"5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.": "fd00::5",
		"5.0.ip6.arpa.": "",
	} {
		if got := reverseIP(in); got != want {
			t.Errorf("reverseIP(%q) = %q, want %q", in, got, want)
		}
	}
}
