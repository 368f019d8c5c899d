// Package sandbox owns a pod on a node: its network namespace, its CNI
// attachment, its resolv.conf and hosts, and its containers (through shims).
//
// A Manager keeps one directory per pod under its state root:
//
//	<StateDir>/pods/<uid>/pod.json                       the Record
//	<StateDir>/pods/<uid>/containers/<name>/spec.json    what the shim runs
//	<StateDir>/pods/<uid>/containers/<name>/state.json   the shim's state
//	<StateDir>/pods/<uid>/containers/<name>/container.log
//	<StateDir>/pods/<uid>/containers/<name>/shim.log
//	<StateDir>/cni-cache/                                libcni's result cache
//	<StateDir>/pods/<uid>/resolv.conf                    host mode, when the pod's own
//	/etc/netns/<netns>/{resolv.conf,hosts}               bind-mounted by ip netns exec
//
// The Record is written before any kernel work and marked Ready only when
// the set-up finished, so a crash half-way is undone by the next Ensure or
// Remove. Shims run in sessions of their own and survive the agent; a new
// Manager over the same directory adopts them untouched.
//
// Sync, Kill and Pods implement the agent's PodRuntime on top of Ensure,
// Remove and List.
//
// Ensure, Remove and Status are safe for concurrent use; calls for one pod
// are serialised. Network namespaces and shims are started from the calling
// OS thread, so a caller inside netns.Do runs hostNetwork pods (and the CNI
// plugin) in that namespace.
package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/podnet/podnet/internal/netns"
	"github.com/podnet/podnet/internal/resolvconf"
	"github.com/podnet/podnet/internal/shim"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// EtcNetnsDir is where `ip netns exec` finds per-namespace /etc files.
const EtcNetnsDir = "/etc/netns"

// PodIfName is the pod's interface in bridge mode.
const PodIfName = "eth0"

// defaultPath is the PATH of containers whose env does not set one.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// ErrNotFound is returned for a pod the Manager has no record of.
var ErrNotFound = errors.New("pod not found on this node")

// Config configures a Manager.
type Config struct {
	// NodeName is this node's name (spec.nodeName in the env of containers).
	NodeName string
	// StateDir is the agent's directory, e.g. /var/lib/podnet/agent/<node>.
	StateDir string
	// The CNI network: the conflist's bytes, or its path (read at every
	// ADD/DEL), and the directories holding plugin binaries. CNICacheDir
	// defaults to <StateDir>/cni-cache.
	CNIConfList     []byte
	CNIConfListPath string
	CNIBinDirs      []string
	CNICacheDir     string
	// Network overrides the libcni network built from the fields above
	// (tests pass a fake).
	Network Network
	// PodnetBinary is the binary started as `<PodnetBinary> shim ...`.
	PodnetBinary string
	// IPCommand is the ip binary; "" means "ip" from PATH.
	IPCommand string
	// ResolvConf is the node's DNS configuration for pods.
	ResolvConf resolvconf.Config
	Logger     *slog.Logger
}

// Manager sets up, supervises and removes the pods of one node.
type Manager struct {
	cfg   Config
	net   Network
	log   *slog.Logger
	mu    sync.Mutex
	locks map[types.UID]*sync.Mutex
}

