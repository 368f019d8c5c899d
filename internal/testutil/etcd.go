package testutil

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/store"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// EnvTestEtcd selects the store tests run against: unset for an embedded
// etcd per test, "external" for a 3-member cluster of Debian's etcd
// (package etcd-server) per test.
const EnvTestEtcd = "PODNET_TEST_ETCD"

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
// Ports are never handed out twice by one test binary: the kernel may give
// a just-closed ephemeral port again, and two URLs of one etcd on the same
// port fail with "address already in use".
func FreePort(t testing.TB) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for i := 0; i < 100; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !portsUsed[port] {
			portsUsed[port] = true
			return port
		}
	}
	t.Fatal("free port: no unused port after 100 tries")
	return 0
}

var (
	portsMu   sync.Mutex
	portsUsed = map[int]bool{}
)

// EtcdConfig returns an embedded etcd configuration on free loopback ports
// with its data in a temporary directory.
func EtcdConfig(t testing.TB) store.EmbeddedConfig {
	return store.EmbeddedConfig{
		DataDir:   t.TempDir(),
		ClientURL: fmt.Sprintf("http://127.0.0.1:%d", FreePort(t)),
		PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", FreePort(t)),
	}
}

// Store starts a store for the test and returns a connected Store with the
// system namespaces created. It is an embedded etcd, or with
// PODNET_TEST_ETCD=external a 3-member external etcd cluster; the returned
// config's ClientURL is then the comma-separated endpoints (what
// --etcd-endpoints takes). Everything stops when the test ends.
func Store(t testing.TB) (*store.Store, store.EmbeddedConfig) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var endpoints []string
	var cfg store.EmbeddedConfig
	switch mode := os.Getenv(EnvTestEtcd); mode {
	case "external":
		c := StartEtcdCluster(t, 3)
		endpoints = c.Endpoints()
		cfg = store.EmbeddedConfig{ClientURL: strings.Join(endpoints, ",")}
	case "", "embedded":
		cfg = EtcdConfig(t)
		e, err := store.StartEmbedded(ctx, cfg)
		if err != nil {
			t.Fatalf("embedded etcd: %v", err)
		}
		t.Cleanup(e.Close)
		endpoints = e.Endpoints()
	default:
		t.Fatalf("%s=%q: want external or embedded", EnvTestEtcd, mode)
	}
	cli, err := store.Connect(store.ClientConfig{Endpoints: endpoints})
	if err != nil {
		t.Fatalf("connect etcd: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	s := store.New(cli)
	if err := s.EnsureNamespaces(ctx, "default", "kube-system"); err != nil {
		t.Fatalf("namespaces: %v", err)
	}
	return s, cfg
}

// EtcdCluster is an etcd cluster of separate `etcd` processes on loopback
// ports, with data and logs in the test's temporary directory.
type EtcdCluster struct {
	t       testing.TB
	bin     string
	members []*etcdMember
}

type etcdMember struct {
	name, client, peer, dir string
	args                    []string
	mu                      sync.Mutex
	cmd                     *exec.Cmd
	exited                  chan struct{}
}

// EtcdBinary returns the path of Debian's etcd server. If it is not
// installed the test is skipped, or under CI=true fails.
func EtcdBinary(t testing.TB) string {
	t.Helper()
	for _, p := range []string{os.Getenv("PODNET_ETCD_BIN"), "/usr/bin/etcd"} {
		if p != "" {
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}
	if p, err := exec.LookPath("etcd"); err == nil {
		return p
	}
	SkipOrFail(t, "etcd not installed (Debian package etcd-server; scripts/deps.sh installs it)")
	return ""
}

// StartEtcdCluster starts an n-member etcd cluster and waits until it
// serves; it is stopped and removed when the test ends.
func StartEtcdCluster(t testing.TB, n int) *EtcdCluster {
	t.Helper()
	c := &EtcdCluster{t: t, bin: EtcdBinary(t)}
	// Not t.TempDir: a subtest's name may hold a comma, and etcd splits
	// --log-outputs at commas.
	base, err := os.MkdirTemp("", "podnet-etcd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	var initial []string
	for i := range n {
		m := &etcdMember{
			name:   fmt.Sprintf("m%d", i),
			client: fmt.Sprintf("http://127.0.0.1:%d", FreePort(t)),
			peer:   fmt.Sprintf("http://127.0.0.1:%d", FreePort(t)),
			dir:    filepath.Join(base, fmt.Sprintf("m%d", i)),
		}
		c.members = append(c.members, m)
		initial = append(initial, m.name+"="+m.peer)
	}
	token := "pn-" + filepath.Base(base)
	for _, m := range c.members {
		m.args = []string{
			"--name", m.name,
			"--data-dir", filepath.Join(m.dir, "data"),
			"--listen-client-urls", m.client, "--advertise-client-urls", m.client,
			"--listen-peer-urls", m.peer, "--initial-advertise-peer-urls", m.peer,
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new", "--initial-cluster-token", token,
			"--heartbeat-interval", "50", "--election-timeout", "500",
			"--logger", "zap", "--log-outputs", filepath.Join(m.dir, "etcd.log"),
		}
		if err := os.MkdirAll(m.dir, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(c.stopAll)
	for i := range c.members {
		c.Start(i)
	}
	c.WaitHealthy(30 * time.Second)
	return c
}

// Endpoints returns every member's client URL.
func (c *EtcdCluster) Endpoints() []string {
	var out []string
	for _, m := range c.members {
		out = append(out, m.client)
	}
	return out
}

// Start (re)starts member i (a restart keeps its data).
func (c *EtcdCluster) Start(i int) {
	c.t.Helper()
	m := c.members[i]
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		return
	}
	cmd := exec.Command(c.bin, m.args...)
	// Its own process group, so a ^C to the test run reaches the test
	// first and the cleanup stops etcd. (No Pdeathsig: it fires when the
	// starting OS thread exits, which Go does to threads locked into a
	// namespace.)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := os.OpenFile(filepath.Join(m.dir, "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		out.Close()
		c.t.Fatalf("start etcd %s: %v", m.name, err)
	}
	out.Close()
	m.cmd, m.exited = cmd, make(chan struct{})
	go func(ch chan struct{}) { cmd.Wait(); close(ch) }(m.exited)
}

// Stop stops member i (SIGTERM, then SIGKILL after 5s) and waits.
func (c *EtcdCluster) Stop(i int) { c.stop(i, syscall.SIGTERM) }

// Kill kills member i with SIGKILL and waits.
func (c *EtcdCluster) Kill(i int) { c.stop(i, syscall.SIGKILL) }

func (c *EtcdCluster) stop(i int, sig syscall.Signal) {
	m := c.members[i]
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Signal(sig)
	select {
	case <-m.exited:
	case <-time.After(5 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.exited
	}
	m.cmd = nil
}

func (c *EtcdCluster) stopAll() {
	var wg sync.WaitGroup
	for i := range c.members {
		wg.Add(1)
		go func() { defer wg.Done(); c.Kill(i) }() // its data is thrown away
	}
	wg.Wait()
}

// WaitHealthy waits until a linearizable read succeeds through every
// running member.
func (c *EtcdCluster) WaitHealthy(timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for _, m := range c.members {
		m.mu.Lock()
		running := m.cmd != nil
		exited := m.exited
		m.mu.Unlock()
		if !running {
			continue
		}
		for {
			select {
			case <-exited:
				log, _ := os.ReadFile(filepath.Join(m.dir, "etcd.log"))
				out, _ := os.ReadFile(filepath.Join(m.dir, "stdout.log"))
				c.t.Fatalf("etcd %s exited:\n%s%s", m.name, tail(out), tail(log))
			default:
			}
			if memberHealthy(m.client) {
				break
			}
			if time.Now().After(deadline) {
				log, _ := os.ReadFile(filepath.Join(m.dir, "etcd.log"))
				c.t.Fatalf("etcd %s not healthy after %s:\n%s", m.name, timeout, tail(log))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func memberHealthy(endpoint string) bool {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		return false
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = cli.Get(ctx, "/podnet/health")
	return err == nil
}

func tail(b []byte) string {
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// UseExternalEtcd makes every testutil.Store(t) in this test (and its
// subtests) a 3-member cluster of Debian's etcd. It skips in -short mode and
// skips, or under CI=true fails, if etcd is not installed.
func UseExternalEtcd(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts etcd processes")
	}
	EtcdBinary(t)
	t.Setenv(EnvTestEtcd, "external")
}
