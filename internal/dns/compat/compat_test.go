package compat

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	pdns "github.com/podnet/podnet/internal/dns"
	"github.com/podnet/podnet/internal/dns/dnstest"
	_ "github.com/podnet/podnet/internal/dns/plugin/all"
	"github.com/podnet/podnet/internal/dns/server"
	"github.com/podnet/podnet/internal/testutil"
)

// coredns returns the CoreDNS v1.15.0 binary, building it into the cache
// when it is missing (that needs the Go module proxy and a few minutes).
func coredns(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PODNET_COREDNS"); p != "" {
		return p
	}
	home, _ := os.UserHomeDir()
	dir := filepath.Join(home, ".cache", "podnet-coredns")
	bin := filepath.Join(dir, "coredns")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if testing.Short() {
		testutil.SkipOrFail(t, "no CoreDNS binary in "+bin+" (not built under -short)")
	}
	cmd := exec.Command("go", "install", "github.com/coredns/coredns@v1.15.0")
	cmd.Env = append(os.Environ(), "GOBIN="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		testutil.SkipOrFail(t, fmt.Sprintf("building CoreDNS v1.15.0: %v\n%s", err, out))
	}
	return bin
}

// freePort returns a port free for both UDP and TCP on 127.0.0.1.
func freePort(t *testing.T) string {
	t.Helper()
	for range 50 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		pc.Close()
		if err == nil {
			l.Close()
			return strconv.Itoa(port)
		}
	}
	t.Fatal("no free port")
	return ""
}

const zone = `$ORIGIN example.org.
$TTL 3600
@       IN SOA ns1 hostmaster 2026120201 7200 3600 1209600 300
        IN NS  ns1
        IN NS  ns2.example.net.
        IN MX  10 mail
        IN A   192.0.2.1
        IN TXT "v=spf1 -all"
ns1     IN A   192.0.2.53
mail    IN A   192.0.2.25
mail    IN AAAA 2001:db8::25
www     IN CNAME web
web     IN A   192.0.2.80
web     IN AAAA 2001:db8::80
chain1  IN CNAME chain2
chain2  IN CNAME www
loop1   IN CNAME loop2
loop2   IN CNAME loop1
self    IN CNAME self
dangling IN CNAME nothere
ext     IN CNAME x.hosts.test.
_http._tcp IN SRV 0 5 80 web
_sip._udp  IN SRV 10 60 5060 mail
*.wild  IN A   192.0.2.99
*.wild  IN TXT "wild"
a.ent.deep IN A 192.0.2.7
sub     IN NS  ns.sub
ns.sub  IN A   192.0.2.100
big     IN TXT "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
big     IN TXT "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
big     IN TXT "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
big     IN TXT "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"
big     IN TXT "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"
`

const upstreamZone = `$ORIGIN upstream.test.
@    IN SOA ns hostmaster 1 7200 3600 1209600 60
     IN NS  ns
ns   IN A   198.51.100.53
www  IN A   198.51.100.80
www  IN AAAA 2001:db8:1::80
alias IN CNAME www
mx   IN MX  5 www
big  IN TXT "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
big  IN TXT "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
big  IN TXT "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
big  IN TXT "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"
big  IN TXT "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"
`

func hostsData() string {
	var b strings.Builder
	b.WriteString("# test hosts\n127.0.0.1 localhost\n::1 localhost ip6-localhost\n")
	b.WriteString("10.0.0.1 x.hosts.test x\n10.0.0.2 x.hosts.test\nfd00::1 x.hosts.test\n")
	b.WriteString("192.168.1.10 *.wild.hosts.test\n192.168.1.11 a.wild.hosts.test\n")
	for i := range 60 {
		fmt.Fprintf(&b, "10.2.0.%d big.hosts.test\n", i+1)
	}
	for i := range 20 {
		fmt.Fprintf(&b, "10.3.0.%d h%d.hosts.test\n", i+1, i)
	}
	return b.String()
}

