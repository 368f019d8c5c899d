package prometheus

import (
	"context"
	"strconv"
	"time"

	"github.com/miekg/dns"
	pdns "github.com/podnet/podnet/internal/dns"
)

// Metrics records every query that passes through it.
type Metrics struct {
	next pdns.Handler
}

// Name implements pdns.Handler.
func (m *Metrics) Name() string { return name }

// ServeDNS implements pdns.Handler.
func (m *Metrics) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	st := pdns.NewRequest(w, r)
	si := pdns.ServerInfoFrom(ctx)
	zone := si.Zone
	if zone == "" {
		zone = "."
	}
	rec := pdns.NewRecorder(w, name)
	status, err := pdns.NextOrFailure(name, m.next, ctx, rec, r)
	rcode := rec.Rcode
	plugin := rec.Plugin
	size := rec.Len
	if !pdns.ClientWrite(status) || rec.Msg == nil {
		rcode = status
		plugin = ""
		size = 0
	}
	qtype := typeLabel(st.QType())
	proto := st.Proto()
	RequestCount.WithLabelValues(si.Server, zone, "", proto, strconv.Itoa(st.Family()), qtype).Inc()
	if st.Do() {
		RequestDo.WithLabelValues(si.Server, "", zone).Inc()
	}
	RequestDuration.WithLabelValues(si.Server, zone, "", qtype).Observe(time.Since(rec.Start).Seconds())
	RequestSize.WithLabelValues(si.Server, zone, "", proto).Observe(float64(st.Len()))
	ResponseSize.WithLabelValues(si.Server, zone, "", proto).Observe(float64(size))
	rc, ok := dns.RcodeToString[rcode]
	if !ok {
		rc = strconv.Itoa(rcode)
	}
	ResponseRcode.WithLabelValues(si.Server, zone, "", rc, plugin).Inc()
	return status, err
}
