package errors

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	pdns "github.com/podnet/podnet/internal/dns"
)

func TestSetup(t *testing.T) {
	for _, tt := range []struct {
		in       string
		err      string
		patterns int
	}{
		{"errors", "", 0},
		{"errors {\n stacktrace\n}", "", 0},
		{"errors {\n consolidate 1m .*\n consolidate 30s ^x warning\n}", "", 2},
		{"errors x", "Testfile:1 - Error during parsing: Wrong argument count or unexpected line ending after 'x'", 0},
		{"errors {\n consolidate 1m\n}", "Testfile:2 - Error during parsing: Wrong argument count or unexpected line ending after '1m'", 0},
		{"errors {\n consolidate 1x .*\n}", "Testfile:2 - Error during parsing: consolidate: invalid duration '1x'", 0},
		{"errors {\n consolidate 1m (\n}", "Testfile:2 - Error during parsing: consolidate: invalid regexp '(': error parsing regexp: missing closing ): `(`", 0},
		{"errors {\n consolidate 1m .* loud\n}", "Testfile:2 - Error during parsing: consolidate: unknown log level 'loud' (want warning, error, info or debug)", 0},
		{"errors {\n verbose\n}", "Testfile:2 - Error during parsing: unknown property 'verbose'", 0},
		{"errors\nerrors", "Testfile:2 - Error during parsing: errors: only one errors directive per server block", 0},
	} {
		c := pdns.NewTestController(tt.in)
		err := setup(c)
		if (err == nil) != (tt.err == "") || err != nil && err.Error() != tt.err {
			t.Errorf("%q: error %v, want %q", tt.in, err, tt.err)
			continue
		}
		if err == nil {
			h := c.Config().BuildChain().(*Handler)
			if len(h.patterns) != tt.patterns {
				t.Errorf("%q: %d patterns, want %d", tt.in, len(h.patterns), tt.patterns)
			}
		}
	}
}

type fakeWriter struct{ dns.ResponseWriter }

func TestLogsAndConsolidates(t *testing.T) {
	var buf syncBuf
	log := slog.New(slog.NewTextHandler(&buf, nil))
	fail := pdns.HandlerFunc(func(_ context.Context, _ dns.ResponseWriter, r *dns.Msg) (int, error) {
		if strings.HasPrefix(r.Question[0].Name, "slow") {
			return dns.RcodeServerFailure, fmt.Errorf("read udp: i/o timeout")
		}
		return dns.RcodeServerFailure, fmt.Errorf("boom")
	})
	h := &Handler{next: fail, log: log}
	h.patterns = []*pattern{{period: 50 * time.Millisecond, re: mustRe("i/o timeout$"), level: slog.LevelWarn}}
	if err := h.start(); err != nil {
		t.Fatal(err)
	}
	defer h.stop()
	q := func(n string) {
		m := new(dns.Msg)
		m.SetQuestion(n, dns.TypeA)
		if rc, err := h.ServeDNS(context.Background(), fakeWriter{}, m); rc != dns.RcodeServerFailure || err == nil {
			t.Fatalf("rcode %d err %v", rc, err)
		}
	}
	q("Example.org.")
	if !strings.Contains(buf.String(), `msg="2 example.org. A: boom"`) {
		t.Fatalf("log: %s", buf.String())
	}
	q("slow1.org.")
	q("slow2.org.")
	deadline := time.Now().Add(3 * time.Second)
	for !strings.Contains(buf.String(), "2 errors like 'i/o timeout$' occurred in last 50ms") {
		if time.Now().After(deadline) {
			t.Fatalf("no consolidated line: %s", buf.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if strings.Contains(buf.String(), `msg="2 slow1.org. A`) {
		t.Fatalf("consolidated error logged singly: %s", buf.String())
	}
}