const corefileTmpl = `hosts.test:PORT {
    cache 60
    hosts HOSTS {
        10.9.9.9 inline.hosts.test x.hosts.test
        fallthrough wild.hosts.test
    }
}
example.org:PORT example.net:PORT {
    rewrite name suffix .example.net .example.org answer auto
    cache {
        success 1024 600
        denial 1024 10
    }
    file ZONE example.org
}
upstream.test:PORT fwd.test:PORT {
    rewrite name suffix .fwd.test .upstream.test answer auto
    cache 30
    forward . 127.0.0.1:UPPORT {
        except private.upstream.test
    }
}
tcp.test:PORT {
    rewrite name suffix .tcp.test .upstream.test answer auto
    forward . 127.0.0.1:UPPORT {
        force_tcp
    }
}
udp.test:PORT {
    rewrite name suffix .udp.test .upstream.test answer auto
    forward . 127.0.0.1:UPPORT {
        prefer_udp
        policy sequential
    }
}
nr.test:PORT {
    hosts {
        10.5.0.1 a.nr.test
        10.5.0.2 b.nr.test
        ttl 30
        no_reverse
        fallthrough
        fallthrough_unsupported
    }
    template ANY ANY nr.test {
        answer "{{ .Name }} 5 IN TXT \"from template {{ .Type }}\""
    }
}
tmpl.test:PORT {
    template IN A tmpl.test {
        match "^ip-(?P<a>[0-9]+)-(?P<b>[0-9]+)-(?P<c>[0-9]+)-(?P<d>[0-9]+)[.]tmpl[.]test[.]$"
        answer "{{ .Name }} 60 IN A {{ .Group.a }}.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}"
        fallthrough
    }
    template IN A tmpl.test {
        match "^[^.]+[.]apps[.]tmpl[.]test[.]$"
        answer "{{ .Name }} 300 IN CNAME x.hosts.test."
        fallthrough
    }
    template ANY ANY tmpl.test {
        rcode NXDOMAIN
        authority "tmpl.test. 60 IN SOA ns.tmpl.test. hostmaster.tmpl.test. (1 60 60 60 60)"
    }
}
.:PORT {
    rewrite continue type ANY HINFO
    rewrite name exact alias.test x.hosts.test
    hosts HOSTS
}
`

type query struct {
	name   string
	qtype  uint16
	tcp    bool
	edns   int // 0: no OPT
	do, cd bool
	rd     bool
}

func (q query) String() string {
	s := q.name + " " + dns.TypeToString[q.qtype]
	if q.tcp {
		s += " +tcp"
	}
	if q.edns > 0 {
		s += fmt.Sprintf(" +bufsize=%d", q.edns)
	} else {
		s += " +noedns"
	}
	if q.do {
		s += " +dnssec"
	}
	if q.cd {
		s += " +cd"
	}
	if !q.rd {
		s += " +norec"
	}
	return s
}

