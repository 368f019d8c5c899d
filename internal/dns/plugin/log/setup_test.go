package log

import (
	"bytes"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
	pdns "github.com/podnet/podnet/internal/dns"
	"github.com/podnet/podnet/internal/dns/dnstest"
	_ "github.com/podnet/podnet/internal/dns/plugin/whoami"
)

func TestSetup(t *testing.T) {
	for _, tt := range []struct {
		in, err string
		zones   []string
		format  string
		classes []Class
	}{
		{"log", "", []string{"."}, CommonLogFormat, []Class{All}},
		{"log example.org Example.NET", "", []string{"example.org.", "example.net."}, CommonLogFormat, []Class{All}},
		{"log {combined}", "", []string{"."}, CombinedLogFormat, []Class{All}},
		{`log . "{name} {rcode}"`, "", []string{"."}, "{name} {rcode}", []Class{All}},
		{"log {\n class denial error\n}", "", []string{"."}, CommonLogFormat, []Class{Denial, Error}},
		{"log {\n class nope\n}", "Testfile:2 - Error during parsing: unknown class 'nope' (want success, denial, error or all)", nil, "", nil},
		{"log {\n class\n}", "Testfile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'class'", nil, "", nil},
		{"log {\n level x\n}", "Testfile:2 - Error during parsing: unknown property 'level'", nil, "", nil},
		{"log a..b", `Testfile:1 - Error during parsing: server block key "a..b": "a..b" is not a valid domain name`, nil, "", nil},
	} {
		c := pdns.NewTestController(tt.in)
		err := setup(c)
		if (err == nil) != (tt.err == "") || err != nil && err.Error() != tt.err {
			t.Errorf("%q: error %v, want %q", tt.in, err, tt.err)
			continue
		}
		if err != nil {
			continue
		}
		h := c.Config().BuildChain().(*Handler)
		r := h.rules[0]
		if strings.Join(r.Zones, ",") != strings.Join(tt.zones, ",") || r.raw != tt.format || len(r.Classes) != len(tt.classes) {
			t.Errorf("%q: rule %+v", tt.in, r)
		}
		for _, cl := range tt.classes {
			if !r.Classes[cl] {
				t.Errorf("%q: class %d missing", tt.in, cl)
			}
		}
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestLogLines(t *testing.T) {
	var out syncBuf
	s := dnstest.StartWith(t, `
example.org:0 {
    log
    whoami
}
example.net:0 {
    log . "{type} {name} {rcode} {>rflags} {nope}" {
        class error
    }
}
`, dnstest.Options{Stdout: &out})
	m := new(dns.Msg)
	m.SetQuestion("WWW.example.org.", dns.TypeAAAA)
	m.Id = 4242
	m.SetEdns0(1232, true)
	dnstest.Exchange(t, "udp", s.Addr, m)
	dnstest.Query(t, s.Addr, "a.example.net.", dns.TypeMX)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("log lines:\n%s", out.String())
	}
	re := regexp.MustCompile(`^\[INFO\] 127\.0\.0\.1:\d+ - 4242 "AAAA IN www\.example\.org\. udp \d+ true 1232" NOERROR qr,aa,rd \d+ [0-9.e-]+s$`)
	if !re.MatchString(lines[0]) {
		t.Errorf("common format line: %s", lines[0])
	}
	if lines[1] != "[INFO] MX a.example.net. SERVFAIL qr,rd {nope}" {
		t.Errorf("custom format line: %s", lines[1])
	}
}
