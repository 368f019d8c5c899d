package store_test

import (
	"testing"

	"github.com/podnet/podnet/internal/testutil"
)

// TestExternalEtcd runs the store tests against a 3-member cluster of
// Debian's etcd (PODNET_TEST_ETCD=external runs every test that way).
func TestExternalEtcd(t *testing.T) {
	testutil.UseExternalEtcd(t)
	t.Run("CreateGetUpdateConflict", TestCreateGetUpdateConflict)
	t.Run("Apply", TestApply)
	t.Run("GracefulPodDelete", TestGracefulPodDelete)
	t.Run("Watch", TestWatch)
}