func queries() []query {
	var qs []query
	add := func(name string, types ...uint16) {
		for _, t := range types {
			qs = append(qs, query{name: name, qtype: t, edns: 1232, rd: true})
		}
	}
	A, AAAA, MX, TXT, NS, SOA, SRV, CNAME, PTR, ANY := dns.TypeA, dns.TypeAAAA, dns.TypeMX, dns.TypeTXT, dns.TypeNS, dns.TypeSOA, dns.TypeSRV, dns.TypeCNAME, dns.TypePTR, dns.TypeANY
	// hosts
	for _, n := range []string{"x.hosts.test.", "X.Hosts.TEST.", "inline.hosts.test.", "localhost.", "ip6-localhost.", "x.", "h3.hosts.test.", "h17.hosts.test."} {
		add(n, A, AAAA, MX, TXT)
	}
	add("q.wild.hosts.test.", A, AAAA)
	add("a.wild.hosts.test.", A)
	add("deep.q.wild.hosts.test.", A) // fallthrough, nothing after: SERVFAIL
	add("missing.hosts.test.", A, AAAA)
	add("1.0.0.10.in-addr.arpa.", PTR)
	add("9.9.9.10.in-addr.arpa.", PTR)
	add("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", PTR)
	add("alias.test.", A, AAAA)
	add("anything.test.", ANY)
	// file
	for _, n := range []string{"example.org.", "Example.ORG.", "www.example.org.", "WWW.example.org.", "web.example.org.", "chain1.example.org.",
		"mail.example.org.", "nope.example.org.", "dangling.example.org.", "ext.example.org.", "loop1.example.org.", "self.example.org.",
		"x.wild.example.org.", "y.x.wild.example.org.", "wild.example.org.", "deep.example.org.", "ent.deep.example.org.", "a.ent.deep.example.org.",
		"b.ent.deep.example.org.", "sub.example.org.", "host.sub.example.org.", "ns1.example.org.", "www.example.net.", "nope.example.net.", "example.net."} {
		add(n, A, AAAA, MX, TXT)
	}
	add("example.org.", NS, SOA)
	add("sub.example.org.", NS, dns.TypeDS)
	add("_http._tcp.example.org.", SRV)
	add("_sip._udp.example.org.", SRV)
	add("www.example.org.", CNAME)
	add("_http._tcp.example.net.", SRV)
	// forward (+cache, rewrite)
	for _, n := range []string{"www.upstream.test.", "alias.upstream.test.", "mx.upstream.test.", "nope.upstream.test.", "upstream.test.", "www.fwd.test.", "alias.fwd.test.", "nope.fwd.test.", "x.private.upstream.test."} {
		add(n, A, AAAA, MX)
	}
	add("upstream.test.", NS, SOA)
	// force_tcp / prefer_udp forwarders, hosts with ttl/no_reverse/fallthrough_unsupported
	for _, n := range []string{"www.tcp.test.", "big.tcp.test.", "nope.tcp.test.", "www.udp.test.", "big.udp.test."} {
		add(n, A, TXT)
	}
	for _, n := range []string{"a.nr.test.", "b.nr.test.", "c.nr.test."} {
		add(n, A, AAAA, TXT, MX)
	}
	add("1.0.5.10.in-addr.arpa.", PTR)
	// template
	for _, n := range []string{"ip-10-1-2-3.tmpl.test.", "IP-192-0-2-1.tmpl.test.", "shop.apps.tmpl.test.", "other.tmpl.test.", "tmpl.test."} {
		add(n, A, AAAA, TXT)
	}
	// transports, EDNS, flags, truncation
	for _, n := range []string{"big.hosts.test.", "big.example.org.", "big.upstream.test.", "www.example.org.", "x.hosts.test.", "big.tcp.test.", "big.udp.test."} {
		t := TXT
		if strings.HasPrefix(n, "big.hosts") || strings.HasPrefix(n, "x.") {
			t = A
		}
		qs = append(qs,
			query{name: n, qtype: t, edns: 0, rd: true},
			query{name: n, qtype: t, edns: 512, rd: true},
			query{name: n, qtype: t, edns: 4096, rd: true},
			query{name: n, qtype: t, tcp: true, edns: 1232, rd: true},
			query{name: n, qtype: t, tcp: true, rd: true},
			query{name: n, qtype: t, edns: 1232, do: true, rd: true},
			query{name: n, qtype: t, edns: 1232, cd: true, rd: true},
			query{name: n, qtype: t, edns: 1232},
		)
	}
	// every query again: the second time most come from the caches
	return append(qs, qs...)
}

func ask(q query, addr string) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(q.name, q.qtype)
	m.RecursionDesired = q.rd
	m.CheckingDisabled = q.cd
	if q.edns > 0 {
		m.SetEdns0(uint16(q.edns), q.do)
	}
	c := &dns.Client{Net: "udp", Timeout: 3 * time.Second, UDPSize: 65535}
	if q.tcp {
		c.Net = "tcp"
	}
	r, _, err := c.ExchangeContext(context.Background(), m, addr)
	return r, err
}

