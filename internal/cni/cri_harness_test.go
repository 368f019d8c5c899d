package cni_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/testutil"
)

// The containerd tests drive podnet-cni the way a kubelet node does: a
// real containerd (Debian's, with runc) runs the pods through its CRI
// plugin, driven by crictl, and calls the plugin from its conf dir.
//
// Everything is the test's own: containerd runs in the test node's network
// namespace and in a private mount namespace (a "holder" process keeps it
// for containerd restarts) with tmpfs over /run and /var/lib, so its shim
// sockets (/run/containerd/s), libcni's result cache (/var/lib/cni) and
// every mount it makes (netns bind mounts, sandbox /dev/shm, rootfs) stay
// out of the machine's. Its root, state, socket, CNI conf and bin dirs
// are under the test's temporary directory.

const (
	criImage      = "podnet.test/tiny:1"
	crictlPkg     = "sigs.k8s.io/cri-tools/cmd/crictl"
	crictlVersion = "v1.37.0"
	// debianLoopback is the loopback plugin of Debian's
	// containernetworking-plugins.
	debianLoopback = "/usr/lib/cni/loopback"
)

type criEnv struct {
	t          *testing.T
	n          *node
	dir        string // everything containerd owns
	sock       string
	confDir    string
	containerd string
	ctr        string
	crictl     string
	holder     *exec.Cmd // keeps the mount namespace
	ctrd       *exec.Cmd // the running containerd, nil when stopped
	ctrdDone   chan struct{}
	logs       *os.File
	cgroup     string // cgroup parent of every pod, under each v1 controller or v2
}

func newCRIEnv(t *testing.T) *criEnv {
	t.Helper()
	n := newNode(t)
	e := &criEnv{t: t, n: n}
	e.containerd = testutil.LookTool(t, "containerd", "containerd")
	e.ctr = testutil.LookTool(t, "ctr", "containerd")
	testutil.LookTool(t, "containerd-shim-runc-v2", "containerd")
	testutil.LookTool(t, "runc", "runc")
	testutil.LookTool(t, "nsenter", "util-linux")
	testutil.LookTool(t, "unshare", "util-linux")
	e.crictl = testutil.GoTool(t, crictlPkg, crictlVersion)

	e.dir = t.TempDir()
	if strings.HasPrefix(e.dir, "/run/") || strings.HasPrefix(e.dir, "/var/lib/") {
		t.Fatalf("temp dir %s is under /run or /var/lib, which containerd's mount namespace hides", e.dir)
	}
	e.sock = filepath.Join(e.dir, "c.sock")
	e.confDir = filepath.Join(e.dir, "net.d")
	binDir := filepath.Join(e.dir, "cni-bin")
	for _, d := range []string{e.confDir, binDir, filepath.Join(e.dir, "logs")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(pluginBinDir(t), "podnet-cni"), filepath.Join(binDir, "podnet-cni")); err != nil {
		t.Fatal(err)
	}
	// containerd 1.6 and 1.7 bring the pod's lo up through the reference
	// loopback plugin, which must be in bin_dir beside ours.
	if _, err := os.Stat(debianLoopback); err != nil {
		testutil.SkipOrFail(t, fmt.Sprintf("%s missing: install Debian's containernetworking-plugins (make deps)", debianLoopback))
	}
	if err := os.Symlink(debianLoopback, filepath.Join(binDir, "loopback")); err != nil {
		t.Fatal(err)
	}
	e.writeConflist(t, n.conflistBytes("1.0.0", nil))
	e.cgroup = "/" + testutil.UniqueName("pncri", 0)
	t.Cleanup(e.removeCgroups)
	if err := os.WriteFile(filepath.Join(e.dir, "config.toml"), []byte(e.config(binDir)), 0o644); err != nil {
		t.Fatal(err)
	}
	crictlConf := fmt.Sprintf("runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 60\n", e.sock, e.sock)
	if err := os.WriteFile(filepath.Join(e.dir, "crictl.yaml"), []byte(crictlConf), 0o644); err != nil {
		t.Fatal(err)
	}
	logs, err := os.Create(filepath.Join(e.dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	e.logs = logs
	t.Cleanup(func() {
		logs.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logs.Name())
			if len(b) > 20000 {
				b = b[len(b)-20000:]
			}
			t.Logf("containerd log (tail):\n%s", b)
		}
	})

	e.startHolder()
	t.Cleanup(e.teardown)
	t0 := time.Now()
	e.start(t)
	t1 := time.Now()
	img := e.buildImage()
	t2 := time.Now()
	e.importImage(img)
	t.Logf("containerd started in %v, image built in %v, imported in %v", t1.Sub(t0).Round(time.Millisecond),
		t2.Sub(t1).Round(time.Millisecond), time.Since(t2).Round(time.Millisecond))
	return e
}

