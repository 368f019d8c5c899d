package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/podnet/podnet/internal/ingress/proxy"
	"github.com/prometheus/client_golang/prometheus"
)

// serveOpts are the flags of the driver's server roles (-serve podnet,
// -serve httputil), which it runs as child processes of itself.
type serveOpts struct {
	role       string
	n          int
	backend    string
	http       string
	https      string
	cert, key  string
	accessLog  string
	cpuProfile string
}

// serve runs a peer until SIGTERM/SIGINT: it builds the same table as the
// driver, then serves it with the podnet proxy or httputil.
func serve(o serveOpts) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	t, err := buildTable(o.n, o.backend)
	if err != nil {
		return err
	}
	cert, err := loadCert(o.cert, o.key)
	if err != nil {
		return err
	}
	hl, err := net.Listen("tcp", o.http)
	if err != nil {
		return err
	}
	sl, err := net.Listen("tcp", o.https)
	if err != nil {
		return err
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	switch o.role {
	case "podnet":
		log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		if o.accessLog != "" {
			f, err := os.Create(o.accessLog)
			if err != nil {
				return err
			}
			defer f.Close()
			log = slog.New(slog.NewJSONHandler(f, nil))
		}
		proxy.TuneGC() // as `podnet ingress` does
		p := proxy.New(proxy.Options{Logger: log, Registry: prometheus.NewRegistry(), DefaultCert: cert, NodeName: "bench", Namespace: "bench"})
		p.Swap(t)
		return p.Serve(ctx, hl, sl)
	case "httputil":
		h, err := httputilHandler(t)
		if err != nil {
			return err
		}
		s1 := &http.Server{Handler: h, IdleTimeout: 75 * time.Second}
		s2 := &http.Server{Handler: h, IdleTimeout: 75 * time.Second, TLSConfig: &tls.Config{Certificates: []tls.Certificate{*cert}}}
		errc := make(chan error, 2)
		go func() { errc <- s1.Serve(hl) }()
		go func() { errc <- s2.ServeTLS(sl, "", "") }()
		select {
		case <-ctx.Done():
		case err = <-errc:
		}
		s1.Close()
		s2.Close()
		return err
	}
	return fmt.Errorf("unknown role %q", o.role)
}

// procs are the processes a run starts, each in its own process group
// (so nginx's workers go with their master), recorded in DIR/pgids so
// that a later run can kill what a SIGKILLed one left (sweep).
type procs struct {
	dir  string
	mu   sync.Mutex
	list []*proc
}

type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

