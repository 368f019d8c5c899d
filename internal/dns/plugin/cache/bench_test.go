package cache

import (
	"context"
	"testing"

	"github.com/miekg/dns"

	"github.com/podnet/podnet/internal/dns/plugin/plugutil"
)

func BenchmarkHit(b *testing.B) {
	be := &backend{reply: aReply(300)}
	c := New(DefaultConfig())
	c.Next = be
	c.Metrics = NewMetrics(nil)
	r := new(dns.Msg)
	r.SetQuestion("a.example.org.", dns.TypeA)
	r.SetEdns0(1232, false)
	rec := plugutil.NewRecorder(nil)
	c.ServeDNS(context.Background(), rec, r)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c.ServeDNS(context.Background(), rec, r)
	}
	if be.calls.Load() != 1 {
		b.Fatalf("backend called %d times", be.calls.Load())
	}
}
