package cni_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/podnet/podnet/internal/testutil"
)

// brokenConfigs are configs ADD refuses but DEL and GC must still act on:
// they keep name and dataDir, everything else is wrong.
var brokenConfigs = []struct {
	name  string
	extra map[string]any
	field string
}{
	{"bad subnet", map[string]any{"subnet": "10.123.40.0/33"}, `"subnet"`},
	{"no subnet", map[string]any{"subnet": nil}, `"subnet"`},
	{"unknown key", map[string]any{"bridgeName": "x"}, `"bridgeName"`},
	{"mtu type", map[string]any{"mtu": "big"}, `"mtu"`},
	{"bad bridge", map[string]any{"bridge": "a/b"}, `"bridge"`},
	{"bad route", map[string]any{"routes": []map[string]any{{"dst": "nope"}}}, `"routes[0].dst"`},
}

// Issue 10: a config broken while pods run must not strand them. DEL
// finds everything ADD made from the attachment record, needing only the
// network name and dataDir; ADD stays strict and STATUS reports the field.
func TestDelSurvivesBrokenConfig(t *testing.T) {
	for _, v := range []string{"0.4.0", "1.0.0", "1.1.0"} {
		t.Run(v, func(t *testing.T) {
			n := newNode(t)
			good := n.conflist(v, nil)
			base := n.warmBaseline(good)
			for i, c := range brokenConfigs {
				p := n.newPod()
				n.mustAdd(good, p, map[string]any{"portMappings": []map[string]any{{"hostPort": 8080 + i, "containerPort": 80}}})
				bad := n.conflist(v, c.extra)
				_, err := n.add(bad, n.newPod(), nil)
				if cniCode(err) != types.ErrInvalidNetworkConfig || !strings.Contains(err.Error(), "config field "+c.field) {
					t.Fatalf("%s: ADD got %v (code %d), want code 7 naming %s", c.name, err, cniCode(err), c.field)
				}
				if v == "1.1.0" {
					err := n.status(bad)
					if cniCode(err) != types.ErrInvalidNetworkConfig || !strings.Contains(err.Error(), "config field "+c.field) {
						t.Fatalf("%s: STATUS got %v (code %d), want code 7 naming %s", c.name, err, cniCode(err), c.field)
					}
				}
				if err := n.del(bad, p); err != nil {
					t.Fatalf("%s: DEL with a broken config: %v", c.name, err)
				}
				if _, err := inNS(p.ns, "ip", "link", "show", "eth0"); err == nil {
					t.Fatalf("%s: eth0 left in the pod after DEL", c.name)
				}
				n.requireState(base)
				// Idempotent, and fine for a pod never added.
				if err := n.del(bad, p); err != nil {
					t.Fatalf("%s: repeated DEL with a broken config: %v", c.name, err)
				}
				if err := n.del(bad, n.newPod()); err != nil {
					t.Fatalf("%s: DEL of an unknown pod with a broken config: %v", c.name, err)
				}
			}
			// The host ports are free again: a good ADD takes one.
			p := n.newPod()
			n.mustAdd(good, p, map[string]any{"portMappings": []map[string]any{{"hostPort": 8080, "containerPort": 80}}})
			if err := n.del(good, p); err != nil {
				t.Fatal(err)
			}
			n.requireState(base)
		})
	}
}

// DEL still needs to know where the records are: a bad name or dataDir is
// an error naming the field.
func TestDelNeedsNameAndDataDir(t *testing.T) {
	n := newNode(t)
	p := n.newPod()
	for _, c := range []struct {
		extra map[string]any
		field string
	}{
		{map[string]any{"dataDir": "var/lib"}, `"dataDir"`},
		{map[string]any{"dataDir": 7}, `"dataDir"`},
	} {
		err := n.del(n.conflist("1.1.0", c.extra), p)
		if cniCode(err) != types.ErrInvalidNetworkConfig || !strings.Contains(err.Error(), "config field "+c.field) {
			t.Fatalf("DEL got %v (code %d), want code 7 naming %s", err, cniCode(err), c.field)
		}
	}
	// A name with a slash, sent to the plugin directly (libcni would
	// refuse to build such a list).
	conf := n.conflistBytes("1.1.0", nil)
	var m map[string]any
	_ = json.Unmarshal(conf, &m)
	plugin := m["plugins"].([]any)[0].(map[string]any)
	plugin["cniVersion"], plugin["name"] = "1.1.0", "../x"
	out, err := n.execPlugin("DEL", plugin, p)
	if err == nil || !strings.Contains(out, `"code": 7`) || !strings.Contains(out, "network name") {
		t.Fatalf("DEL with name ../x: %v\n%s", err, out)
	}
}

// GC, like DEL, works from the records alone.
func TestGCSurvivesBrokenConfig(t *testing.T) {
	n := newNode(t)
	good := n.conflist("1.1.0", nil)
	base := n.warmBaseline(good)
	keep, drop := n.newPod(), n.newPod()
	n.mustAdd(good, keep, map[string]any{"portMappings": []map[string]any{{"hostPort": 8080, "containerPort": 80}}})
	n.mustAdd(good, drop, map[string]any{"portMappings": []map[string]any{{"hostPort": 8081, "containerPort": 80}}})
	// The plugin directly: libcni's GC would DEL the cached attachments
	// first and hide whether the plugin's GC itself works.
	var m map[string]any
	_ = json.Unmarshal(n.conflistBytes("1.1.0", map[string]any{"subnet": "10.123.40.0/33", "mtu": "big"}), &m)
	plugin := m["plugins"].([]any)[0].(map[string]any)
	plugin["cniVersion"], plugin["name"] = "1.1.0", n.network
	plugin["cni.dev/valid-attachments"] = []map[string]string{{"containerID": keep.id, "ifname": keep.ifname}}
	if out, err := n.execPlugin("GC", plugin, nil); err != nil {
		t.Fatalf("GC with a broken config: %v\n%s", err, out)
	}
	if err := n.check(good, keep); err != nil {
		t.Fatalf("kept pod fails CHECK after GC: %v", err)
	}
	if _, err := inNS(drop.ns, "ip", "link", "show", "eth0"); err == nil {
		t.Fatal("collected pod still has eth0")
	}
	if err := n.del(good, keep); err != nil {
		t.Fatal(err)
	}
	n.requireState(base)
}

// execPlugin runs podnet-cni in the node namespace with one plugin config
// on stdin, as a runtime would, and returns its stdout.
func (n *node) execPlugin(command string, plugin map[string]any, p *pod) (string, error) {
	n.t.Helper()
	conf, err := json.Marshal(plugin)
	if err != nil {
		n.t.Fatal(err)
	}
	cmd := testutil.InNS(n.ns, filepath.Join(pluginBinDir(n.t), "podnet-cni"))
	env := []string{"CNI_COMMAND=" + command, "CNI_PATH=" + pluginBinDir(n.t), "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	if p != nil {
		env = append(env, "CNI_CONTAINERID="+p.id, "CNI_NETNS="+p.path, "CNI_IFNAME="+p.ifname)
	}
	cmd.Env = env
	cmd.Stdin = bytes.NewReader(conf)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("podnet-cni %s: %w", command, err)
	}
	return out.String(), nil
}
