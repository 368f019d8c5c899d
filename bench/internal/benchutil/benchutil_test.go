package benchutil

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestMedianIsNearestRankHalf(t *testing.T) {
	for n := 0; n <= 101; n++ {
		v := make([]time.Duration, n)
		for i := range v {
			v[i] = time.Duration((i*37)%n + 1) // shuffled 1..n
		}
		if m, q := Median(v), Quantile(v, 0.5); m != q {
			t.Fatalf("n=%d: Median %v, Quantile(0.5) %v", n, m, q)
		}
	}
	if got := Quantile([]int{5, 1, 4, 2, 3, 6, 7, 8, 9, 10}, 0.9); got != 9 {
		t.Errorf("p90 of 1..10 = %d, want 9", got)
	}
	if got := Median([]int{4, 1, 3, 2}); got != 2 {
		t.Errorf("median of 1..4 = %d, want the lower middle 2", got)
	}
}

func TestCleanerRunsNewestFirstOnce(t *testing.T) {
	var c Cleaner
	var order []string
	c.Add("a", func() error { order = append(order, "a"); return nil })
	c.Add("b", func() error { order = append(order, "b"); return errors.New("boom") })
	c.Add("c", func() error { order = append(order, "c"); return nil })
	if c.Run() {
		t.Error("Run reported success with a failing step")
	}
	if !c.Run() {
		t.Error("a second Run had something to do")
	}
	if want := []string{"c", "b", "a"}; !reflect.DeepEqual(order, want) {
		t.Errorf("order %v, want %v", order, want)
	}
}

func TestCleanerTempDir(t *testing.T) {
	var c Cleaner
	d, err := c.TempDir(t.TempDir(), "unit")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(filepath.Base(d), Prefix+"-unit-") {
		t.Errorf("temp dir %s lacks the prefix", d)
	}
	if !c.Run() {
		t.Fatal("clean-up failed")
	}
	if _, err := os.Stat(d); !os.IsNotExist(err) {
		t.Errorf("%s still there: %v", d, err)
	}
}

func TestLockRunIsExclusive(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sub", "run.lock")
	unlock, err := LockRun(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LockRun(p); err == nil || !strings.Contains(err.Error(), "another benchmark holds") {
		t.Errorf("second lock: %v, want held", err)
	}
	unlock()
	unlock2, err := LockRun(p)
	if err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	unlock2()
}

func TestPhases(t *testing.T) {
	got := Phases("cni, up")
	if want := map[string]bool{"cni": true, "up": true}; !reflect.DeepEqual(got, want) {
		t.Errorf("Phases = %v, want %v", got, want)
	}
}

func TestEnvironDropsPodnetSettings(t *testing.T) {
	t.Setenv("PODNET_STORE", "x")
	t.Setenv("PNBTEST_KEEP", "y")
	env := strings.Join(Environ(), "\n")
	if strings.Contains(env, "PODNET_STORE=") || !strings.Contains(env, "PNBTEST_KEEP=y") {
		t.Errorf("Environ: %q", env)
	}
}
