package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/podnet/podnet/internal/netns"
)

// Proc is a long-running process of the cluster: the server or an agent.
// Its command line is kept in the cluster's record so it can be restarted
// exactly as it was started.
type Proc struct {
	Name    string   `json:"name"`  // "server" or the node name
	NetNS   string   `json:"netns"` // where it runs
	Args    []string `json:"args"`  // argv, the binary first
	Log     string   `json:"log"`
	PIDFile string   `json:"pidFile"`
	// exit learns how the process ended, if this process started it.
	exit *exitState
}

// exitState is how a process we started ended, once it did.
type exitState struct {
	mu  sync.Mutex
	err error // from Wait: "exit status 1", "signal: killed"
	ok  bool
}

// ExitStatus says how the process ended ("exit status 1", "signal:
// killed", "exited" if it ended cleanly) when this process started it and
// saw it end; "" otherwise.
func (p *Proc) ExitStatus() string {
	if p.exit == nil {
		return ""
	}
	p.exit.mu.Lock()
	defer p.exit.mu.Unlock()
	switch {
	case !p.exit.ok:
		return ""
	case p.exit.err != nil:
		return p.exit.err.Error()
	default:
		return "exited"
	}
}

// Start launches the process detached (a session of its own, stdin from
// /dev/null, output appended to its log) from a thread inside its
// namespace, so it shares the caller's mount namespace, and writes its pid
// file. It returns the pid.
func (p *Proc) Start() (int, error) {
	logf, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, fmt.Errorf("process %s: log: %w", p.Name, err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "---- %s: starting %s\n", time.Now().Format(time.RFC3339), strings.Join(p.Args, " "))
	cmd := exec.Command(p.Args[0], p.Args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := netns.Do(netns.Path(p.NetNS), cmd.Start); err != nil {
		return 0, fmt.Errorf("process %s: start in %s: %w", p.Name, p.NetNS, err)
	}
	pid := cmd.Process.Pid
	// Reap it if it dies while we live (and remember how); once we exit,
	// init does.
	ex := &exitState{}
	p.exit = ex
	go func() {
		err := cmd.Wait()
		ex.mu.Lock()
		ex.err, ex.ok = err, true
		ex.mu.Unlock()
	}()
	if err := os.WriteFile(p.PIDFile, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		_ = cmd.Process.Kill()
		return 0, fmt.Errorf("process %s: pid file: %w", p.Name, err)
	}
	return pid, nil
}

// PID returns the process's pid if it is alive and still the process its
// pid file names (the same binary and arguments), else 0.
func (p *Proc) PID() int {
	b, err := os.ReadFile(p.PIDFile)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	args, err := cmdline(pid)
	if err != nil || len(args) != len(p.Args) {
		return 0
	}
	for i := range args {
		if args[i] != p.Args[i] {
			return 0
		}
	}
	if st, _ := procState(pid); st == "Z" {
		return 0
	}
	return pid
}

// Gone reports whether the process has ended. For a process this one
// started, only its own Wait decides: a pid-file or /proc read that fails
// for a moment must not turn a live agent into a dead one. For others it
// takes two misses of PID 50 ms apart.
func (p *Proc) Gone() bool {
	if p.exit != nil {
		p.exit.mu.Lock()
		defer p.exit.mu.Unlock()
		return p.exit.ok
	}
	if p.PID() != 0 {
		return false
	}
	time.Sleep(50 * time.Millisecond)
	return p.PID() == 0
}

// Kill sends sig to the process if it is alive; it reports whether it was.
func (p *Proc) Kill(sig syscall.Signal) bool {
	pid := p.PID()
	if pid == 0 {
		return false
	}
	return syscall.Kill(pid, sig) == nil
}

func cmdline(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil, err
	}
	b = bytes.TrimSuffix(b, []byte{0})
	if len(b) == 0 {
		return nil, errors.New("no command line")
	}
	return strings.Split(string(b), "\x00"), nil
}