func (e *criEnv) config(binDir string) string {
	return fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]

[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q
[debug]
  level = "info"

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = %[5]q
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = %[6]q
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "native"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          Root = %[7]q
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = %[8]q
      conf_dir = %[9]q
      max_conf_num = 1
`, filepath.Join(e.dir, "root"), filepath.Join(e.dir, "state"), e.sock, e.sock+".ttrpc",
		filepath.Join(e.dir, "opt"), criImage, filepath.Join(e.dir, "runc"), binDir, e.confDir)
}

func (e *criEnv) writeConflist(t testing.TB, b []byte) {
	t.Helper()
	// Write then rename: containerd watches the dir and must never read
	// half a file.
	tmp := filepath.Join(e.confDir, ".10-podnet.conflist.tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(e.confDir, "10-podnet.conflist")); err != nil {
		t.Fatal(err)
	}
}

// waitConf waits until containerd has loaded the conflist holding want
// (crictl info shows the loaded config's source).
func (e *criEnv) waitConf(t testing.TB, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := e.crictlRun("info")
		if err == nil && strings.Contains(out, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not load the conflist with %s: %v\n%s", want, err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// containerdBefore2 reports whether the containerd is 1.x (libcni 1.1,
// which knows no CNI result version 1.1.0).
func (e *criEnv) containerdBefore2(t testing.TB) bool {
	t.Helper()
	out, err := exec.Command(e.containerd, "--version").Output()
	if err != nil {
		t.Fatalf("containerd --version: %v", err)
	}
	f := strings.Fields(string(out)) // containerd github.com/containerd/containerd 1.6.20~ds1 ...
	if len(f) < 3 {
		t.Fatalf("containerd --version: %q", out)
	}
	return strings.HasPrefix(strings.TrimPrefix(f[2], "v"), "1.")
}

// startHolder starts the process that owns containerd's mount namespace:
// in the node's network namespace, a private mount namespace with tmpfs
// over /run and /var/lib.
func (e *criEnv) startHolder() {
	e.t.Helper()
	cmd := exec.Command("nsenter", "--net="+e.n.path, "--", "unshare", "--mount", "--propagation", "private", "--",
		"sh", "-c", "mount -t tmpfs -o mode=755 podnet-cri /run && mount -t tmpfs -o mode=755 podnet-cri /var/lib && echo ready && exec sleep 1000000")
	out, err := cmd.StdoutPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	cmd.Stderr = e.logs
	if err := cmd.Start(); err != nil {
		e.t.Fatalf("mount namespace holder: %v", err)
	}
	e.holder = cmd
	buf := make([]byte, 6)
	if _, err := out.Read(buf); err != nil || string(buf) != "ready\n" {
		e.t.Fatalf("mount namespace holder did not start: %v %q", err, buf)
	}
}

// holderPid is the pid of the process in the private mount namespace:
// nsenter execs unshare, which execs sh, which execs sleep, all one pid.
func (e *criEnv) holderPid() int { return e.holder.Process.Pid }

// start runs containerd in the holder's namespaces and waits for its CRI
// to answer.
func (e *criEnv) start(t testing.TB) {
	t.Helper()
	cmd := exec.Command("nsenter", "--target", strconv.Itoa(e.holderPid()), "--mount", "--net", "--",
		e.containerd, "--config", filepath.Join(e.dir, "config.toml"))
	cmd.Stdout, cmd.Stderr = e.logs, e.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start containerd: %v", err)
	}
	e.ctrd = cmd
	done := make(chan struct{})
	e.ctrdDone = done
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := e.crictlCmd("info").CombinedOutput()
		if err == nil && strings.Contains(string(out), `"type": "NetworkReady"`) {
			return
		}
		select {
		case <-done:
			t.Fatalf("containerd exited at start: %s", cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd's CRI not ready after 30s: %v\n%s", err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends containerd (SIGTERM, then SIGKILL after 10s); shims and pods
// keep running.
func (e *criEnv) stop() {
	e.t.Helper()
	if e.ctrd == nil {
		return
	}
	_ = e.ctrd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.ctrdDone:
	case <-time.After(10 * time.Second):
		_ = e.ctrd.Process.Kill()
		<-e.ctrdDone
	}
	e.ctrd = nil
}

// teardown removes every pod through containerd, then ends every process
// left in the pods' network namespaces or in the holder's mount namespace
// (containerd, its shims), and the holder; the mounts go with the mount
// namespace.
func (e *criEnv) teardown() {
	t := e.t
	if e.ctrd != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		if out, err := exec.CommandContext(ctx, e.crictl, "--config", filepath.Join(e.dir, "crictl.yaml"), "rmp", "-fa").CombinedOutput(); err != nil {
			t.Errorf("cleanup: crictl rmp -fa: %v\n%s", err, out)
		}
		cancel()
	}
	e.stop()
	if e.holder == nil {
		return
	}
	hp := e.holderPid()
	mnt, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", hp))
	// Network namespaces of pods, seen through the holder's mounts.
	podNets := map[string]bool{}
	nsDir := fmt.Sprintf("/proc/%d/root%s", hp, filepath.Join(e.dir, "state", "io.containerd.grpc.v1.cri", "netns"))
	entries, _ := os.ReadDir(nsDir)
	for _, en := range entries {
		var st syscall.Stat_t
		if syscall.Stat(filepath.Join(nsDir, en.Name()), &st) == nil {
			podNets[fmt.Sprintf("net:[%d]", st.Ino)] = true
		}
	}
	// The pods' processes first, while their shims live to reap them
	// (a zombie keeps its cgroup busy), then containerd and the shims.
	inPods := func(pid int) bool {
		nn, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
		return podNets[nn]
	}
	inMnt := func(pid int) bool {
		m, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid))
		return mnt != "" && m == mnt
	}
	n := e.killAll(hp, inPods, true)
	n += e.killAll(hp, inMnt, false)
	if n > 0 {
		t.Logf("cleanup: killed %d processes left by containerd", n)
	}
	_ = e.holder.Process.Kill()
	_ = e.holder.Wait()
	e.holder = nil
}

// killAll SIGKILLs every process but skip that match reports, and waits
// until they are gone (reaped too when reaped is set, else at least
// zombies).
func (e *criEnv) killAll(skip int, match func(pid int) bool, reaped bool) int {
	var killed []int
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == skip || pid == os.Getpid() || !match(pid) {
			continue
		}
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			killed = append(killed, pid)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range killed {
		for {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			if err != nil || (!reaped && strings.Contains(string(b), ") Z ")) {
				break
			}
			if time.Now().After(deadline) {
				e.t.Errorf("cleanup: process %d still there 10s after SIGKILL: %s", pid, b)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return len(killed)
}

// removeCgroups removes the pods' cgroup parent (runc removes the pods'
// own cgroups; a killed shim may leave them).
func (e *criEnv) removeCgroups() {
	var dirs []string
	_ = filepath.Walk("/sys/fs/cgroup", func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.IsDir() {
			return nil
		}
		if filepath.Base(p) == strings.TrimPrefix(e.cgroup, "/") {
			dirs = append(dirs, p)
			return filepath.SkipDir
		}
		if strings.Count(strings.TrimPrefix(p, "/sys/fs/cgroup"), "/") >= 2 {
			return filepath.SkipDir // the parent is at the top of each hierarchy
		}
		return nil
	})
	for _, d := range dirs {
		sub, _ := os.ReadDir(d)
		for _, s := range sub {
			if s.IsDir() {
				_ = syscall.Rmdir(filepath.Join(d, s.Name()))
			}
		}
		if err := syscall.Rmdir(d); err != nil {
			e.t.Errorf("cleanup: remove cgroup %s: %v", d, err)
		}
	}
}

func (e *criEnv) crictlCmd(args ...string) *exec.Cmd {
	return exec.Command(e.crictl, append([]string{"--config", filepath.Join(e.dir, "crictl.yaml")}, args...)...)
}

// crictlRun runs crictl and returns its trimmed stdout, or an error with
// its output.
func (e *criEnv) crictlRun(args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := e.crictlCmd(args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("crictl %s: %w: %s%s", strings.Join(args, " "), err, stderr.String(), stdout.String())
	}
	return strings.TrimSpace(stdout.String()), nil
}

func (e *criEnv) mustCrictl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := e.crictlRun(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// buildImage builds testdata/tiny static and packs it as an OCI image
// layout tarball: one uncompressed layer holding /tiny, a config whose
// entrypoint is /tiny (so as sandbox image it is the pause process).
func (e *criEnv) buildImage() string {
	t := e.t
	t.Helper()
	bin := filepath.Join(e.dir, "tiny")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./testdata/tiny")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build testdata/tiny: %v\n%s", err, out)
	}
	prog, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	if err := tw.WriteHeader(&tar.Header{Name: "tiny", Mode: 0o755, Size: int64(len(prog)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}); err != nil {
		t.Fatal(err)
	}
	_, _ = tw.Write(prog)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	type desc struct {
		MediaType   string            `json:"mediaType"`
		Digest      string            `json:"digest"`
		Size        int               `json:"size"`
		Annotations map[string]string `json:"annotations,omitempty"`
	}
	blobs := map[string][]byte{}
	add := func(mediaType string, b []byte) desc {
		sum := sha256.Sum256(b)
		d := "sha256:" + hex.EncodeToString(sum[:])
		blobs[d] = b
		return desc{MediaType: mediaType, Digest: d, Size: len(b)}
	}
	mustJSON := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	l := add("application/vnd.oci.image.layer.v1.tar", layer.Bytes())
	conf := add("application/vnd.oci.image.config.v1+json", mustJSON(map[string]any{
		"architecture": "amd64", "os": "linux",
		"config": map[string]any{"Entrypoint": []string{"/tiny"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{l.Digest}},
	}))
	man := add("application/vnd.oci.image.manifest.v1+json", mustJSON(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": conf, "layers": []desc{l},
	}))
	man.Annotations = map[string]string{"io.containerd.image.name": criImage, "org.opencontainers.image.ref.name": "1"}
	index := mustJSON(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []desc{man}})

	path := filepath.Join(e.dir, "tiny.tar")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ow := tar.NewWriter(f)
	put := func(name string, b []byte) {
		if err := ow.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}); err != nil {
			t.Fatal(err)
		}
		if _, err := ow.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	put("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	put("index.json", index)
	for d, b := range blobs {
		put("blobs/sha256/"+strings.TrimPrefix(d, "sha256:"), b)
	}
	if err := ow.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func (e *criEnv) importImage(tarball string) {
	e.t.Helper()
	out, err := exec.Command(e.ctr, "--address", e.sock, "-n", "k8s.io", "images", "import", "--snapshotter", "native", tarball).CombinedOutput()
	if err != nil {
		e.t.Fatalf("ctr images import: %v\n%s", err, out)
	}
	if out := e.mustCrictl(e.t, "images", "-q", criImage); out == "" {
		e.t.Fatalf("image %s not listed by crictl after import", criImage)
	}
}

// criPod is a pod sandbox run through crictl.
type criPod struct {
	name, id string
	ip       string
	pid      int
	netns    string // the sandbox's netns path (in containerd's mount namespace)
	config   string // the pod config file
}

// podConfig writes a pod sandbox config; hostPorts map to container port
// 8080 over TCP.
func (e *criEnv) podConfig(name string, hostPorts ...int) (string, error) {
	var pm []map[string]any
	for _, hp := range hostPorts {
		pm = append(pm, map[string]any{"protocol": 0, "container_port": 8080, "host_port": hp})
	}
	c := map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "default", "uid": name + "-uid", "attempt": 0},
		"hostname":      name,
		"log_directory": filepath.Join(e.dir, "logs", name),
		"port_mappings": pm,
		"linux":         map[string]any{"cgroup_parent": e.cgroup},
	}
	b, _ := json.Marshal(c)
	p := filepath.Join(e.dir, name+".pod.json")
	return p, os.WriteFile(p, b, 0o644)
}

// runPod runs a pod sandbox and inspects it.
func (e *criEnv) runPod(name string, hostPorts ...int) (*criPod, error) {
	conf, err := e.podConfig(name, hostPorts...)
	if err != nil {
		return nil, err
	}
	id, err := e.crictlRun("runp", conf)
	if err != nil {
		return nil, err
	}
	p := &criPod{name: name, id: id, config: conf}
	if err := e.inspect(p); err != nil {
		return p, err
	}
	return p, nil
}

func (e *criEnv) mustRunPod(t testing.TB, name string, hostPorts ...int) *criPod {
	t.Helper()
	p, err := e.runPod(name, hostPorts...)
	if p != nil {
		// A failed subtest must not leave its pod to the next one.
		t.Cleanup(func() { _, _ = e.crictlRun("rmp", "-f", p.id) })
	}
	if err != nil {
		t.Fatalf("runp %s: %v", name, err)
	}
	return p
}

func (e *criEnv) inspect(p *criPod) error {
	out, err := e.crictlRun("inspectp", "-o", "json", p.id)
	if err != nil {
		return err
	}
	var v struct {
		Status struct {
			State   string `json:"state"`
			Network struct {
				IP string `json:"ip"`
			} `json:"network"`
		} `json:"status"`
		Info struct {
			Pid         int `json:"pid"`
			RuntimeSpec struct {
				Linux struct {
					Namespaces []struct{ Type, Path string } `json:"namespaces"`
				} `json:"linux"`
			} `json:"runtimeSpec"`
		} `json:"info"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		return fmt.Errorf("inspectp %s: %w", p.id, err)
	}
	p.ip, p.pid = v.Status.Network.IP, v.Info.Pid
	for _, ns := range v.Info.RuntimeSpec.Linux.Namespaces {
		if ns.Type == "network" {
			p.netns = ns.Path
		}
	}
	return nil
}

