package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/podnet/podnet/internal/cluster"
	"github.com/podnet/podnet/internal/netns"
	"github.com/podnet/podnet/internal/shim"
)

// This file finds a cluster's processes the way a reviewer would, without
// cluster.ProcessMatcher (which `cluster delete` itself uses): by the
// network namespace a process is in, and by the container log a pod's
// process writes to. So a Delete that forgets container processes cannot
// also hide them from the test.

// proc is one process seen in /proc.
type proc struct {
	pid   int
	start string // starttime from /proc/PID/stat: tells a reused PID apart
	netns uint64
	cmd   string
	out   string // where fd 1 or 2 points
}

func (p proc) String() string { return fmt.Sprintf("%d (%s)", p.pid, p.cmd) }

// procs lists every live (not zombie) process but the test's own.
func procs() []proc {
	ents, _ := os.ReadDir("/proc")
	var out []proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 20 || f[0] == "Z" {
			continue
		}
		p := proc{pid: pid, start: f[19]}
		var st syscall.Stat_t
		if syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st) == nil {
			p.netns = st.Ino
		}
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil {
			p.cmd = strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
		}
		for _, fd := range []string{"1", "2"} {
			if l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd)); err == nil && p.out == "" {
				p.out = l
			}
		}
		out = append(out, p)
	}
	return out
}

func nsInode(path string) (uint64, bool) {
	var st syscall.Stat_t
	if syscall.Stat(path, &st) != nil {
		return 0, false
	}
	return st.Ino, true
}

// snapshot is what a cluster runs before it is deleted.
type snapshot struct {
	netns      map[uint64]string // inode → name, of the cluster's and its pods' namespaces
	inCluster  []proc            // processes in one of those namespaces
	containers []proc            // processes writing to one of the cluster's container logs
}

// snapshot records the cluster's namespaces and the processes in them or
// writing to its pods' container logs (a host-network pod's command runs in
// its node's namespace and is found both ways).
func (c *localCluster) snapshot(pods []string) snapshot {
	s := snapshot{netns: map[uint64]string{}}
	ents, _ := os.ReadDir(netns.Dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), cluster.NetNSPrefix(c.name)) {
			if ino, ok := nsInode(netns.Path(e.Name())); ok {
				s.netns[ino] = e.Name()
			}
		}
	}
	for _, ns := range pods {
		if ino, ok := nsInode(netns.Path(ns)); ok {
			s.netns[ino] = ns
		}
	}
	dir := filepath.Join(c.parent, c.name) + "/"
	for _, p := range procs() {
		if _, ok := s.netns[p.netns]; ok {
			s.inCluster = append(s.inCluster, p)
		}
		if isContainerLog(p.out, dir) {
			s.containers = append(s.containers, p)
		}
	}
	return s
}

// isContainerLog: out is a container log under dir (maybe deleted since).
func isContainerLog(out, dir string) bool {
	out = strings.TrimSuffix(out, " (deleted)")
	return strings.HasPrefix(out, dir) && filepath.Base(out) == shim.LogFile
}

// leftProcesses returns the processes of s still alive, any process now in
// one of s's namespaces (unless a namespace of that inode has a name again:
// the kernel reuses the numbers of freed namespaces), and any process
// writing to a container log of the cluster.
func (c *localCluster) leftProcesses(s snapshot) []string {
	named := map[uint64]bool{}
	ents, _ := os.ReadDir(netns.Dir)
	for _, e := range ents {
		if ino, ok := nsInode(netns.Path(e.Name())); ok {
			named[ino] = true
		}
	}
	dir := filepath.Join(c.parent, c.name) + "/"
	was := map[string]bool{}
	for _, p := range append(append([]proc{}, s.inCluster...), s.containers...) {
		was[fmt.Sprintf("%d/%s", p.pid, p.start)] = true
	}
	var left []string
	for _, p := range procs() {
		switch {
		case was[fmt.Sprintf("%d/%s", p.pid, p.start)]:
			left = append(left, p.String()+": alive since before the delete")
		case s.netns[p.netns] != "" && !named[p.netns]:
			left = append(left, p.String()+": in namespace "+s.netns[p.netns])
		case isContainerLog(p.out, dir):
			left = append(left, p.String()+": writes to "+p.out)
		}
	}
	return left
}
