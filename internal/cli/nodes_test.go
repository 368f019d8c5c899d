package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/agent"
	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/controller"
	"github.com/podnet/podnet/internal/testutil"
)

func TestGetDescribeNodes(t *testing.T) {
	s, cfg := testutil.Store(t)
	ctx := context.Background()
	if _, err := s.EnsureClusterConfig(ctx, api.ClusterConfig{ClusterCIDR: "10.9.0.0/23", NodeCIDRMaskSize: 24}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []agent.NodeConfig{{Name: "a", IP: "192.168.50.1"}, {Name: "b", IP: "192.168.50.2"}} {
		if _, err := agent.Register(ctx, s, n); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := agent.Register(ctx, s, agent.NodeConfig{Name: "n21", IP: "192.168.50.21"}); err == nil {
		t.Fatal("third node got a CIDR from a /23")
	}
	ep := cfg.ClientURL
	out, err := podnet(t, ep, "", "get", "nodes", "-o", "wide")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || strings.Join(strings.Fields(lines[0]), " ") != "NAME STATUS ROLES AGE INTERNAL-IP POD-CIDR BACKEND" {
		t.Fatalf("get nodes -o wide:\n%s", out)
	}
	if f := strings.Fields(lines[1]); f[0] != "a" || f[1] != "Ready" || f[4] != "192.168.50.1" || f[5] != "10.9.0.0/24" || f[6] != "vxlan" {
		t.Fatalf("row a: %q", lines[1])
	}
	if f := strings.Fields(lines[3]); f[0] != "n21" || f[1] != "NotReady" || f[5] != "<none>" {
		t.Fatalf("row n21: %q", lines[3])
	}
	out, err = podnet(t, ep, "", "get", "node", "a", "-o", "json")
	if err != nil || !strings.Contains(out, `"podCIDR": "10.9.0.0/24"`) {
		t.Fatalf("get node -o json: %v\n%s", err, out)
	}
	out, err = podnet(t, ep, "", "describe", "node", "n21")
	if err != nil || !strings.Contains(out, "CIDRExhausted") || !strings.Contains(out, "cluster CIDR 10.9.0.0/23 has no free /24 for node n21 (all 2 in use)") || !strings.Contains(out, "InternalIP:") {
		t.Fatalf("describe node n21: %v\n%s", err, out)
	}
	// A pod no node fits says why in `describe pod`.
	mctx, cancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() {
		controller.NewManager(controller.Config{Store: s, Logger: testutil.Logger(t), Resync: 100 * time.Millisecond}).Run(mctx)
		close(stopped)
	}()
	defer func() { cancel(); <-stopped }()
	ssd := "apiVersion: v1\nkind: Pod\nmetadata: {name: ssd}\nspec:\n  nodeSelector: {disk: ssd}\n  containers: [{name: c, command: [sleep, infinity]}]\n"
	if out, err := podnet(t, ep, ssd, "apply", "-f", "-"); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	want := "Unschedulable: 0/3 nodes are available: 2 node(s) didn't match Pod's node selector, 1 node(s) were not ready."
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err = podnet(t, ep, "", "describe", "pod", "ssd")
		if err == nil && strings.Contains(out, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("describe pod ssd: %v\n%s", err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