// New returns a Manager. It creates StateDir but touches nothing else.
func New(cfg Config) (*Manager, error) {
	if cfg.StateDir == "" || !filepath.IsAbs(cfg.StateDir) {
		return nil, fmt.Errorf("sandbox: state dir %q must be an absolute path", cfg.StateDir)
	}
	if cfg.PodnetBinary == "" {
		return nil, errors.New("sandbox: no podnet binary for shims")
	}
	if !filepath.IsAbs(cfg.PodnetBinary) {
		p, err := exec.LookPath(cfg.PodnetBinary)
		if err != nil {
			return nil, fmt.Errorf("sandbox: podnet binary: %w", err)
		}
		if cfg.PodnetBinary, err = filepath.Abs(p); err != nil {
			return nil, fmt.Errorf("sandbox: podnet binary: %w", err)
		}
	}
	if cfg.CNICacheDir == "" {
		cfg.CNICacheDir = filepath.Join(cfg.StateDir, "cni-cache")
	}
	if cfg.IPCommand == "" {
		cfg.IPCommand = "ip"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Join(cfg.StateDir, podsDir), 0o700); err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	m := &Manager{cfg: cfg, net: cfg.Network, log: cfg.Logger, locks: map[types.UID]*sync.Mutex{}}
	if m.net == nil {
		m.net = &CNI{ConfList: cfg.CNIConfList, ConfListPath: cfg.CNIConfListPath, BinDirs: cfg.CNIBinDirs, CacheDir: cfg.CNICacheDir}
	}
	return m, nil
}

func (m *Manager) lock(uid types.UID) func() {
	m.mu.Lock()
	l := m.locks[uid]
	if l == nil {
		l = &sync.Mutex{}
		m.locks[uid] = l
	}
	m.mu.Unlock()
	l.Lock()
	return l.Unlock
}

func podRef(pod *corev1.Pod) string {
	return fmt.Sprintf("%s/%s (%s)", pod.Namespace, pod.Name, pod.UID)
}

func recRef(r *Record) string {
	return fmt.Sprintf("%s/%s (%s)", r.Namespace, r.Name, r.UID)
}

// validatePod checks what the sandbox relies on.
func validatePod(pod *corev1.Pod) error {
	if err := validUID(pod.UID); err != nil {
		return err
	}
	if len(pod.Spec.Containers) == 0 {
		return errors.New("no containers")
	}
	seen := map[string]bool{}
	for _, c := range pod.Spec.Containers {
		if c.Name == "" || c.Name == "." || c.Name == ".." || strings.ContainsAny(c.Name, "/\x00") {
			return fmt.Errorf("invalid container name %q", c.Name)
		}
		if seen[c.Name] {
			return fmt.Errorf("duplicate container name %q", c.Name)
		}
		seen[c.Name] = true
		if len(c.Command)+len(c.Args) == 0 {
			return fmt.Errorf("container %q: no command", c.Name)
		}
	}
	_, err := ModeOf(pod)
	return err
}

// Ensure makes the pod run on this node and returns its status. It is
// idempotent: for a pod already set up it only restarts shims that died
// (never a running container) and refreshes resolv.conf and hosts. A pod
// whose set-up crashed half-way, or whose namespace vanished (a reboot), is
// torn down and set up again. On error, whatever this call created is undone.
func (m *Manager) Ensure(ctx context.Context, pod *corev1.Pod) (Status, error) {
	if err := validatePod(pod); err != nil {
		return Status{}, fmt.Errorf("sandbox: pod %s: %w", podRef(pod), err)
	}
	defer m.lock(pod.UID)()
	rec, err := m.readRecord(pod.UID)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return Status{}, fmt.Errorf("sandbox: pod %s: read record: %w", podRef(pod), err)
	case rec.Ready && (rec.Mode == ModeHost || netns.Exists(rec.NetNS)):
		if err := m.refresh(ctx, pod, rec); err != nil {
			return m.statusOf(rec), fmt.Errorf("sandbox: pod %s: %w", podRef(pod), err)
		}
		return m.statusOf(rec), nil
	default:
		m.log.Warn("tearing down incomplete pod sandbox", "pod", podRef(pod), "ready", rec.Ready, "netns", rec.NetNS)
		if err := m.teardown(ctx, rec); err != nil {
			return Status{}, fmt.Errorf("sandbox: pod %s: tear down incomplete sandbox: %w", podRef(pod), err)
		}
	}
	rec, err = m.setup(ctx, pod)
	if err != nil {
		return Status{}, err
	}
	return m.statusOf(rec), nil
}

