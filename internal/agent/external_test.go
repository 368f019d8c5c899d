package agent

import (
	"testing"

	"github.com/podnet/podnet/internal/testutil"
)

// TestExternalEtcd runs node registration against a 3-member cluster of
// Debian's etcd.
func TestExternalEtcd(t *testing.T) {
	testutil.UseExternalEtcd(t)
	t.Run("RegisterConcurrentDisjoint", TestRegisterConcurrentDisjoint)
	t.Run("RegisterKeepsCIDR", TestRegisterKeepsCIDR)
	t.Run("RegisterExhausted", TestRegisterExhausted)
	t.Run("NodeLeaseRenews", TestNodeLeaseRenews)
}
