package debug

import (
	"testing"

	pdns "github.com/podnet/podnet/internal/dns"
)

func TestSetup(t *testing.T) {
	setup, _ := pdns.Lookup("debug")
	c := pdns.NewTestController("debug")
	if err := setup(c); err != nil || !c.Config().Debug {
		t.Fatalf("debug: err %v, Debug %v", err, c.Config().Debug)
	}
	if err := setup(pdns.NewTestController("debug on")); err == nil {
		t.Fatal("debug on: no error")
	}
}