// stopRemove stops and removes a pod.
func (e *criEnv) stopRemove(t testing.TB, p *criPod) {
	t.Helper()
	e.mustCrictl(t, "stopp", p.id)
	e.mustCrictl(t, "rmp", p.id)
}

// inPod runs a command in the pod's network namespace (through its pause
// process).
func (e *criEnv) inPod(t testing.TB, p *criPod, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command("nsenter", append([]string{"--net=/proc/" + strconv.Itoa(p.pid) + "/ns/net", "--", name}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("in pod %s: %s %s: %v\n%s", p.name, name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// startServer creates and starts a container in the pod answering on
// :8080, and waits until it answers on the pod IP.
func (e *criEnv) startServer(t testing.TB, p *criPod) string {
	t.Helper()
	c := map[string]any{
		"metadata": map[string]any{"name": "hello"},
		"image":    map[string]any{"image": criImage},
		"command":  []string{"/tiny", "serve", ":8080"},
		"log_path": "hello.log",
		"linux":    map[string]any{},
	}
	b, _ := json.Marshal(c)
	conf := filepath.Join(e.dir, p.name+".hello.json")
	if err := os.WriteFile(conf, b, 0o644); err != nil {
		t.Fatal(err)
	}
	cid := e.mustCrictl(t, "create", p.id, conf, p.config)
	e.mustCrictl(t, "start", cid)
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := dial(e.n.ns, "tcp", p.ip, 8080)
		if err == nil && strings.HasPrefix(out, "hello ") {
			return cid
		}
		if time.Now().After(deadline) {
			t.Fatalf("container in %s does not answer on %s:8080: %v %q", p.name, p.ip, err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// criState is what containerd and the plugin hold on the node: the node
// state (links, nft elements, plugin records), libcni's result cache and
// the sandbox netns files.
type criState struct {
	node      state
	cache     []string
	netnsDirs []string
}

func (e *criEnv) state() criState {
	e.t.Helper()
	s := criState{node: e.n.state()}
	cache := fmt.Sprintf("/proc/%d/root/var/lib/cni", e.holderPid())
	_ = filepath.Walk(cache, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			s.cache = append(s.cache, strings.TrimPrefix(p, cache))
		}
		return nil
	})
	nsDir := filepath.Join(e.dir, "state", "io.containerd.grpc.v1.cri", "netns")
	ents, _ := os.ReadDir(nsDir)
	for _, en := range ents {
		s.netnsDirs = append(s.netnsDirs, en.Name())
	}
	return s
}

func (e *criEnv) requireState(t testing.TB, want criState) {
	t.Helper()
	got := e.state()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("node state after pods are gone\n got %+v\nwant %+v", got, want)
	}
	if out := e.mustCrictl(t, "pods", "-q"); out != "" {
		t.Fatalf("pods left: %s", out)
	}
}