// setup creates the pod from scratch, undoing its own steps on failure.
func (m *Manager) setup(ctx context.Context, pod *corev1.Pod) (_ *Record, retErr error) {
	mode, _ := ModeOf(pod)
	rec := &Record{
		UID: pod.UID, Namespace: pod.Namespace, Name: pod.Name, Mode: mode,
		RestartPolicy: pod.Spec.RestartPolicy, GracePeriod: shim.DefaultGracePeriod,
		PortMappings: PortMappingsOf(pod), CreatedAt: time.Now().UTC(),
	}
	if rec.RestartPolicy == "" {
		rec.RestartPolicy = corev1.RestartPolicyAlways
	}
	if g := pod.Spec.TerminationGracePeriodSeconds; g != nil && *g >= 0 {
		rec.GracePeriod = time.Duration(*g) * time.Second
	}
	if mode != ModeHost {
		rec.NetNS = NetNSName(pod.UID)
	} else if resolvconf.HostNetworkOwnFile(pod, m.cfg.ResolvConf) {
		rec.ResolvConf = HostResolvConfPath(m.cfg.StateDir, pod.UID)
	}
	if mode != ModeBridge {
		rec.PortMappings = nil
	}
	for _, c := range pod.Spec.Containers {
		rec.Containers = append(rec.Containers, c.Name)
	}
	log := m.log.With("pod", podRef(pod), "mode", mode, "netns", rec.NetNS)

	var undo []func()
	step := ""
	fail := func(err error) error {
		return fmt.Errorf("sandbox: pod %s: %s: %w", podRef(pod), step, err)
	}
	defer func() {
		if retErr == nil {
			return
		}
		log.Warn("pod set-up failed, undoing", "err", retErr)
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}()

	step = "write record"
	undo = append(undo, func() {
		if err := os.RemoveAll(m.podDir(pod.UID)); err != nil {
			log.Error("undo: remove pod dir", "err", err)
		}
	})
	if err := m.writeRecord(rec); err != nil {
		return nil, fail(err)
	}

	if mode != ModeHost {
		step = "create network namespace"
		if netns.Exists(rec.NetNS) { // left by a set-up that crashed before its record
			if err := netns.Delete(rec.NetNS); err != nil {
				return nil, fail(err)
			}
		}
		if _, err := netns.Create(rec.NetNS); err != nil {
			return nil, fail(err)
		}
		undo = append(undo, func() {
			if err := netns.Delete(rec.NetNS); err != nil {
				log.Error("undo: delete netns", "err", err)
			}
		})
	}

	if mode == ModeBridge {
		step = "CNI ADD"
		att := m.attachment(rec, netns.Path(rec.NetNS))
		// A failed ADD may leave half an attachment: DEL it too.
		undo = append(undo, func() {
			if err := m.net.Del(context.WithoutCancel(ctx), att); err != nil {
				log.Error("undo: CNI DEL", "err", err)
			}
		})
		ips, err := m.net.Add(ctx, att)
		if err != nil {
			return nil, fail(err)
		}
		rec.IPs = ips
		step = "write record"
		if err := m.writeRecord(rec); err != nil {
			return nil, fail(err)
		}
	}

	if mode != ModeHost {
		step = "write resolv.conf and hosts"
		undo = append(undo, func() {
			if err := os.RemoveAll(filepath.Join(EtcNetnsDir, rec.NetNS)); err != nil {
				log.Error("undo: remove etc files", "err", err)
			}
		})
		if err := m.writeEtc(pod, rec); err != nil {
			return nil, fail(err)
		}
	} else if rec.ResolvConf != "" {
		step = "write resolv.conf" // in the pod dir, removed by the first undo
		if err := m.writeHostResolv(pod, rec); err != nil {
			return nil, fail(err)
		}
	}

	for _, c := range pod.Spec.Containers {
		step = "start container " + c.Name
		dir := m.containerDir(pod.UID, c.Name)
		undo = append(undo, func() {
			if err := shim.Stop(context.WithoutCancel(ctx), dir, time.Second); err != nil {
				log.Error("undo: stop shim", "container", c.Name, "err", err)
			}
		})
		if err := m.startShim(pod, rec, c); err != nil {
			return nil, fail(err)
		}
	}

	step = "write record"
	rec.Ready = true
	if err := m.writeRecord(rec); err != nil {
		return nil, fail(err)
	}
	log.Info("pod sandbox ready", "ips", rec.IPs, "containers", rec.Containers)
	return rec, nil
}

