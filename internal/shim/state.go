package shim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Files in a container's directory.
const (
	SpecFile    = "spec.json"     // written by the sandbox before starting the shim
	StateFile   = "state.json"    // written by the shim, atomically
	LogFile     = "container.log" // the container's stdout and stderr
	ShimLogFile = "shim.log"      // the shim's own diagnostics (its stderr)
	lockFile    = "shim.lock"     // held (flock) by the live shim
)

// Container states, as in corev1.ContainerState.
const (
	Running    = "running"
	Waiting    = "waiting"
	Terminated = "terminated"
)

// Spec is what the shim runs. The sandbox writes it to <dir>/spec.json.
type Spec struct {
	// Command is the executable and its arguments (a container's command
	// followed by its args).
	Command    []string `json:"command"`
	Env        []string `json:"env,omitempty"`
	WorkingDir string   `json:"workingDir,omitempty"`
	// RestartPolicy is the pod's: Always (default), OnFailure or Never.
	RestartPolicy corev1.RestartPolicy `json:"restartPolicy,omitempty"`
}

// Termination describes one finished run of the container.
type Termination struct {
	ExitCode   int       `json:"exitCode"`
	Signal     int       `json:"signal,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	Message    string    `json:"message,omitempty"`
	StartedAt  time.Time `json:"startedAt,omitzero"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
}