// start runs argv pinned to cpu (-1: not pinned) with stdout/stderr to
// DIR/name.log.
func (ps *procs) start(name string, cpu int, argv ...string) (*proc, error) {
	if cpu >= 0 {
		argv = append([]string{"taskset", "-c", strconv.Itoa(cpu)}, argv...)
	}
	out, err := os.Create(filepath.Join(ps.dir, name+".log"))
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	ps.mu.Lock()
	ps.list = append(ps.list, p)
	ps.mu.Unlock()
	f, err := os.OpenFile(filepath.Join(ps.dir, "pgids"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err == nil {
		fmt.Fprintln(f, cmd.Process.Pid)
		f.Close()
	}
	return p, nil
}

// stop sends SIGTERM to the process group, waits up to 10 s, then
// SIGKILLs it.
func (p *proc) stop() {
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		fmt.Fprintf(os.Stderr, "ingress: %s did not stop on SIGTERM; killing\n", p.name)
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-p.done
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (ps *procs) stopAll() {
	ps.mu.Lock()
	list := ps.list
	ps.list = nil
	ps.mu.Unlock()
	for i := len(list) - 1; i >= 0; i-- {
		list[i].stop()
	}
}

func (ps *procs) remove(p *proc) {
	p.stop()
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for i, q := range ps.list {
		if q == p {
			ps.list = append(ps.list[:i], ps.list[i+1:]...)
			break
		}
	}
}

// sweep kills the process groups recorded in the temp dirs pnb-ingress-*
// that earlier runs left in tmp, and removes those dirs.
func sweep(tmp string) {
	dirs, _ := filepath.Glob(filepath.Join(tmp, "pnb-ingress-*"))
	for _, d := range dirs {
		b, _ := os.ReadFile(filepath.Join(d, "pgids"))
		for _, l := range strings.Fields(string(b)) {
			if pg, err := strconv.Atoi(l); err == nil && pg > 1 {
				for _, k := range killGroup(pg) {
					fmt.Fprintf(os.Stderr, "ingress: killed %s left by an earlier run (%s)\n", k, d)
				}
			}
		}
		if err := os.RemoveAll(d); err == nil {
			fmt.Fprintf(os.Stderr, "ingress: removed %s left by an earlier run\n", d)
		}
	}
}

// killGroup SIGKILLs the processes of group pg that a run starts (nginx,
// wrk, this driver's peer roles), so that a PID reused since is left
// alone, and describes each.
func killGroup(pg int) (killed []string) {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(st), ')')
		f := strings.Fields(string(st)[i+1:])
		if i < 0 || len(f) < 3 || f[2] != strconv.Itoa(pg) {
			continue
		}
		cmd, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		args := strings.Split(strings.TrimRight(string(cmd), "\x00"), "\x00")
		ours := strings.HasPrefix(args[0], "nginx") || filepath.Base(args[0]) == "wrk"
		for _, a := range args {
			ours = ours || a == "-serve"
		}
		if ours && syscall.Kill(pid, syscall.SIGKILL) == nil {
			killed = append(killed, fmt.Sprintf("process %d (%s)", pid, strings.Join(args, " ")))
		}
	}
	return killed
}

// waitServing polls url with host until it answers 200 with body want.
func waitServing(ctx context.Context, c *http.Client, url, host, want string, p *proc, logFile string) error {
	deadline := time.Now().Add(20 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		if p != nil && p.exited() {
			b, _ := os.ReadFile(logFile)
			return fmt.Errorf("%s exited: %s", p.name, strings.TrimSpace(string(b)))
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		body, code, err := get(c, url, host)
		if err == nil && code == 200 && body == want {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("status %d, body %q", code, body)
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s (Host %s) not serving after 20s: %w", url, host, last)
}

func get(c *http.Client, url, host string) (string, int, error) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return "", 0, err
	}
	req.Host = host
	res, err := c.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return "", 0, err
	}
	return string(b), res.StatusCode, nil
}

// freeAddr is a free 127.0.0.1 TCP address.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// memory reads VmRSS, Pss (smaps_rollup) and VmHWM (KiB) of pid and of
// its children (nginx's workers), summed: Pss counts pages the processes
// share once, VmRSS and VmHWM count them in each.
func memory(pid int) (rss, pss, hwm int) {
	pids := []int{pid}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i > 0 {
			f := strings.Fields(s[i+1:])
			if len(f) > 1 && f[1] == strconv.Itoa(pid) {
				pids = append(pids, c)
			}
		}
	}
	for _, p := range pids {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", p)); err == nil {
			for _, l := range strings.Split(string(b), "\n") {
				if f := strings.Fields(l); len(f) > 1 && f[0] == "Pss:" {
					v, _ := strconv.Atoi(f[1])
					pss += v
				}
			}
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			f := strings.Fields(l)
			if len(f) < 2 {
				continue
			}
			v, _ := strconv.Atoi(f[1])
			switch f[0] {
			case "VmRSS:":
				rss += v
			case "VmHWM:":
				hwm += v
			}
		}
	}
	return rss, pss, hwm
}

// syscallAttr kills wrk with the driver.
var syscallAttr = syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}

// insecureTLS is the readiness check's client config: every peer serves
// the run's self-signed certificate.
func insecureTLS() *tls.Config { return &tls.Config{InsecureSkipVerify: true} }
