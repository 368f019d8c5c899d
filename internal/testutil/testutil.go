// Package testutil gives tests throwaway network namespaces, unique names,
// the project's built binaries and test tools (Go commands from the module
// proxy, cached outside the repository; Debian commands). Everything it
// creates is removed in t.Cleanup.
//
// Names it hands out start with "pn" so scripts/leakcheck.sh can find leaks.
package testutil

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/podnet/podnet/internal/netns"
)

// CI reports whether the tests run in CI (CI=true, as `make test` in CI
// sets it). There a missing prerequisite is a failure, not a skip.
func CI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v == "true" || v == "1"
}

// SkipOrFail skips the test with reason, or fails it under CI=true, where
// nothing the suite needs may be missing.
func SkipOrFail(t testing.TB, reason string) {
	t.Helper()
	if CI() {
		t.Fatalf("%s (CI=true: a missing prerequisite fails the test)", reason)
	}
	t.Skip(reason)
}

// RequireRoot skips the test in -short mode, and unless it runs as root;
// under CI=true not being root fails the test instead.
func RequireRoot(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		SkipOrFail(t, "integration test: needs root")
	}
}

// UniqueName returns prefix followed by random hex, at most max characters
// long (max 0 means 15, the kernel's interface name limit).
func UniqueName(prefix string, max int) string {
	if max == 0 {
		max = 15
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	n := prefix + hex.EncodeToString(b)
	if len(n) > max {
		n = n[:max]
	}
	return n
}

// NewNS creates a named network namespace "pn<random>" with loopback up and
// deletes it when the test ends. It returns the name and path.
func NewNS(t testing.TB) (name, path string) {
	t.Helper()
	name = UniqueName("pnt", 12)
	path, err := netns.Create(name)
	if err != nil {
		t.Fatalf("create netns: %v", err)
	}
	t.Cleanup(func() {
		if err := netns.Delete(name); err != nil {
			t.Errorf("delete netns %s: %v", name, err)
		}
	})
	return name, path
}

// Run runs a command and fails the test on error, returning its output.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// InNS runs a command inside the named namespace via `ip netns exec`.
func InNS(ns string, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

var buildOnce sync.Once
var buildDir string
var buildErr error

// Binaries returns the directory holding podnet and podnet-cni. It uses
// $PODNET_BIN when set (make test sets it), else builds them once per test
// binary into a temporary directory.
func Binaries(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("PODNET_BIN"); d != "" {
		return d
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "podnet-bin-")
		if err != nil {
			buildErr = err
			return
		}
		root := ModuleRoot()
		for _, c := range []struct{ out, pkg string }{{"podnet", "./cmd/podnet"}, {"podnet-cni", "./cmd/podnet-cni"}} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(dir, c.out), c.pkg)
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = &buildError{string(out), err}
				return
			}
		}
		buildDir = dir
	})
	if buildErr != nil {
		t.Fatalf("build binaries: %v", buildErr)
	}
	return buildDir
}

type buildError struct {
	out string
	err error
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }

// ModuleRoot returns the repository root, found from this source file.
func ModuleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Logger returns a slog.Logger writing through t.Logf.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Logf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
