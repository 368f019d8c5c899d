package benchutil

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// Common holds the flags every driver takes.
type Common struct {
	PodnetBin string // directory holding podnet and podnet-cni
	Tmp       string // where the run's temp directories go
	Lock      string // the run lock (see LockRun), the same for every driver
}

// Register defines -podnet-bin, -tmp (described by tmpUsage) and -lock on
// fs.
func (c *Common) Register(fs *flag.FlagSet, tmpUsage string) {
	fs.StringVar(&c.PodnetBin, "podnet-bin", "bin", "directory holding podnet and podnet-cni")
	fs.StringVar(&c.Tmp, "tmp", os.TempDir(), tmpUsage)
	fs.StringVar(&c.Lock, "lock", "bench/.cache/run.lock", "lock file: one benchmark at a time")
}

// Prepare checks that the driver runs as root and makes the common paths
// and the driver's own (more) absolute, in place.
func (c *Common) Prepare(more ...*string) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces)")
	}
	for _, p := range append([]*string{&c.PodnetBin, &c.Tmp, &c.Lock}, more...) {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		*p = abs
	}
	return nil
}

// Run is the frame of a driver's run, named name in its messages: it
// takes the run lock at lock (status 2 if another benchmark holds it),
// calls sweep to remove what killed earlier runs left, then body with a
// context that the first SIGINT, SIGTERM or SIGHUP cancels. Further
// signals are ignored, so body's clean-up runs to the end. It returns
// body's status, or 130 after a signal.
func Run(name, lock string, sweep func(), body func(ctx context.Context) int) int {
	unlock, err := LockRun(lock)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 2
	}
	defer unlock()
	sweep()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	var interrupted atomic.Bool
	go func() {
		for s := range sigs {
			if interrupted.CompareAndSwap(false, true) {
				fmt.Fprintf(os.Stderr, "\n%s: %v: stopping and cleaning up\n", name, s)
				cancel()
			}
		}
	}()
	status := body(ctx)
	if interrupted.Load() {
		return 130
	}
	return status
}

// RunID is a run's random ID, 6 hex digits, which goes after Prefix in
// the names of what the run creates.
func RunID() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Phases is the set of names in a comma-separated -phases flag.
func Phases(list string) map[string]bool {
	want := map[string]bool{}
	for _, p := range strings.Split(list, ",") {
		want[strings.TrimSpace(p)] = true
	}
	return want
}

// Machine is the first line of a report: CPUs, kernel and Go version.
func Machine() string {
	var u unix.Utsname
	_ = unix.Uname(&u)
	return fmt.Sprintf("machine: %d CPUs, Linux %s, %s", runtime.NumCPU(), unix.ByteSliceToString(u.Release[:]), runtime.Version())
}

// Environ is the environment for podnet commands a driver runs: its own,
// without inherited PODNET_ settings (store, cluster, context file).
func Environ() []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "PODNET_") {
			env = append(env, e)
		}
	}
	return env
}