// refresh brings a set-up pod back to its desired state without touching
// running containers: dead shims are restarted and /etc files rewritten.
func (m *Manager) refresh(ctx context.Context, pod *corev1.Pod, rec *Record) error {
	if rec.Mode != ModeHost {
		if err := m.writeEtc(pod, rec); err != nil {
			return fmt.Errorf("write resolv.conf and hosts: %w", err)
		}
	} else if rec.ResolvConf != "" {
		if err := m.writeHostResolv(pod, rec); err != nil {
			return fmt.Errorf("write resolv.conf: %w", err)
		}
	}
	for _, c := range pod.Spec.Containers {
		if !contains(rec.Containers, c.Name) {
			m.log.Warn("ignoring container added after the pod started", "pod", recRef(rec), "container", c.Name)
			continue
		}
		dir := m.containerDir(rec.UID, c.Name)
		st, alive, err := shim.Alive(dir)
		if err != nil {
			return fmt.Errorf("container %s: %w", c.Name, err)
		}
		if alive || !needsShim(st, rec.RestartPolicy) {
			continue
		}
		m.log.Warn("restarting dead shim", "pod", recRef(rec), "container", c.Name, "lastShimPid", st.ShimPID, "state", st.State)
		if err := m.startShim(pod, rec, c); err != nil {
			return fmt.Errorf("restart container %s: %w", c.Name, err)
		}
	}
	return nil
}

