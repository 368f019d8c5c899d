package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/podnet/podnet/bench/internal/benchutil"
	"github.com/podnet/podnet/internal/netns"
)

// upResult is the `podnet run … --wait` timing.
type upResult struct {
	run     []time.Duration // one per pod, in order
	delete  time.Duration   // `podnet delete pod` of all of them (waits for the node)
	deleted int             // how many pods that delete covered
	start   time.Duration   // `podnet up` start until the store answers
	cli     time.Duration   // median `podnet get pod NAME`: the CLI's own floor
	leaks   []string        // what reapUp still found after a clean shutdown
}

// upBench runs `podnet up` in a node namespace of its own and times
// `podnet run NAME --wait -- sleep infinity` from the CLI in that
// namespace. Everything `up` writes goes to a temp dir.
type upBench struct {
	c        *benchutil.Cleaner
	podnet   string // bin/podnet
	dir      string
	nodePath string
	log      *os.File
}

const upNodeIP = "192.0.2.1" // TEST-NET-1, on the uplink inside the node namespace

// podnetCmd runs `podnet args…` with the calling thread in the node
// namespace (so the command inherits it, and only it: no private mount
// namespace as with `ip netns exec`) and returns its output and wall time.
func (u *upBench) podnetCmd(ctx context.Context, timeout time.Duration, args ...string) (string, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var out bytes.Buffer
	var d time.Duration
	err := netns.Do(u.nodePath, func() error {
		cmd := exec.CommandContext(ctx, u.podnet, args...)
		cmd.Env = benchutil.Environ()
		cmd.Stdout = &out
		cmd.Stderr = &out
		t0 := time.Now()
		err := cmd.Run()
		d = time.Since(t0)
		return err
	})
	if err != nil {
		return out.String(), d, fmt.Errorf("podnet %s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String(), d, nil
}

func runUp(ctx context.Context, c *benchutil.Cleaner, runID, tmpBase, podnetBin string, pods int, progress func(int)) (*upResult, error) {
	u := &upBench{c: c, podnet: podnetBin}
	var err error
	if u.dir, err = c.TempDir(tmpBase, "up"); err != nil {
		return nil, err
	}
	// Runs after `up` is stopped (cleanups go newest first): whatever a
	// failed or interrupted run left of the pods.
	res := &upResult{}
	c.Add("reap podnet up leftovers", func() error {
		if found := reapUp(u.dir); len(found) > 0 {
			res.leaks = append(res.leaks, found...)
			return fmt.Errorf("removed by force: %s", strings.Join(found, "; "))
		}
		return nil
	})
	nodeName := Prefix + runID + "u"
	if u.nodePath, err = newNS(c, nodeName); err != nil {
		return nil, err
	}
	// A node has an uplink with an address and the default route: one end
	// of a veth pair whose both ends stay in the node namespace (this
	// kernel may lack the dummy link type).
	for _, args := range [][]string{
		{"link", "add", Prefix + "up0", "type", "veth", "peer", "name", Prefix + "up1"},
		{"addr", "add", upNodeIP + "/24", "dev", Prefix + "up0"},
		{"link", "set", Prefix + "up1", "up"},
		{"link", "set", Prefix + "up0", "up"},
		{"route", "add", "default", "dev", Prefix + "up0"},
	} {
		if out, err := exec.Command("ip", append([]string{"-n", nodeName}, args...)...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	if u.log, err = os.Create(filepath.Join(u.dir, "up.log")); err != nil {
		return nil, err
	}
	c.Add("close up.log", u.log.Close)

	// Start `podnet up` from a thread in the node namespace.
	var up *exec.Cmd
	err = netns.Do(u.nodePath, func() error {
		up = exec.Command(podnetBin, "up",
			"--data-dir", filepath.Join(u.dir, "etcd"),
			"--state-dir", filepath.Join(u.dir, "state"),
			"--cni-conf-dir", filepath.Join(u.dir, "net.d"),
			"--cni-bin-dir", filepath.Join(u.dir, "cni-bin"),
			"--cni-data-dir", filepath.Join(u.dir, "cni-data"),
			"--node-name", Prefix+"-node",
			"--node-ip", upNodeIP,
		)
		up.Env = benchutil.Environ()
		up.Stdout, up.Stderr = u.log, u.log
		// Its own process group: a ^C on the terminal reaches only the
		// benchmark, which then deletes the pods before stopping `up`.
		up.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		return up.Start()
	})
	if err != nil {
		return nil, fmt.Errorf("start podnet up: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- up.Wait() }()
	c.Add("stop podnet up", func() error {
		select {
		case err := <-exited:
			exited <- err
			return nil
		default:
		}
		_ = up.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
			return nil
		case <-time.After(30 * time.Second):
			_ = up.Process.Kill()
			<-exited
			return errors.New("podnet up ignored SIGTERM for 30s; killed")
		}
	})

	// Ready: the agent is configured (its start line is logged) and the
	// store answers.
	t0 := time.Now()
	for {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		select {
		case err := <-exited:
			exited <- err
			return res, fmt.Errorf("podnet up exited: %v\n%s", err, u.logTail())
		default:
		}
		if time.Since(t0) > 90*time.Second {
			return res, fmt.Errorf("podnet up not ready after 90s\n%s", u.logTail())
		}
		b, _ := os.ReadFile(u.log.Name())
		if bytes.Contains(b, []byte("podnet up: node")) {
			if _, _, err := u.podnetCmd(ctx, 10*time.Second, "get", "pods"); err == nil {
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	res.start = time.Since(t0)

	// The pods are deleted through podnet (before `up` stops), also when
	// the run fails half-way.
	var created []string
	c.Add("delete the pods through podnet", func() error {
		if len(created) == 0 {
			return nil
		}
		select {
		case err := <-exited:
			exited <- err
			return errors.New("podnet up is gone; its pods are reaped by force")
		default:
		}
		_, d, err := u.podnetCmd(context.Background(), 120*time.Second, append([]string{"delete", "pod"}, created...)...)
		res.delete, res.deleted = d, len(created)
		return err
	})

	ipRE := regexp.MustCompile(`Running ip=(\d+\.\d+\.\d+\.\d+)`)
	for i := 1; i <= pods; i++ {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		name := fmt.Sprintf("%s-%d", Prefix, i)
		created = append(created, name)
		out, d, err := u.podnetCmd(ctx, 90*time.Second, "run", name, "--wait", "--", "sleep", "infinity")
		if err != nil {
			return res, fmt.Errorf("%w\npodnet up log:\n%s", err, u.logTail())
		}
		if !ipRE.MatchString(out) {
			return res, fmt.Errorf("podnet run %s: no Running with an IP in %q", name, out)
		}
		res.run = append(res.run, d)
		progress(i)
	}
	// The CLI's fixed cost (exec, start, connect, one read), for reading
	// the run time: what is left is the pod's way through store and agent.
	var gets []time.Duration
	for i := 0; i < 10; i++ {
		_, d, err := u.podnetCmd(ctx, 30*time.Second, "get", "pod", created[0])
		if err != nil {
			return res, err
		}
		gets = append(gets, d)
	}
	res.cli = median(gets)
	return res, nil
}

func (u *upBench) logTail() string {
	b, _ := os.ReadFile(u.log.Name())
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}
