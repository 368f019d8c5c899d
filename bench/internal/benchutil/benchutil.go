// Package benchutil is what the benchmark drivers bench/cnibench and
// bench/clusterbench share: the clean-up stack that undoes what a run
// made, the run lock that keeps one benchmark at a time on the machine,
// the frame of a driver's run (root check, absolute paths, signals that
// stop the measurements but not the clean-up), killing leftover
// processes, and the median/quantile of samples.
//
// Everything a driver creates carries Prefix in its name, so a later run
// (holding the lock) can tell what a killed one left behind.
package benchutil

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// Prefix starts the name of everything the benchmark creates: network
// namespaces, links inside them, clusters and temp directories. Nothing
// else on the machine uses it.
const Prefix = "pnb"

// Cleaner runs registered undo functions in reverse order, once. The zero
// value is ready to use; it is safe for concurrent use.
type Cleaner struct {
	mu  sync.Mutex
	fns []cleanupFn
}

type cleanupFn struct {
	what string
	fn   func() error
}

// Add registers fn, described by what in a failure message, to run on
// Run.
func (c *Cleaner) Add(what string, fn func() error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fns = append(c.fns, cleanupFn{what, fn})
}

// Run undoes everything registered so far, newest first, and reports
// whether every step succeeded; each failure is printed to stderr.
func (c *Cleaner) Run() bool {
	c.mu.Lock()
	fns := c.fns
	c.fns = nil
	c.mu.Unlock()
	ok := true
	for i := len(fns) - 1; i >= 0; i-- {
		if err := fns[i].fn(); err != nil {
			fmt.Fprintf(os.Stderr, "cleanup: %s: %v\n", fns[i].what, err)
			ok = false
		}
	}
	return ok
}

// TempDir creates <base>/pnb-<what>-… and registers its removal.
func (c *Cleaner) TempDir(base, what string) (string, error) {
	d, err := os.MkdirTemp(base, Prefix+"-"+what+"-")
	if err != nil {
		return "", err
	}
	c.Add("remove "+d, func() error { return os.RemoveAll(d) })
	return d, nil
}

// LockRun takes an exclusive flock on path (both drivers take the same
// one) so that only one benchmark runs at a time on the machine; then
// anything named pnb… that still exists was left by an earlier run that
// died (SIGKILL) and can be swept. The returned function releases it.
func LockRun(path string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another benchmark holds %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}
