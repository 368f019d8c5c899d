package controller

import (
	"testing"

	"github.com/podnet/podnet/internal/testutil"
)

// TestExternalEtcd runs the controller tests against a 3-member cluster of
// Debian's etcd.
func TestExternalEtcd(t *testing.T) {
	testutil.UseExternalEtcd(t)
	t.Run("LeaderElection", TestLeaderElection)
	t.Run("Scheduler", TestScheduler)
	t.Run("NodeLifecycle", TestNodeLifecycle)
	t.Run("EndpointSliceController", TestEndpointSliceController)
	t.Run("DeploymentBehindService", TestDeploymentBehindService)
	t.Run("GarbageCollection", TestGarbageCollection)
}
