// Package shim is `podnet shim`: a small supervisor for one container, like
// containerd-shim.
//
// The sandbox writes the container's Spec to <dir>/spec.json and starts
//
//	[ip netns exec <pod-netns>] podnet shim --dir <dir> [--grace-period 10s]
//
// detached in a session of its own, so it outlives the agent that started it.
// The shim then
//
//   - runs the command in its own process group, stdout and stderr appended
//     to <dir>/container.log (a separator line marks every restart);
//   - restarts it per the restartPolicy with a capped exponential backoff
//     (100ms doubling to 10s, reset after 10s of running);
//   - keeps <dir>/state.json (State, replaced atomically) current;
//   - on SIGTERM or SIGINT forwards SIGTERM to the container's process group,
//     waits the grace period, then SIGKILLs it, records the container as
//     terminated and exits.
//
// An agent rediscovers a shim from state.json: Alive checks that the
// recorded pid is still a `shim --dir <dir>` process (/proc/PID/cmdline), so
// a reused pid is never mistaken for it. A flock on <dir>/shim.lock makes sure
// only one shim serves a directory.
//
// The `podnet shim` command is Main(os.Args[2:]).
package shim

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
)

// Defaults for Options.
const (
	DefaultGracePeriod    = 10 * time.Second
	DefaultBackoffInitial = 100 * time.Millisecond
	DefaultBackoffMax     = 10 * time.Second
	DefaultBackoffReset   = 10 * time.Second
)

// Options configure Run.
type Options struct {
	// Dir holds spec.json, state.json and the logs. Required, absolute.
	Dir string
	// GracePeriod between SIGTERM and SIGKILL when stopping.
	GracePeriod time.Duration
	// Restart backoff: starts at BackoffInitial, doubles up to BackoffMax,
	// and goes back to BackoffInitial after a run of at least BackoffReset.
	BackoffInitial, BackoffMax, BackoffReset time.Duration
	Logger                                   *slog.Logger
}

func (o *Options) defaults() {
	if o.GracePeriod <= 0 {
		o.GracePeriod = DefaultGracePeriod
	}
	if o.BackoffInitial <= 0 {
		o.BackoffInitial = DefaultBackoffInitial
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = DefaultBackoffMax
	}
	if o.BackoffReset <= 0 {
		o.BackoffReset = DefaultBackoffReset
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Main is the `podnet shim` command: args are the arguments after "shim".
// It returns the process exit code.
func Main(args []string) int {
	fs := flag.NewFlagSet("shim", flag.ContinueOnError)
	var o Options
	fs.StringVar(&o.Dir, "dir", "", "container directory holding "+SpecFile+" (required)")
	fs.DurationVar(&o.GracePeriod, "grace-period", DefaultGracePeriod, "time between SIGTERM and SIGKILL when stopping")
	fs.DurationVar(&o.BackoffInitial, "backoff-initial", DefaultBackoffInitial, "first restart delay")
	fs.DurationVar(&o.BackoffMax, "backoff-max", DefaultBackoffMax, "longest restart delay")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if o.Dir == "" || fs.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: podnet shim --dir DIR [--grace-period 10s]")
		return 2
	}
	o.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil)).With("shim", o.Dir)

	// The shim must not die with the terminal or pipe that started it.
	signal.Ignore(syscall.SIGHUP, syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := Run(ctx, o); err != nil {
		o.Logger.Error("shim failed", "err", err)
		return 1
	}
	return 0
}

