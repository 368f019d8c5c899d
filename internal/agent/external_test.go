package agent

import (
	"testing"

	"github.com/podnet/podnet/internal/testutil"
)

// TestExternalEtcd runs node registration against a 3-member cluster of
// Debian's etcd.
func TestExternalEtcd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd processes")
	}
	testutil.EtcdBinary(t)
	t.Setenv(testutil.EnvTestEtcd, "external")
	t.Run("RegisterConcurrentDisjoint", TestRegisterConcurrentDisjoint)
	t.Run("RegisterKeepsCIDR", TestRegisterKeepsCIDR)
	t.Run("RegisterExhausted", TestRegisterExhausted)
	t.Run("NodeLeaseRenews", TestNodeLeaseRenews)
}