func procState(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	// pid (comm) S ...; comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return "", errors.New("bad stat")
	}
	return string(b[i+2 : i+3]), nil
}

// netnsInode returns the inode of a namespace file (/run/netns/X or
// /proc/PID/ns/net).
func netnsInode(path string) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// ProcessMatcher selects the processes that belong to a cluster.
type ProcessMatcher struct {
	// Dir: a podnet server, agent or shim, or an etcd, with an argument
	// naming a path under Dir.
	Dir string
	// NetNS: a process whose network namespace is one of these (paths).
	NetNS []string
}

// Find returns the pids of matching processes, never the caller's own.
//
// A process matched by Dir whose parent is matched by Dir with the same
// command line is left out: it is a fork that has not exec'd yet (a Go
// program starting a child, a shell running a command), a copy of its
// parent for a moment, not a second member of the cluster. Killing the
// parent orphans it, and the next Find matches it if it still looks so.
func (m ProcessMatcher) Find() []int {
	inodes := map[uint64]bool{}
	for _, p := range m.NetNS {
		if ino, err := netnsInode(p); err == nil {
			inodes[ino] = true
		}
	}
	ents, _ := os.ReadDir("/proc")
	self := os.Getpid()
	var pids []int
	byDir := map[int]string{} // pid → command line, for Dir matches
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		if st, _ := procState(pid); st == "Z" || st == "" {
			continue
		}
		if len(inodes) > 0 {
			if ino, err := netnsInode(fmt.Sprintf("/proc/%d/ns/net", pid)); err == nil && inodes[ino] {
				pids = append(pids, pid)
				continue
			}
		}
		if m.Dir != "" {
			if args, ok := m.namesDir(pid); ok {
				pids = append(pids, pid)
				byDir[pid] = strings.Join(args, "\x00")
			}
		}
	}
	if len(byDir) < 2 {
		return pids
	}
	out := pids[:0]
	for _, pid := range pids {
		if line, ok := byDir[pid]; ok {
			if pp, err := procPPID(pid); err == nil {
				if pline, ok := byDir[pp]; ok && pline == line {
					continue
				}
			}
		}
		out = append(out, pid)
	}
	return out
}

// procPPID returns a process's parent pid.
func procPPID(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// pid (comm) S ppid ...; comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("bad stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0, errors.New("bad stat")
	}
	return strconv.Atoi(f[1])
}

// namesDir: the process is `podnet server|agent|shim|dns|ingress ...` (the
// last two: a node's DNS server and ingress proxy) or an external
// etcd member (`etcd ...`) with an argument under Dir. Only these
// long-running processes match, so a shell or an editor with the path in
// its arguments is never touched.
func (m ProcessMatcher) namesDir(pid int) ([]string, bool) {
	args, err := cmdline(pid)
	if err != nil || len(args) < 2 {
		return nil, false
	}
	first := 1
	switch filepath.Base(args[0]) {
	case "podnet":
		switch args[1] {
		case "server", "agent", "shim", "dns", "ingress":
			first = 2
		default:
			return nil, false
		}
	case EtcdBinaryName:
	default:
		return nil, false
	}
	dir := filepath.Clean(m.Dir) + "/"
	for _, a := range args[first:] {
		if _, v, ok := strings.Cut(a, "="); ok && strings.HasPrefix(a, "--") {
			a = v
		}
		if strings.HasPrefix(a, dir) {
			return args, true
		}
	}
	return nil, false
}

// KillAll SIGKILLs matching processes until none is left (new ones may be
// started by a dying agent), waiting at most timeout. It returns how many
// it killed.
func (m ProcessMatcher) KillAll(timeout time.Duration) (int, error) {
	killed := map[int]bool{}
	deadline := time.Now().Add(timeout)
	for {
		pids := m.Find()
		if len(pids) == 0 {
			return len(killed), nil
		}
		if time.Now().After(deadline) {
			return len(killed), fmt.Errorf("processes still alive after %s: %v", timeout, pids)
		}
		for _, pid := range pids {
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				killed[pid] = true
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}
