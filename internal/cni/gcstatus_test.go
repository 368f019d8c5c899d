package cni_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/podnet/podnet/internal/cni"
	"github.com/podnet/podnet/internal/link"
	"github.com/podnet/podnet/internal/testutil"
)

// pluginConf renders the single plugin config a runtime passes on stdin:
// the conflist's plugin with its name and cniVersion, extra keys
// overriding (nil deletes).
func (n *node) pluginConf(version string, extra map[string]any) map[string]any {
	var l struct {
		Plugins []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal(n.conflistBytes(version, extra), &l); err != nil {
		n.t.Fatal(err)
	}
	c := l.Plugins[0]
	c["cniVersion"], c["name"] = version, n.network
	return c
}

// invoke runs podnet-cni itself in the node namespace, as a runtime
// would: command in CNI_COMMAND, conf on stdin, env added to the
// environment. A failure returns the plugin's *types.Error.
func (n *node) invoke(command string, conf map[string]any, env ...string) error {
	n.t.Helper()
	b, err := json.Marshal(conf)
	if err != nil {
		n.t.Fatal(err)
	}
	cmd := testutil.InNS(n.ns, filepath.Join(pluginBinDir(n.t), "podnet-cni"))
	cmd.Env = append(os.Environ(), append([]string{"CNI_COMMAND=" + command, "CNI_PATH=" + pluginBinDir(n.t)}, env...)...)
	return runPlugin(cmd, b)
}

func runPlugin(cmd *exec.Cmd, stdin []byte) error {
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(stdin), &stdout, &stderr
	err := cmd.Run()
	if err == nil {
		return nil
	}
	var e types.Error
	if jerr := json.Unmarshal(stdout.Bytes(), &e); jerr != nil || e.Code == 0 {
		return fmt.Errorf("podnet-cni: %w (stdout %q, stderr %q)", err, stdout.String(), stderr.String())
	}
	return &e
}

// netDir is the plugin's state directory of the node's network.
func (n *node) netDir() string { return filepath.Join(n.dataDir, n.network) }

// keyState is everything the node holds for one attachment key: its
// record, its reservations, its host veth, its nft elements. Empty when
// nothing is left.
func (n *node) keyState(key string) string {
	n.t.Helper()
	var parts []string
	if b, err := os.ReadFile(filepath.Join(n.netDir(), "attachments", key+".json")); err == nil {
		parts = append(parts, "record "+string(b))
	}
	for _, sub := range []string{"ips", "ports"} {
		ents, _ := os.ReadDir(filepath.Join(n.netDir(), sub))
		for _, e := range ents {
			if b, err := os.ReadFile(filepath.Join(n.netDir(), sub, e.Name())); err == nil && strings.TrimSpace(string(b)) == key {
				parts = append(parts, sub+"/"+e.Name())
			}
		}
	}
	if out, err := inNS(n.ns, "ip", "-o", "link", "show", key); err == nil {
		// Only what GC could change: the name, the master.
		f := strings.Fields(out)
		parts = append(parts, "link "+f[1])
	}
	if out, err := inNS(n.ns, "nft", "list", "table", "inet", "podnet"); err == nil {
		// nft prints several elements on a line: "elements = { a, b,".
		for _, line := range strings.Split(out, "\n") {
			line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "elements = {"))
			for _, el := range strings.Split(strings.TrimRight(line, ",}"), ",") {
				if strings.Contains(el, `comment "`+n.network+"/"+key+`"`) {
					parts = append(parts, "nft "+strings.TrimSpace(el))
				}
			}
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, "\n")
}

func podKey(p *pod) string { return link.HostVethName(p.id, p.ifname) }

