package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/podnet/podnet/bench/internal/benchutil"
	"github.com/podnet/podnet/internal/netns"
)

// Prefix starts the name of everything this benchmark creates: network
// namespaces (/run/netns/pnb…), links inside them and temp directories
// (/tmp/pnb-…). Nothing else on the machine uses it.
const Prefix = benchutil.Prefix

// newNS creates a named namespace and registers its removal.
func newNS(c *benchutil.Cleaner, name string) (string, error) {
	p, err := netns.Create(name)
	if err != nil {
		return "", err
	}
	c.Add("netns "+name, func() error { return netns.Delete(name) })
	return p, nil
}

// ourNS matches the namespaces this benchmark names: pnb, the run ID (6
// hex digits), then n (CNI node), u (podnet up node) or p<seq> (a pod).
var ourNS = regexp.MustCompile(`^` + Prefix + `[0-9a-f]{6}(n|u|p[0-9]+)$`)

// sweepStale removes what a killed earlier run left: its pod and node
// namespaces (/run/netns/pnb…) and its temp directories, including the
// `podnet up` pods recorded in them. Only call it holding the run lock.
func sweepStale(tmpBase string) {
	var dirs []string
	for _, what := range []string{"cni", "up"} {
		m, _ := filepath.Glob(filepath.Join(tmpBase, Prefix+"-"+what+"-*"))
		dirs = append(dirs, m...)
	}
	for _, d := range dirs {
		fmt.Fprintf(os.Stderr, "bench: removing leftovers of an earlier run: %s\n", d)
		reapUp(d)
		_ = os.RemoveAll(d)
	}
	nss, _ := filepath.Glob(filepath.Join(netns.Dir, Prefix+"*"))
	for _, p := range nss {
		if !ourNS.MatchString(filepath.Base(p)) {
			continue
		}
		fmt.Fprintf(os.Stderr, "bench: removing leftover namespace %s\n", filepath.Base(p))
		if err := netns.Delete(filepath.Base(p)); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		}
	}
}

// reapUp is the last resort for a `podnet up` run under dir: it kills every
// process whose command line mentions dir (the agent, its shims), the
// containers the shims recorded, and removes the pods' namespaces and
// /etc/netns files the agent recorded. After a clean shutdown (pods
// deleted through podnet) it finds nothing.
func reapUp(dir string) (found []string) {
	// Processes first, so nothing recreates what we remove.
	found = benchutil.KillProcesses(func(args []string) bool {
		return slices.ContainsFunc(args, func(a string) bool { return strings.Contains(a, dir) })
	})
	states, _ := filepath.Glob(filepath.Join(dir, "state", "*", "pods", "*", "containers", "*", "state.json"))
	for _, s := range states {
		var st struct {
			PID int `json:"pid"`
		}
		b, err := os.ReadFile(s)
		if err != nil || json.Unmarshal(b, &st) != nil || st.PID <= 0 {
			continue
		}
		// Only our workload: `sleep infinity`, and not a reused pid.
		cmd, err := os.ReadFile("/proc/" + strconv.Itoa(st.PID) + "/cmdline")
		if err == nil && bytes.Equal(cmd, []byte("sleep\x00infinity\x00")) {
			found = append(found, fmt.Sprintf("container process %d", st.PID))
			_ = syscall.Kill(-st.PID, syscall.SIGKILL)
			_ = syscall.Kill(st.PID, syscall.SIGKILL)
		}
	}
	recs, _ := filepath.Glob(filepath.Join(dir, "state", "*", "pods", "*", "pod.json"))
	for _, r := range recs {
		var rec struct {
			NetNS string `json:"netns"`
		}
		b, err := os.ReadFile(r)
		if err != nil || json.Unmarshal(b, &rec) != nil || !strings.HasPrefix(rec.NetNS, "pn-") || filepath.Base(rec.NetNS) != rec.NetNS {
			continue
		}
		if netns.Exists(rec.NetNS) {
			found = append(found, "pod namespace "+rec.NetNS)
			_ = netns.Delete(rec.NetNS)
		}
		etc := filepath.Join("/etc/netns", rec.NetNS)
		if _, err := os.Stat(etc); err == nil {
			found = append(found, etc)
			_ = os.RemoveAll(etc)
		}
	}
	if len(found) > 0 {
		time.Sleep(100 * time.Millisecond) // let killed processes go
	}
	return found
}
