package shim

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// LaunchOptions say how to start a shim.
type LaunchOptions struct {
	// Binary is the podnet binary (anything whose first argument "shim"
	// calls Main).
	Binary string
	// Dir is the container directory; spec.json must be in it. Absolute.
	Dir string
	// NetNS is the named network namespace to run in, through
	// `ip netns exec` (which also bind-mounts /etc/netns/<NetNS>/*).
	// Empty means the caller's namespace (hostNetwork).
	NetNS string
	// ResolvConf, with an empty NetNS, is a file bind-mounted over
	// /etc/resolv.conf for the shim and its container, in a private mount
	// namespace of their own (see WithResolvConf); "" means the node's.
	ResolvConf string
	// IPCommand is the ip binary; "" means "ip" from PATH.
	IPCommand   string
	GracePeriod time.Duration
	// ReadyTimeout bounds the wait for the shim's first state file; 0
	// means 10s.
	ReadyTimeout time.Duration
}

// Launch starts a detached shim (a session of its own, stdio on
// <dir>/shim.log) and waits until it has written its state. It returns the
// shim's pid. The caller's OS thread's network namespace is inherited when
// NetNS is empty. The child is reaped in the background, so a shim that exits
// while its starter lives does not linger as a zombie.
func Launch(o LaunchOptions) (int, error) {
	if !filepath.IsAbs(o.Dir) {
		return 0, fmt.Errorf("shim: dir %q is not absolute", o.Dir)
	}
	if o.GracePeriod <= 0 {
		o.GracePeriod = DefaultGracePeriod
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 10 * time.Second
	}
	args := []string{o.Binary, "shim", "--dir", o.Dir, "--grace-period", o.GracePeriod.String()}
	if o.NetNS != "" {
		ip := o.IPCommand
		if ip == "" {
			ip = "ip"
		}
		args = append([]string{ip, "netns", "exec", o.NetNS}, args...)
	} else if o.ResolvConf != "" {
		args = WithResolvConf(o.ResolvConf, args)
	}
	logPath := filepath.Join(o.Dir, ShimLogFile)
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, fmt.Errorf("shim: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = "/" // do not pin the starter's working directory
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("shim: start %s: %w", o.Dir, err)
	}
	pid := cmd.Process.Pid
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	deadline := time.After(o.ReadyTimeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if st, err := ReadState(o.Dir); err == nil && st.ShimPID == pid {
			return pid, nil
		}
		select {
		case <-exited:
			if st, err := ReadState(o.Dir); err == nil && st.ShimPID == pid {
				return pid, nil // it ran and finished already
			}
			return 0, fmt.Errorf("shim: %s exited before it was ready: %s", o.Dir, tail(logPath))
		case <-deadline:
			_ = syscall.Kill(pid, syscall.SIGKILL)
			return 0, fmt.Errorf("shim: %s not ready after %s: %s", o.Dir, o.ReadyTimeout, tail(logPath))
		case <-tick.C:
		}
	}
}

// WithResolvConf returns the command line that runs argv with file
// bind-mounted over /etc/resolv.conf, as `ip netns exec` does for a named
// namespace but staying in the caller's network namespace: unshare(1) makes
// a mount namespace with private propagation, so the bind mount is seen by
// argv and its children only, never by the node, and it goes away with the
// last of them. Every step execs, so the returned command's pid is argv's.
func WithResolvConf(file string, argv []string) []string {
	return append([]string{"unshare", "--mount", "--propagation", "private", "--",
		"sh", "-c", `mount --bind -- "$0" /etc/resolv.conf && exec "$@"`, file}, argv...)
}

// tail returns the last line(s) of a small log file for error messages.
func tail(path string) string {
	data, _ := os.ReadFile(path)
	data = bytes.TrimSpace(data)
	if len(data) > 400 {
		data = data[len(data)-400:]
	}
	if len(data) == 0 {
		return "(no output)"
	}
	return string(data)
}
