package agent

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/podnet/podnet/internal/cni"
)

func TestConfListVersion(t *testing.T) {
	for _, c := range []struct{ in, want string }{{"", DefaultCNIVersion}, {"0.4.0", "0.4.0"}, {"1.1.0", "1.1.0"}} {
		b, err := ConfList(NetworkConfig{CNIVersion: c.in, PodCIDR: "10.244.1.0/24", DataDir: "/var/lib/cni/podnet"})
		if err != nil {
			t.Fatalf("%q: %v", c.in, err)
		}
		var m struct {
			CNIVersion string `json:"cniVersion"`
		}
		if err := json.Unmarshal(b, &m); err != nil || m.CNIVersion != c.want {
			t.Fatalf("%q: cniVersion %q (%v), want %q\n%s", c.in, m.CNIVersion, err, c.want, b)
		}
		// What the agent writes, the plugin takes (ParseConfig reads one
		// plugin's config, as the runtime passes it).
		var l struct {
			Name    string           `json:"name"`
			Plugins []map[string]any `json:"plugins"`
		}
		_ = json.Unmarshal(b, &l)
		l.Plugins[0]["cniVersion"], l.Plugins[0]["name"] = c.want, l.Name
		pb, _ := json.Marshal(l.Plugins[0])
		if _, err := cni.ParseConfig(pb); err != nil {
			t.Fatalf("%q: plugin refuses the agent's conflist: %v\n%s", c.in, err, pb)
		}
	}
	if DefaultCNIVersion != "1.0.0" {
		t.Fatalf("default cniVersion %s: containerd 1.6/1.7 need 1.0.0", DefaultCNIVersion)
	}
	_, err := ConfList(NetworkConfig{CNIVersion: "1.2.0", PodCIDR: "10.244.1.0/24"})
	if err == nil || !strings.Contains(err.Error(), `cniVersion "1.2.0"`) || !strings.Contains(err.Error(), "0.4.0, 1.0.0, 1.1.0") {
		t.Fatalf("unsupported version: %v", err)
	}
}