// render is a reply as compared: header flags and sections, TTLs zeroed.
func render(m *dns.Msg) string {
	var b strings.Builder
	fmt.Fprintf(&b, "rcode=%s qr=%v aa=%v tc=%v rd=%v ra=%v ad=%v cd=%v\n", dns.RcodeToString[m.Rcode], m.Response, m.Authoritative,
		m.Truncated, m.RecursionDesired, m.RecursionAvailable, m.AuthenticatedData, m.CheckingDisabled)
	for _, q := range m.Question {
		fmt.Fprintf(&b, "Q %s\n", q.String())
	}
	for _, s := range []struct {
		name string
		rrs  []dns.RR
	}{{"AN", m.Answer}, {"NS", m.Ns}, {"AR", m.Extra}} {
		for _, rr := range s.rrs {
			if opt, ok := rr.(*dns.OPT); ok {
				fmt.Fprintf(&b, "%s OPT udp=%d do=%v v=%d rcode=%d\n", s.name, opt.UDPSize(), opt.Do(), opt.Version(), opt.ExtendedRcode())
				continue
			}
			c := dns.Copy(rr)
			c.Header().Ttl = 0
			fmt.Fprintf(&b, "%s %s\n", s.name, c.String())
		}
	}
	return b.String()
}

func TestSameAnswersAsCoreDNS(t *testing.T) {
	bin := coredns(t)
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	hosts := write("hosts", hostsData())
	zoneFile := write("db.example.org", zone)
	upZone := write("db.upstream.test", upstreamZone)

	up := dnstest.Start(t, "upstream.test:0 {\n file "+upZone+"\n}\n")
	_, upPort, _ := net.SplitHostPort(up.Addr)

	corefile := func(port string) string {
		r := strings.NewReplacer("PORT", port, "UPPORT", upPort, "HOSTS", hosts, "ZONE", zoneFile)
		return r.Replace(corefileTmpl)
	}
	cdPort, pnPort := freePort(t), freePort(t)
	cdConf := write("Corefile.coredns", corefile(cdPort))
	cmd := exec.Command(bin, "-conf", cdConf)
	cmd.Dir = dir
	logf, _ := os.Create(filepath.Join(dir, "coredns.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); logf.Close() })

	r, err := server.Start(pdns.Input{File: "Corefile", Contents: []byte(corefile(pnPort))},
		server.Options{Log: testutil.Logger(t), Load: pdns.LoadOptions{DefaultHosts: []string{"127.0.0.1"}}})
	if err != nil {
		t.Fatalf("podnet dns: %v", err)
	}
	t.Cleanup(func() { r.Stop() })

	cdAddr, pnAddr := "127.0.0.1:"+cdPort, "127.0.0.1:"+pnPort
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := ask(query{name: "localhost.", qtype: dns.TypeA, rd: true}, cdAddr); err == nil {
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "coredns.log"))
			t.Fatalf("CoreDNS did not start:\n%s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The comparison must see the sections, not only the header.
	if m, err := ask(query{name: "x.hosts.test.", qtype: dns.TypeA, edns: 1232, rd: true}, pnAddr); err != nil ||
		!strings.Contains(render(m), "AN x.hosts.test.\t0\tIN\tA\t10.0.0.1\n") || !strings.Contains(render(m), "AR OPT udp=1232") {
		t.Fatalf("render of a hosts answer: %v %q", err, render(m))
	}
	qs := queries()
	if len(qs) < 200 {
		t.Fatalf("only %d queries", len(qs))
	}
	differ := 0
	kinds := map[string]int{}
	for _, q := range qs {
		a, errA := ask(q, cdAddr)
		b, errB := ask(q, pnAddr)
		if (errA == nil) != (errB == nil) {
			differ++
			t.Errorf("%s: CoreDNS err %v, podnet err %v", q, errA, errB)
			continue
		}
		if errA != nil {
			continue
		}
		ra, rb := render(a), render(b)
		if ra != rb {
			differ++
			t.Errorf("%s differs:\n--- CoreDNS\n%s--- podnet\n%s", q, ra, rb)
		}
		kinds[dns.RcodeToString[a.Rcode]]++
	}
	keys := make([]string, 0, len(kinds))
	for k := range kinds {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var summary []string
	for _, k := range keys {
		summary = append(summary, fmt.Sprintf("%s=%d", k, kinds[k]))
	}
	t.Logf("%d queries compared with CoreDNS v1.15.0, %d differ (%s)", len(qs), differ, strings.Join(summary, " "))
}
