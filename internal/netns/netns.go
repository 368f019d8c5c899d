// Package netns creates, enters and removes named network namespaces, the
// same ones `ip netns` manages under /run/netns.
//
// A network namespace belongs to an OS thread, so every function that enters
// one locks the calling goroutine to its thread and restores the original
// namespace before unlocking. Callers never see their thread switched.
package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Dir is where named namespaces are bind-mounted, as with `ip netns`.
const Dir = "/run/netns"

// Path returns the bind-mount path of the named namespace.
func Path(name string) string { return filepath.Join(Dir, name) }

// Exists reports whether the named namespace exists.
func Exists(name string) bool {
	_, err := os.Stat(Path(name))
	return err == nil
}

// Create makes a new named network namespace with its loopback up and returns
// its path. It fails if the name is taken. The caller's namespace is unchanged.
func Create(name string) (string, error) {
	if name == "" || len(name) > 200 || filepath.Base(name) != name {
		return "", fmt.Errorf("netns: invalid namespace name %q", name)
	}
	if Exists(name) {
		return "", fmt.Errorf("netns %q: %w", name, os.ErrExist)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return "", fmt.Errorf("netns: get current namespace: %w", err)
	}
	defer orig.Close()
	h, err := netns.NewNamed(name)
	if err != nil {
		return "", fmt.Errorf("netns %q: create: %w", name, err)
	}
	h.Close()
	if err := setLoopbackUp(); err != nil {
		_ = netns.Set(orig)
		_ = netns.DeleteNamed(name)
		return "", fmt.Errorf("netns %q: %w", name, err)
	}
	if err := netns.Set(orig); err != nil {
		// The thread is now in the wrong namespace; do not unlock it so
		// the runtime discards the thread instead of reusing it.
		runtime.LockOSThread()
		return "", fmt.Errorf("netns: restore original namespace: %w", err)
	}
	return Path(name), nil
}

// Delete removes the named namespace. A missing namespace is not an error.
func Delete(name string) error {
	p := Path(name)
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("netns %q: unmount: %w", name, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("netns %q: remove: %w", name, err)
	}
	return nil
}

// Do runs fn with the calling thread inside the namespace at path (a named
// namespace's Path, or /proc/PID/ns/net). Child processes started by fn with
// os/exec inherit that namespace.
func Do(path string, fn func() error) error {
	target, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("netns %s: open: %w", path, err)
	}
	defer target.Close()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return fmt.Errorf("netns: get current namespace: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(target); err != nil {
		return fmt.Errorf("netns %s: enter: %w", path, err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		runtime.LockOSThread() // poison the thread; see Create
		return errors.Join(ferr, fmt.Errorf("netns: restore original namespace: %w", err))
	}
	return ferr
}

func setLoopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("loopback up: socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback up: get flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback up: set flags: %w", err)
	}
	return nil
}
