package promutil

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRegisterOr(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := prometheus.CounterOpts{Name: "podnet_test_total", Help: "a test counter"}
	first := RegisterOr(reg, prometheus.NewCounter(opts))
	second := RegisterOr(reg, prometheus.NewCounter(opts))
	if first != second {
		t.Fatal("a second registration of the same metric did not return the first collector")
	}
	second.Inc()
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 || mfs[0].GetMetric()[0].GetCounter().GetValue() != 1 {
		t.Fatalf("gathered %v, %v: want one counter at 1", mfs, err)
	}
}