// needsShim says whether a container whose shim is not running must get a
// new one: always unless it terminated for good on its own, or was stopped
// and its restart policy would not restart it.
func needsShim(st shim.State, policy corev1.RestartPolicy) bool {
	if st.State != shim.Terminated {
		return true
	}
	if !st.Stopped {
		return false
	}
	switch policy {
	case corev1.RestartPolicyNever:
		return false
	case corev1.RestartPolicyOnFailure:
		return st.ExitCode != 0
	default:
		return true
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (m *Manager) attachment(rec *Record, nsPath string) Attachment {
	return Attachment{
		ContainerID: string(rec.UID), NetNS: nsPath, IfName: PodIfName,
		PodNamespace: rec.Namespace, PodName: rec.Name, PodUID: string(rec.UID),
		PortMappings: rec.PortMappings,
	}
}

// writeEtc writes the pod's resolv.conf and hosts under /etc/netns. Files
// are rewritten in place, only when they change, because running pods see
// them through bind mounts of the inode.
func (m *Manager) writeEtc(pod *corev1.Pod, rec *Record) error {
	resolv, err := resolvconf.ForPod(pod, m.cfg.ResolvConf)
	if err != nil {
		return err
	}
	hosts := resolvconf.HostsFor(pod, rec.IPs)
	dir := filepath.Join(EtcNetnsDir, rec.NetNS)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, data := range map[string][]byte{"resolv.conf": resolv, "hosts": hosts} {
		p := filepath.Join(dir, name)
		if old, err := os.ReadFile(p); err == nil && bytes.Equal(old, data) {
			continue
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// writeHostResolv writes a host-mode pod's own resolv.conf to
// rec.ResolvConf, in place and only when it changes (running containers see
// it through a bind mount of the inode).
func (m *Manager) writeHostResolv(pod *corev1.Pod, rec *Record) error {
	data, err := resolvconf.ForPod(pod, m.cfg.ResolvConf)
	if err != nil {
		return err
	}
	if old, err := os.ReadFile(rec.ResolvConf); err == nil && bytes.Equal(old, data) {
		return nil
	}
	return os.WriteFile(rec.ResolvConf, data, 0o644)
}

// startShim writes a container's spec and launches its shim.
func (m *Manager) startShim(pod *corev1.Pod, rec *Record, c corev1.Container) error {
	dir := m.containerDir(rec.UID, c.Name)
	spec := shim.Spec{
		Command:       append(append([]string(nil), c.Command...), c.Args...),
		Env:           m.containerEnv(pod, rec, c),
		WorkingDir:    c.WorkingDir,
		RestartPolicy: rec.RestartPolicy,
	}
	if err := shim.WriteSpec(dir, spec); err != nil {
		return err
	}
	_, err := shim.Launch(shim.LaunchOptions{
		Binary: m.cfg.PodnetBinary, Dir: dir, NetNS: rec.NetNS, IPCommand: m.cfg.IPCommand,
		ResolvConf:  rec.ResolvConf,
		GracePeriod: rec.GracePeriod,
	})
	return err
}

// containerEnv is the container's environment: PATH and HOSTNAME, then its
// env entries (values, and the fieldRefs the node can answer).
func (m *Manager) containerEnv(pod *corev1.Pod, rec *Record, c corev1.Container) []string {
	vars := map[string]string{"PATH": defaultPath, "HOSTNAME": pod.Name}
	order := []string{"PATH", "HOSTNAME"}
	set := func(k, v string) {
		if _, ok := vars[k]; !ok {
			order = append(order, k)
		}
		vars[k] = v
	}
	podIP := ""
	if len(rec.IPs) > 0 {
		podIP = rec.IPs[0]
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			set(e.Name, e.Value)
		case e.ValueFrom.FieldRef != nil:
			switch e.ValueFrom.FieldRef.FieldPath {
			case "metadata.name":
				set(e.Name, pod.Name)
			case "metadata.namespace":
				set(e.Name, pod.Namespace)
			case "metadata.uid":
				set(e.Name, string(pod.UID))
			case "spec.nodeName":
				set(e.Name, m.cfg.NodeName)
			case "spec.serviceAccountName":
				set(e.Name, pod.Spec.ServiceAccountName)
			case "status.podIP":
				set(e.Name, podIP)
			case "status.podIPs":
				set(e.Name, strings.Join(rec.IPs, ","))
			default:
				m.log.Warn("unsupported env fieldRef", "pod", recRef(rec), "container", c.Name, "env", e.Name, "field", e.ValueFrom.FieldRef.FieldPath)
			}
		default:
			m.log.Warn("unsupported env valueFrom", "pod", recRef(rec), "container", c.Name, "env", e.Name)
		}
	}
	env := make([]string, 0, len(order))
	for _, k := range order {
		env = append(env, k+"="+vars[k])
	}
	return env
}

// Status returns the pod's status from its record and shim states.
func (m *Manager) Status(uid types.UID) (Status, error) {
	if err := validUID(uid); err != nil {
		return Status{}, fmt.Errorf("sandbox: %w", err)
	}
	rec, err := m.readRecord(uid)
	if errors.Is(err, fs.ErrNotExist) {
		return Status{}, fmt.Errorf("sandbox: pod %s: %w", uid, ErrNotFound)
	}
	if err != nil {
		return Status{}, fmt.Errorf("sandbox: pod %s: %w", uid, err)
	}
	return m.statusOf(rec), nil
}

// Remove stops the pod's containers (SIGTERM, grace period, SIGKILL),
// detaches it from the network (CNI DEL works with the namespace gone),
// deletes its namespace, its /etc/netns files and its state. Removing an
// unknown pod is not an error. On error the record is kept so Remove can be
// retried.
func (m *Manager) Remove(ctx context.Context, uid types.UID) error {
	return m.remove(ctx, uid, 0)
}

func (m *Manager) remove(ctx context.Context, uid types.UID, grace time.Duration) error {
	if err := validUID(uid); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	defer m.lock(uid)()
	rec, err := m.readRecord(uid)
	if errors.Is(err, fs.ErrNotExist) {
		// No record: at most a namespace left by a crash before the
		// record was written, or an empty directory.
		name := NetNSName(uid)
		errs := []error{netns.Delete(name), os.RemoveAll(filepath.Join(EtcNetnsDir, name)), os.RemoveAll(m.podDir(uid))}
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("sandbox: remove pod %s: %w", uid, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("sandbox: remove pod %s: %w", uid, err)
	}
	if grace > 0 {
		rec.GracePeriod = grace
	}
	if err := m.teardown(ctx, rec); err != nil {
		return fmt.Errorf("sandbox: remove pod %s: %w", recRef(rec), err)
	}
	m.log.Info("pod sandbox removed", "pod", recRef(rec))
	return nil
}

// teardown undoes everything a record may stand for, in reverse order of
// set-up, going on past errors. The pod's directory goes last, and only if
// everything else succeeded.
func (m *Manager) teardown(ctx context.Context, rec *Record) error {
	var errs []error
	// Every container directory, not only the recorded ones: a crash may
	// have happened between writing a spec and the record.
	names := append([]string(nil), rec.Containers...)
	if entries, err := os.ReadDir(filepath.Join(m.podDir(rec.UID), containersDir)); err == nil {
		for _, e := range entries {
			if e.IsDir() && !contains(names, e.Name()) {
				names = append(names, e.Name())
			}
		}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := shim.Stop(ctx, m.containerDir(rec.UID, name), rec.GracePeriod); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("stop container %s: %w", name, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if rec.Mode == ModeBridge {
		path := ""
		if rec.NetNS != "" && netns.Exists(rec.NetNS) {
			path = netns.Path(rec.NetNS)
		}
		if err := m.net.Del(ctx, m.attachment(rec, path)); err != nil {
			errs = append(errs, err)
		}
	}
	if rec.NetNS != "" {
		if err := netns.Delete(rec.NetNS); err != nil {
			errs = append(errs, err)
		}
		if err := os.RemoveAll(filepath.Join(EtcNetnsDir, rec.NetNS)); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := os.RemoveAll(m.podDir(rec.UID)); err != nil {
		return err
	}
	return nil
}

// Exec returns a command that runs argv inside the pod's network namespace
// (with its resolv.conf and hosts), or directly for a hostNetwork pod.
func (m *Manager) Exec(uid types.UID, argv []string) (*exec.Cmd, error) {
	if len(argv) == 0 {
		return nil, errors.New("sandbox: exec: empty command")
	}
	if err := validUID(uid); err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	rec, err := m.readRecord(uid)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("sandbox: exec in pod %s: %w", uid, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("sandbox: exec in pod %s: %w", uid, err)
	}
	return ExecCommand(m.cfg.IPCommand, rec, argv), nil
}

// ExecCommand builds the command that runs argv in a recorded pod.
func ExecCommand(ipCommand string, rec *Record, argv []string) *exec.Cmd {
	if rec.Mode == ModeHost || rec.NetNS == "" {
		if rec.ResolvConf != "" {
			argv = shim.WithResolvConf(rec.ResolvConf, argv)
		}
		return exec.Command(argv[0], argv[1:]...)
	}
	if ipCommand == "" {
		ipCommand = "ip"
	}
	return exec.Command(ipCommand, append([]string{"netns", "exec", rec.NetNS}, argv...)...)
}

// LogPath is the file holding the container's stdout and stderr.
func (m *Manager) LogPath(uid types.UID, container string) string {
	return filepath.Join(m.containerDir(uid, container), shim.LogFile)
}
