package cli

import (
	"strings"
	"testing"

	"github.com/podnet/podnet/internal/testutil"
)

const corefileCM = `apiVersion: v1
kind: ConfigMap
metadata:
  name: coredns
  namespace: kube-system
data:
  Corefile: |
    .:53 {
        whoami
    }
`

func TestConfigMapApplyGetDescribe(t *testing.T) {
	_, cfg := testutil.Store(t)
	ep := cfg.ClientURL
	out, err := podnet(t, ep, corefileCM, "apply", "-f", "-")
	if err != nil || !strings.Contains(out, "configmap/coredns created") {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	out, err = podnet(t, ep, "", "-n", "kube-system", "get", "cm")
	if err != nil || !strings.Contains(out, "NAME") || !strings.Contains(out, "DATA") || !strings.Contains(out, "coredns   1") {
		t.Fatalf("get cm: %v\n%s", err, out)
	}
	out, err = podnet(t, ep, "", "-n", "kube-system", "describe", "configmap", "coredns")
	if err != nil || !strings.Contains(out, "Corefile:\n----\n.:53 {\n    whoami\n}\n") || !strings.Contains(out, "Namespace:    kube-system") {
		t.Fatalf("describe: %v\n%s", err, out)
	}
	bad := strings.Replace(corefileCM, "Corefile:", "bad/key:", 1)
	out, err = podnet(t, ep, bad, "apply", "-f", "-")
	if err == nil || !strings.Contains(out+err.Error(), "data[bad/key]") {
		t.Fatalf("bad key accepted: %v\n%s", err, out)
	}
}
