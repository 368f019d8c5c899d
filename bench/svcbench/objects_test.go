package main

import (
	"encoding/json"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
)

func TestGenerate(t *testing.T) {
	for _, n := range []int{1, 10, 1000} {
		g := genSpec{services: n, eps: 10, targets: 10, updates: 5}
		o := generate(g)
		if len(o.Services) != n || len(o.Slices) != n {
			t.Fatalf("%d: %d services, %d slices", n, len(o.Services), len(o.Slices))
		}
		targets := g.targetIndexes()
		if len(targets) == 0 || targets[0] != 0 || len(targets) > max(1, n/2) {
			t.Fatalf("%d: targets %v", n, targets)
		}
		seen := map[netip.Addr]bool{}
		for i, s := range o.Slices {
			if len(s.Endpoints) != 10 && !slices.Contains(targets, i) {
				t.Fatalf("%d: slice %d has %d endpoints", n, i, len(s.Endpoints))
			}
			ip := netip.MustParseAddr(o.Services[i].Spec.ClusterIP)
			if !serviceCIDR.Contains(ip) || seen[ip] {
				t.Fatalf("%d: service %d: cluster IP %s outside the range or taken twice", n, i, ip)
			}
			seen[ip] = true
			for _, e := range s.Endpoints {
				a := netip.MustParseAddr(e.Addresses[0])
				if !clusterCIDR.Contains(a) || serviceCIDR.Contains(a) {
					t.Fatalf("%d: endpoint %s outside the pod range", n, a)
				}
			}
		}
		for _, i := range targets {
			if got := o.Slices[i].Endpoints[0].Addresses[0]; got != serverIP.String() {
				t.Fatalf("%d: target %d's first endpoint is %s, want the server", n, i, got)
			}
		}
		wantUpdates := 5
		if n == 1 {
			wantUpdates = 0 // the only Service is a target
		}
		if len(o.Updates) != wantUpdates {
			t.Fatalf("%d: %d updates, want %d", n, len(o.Updates), wantUpdates)
		}
		names := map[string]bool{}
		for _, u := range o.Updates {
			svc := u.Labels["kubernetes.io/service-name"]
			if names[svc] {
				t.Fatalf("%d: two updates of %s", n, svc)
			}
			names[svc] = true
			for _, i := range targets {
				if svc == svcName(i) {
					t.Fatalf("%d: an update changes target %s", n, svc)
				}
			}
		}
	}
}

func TestObjectsFileRoundTrip(t *testing.T) {
	o := generate(genSpec{services: 20, eps: 10, targets: 10, updates: 3})
	path := filepath.Join(t.TempDir(), "o.json")
	if err := writeObjects(path, o); err != nil {
		t.Fatal(err)
	}
	back, err := readObjects(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Services) != 20 || len(back.Slices) != 20 || len(back.Updates) != 3 {
		t.Fatalf("read back %d/%d/%d", len(back.Services), len(back.Slices), len(back.Updates))
	}
	// The kube-proxy driver decodes these top-level fields.
	var top map[string]json.RawMessage
	b, _ := json.Marshal(o)
	_ = json.Unmarshal(b, &top)
	for _, k := range []string{"services", "endpointSlices", "updates"} {
		if _, ok := top[k]; !ok {
			t.Errorf("no %q in the objects file", k)
		}
	}
}

func TestParseObjectsRejects(t *testing.T) {
	for _, in := range []string{
		`{`,
		`{"services":[{"metadata":{}}]}`,
		`{"endpointSlices":[{"metadata":{"name":"x"}}]}`,
		`{"updates":[null]}`,
	} {
		if _, err := parseObjects([]byte(in)); err == nil {
			t.Errorf("%s: no error", in)
		}
	}
}

func FuzzParseObjects(f *testing.F) {
	b, _ := json.Marshal(generate(genSpec{services: 3, eps: 2, targets: 1, updates: 1}))
	f.Add(b)
	f.Add([]byte(`{"services":[null]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := parseObjects(data)
		if err != nil {
			return
		}
		for _, s := range append(o.Slices, o.Updates...) {
			if s.Labels["kubernetes.io/service-name"] == "" {
				t.Fatal("accepted a slice without its Service's name")
			}
		}
	})
}