// Issue 9, item 4: the plugin's own GC, called with attachments libcni
// never knew about (ADDs killed at several steps, and pods libcni added
// but whose cache the runtime lost), removes exactly the attachments not
// in the valid list and leaves the valid ones as they were. libcni DELs
// every cached attachment missing from the list before it calls the
// plugin, so GC through libcni alone would pass with a plugin GC that did
// nothing; here the plugin is called directly with CNI_COMMAND=GC.
func TestPluginGCRemovesExactlyTheInvalid(t *testing.T) {
	n := newNode(t)
	l := n.conflist("1.1.0", nil)
	base := n.warmBaseline(l)
	port := 9100
	ports := func() map[string]any {
		port++
		return map[string]any{"portMappings": []map[string]any{{"hostPort": port, "containerPort": 80}}}
	}
	var valid, invalid []*pod
	for i := 0; i < 4; i++ {
		p := n.newPod()
		n.mustAdd(l, p, ports())
		if i%2 == 0 {
			valid = append(valid, p)
		} else {
			invalid = append(invalid, p)
		}
	}
	// ADDs killed at each step leave reservations, a record, a veth, nft
	// elements, or all of them; a runtime never got a result for them.
	// Once the record is written, one of each kind is also in the valid
	// list (the runtime will retry its ADD, say): GC must keep even a
	// half-made attachment it is told is valid. Before the record there is
	// no attachment yet, only reservations of a dead ADD (the network
	// lock excludes a live one), which GC frees whatever the list says.
	for i, step := range []string{"after-ip", "after-ports", "after-reserve", "after-veth", "after-nft"} {
		keeps := []bool{false, true}
		if step == "after-ip" || step == "after-ports" {
			keeps = keeps[:1]
		}
		for _, keep := range keeps {
			p := n.newPod()
			os.Setenv(cni.CrashEnv, step)
			_, err := n.add(l, p, ports())
			os.Unsetenv(cni.CrashEnv)
			if err == nil || !strings.Contains(err.Error(), "killed") {
				t.Fatalf("ADD killed at %s (%d): %v", step, i, err)
			}
			if keep {
				valid = append(valid, p)
			} else {
				invalid = append(invalid, p)
			}
		}
	}
	before := map[string]string{}
	for _, p := range append(append([]*pod{}, valid...), invalid...) {
		s := n.keyState(podKey(p))
		if s == "" {
			t.Fatalf("attachment %s left nothing on the node before GC", p.id)
		}
		before[podKey(p)] = s
	}

	conf := n.pluginConf("1.1.0", nil)
	var va []types.GCAttachment
	for _, p := range valid {
		va = append(va, types.GCAttachment{ContainerID: p.id, IfName: p.ifname})
	}
	conf["cni.dev/valid-attachments"] = va
	if err := n.invoke("GC", conf); err != nil {
		t.Fatalf("plugin GC: %v", err)
	}

	for _, p := range valid {
		if got := n.keyState(podKey(p)); got != before[podKey(p)] {
			t.Errorf("GC changed valid attachment %s:\nbefore:\n%s\nafter:\n%s", p.id, before[podKey(p)], got)
		}
	}
	for _, p := range invalid {
		if got := n.keyState(podKey(p)); got != "" {
			t.Errorf("GC left invalid attachment %s:\n%s", p.id, got)
		}
		if out, err := inNS(p.ns, "ip", "-o", "link", "show", "eth0"); err == nil {
			t.Errorf("GC left eth0 in invalid pod %s: %s", p.id, out)
		}
	}
	// The complete valid pods still pass CHECK, through libcni's cache.
	for _, p := range valid[:2] {
		if err := n.check(l, p); err != nil {
			t.Errorf("valid pod %s fails CHECK after GC: %v", p.id, err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	// A second GC with the same list changes nothing; one with no valid
	// attachment brings the node back to its baseline.
	if err := n.invoke("GC", conf); err != nil {
		t.Fatalf("repeated plugin GC: %v", err)
	}
	for _, p := range valid {
		if got := n.keyState(podKey(p)); got != before[podKey(p)] {
			t.Errorf("repeated GC changed valid attachment %s:\n%s", p.id, got)
		}
	}
	delete(conf, "cni.dev/valid-attachments")
	if err := n.invoke("GC", conf); err != nil {
		t.Fatalf("plugin GC of everything: %v", err)
	}
	n.requireState(base)
}

// Issue 9, item 5: STATUS fails with code 50 (plugin not available) when
// the plugin cannot work: a dataDir that cannot be created, one that
// cannot be written, no nft command, an nft that does not work. A good
// config on the same node then gives STATUS success.
func TestStatusFails(t *testing.T) {
	n := newNode(t)
	good := n.pluginConf("1.1.0", nil)
	if err := n.invoke("STATUS", good); err != nil {
		t.Fatalf("STATUS of a good config: %v", err)
	}
	if err := n.status(n.conflist("1.1.0", nil)); err != nil {
		t.Fatalf("STATUS through libcni: %v", err)
	}

	tmp := t.TempDir()
	notDir := filepath.Join(tmp, "file")
	if err := os.WriteFile(notDir, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A read-only data directory: root ignores file modes, so the plugin
	// runs in a private mount namespace where the directory is a
	// read-only bind mount of itself (gone with the process).
	ro := filepath.Join(tmp, "ro")
	if err := os.MkdirAll(filepath.Join(ro, n.network), 0o700); err != nil {
		t.Fatal(err)
	}
	// An nft that fails every call.
	fakeBin := t.TempDir()
	if err := os.WriteFile(filepath.Join(fakeBin, "nft"), []byte("#!/bin/sh\necho 'nft: broken for the test' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	noNftBin := t.TempDir() // a PATH with no nft at all

	cases := []struct {
		name string
		run  func() error
		msg  string
	}{
		{"dataDir cannot be created", func() error {
			return n.invoke("STATUS", n.pluginConf("1.1.0", map[string]any{"dataDir": filepath.Join(notDir, "sub")}))
		}, "dataDir not writable"},
		{"dataDir read-only", func() error {
			b, _ := json.Marshal(n.pluginConf("1.1.0", map[string]any{"dataDir": ro}))
			cmd := testutil.InNS(n.ns, "unshare", "--mount", "--propagation", "private", "sh", "-c",
				`mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && exec "$2"`, "sh", ro, filepath.Join(pluginBinDir(t), "podnet-cni"))
			cmd.Env = append(os.Environ(), "CNI_COMMAND=STATUS", "CNI_PATH="+pluginBinDir(t))
			return runPlugin(cmd, b)
		}, "dataDir not writable"},
		{"no nft command", func() error {
			return n.invoke("STATUS", good, "PATH="+noNftBin)
		}, "nftables not usable"},
		{"nft fails", func() error {
			return n.invoke("STATUS", good, "PATH="+fakeBin+":"+os.Getenv("PATH"))
		}, "nftables not usable"},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			err := c.run()
			var e *types.Error
			if !errors.As(err, &e) || e.Code != types.ErrPluginNotAvailable || !strings.Contains(e.Msg, c.msg) {
				t.Fatalf("STATUS: %v, want code %d containing %q", err, types.ErrPluginNotAvailable, c.msg)
			}
		})
	}
	// Nothing was written where STATUS could not write, and the node's
	// own network still reports ready.
	if ents, _ := os.ReadDir(filepath.Join(ro, n.network)); len(ents) != 0 {
		t.Fatalf("STATUS left %v in the read-only dataDir", ents)
	}
	if err := n.invoke("STATUS", good); err != nil {
		t.Fatalf("STATUS of the good config afterwards: %v", err)
	}
}
