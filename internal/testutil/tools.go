package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// ToolsCacheEnv names a directory to cache test tools in (default:
// <user cache dir>/podnet/test-tools, outside the repository).
const ToolsCacheEnv = "PODNET_TOOLS_CACHE"

// GoTool returns the path of a Go command's binary built from the module
// proxy with `go install pkg@version`, building it the first time only: the
// binary is cached under ToolsCacheEnv's directory as <name>@<version>/<name>,
// across test runs and test binaries (a file lock serializes builds). An
// unreachable proxy skips the test (fails it under CI=true).
func GoTool(t testing.TB, pkg, version string) string {
	t.Helper()
	name := path.Base(pkg)
	dir := os.Getenv(ToolsCacheEnv)
	if dir == "" {
		c, err := os.UserCacheDir()
		if err != nil {
			c = os.TempDir()
		}
		dir = filepath.Join(c, "podnet", "test-tools")
	}
	dir = filepath.Join(dir, name+"@"+version)
	bin := filepath.Join(dir, name)
	if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() {
		return bin
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("tools cache: %v", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatalf("tools cache: %v", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatalf("tools cache: lock: %v", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if _, err := os.Stat(bin); err == nil {
		return bin // built by another test binary while we waited
	}
	gobin, err := os.MkdirTemp(dir, ".build-")
	if err != nil {
		t.Fatalf("tools cache: %v", err)
	}
	defer os.RemoveAll(gobin)
	cmd := exec.Command("go", "install", pkg+"@"+version)
	cmd.Env = append(os.Environ(), "GOBIN="+gobin, "GOFLAGS=-mod=mod", "CGO_ENABLED=0")
	cmd.Dir = gobin // outside any module
	if out, err := cmd.CombinedOutput(); err != nil {
		s := string(out)
		if strings.Contains(s, "dial tcp") || strings.Contains(s, "proxy") || strings.Contains(s, "no such host") {
			SkipOrFail(t, fmt.Sprintf("module proxy unreachable, can't install %s@%s: %s", pkg, version, s))
		}
		t.Fatalf("go install %s@%s: %v\n%s", pkg, version, err, s)
	}
	if err := os.Rename(filepath.Join(gobin, name), bin); err != nil {
		t.Fatalf("tools cache: %v", err)
	}
	return bin
}

// LookTool returns the path of a command from the system (a Debian
// package that `make deps` installs), skipping the test when it is
// missing (failing it under CI=true).
func LookTool(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		for _, d := range []string{"/usr/sbin", "/sbin", "/usr/bin"} {
			if fi, err := os.Stat(filepath.Join(d, name)); err == nil && !fi.IsDir() {
				return filepath.Join(d, name)
			}
		}
		SkipOrFail(t, fmt.Sprintf("%s not found: install Debian's %s (make deps): %v", name, pkg, err))
	}
	return p
}
