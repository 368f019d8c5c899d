package prometheus

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/miekg/dns"
	pdns "github.com/podnet/podnet/internal/dns"
	"github.com/podnet/podnet/internal/dns/dnstest"
	_ "github.com/podnet/podnet/internal/dns/plugin/loadbalance"
	_ "github.com/podnet/podnet/internal/dns/plugin/whoami"
	"github.com/podnet/podnet/internal/testutil"
)

func TestSetup(t *testing.T) {
	addrIs := func(addr string) func(*pdns.Controller) string {
		return func(c *pdns.Controller) string {
			if v, _ := c.Config().Get(name); v != addr {
				return fmt.Sprintf("addr %v, want %s", v, addr)
			}
			return ""
		}
	}
	dnstest.RunSetup(t, setup, []dnstest.SetupCase{
		{In: "prometheus", Want: addrIs("localhost:9153")},
		{In: "prometheus :9253", Want: addrIs(":9253")},
		{In: "prometheus 127.0.0.1", Want: addrIs("127.0.0.1:9153")},
		{In: "prometheus a b", Err: "Testfile:1 - Error during parsing: Wrong argument count or unexpected line ending after 'b'"},
		{In: "prometheus :99999", Err: "Testfile:1 - Error during parsing: invalid address ':99999': port \"99999\" is not a number from 0 to 65535"},
		{In: "prometheus\nprometheus", Err: "Testfile:2 - Error during parsing: prometheus: only one prometheus directive per server block"},
	})
}

func TestMetrics(t *testing.T) {
	port := testutil.FreePort(t)
	s := dnstest.Start(t, fmt.Sprintf("example.org:0 {\n prometheus 127.0.0.1:%d\n loadbalance\n whoami\n}\n", port))
	dnstest.Query(t, s.Addr, "a.example.org.", dns.TypeA)
	dnstest.Query(t, s.Addr, "b.example.org.", dns.TypeA)
	m := new(dns.Msg)
	m.SetQuestion("c.example.org.", dns.TypeNAPTR)
	m.SetEdns0(1232, true)
	dnstest.Exchange(t, "tcp", s.Addr, m)
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	body := string(b)
	for _, want := range []string{
		`coredns_dns_requests_total{family="1",proto="udp",server="dns://127.0.0.1:0",type="A",view="",zone="example.org."} 2`,
		`coredns_dns_requests_total{family="1",proto="tcp",server="dns://127.0.0.1:0",type="other",view="",zone="example.org."} 1`,
		`coredns_dns_responses_total{plugin="whoami",rcode="NOERROR",server="dns://127.0.0.1:0",view="",zone="example.org."} 3`,
		`coredns_dns_do_requests_total{server="dns://127.0.0.1:0",view="",zone="example.org."} 1`,
		`coredns_dns_request_duration_seconds_count{server="dns://127.0.0.1:0",type="A",view="",zone="example.org."} 2`,
		`coredns_dns_request_size_bytes_count{proto="udp",server="dns://127.0.0.1:0",view="",zone="example.org."} 2`,
		`coredns_dns_response_size_bytes_count{proto="tcp",server="dns://127.0.0.1:0",view="",zone="example.org."} 1`,
		`coredns_plugin_enabled{name="whoami",server="dns://127.0.0.1:0",view="",zone="example.org."} 1`,
		`coredns_build_info{goversion="go`,
		`coredns_panics_total 0`,
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", body)
	}
}