// Run supervises the container described by <o.Dir>/spec.json until it
// terminates for good or ctx is cancelled (cancelling is SIGTERM: the
// container is stopped with the grace period).
func Run(ctx context.Context, o Options) error {
	o.defaults()
	if !filepath.IsAbs(o.Dir) {
		return fmt.Errorf("shim: dir %q is not absolute", o.Dir)
	}
	log := o.Logger
	spec, err := ReadSpec(o.Dir)
	if err != nil {
		return err
	}
	lock, err := os.OpenFile(filepath.Join(o.Dir, lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("shim: %w", err)
	}
	defer lock.Close()
	if err := lockDying(lock); err != nil {
		return fmt.Errorf("shim: %s is served by another shim: %w", o.Dir, err)
	}
	logf, err := os.OpenFile(filepath.Join(o.Dir, LogFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("shim: open log: %w", err)
	}
	defer logf.Close()

	s := &supervisor{o: o, spec: spec, log: log, out: logf}
	s.st = State{ShimPID: os.Getpid(), State: Waiting, Reason: "ContainerCreating"}
	// A previous shim for this dir died: carry its history on, and kill
	// the container it may have left running.
	if prev, err := ReadState(o.Dir); err == nil {
		if killOrphan(prev) {
			log.Warn("killed container left by a dead shim", "pid", prev.PID, "oldShim", prev.ShimPID)
		}
		s.st.RestartCount = prev.RestartCount
		s.st.LastTermination = prev.LastTermination
		if !prev.StartedAt.IsZero() {
			s.started = true
			if prev.State == Running {
				s.st.LastTermination = &Termination{ExitCode: 137, Signal: int(syscall.SIGKILL), Reason: "ShimDied",
					StartedAt: prev.StartedAt, FinishedAt: time.Now()}
			}
		}
	}
	if err := s.save(); err != nil {
		return err
	}
	return s.loop(ctx)
}

type supervisor struct {
	o       Options
	spec    Spec
	log     *slog.Logger
	out     io.Writer
	st      State
	started bool // the container ran before (a next start is a restart)
}

func (s *supervisor) save() error {
	if err := writeState(s.o.Dir, s.st); err != nil {
		return fmt.Errorf("shim: %w", err)
	}
	return nil
}

func (s *supervisor) loop(ctx context.Context) error {
	backoff := s.o.BackoffInitial
	for {
		if ctx.Err() != nil {
			return s.finish(s.st.LastTermination, true)
		}
		if s.started {
			s.st.RestartCount++
			fmt.Fprintf(s.out, "--- podnet shim: restart %d at %s ---\n", s.st.RestartCount, time.Now().UTC().Format(time.RFC3339Nano))
		}
		s.started = true
		term, stopped := s.runOnce(ctx)
		if stopped {
			return s.finish(term, true)
		}
		if !shouldRestart(s.spec.RestartPolicy, term.ExitCode) {
			return s.finish(term, false)
		}
		if term.FinishedAt.Sub(term.StartedAt) >= s.o.BackoffReset {
			backoff = s.o.BackoffInitial
		}
		s.st.State, s.st.PID = Waiting, 0
		s.st.Reason = "CrashLoopBackOff"
		s.st.Message = fmt.Sprintf("back-off %s restarting exited container (exit code %d)", backoff, term.ExitCode)
		s.st.ExitCode = term.ExitCode
		s.st.LastTermination = term
		if err := s.save(); err != nil {
			s.log.Error("save state", "err", err)
		}
		s.log.Info("container exited, restarting", "exitCode", term.ExitCode, "backoff", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return s.finish(term, true)
		}
		backoff = min(backoff*2, s.o.BackoffMax)
	}
}

// runOnce starts the container and waits until it exits or ctx is
// cancelled, in which case it stops it and stopped is true.
func (s *supervisor) runOnce(ctx context.Context) (term *Termination, stopped bool) {
	cmd := exec.Command(s.spec.Command[0], s.spec.Command[1:]...)
	cmd.Env = s.spec.Env
	cmd.Dir = s.spec.WorkingDir
	if cmd.Dir == "" {
		cmd.Dir = "/"
	}
	cmd.Stdout, cmd.Stderr = s.out, s.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(s.out, "podnet shim: start container: %v\n", err)
		s.log.Error("start container", "err", err)
		return &Termination{ExitCode: 128, Reason: "StartError", Message: err.Error(), StartedAt: start, FinishedAt: time.Now()}, false
	}
	pid := cmd.Process.Pid
	s.st.State, s.st.PID, s.st.Reason, s.st.Message = Running, pid, "", ""
	s.st.StartedAt, s.st.FinishedAt = start, time.Time{}
	if err := s.save(); err != nil {
		s.log.Error("save state", "err", err)
	}
	s.log.Info("container started", "pid", pid, "restartCount", s.st.RestartCount)

	done := make(chan *os.ProcessState, 1)
	go func() {
		// Wait for the exit without reaping: while the main process is a
		// zombie its pid, and so its process group id, cannot be reused,
		// so killing the rest of the group can never hit a stranger
		// (a new process that happens to get the same pid).
		var info unix.Siginfo
		for {
			if err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil); err != unix.EINTR {
				break
			}
		}
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = cmd.Wait()
		done <- cmd.ProcessState
	}()
	var ps *os.ProcessState
	select {
	case ps = <-done:
	case <-ctx.Done():
		stopped = true
		s.log.Info("stopping container", "pid", pid, "grace", s.o.GracePeriod)
		_ = syscall.Kill(-pid, syscall.SIGTERM)
		select {
		case ps = <-done:
		case <-time.After(s.o.GracePeriod):
			s.log.Warn("grace period over, killing container", "pid", pid)
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			ps = <-done
		}
	}
	// The rest of its group was killed before the main process was reaped.
	return terminationOf(ps, start), stopped
}

// finish records the container as terminated for good.
func (s *supervisor) finish(term *Termination, stopped bool) error {
	s.st.State, s.st.PID, s.st.Stopped = Terminated, 0, stopped
	s.st.FinishedAt = time.Now()
	if term != nil {
		if s.st.LastTermination == term {
			s.st.LastTermination = nil
		}
		s.st.ExitCode, s.st.Reason, s.st.Message = term.ExitCode, term.Reason, term.Message
		s.st.StartedAt, s.st.FinishedAt = term.StartedAt, term.FinishedAt
	} else {
		s.st.Reason = "Stopped"
	}
	if err := s.save(); err != nil {
		return err
	}
	s.log.Info("container terminated", "exitCode", s.st.ExitCode, "reason", s.st.Reason, "stopped", stopped)
	return nil
}

func terminationOf(ps *os.ProcessState, start time.Time) *Termination {
	t := &Termination{StartedAt: start, FinishedAt: time.Now()}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		t.Signal = int(ws.Signal())
		t.ExitCode = 128 + t.Signal
	} else {
		t.ExitCode = ps.ExitCode()
	}
	if t.ExitCode == 0 {
		t.Reason = "Completed"
	} else {
		t.Reason = "Error"
	}
	return t
}

func shouldRestart(p corev1.RestartPolicy, exitCode int) bool {
	switch p {
	case corev1.RestartPolicyNever:
		return false
	case corev1.RestartPolicyOnFailure:
		return exitCode != 0
	default:
		return true
	}
}

// lockDying takes the shim's lock. A shim killed a moment ago may still hold
// it: the kernel releases a process's files after its memory, so an exiting
// shim no longer looks like one (empty cmdline) while its lock is held for
// a little longer. A live shim holds the lock for good, so waiting a bounded
// time tells the two apart.
func lockDying(f *os.File) error {
	deadline := time.Now().Add(2 * time.Second)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil || err != syscall.EWOULDBLOCK || time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}