// State is the shim's view of its container, kept in <dir>/state.json.
type State struct {
	// ShimPID is the shim's own pid.
	ShimPID int `json:"shimPid"`
	// PID is the current container process (and process group), 0 when
	// none runs.
	PID int `json:"pid,omitempty"`
	// State is running, waiting or terminated.
	State string `json:"state"`
	// Reason and Message explain a waiting or terminated state
	// (ContainerCreating, CrashLoopBackOff, Completed, Error, StartError).
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
	// RestartCount counts starts after the first.
	RestartCount int `json:"restartCount"`
	// ExitCode is the last run's exit code (128+signal if killed), valid
	// once the container ran at least once.
	ExitCode int `json:"exitCode"`
	// StartedAt is when the current (or, once terminated, the last) run
	// started; FinishedAt when the container terminated for good.
	StartedAt  time.Time `json:"startedAt,omitzero"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
	// LastTermination is the previous run, while the container runs or
	// waits to be restarted.
	LastTermination *Termination `json:"lastTermination,omitempty"`
	// Stopped is true when the shim was told to stop (SIGTERM).
	Stopped bool `json:"stopped,omitempty"`
}

// ReadSpec reads <dir>/spec.json.
func ReadSpec(dir string) (Spec, error) {
	var s Spec
	data, err := os.ReadFile(filepath.Join(dir, SpecFile))
	if err != nil {
		return s, fmt.Errorf("shim: read spec: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return s, fmt.Errorf("shim: parse %s: %w", filepath.Join(dir, SpecFile), err)
	}
	if len(s.Command) == 0 || s.Command[0] == "" {
		return s, fmt.Errorf("shim: %s: empty command", filepath.Join(dir, SpecFile))
	}
	switch s.RestartPolicy {
	case "":
		s.RestartPolicy = corev1.RestartPolicyAlways
	case corev1.RestartPolicyAlways, corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever:
	default:
		return s, fmt.Errorf("shim: %s: unknown restartPolicy %q", filepath.Join(dir, SpecFile), s.RestartPolicy)
	}
	return s, nil
}

// WriteSpec writes <dir>/spec.json atomically, creating dir.
func WriteSpec(dir string, s Spec) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("shim: %w", err)
	}
	return writeJSON(filepath.Join(dir, SpecFile), s)
}

// ReadState reads <dir>/state.json. A missing file is fs.ErrNotExist.
func ReadState(dir string) (State, error) {
	var s State
	data, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		return s, fmt.Errorf("shim: read state: %w", err)
	}
	if err := json.Unmarshal(data, &s); err != nil {
		return s, fmt.Errorf("shim: parse %s: %w", filepath.Join(dir, StateFile), err)
	}
	return s, nil
}

func writeState(dir string, s State) error {
	return writeJSON(filepath.Join(dir, StateFile), s)
}

// writeJSON writes v to path through a temporary file and a rename, so a
// reader sees the old or the new content, never a torn one.
func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// IsShim reports whether pid is a live `shim` process serving dir, judged
// from /proc/PID/cmdline, so a reused pid is not mistaken for the shim.
func IsShim(pid int, dir string) bool {
	if pid <= 0 {
		return false
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || len(data) == 0 {
		return false // gone, or a zombie
	}
	args := strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
	want := filepath.Clean(dir)
	sawShim := false
	for i, a := range args {
		switch {
		case a == "shim":
			sawShim = true
		case sawShim && (a == "--dir" || a == "-dir") && i+1 < len(args):
			if filepath.Clean(args[i+1]) == want {
				return true
			}
		case sawShim && (strings.HasPrefix(a, "--dir=") || strings.HasPrefix(a, "-dir=")):
			_, v, _ := strings.Cut(a, "=")
			if filepath.Clean(v) == want {
				return true
			}
		}
	}
	return false
}

// Alive reads the state in dir and reports whether its shim still runs.
// A missing state file is (State{}, false, nil).
func Alive(dir string) (State, bool, error) {
	st, err := ReadState(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return State{}, false, nil
	}
	if err != nil {
		return st, false, err
	}
	return st, IsShim(st.ShimPID, dir), nil
}

// sessionOf returns the session id of pid from /proc/PID/stat.
func sessionOf(pid int) (int, bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The command name is in parentheses and may hold spaces; fields
	// after the last ')' are: state ppid pgrp session ...
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 4 || f[0] == "Z" {
		return 0, false
	}
	sid, err := strconv.Atoi(f[3])
	return sid, err == nil
}

// killOrphan kills the process group of a container left behind by a
// shim that died, if pid still belongs to that shim's session.
func killOrphan(st State) bool {
	if st.PID <= 0 || st.ShimPID <= 0 {
		return false
	}
	if sid, ok := sessionOf(st.PID); ok && sid == st.ShimPID {
		_ = syscall.Kill(-st.PID, syscall.SIGKILL)
		return true
	}
	return false
}

// Stop stops the shim serving dir: SIGTERM (the shim forwards it to the
// container and waits its own grace period), then SIGKILL if the shim is
// still there after grace plus a margin (grace may be shorter than the
// shim's own). A container left by a dead shim is killed too. Stopping a stopped shim is not an error.
func Stop(ctx context.Context, dir string, grace time.Duration) error {
	st, alive, err := Alive(dir)
	if err != nil {
		return err
	}
	if alive {
		if err := syscall.Kill(st.ShimPID, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("shim %s: signal %d: %w", dir, st.ShimPID, err)
		}
		deadline := time.Now().Add(grace + 2*time.Second)
		for IsShim(st.ShimPID, dir) && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(25 * time.Millisecond)
		}
		if IsShim(st.ShimPID, dir) {
			_ = syscall.Kill(st.ShimPID, syscall.SIGKILL)
			for i := 0; i < 200 && IsShim(st.ShimPID, dir); i++ {
				time.Sleep(10 * time.Millisecond)
			}
		}
		if ns, err := ReadState(dir); err == nil {
			st = ns
		}
	}
	killOrphan(st)
	return nil
}

// KillContainer ends the container's current run without stopping its
// shim: SIGTERM to the container's process group, SIGKILL after grace. The
// shim sees the exit and restarts the container per its restartPolicy (a
// liveness probe failure). It returns when that run has ended. Nothing
// running is not an error.
func KillContainer(ctx context.Context, dir string, grace time.Duration) error {
	st, alive, err := Alive(dir)
	if err != nil {
		return err
	}
	if !alive {
		return fmt.Errorf("shim %s: not running", dir)
	}
	pid := st.PID
	ours := func() bool {
		// The main process stays a zombie (same pid, same session) until
		// the shim killed its group, so a reused pid is never hit.
		sid, ok := sessionOf(pid)
		return ok && sid == st.ShimPID
	}
	if st.State != Running || pid <= 0 || !ours() {
		return nil
	}
	ended := func() bool {
		cur, err := ReadState(dir)
		return err == nil && (cur.PID != pid || cur.State != Running) || !IsShim(st.ShimPID, dir)
	}
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for !ended() && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	if !ended() && ours() {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	for i := 0; i < 250 && !ended() && ctx.Err() == nil; i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if !ended() {
		return fmt.Errorf("shim %s: container pid %d did not end", dir, pid)
	}
	return nil
}
