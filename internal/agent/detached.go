package agent

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// detached is a server the agent keeps running beside itself (the node DNS
// server, the ingress proxy) that must outlive the agent: it runs in a
// session of its own (Setsid), so neither a restart nor a kill -9 of the
// agent stops it, and it writes its own pid file. A new agent finds it
// again through that file and adopts it when /proc/PID/cmdline is the
// command line the agent would run (so a recycled pid is never taken for
// it); a process with the same identity but another command line (the
// agent restarted with other flags, an upgrade that changed them) is
// stopped and replaced. A child that died is started again, with a
// backoff when it keeps dying young.
type detached struct {
	name string // in logs: "node DNS server"
	// args is the command line, the binary first; its first ident words
	// after the binary identify the process (the subcommand and the flag
	// naming its file, e.g. "dns -conf FILE").
	args    []string
	ident   int
	pidFile string
	logFile string
	// netns, when set, is the named network namespace it runs in, by `ip
	// netns exec` (which execs, so the pid and command line are the
	// server's own).
	netns string
	env   []string
	log   *slog.Logger

	pid     int
	exited  chan struct{} // set for a process this agent started
	started time.Time
	backoff time.Duration
	next    time.Time // no start before
}

// Restart backoff of a detached server that keeps dying young.
const (
	detachedMinBackoff = time.Second
	detachedMaxBackoff = 30 * time.Second
	detachedYoung      = 10 * time.Second
	// detachedStopWait bounds how long a replaced server may take to exit
	// after SIGTERM before it is killed.
	detachedStopWait = 10 * time.Second
)

// alive reports whether the adopted or started server still runs.
func (d *detached) alive() bool {
	if d.pid <= 0 {
		return false
	}
	if d.exited != nil {
		select {
		case <-d.exited:
			return false
		default:
			return true
		}
	}
	args, ok := procArgs(d.pid)
	return ok && slices.Equal(args, d.args)
}

// exitedChan is closed when a server this agent started exits; nil (never
// ready) for an adopted one, whose death the caller's tick finds.
func (d *detached) exitedChan() <-chan struct{} { return d.exited }

// signal sends sig to the server if it runs; it reports whether it did.
func (d *detached) signal(sig syscall.Signal) bool {
	return d.alive() && syscall.Kill(d.pid, sig) == nil
}

// procArgs is the command line of a live (not zombie) process.
func procArgs(pid int) ([]string, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(b) == 0 {
		return nil, false
	}
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		if i := bytes.LastIndexByte(st, ')'); i > 0 && len(st) > i+2 && st[i+2] == 'Z' {
			return nil, false
		}
	}
	// Each argument ends with a NUL: trim one, so an empty last argument
	// stays.
	return strings.Split(string(bytes.TrimSuffix(b, []byte{0})), "\x00"), true
}

// sameIdentity: args name the same server as want (its first ident words
// after the binary), whatever the rest.
func sameIdentity(args, want []string, ident int) bool {
	return len(args) > ident && len(want) > ident && slices.Equal(args[1:1+ident], want[1:1+ident])
}

// ensure adopts the server of the pid file, or starts one; a server of the
// same identity with another command line is stopped first.
func (d *detached) ensure() {
	if d.alive() {
		return
	}
	if d.exited != nil { // ours, and it died
		ran := time.Since(d.started)
		if ran < detachedYoung {
			d.backoff = min(max(2*d.backoff, detachedMinBackoff), detachedMaxBackoff)
		} else {
			d.backoff = 0
		}
		d.next = time.Now().Add(d.backoff)
		d.log.Warn(d.name+" exited; starting it again", "pid", d.pid, "ran", ran.Round(time.Millisecond), "after", d.backoff, "log", d.logFile)
		d.pid, d.exited = 0, nil
	}
	if b, err := os.ReadFile(d.pidFile); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
			if args, ok := procArgs(pid); ok && sameIdentity(args, d.args, d.ident) {
				if slices.Equal(args, d.args) {
					d.pid, d.exited = pid, nil
					d.log.Info("adopted the running "+d.name, "pid", pid)
					return
				}
				d.log.Info("replacing the running "+d.name+": its command line differs", "pid", pid, "running", strings.Join(args, " "), "want", strings.Join(d.args, " "))
				stopPid(pid, args)
			}
		}
	}
	if time.Now().Before(d.next) {
		return
	}
	d.start()
}

// stopPid sends SIGTERM, waits for the process (still running args) to
// exit, and kills it if it does not in time.
func stopPid(pid int, args []string) {
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(detachedStopWait)
	for time.Now().Before(deadline) {
		if cur, ok := procArgs(pid); !ok || !slices.Equal(cur, args) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

// start runs the server detached, its output appended to its log.
func (d *detached) start() {
	logf, err := os.OpenFile(d.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		d.log.Error(d.name+": log", "err", err)
		return
	}
	defer logf.Close()
	argv := d.args
	if d.netns != "" {
		argv = append([]string{"ip", "netns", "exec", d.netns}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = "/"
	cmd.Env = append(os.Environ(), d.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		d.log.Error("start the "+d.name, "err", err)
		d.next = time.Now().Add(max(d.backoff, detachedMinBackoff))
		return
	}
	d.pid, d.started = cmd.Process.Pid, time.Now()
	exited := make(chan struct{})
	d.exited = exited
	go func() { _ = cmd.Wait(); close(exited) }() // reaped while we live; adopted otherwise
	d.log.Info("started the "+d.name, "pid", d.pid, "args", strings.Join(d.args[1:], " "))
}
