package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/podnet/podnet/bench/internal/benchutil"
	"github.com/podnet/podnet/internal/netns"
)

// contender is one side of the comparison: a conflist and the libcni
// instance that runs it.
type contender struct {
	name   string
	subnet netip.Prefix
	cni    *libcni.CNIConfig
	list   *libcni.NetworkConfigList
	stderr *syncBuffer // the plugins' stderr (libcni passes it on after success)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) take() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.b.String()
	s.b.Reset()
	return out
}

func newContender(name, binDir, cacheDir string, subnet netip.Prefix, conflist map[string]any) (*contender, error) {
	b, err := json.Marshal(conflist)
	if err != nil {
		return nil, err
	}
	list, err := libcni.ConfListFromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("%s conflist: %w\n%s", name, err, b)
	}
	buf := &syncBuffer{}
	exec := &invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: buf}, PluginDecoder: version.PluginDecoder{}}
	return &contender{
		name: name, subnet: subnet, list: list, stderr: buf,
		cni: libcni.NewCNIConfigWithCacheDir([]string{binDir}, cacheDir, exec),
	}, nil
}

// podnetConflist is podnet-cni doing gateway, masquerade and port mappings.
func podnetConflist(bridge string, subnet netip.Prefix, dataDir string) map[string]any {
	return map[string]any{
		"cniVersion": "1.1.0",
		"name":       Prefix + "-podnet",
		"plugins": []any{map[string]any{
			"type":         "podnet-cni",
			"bridge":       bridge,
			"subnet":       subnet.String(),
			"ipMasq":       true,
			"dataDir":      dataDir,
			"capabilities": map[string]bool{"portMappings": true},
		}},
	}
}

// referenceConflist is the same network with the reference plugins:
// bridge (gateway, masquerade) with host-local IPAM, then portmap. backend
// "" leaves the plugins' default (iptables when the iptables binary exists,
// as here); "nftables" selects their nftables code for masquerade and ports.
func referenceConflist(bridge string, subnet netip.Prefix, dataDir, backend string) map[string]any {
	br := map[string]any{
		"type":      "bridge",
		"bridge":    bridge,
		"isGateway": true,
		"ipMasq":    true,
		"ipam": map[string]any{
			"type":    "host-local",
			"subnet":  subnet.String(),
			"dataDir": dataDir,
		},
	}
	pm := map[string]any{
		"type":         "portmap",
		"capabilities": map[string]bool{"portMappings": true},
		"snat":         true,
	}
	if backend != "" {
		br["ipMasqBackend"] = backend
		pm["backend"] = backend
	}
	return map[string]any{
		"cniVersion": "1.1.0",
		"name":       Prefix + "-ref",
		"plugins":    []any{br, pm},
	}
}

// pod is a pod network namespace, created and removed by the benchmark.
type pod struct {
	id   string // container ID
	name string // namespace name
	path string
	port int // published host port
}

func (p *pod) rt() *libcni.RuntimeConf {
	return &libcni.RuntimeConf{
		ContainerID: p.id,
		NetNS:       p.path,
		IfName:      "eth0",
		CapabilityArgs: map[string]any{
			"portMappings": []map[string]any{{"hostPort": p.port, "containerPort": 8080, "protocol": "tcp"}},
		},
	}
}

// cniBench runs both contenders inside one node namespace.
type cniBench struct {
	c        *benchutil.Cleaner
	runID    string
	nodePath string
	seq      int
}

// newPod creates a pod namespace. It is removed by removePod, or by the
// cleaner if the run stops early.
func (b *cniBench) newPod(port int) (*pod, error) {
	b.seq++
	name := fmt.Sprintf("%s%sp%d", Prefix, b.runID, b.seq)
	path, err := newNS(b.c, name)
	if err != nil {
		return nil, err
	}
	return &pod{id: fmt.Sprintf("%s-%s-%d", Prefix, b.runID, b.seq), name: name, path: path, port: port}, nil
}

func (b *cniBench) removePod(p *pod) error { return netns.Delete(p.name) }

// addRaw and delRaw run ADD and DEL with the calling thread, which must
// already be in the node namespace (so the exec'd plugins run there), and
// return how long the call took.
func addRaw(ctx context.Context, c *contender, p *pod) (time.Duration, error) {
	t0 := time.Now()
	res, err := c.cni.AddNetworkList(ctx, c.list, p.rt())
	d := time.Since(t0)
	if err == nil {
		err = c.checkResult(res)
	}
	if err != nil {
		return 0, fmt.Errorf("%s ADD %s: %w", c.name, p.id, err)
	}
	return d, nil
}

func delRaw(ctx context.Context, c *contender, p *pod) (time.Duration, error) {
	t0 := time.Now()
	err := c.cni.DelNetworkList(ctx, c.list, p.rt())
	d := time.Since(t0)
	if err != nil {
		return 0, fmt.Errorf("%s DEL %s: %w", c.name, p.id, err)
	}
	return d, nil
}

type op func(context.Context, *contender, *pod) (time.Duration, error)

// inNode runs op from a thread in the node namespace.
func (b *cniBench) inNode(ctx context.Context, o op, c *contender, p *pod) (time.Duration, error) {
	var d time.Duration
	err := netns.Do(b.nodePath, func() error {
		var err error
		d, err = o(ctx, c, p)
		return err
	})
	return d, err
}

// checkResult makes sure ADD really did its job: an IPv4 address in the
// contender's subnet, with a gateway.
func (c *contender) checkResult(r types.Result) error {
	res, err := current.NewResultFromResult(r)
	if err != nil {
		return err
	}
	if len(res.IPs) == 0 {
		return errors.New("result has no IP")
	}
	ip, ok := netip.AddrFromSlice(res.IPs[0].Address.IP.To4())
	if !ok || !c.subnet.Contains(ip) || res.IPs[0].Gateway == nil {
		return fmt.Errorf("result IP %v gateway %v: want an address in %s with a gateway", res.IPs[0].Address, res.IPs[0].Gateway, c.subnet)
	}
	return nil
}

// verify adds one pod with each contender and checks, in the node
// namespace's nftables ruleset and iptables rules, that the pod's address
// and its published port were programmed: the two really do the same job.
func (b *cniBench) verify(ctx context.Context, cs []*contender) error {
	for _, c := range cs {
		p, err := b.newPod(18080)
		if err != nil {
			return err
		}
		err = netns.Do(b.nodePath, func() error {
			res, err := c.cni.AddNetworkList(ctx, c.list, p.rt())
			if err != nil {
				return err
			}
			r, err := current.NewResultFromResult(res)
			if err != nil {
				return err
			}
			if err := c.checkResult(r); err != nil {
				return err
			}
			ip := r.IPs[0].Address.IP.String()
			nftOut, _ := exec.Command("nft", "list", "ruleset").CombinedOutput()
			iptOut, _ := exec.Command("iptables-save", "-t", "nat").CombinedOutput()
			all := string(nftOut) + string(iptOut)
			for _, want := range []string{ip, "18080", "masquerade"} {
				if !strings.Contains(strings.ToLower(all), want) {
					return fmt.Errorf("pod %s: %q not in the node's nft ruleset or iptables nat rules", ip, want)
				}
			}
			return c.cni.DelNetworkList(ctx, c.list, p.rt())
		})
		if err != nil {
			return fmt.Errorf("%s: verify: %w", c.name, err)
		}
		if err := b.removePod(p); err != nil {
			return err
		}
	}
	return nil
}

// latency is ADD+DEL per pod, iteration by iteration, the two contenders
// alternating (and swapping who goes first every iteration).
type latency struct {
	add, del, both []time.Duration
}

func (b *cniBench) latency(ctx context.Context, cs []*contender, iters int, progress func(int)) (map[string]*latency, error) {
	out := map[string]*latency{}
	for _, c := range cs {
		out[c.name] = &latency{}
	}
	for i := 0; i < iters; i++ {
		for k := range cs {
			c := cs[(i+k)%len(cs)]
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			p, err := b.newPod(18080)
			if err != nil {
				return nil, err
			}
			da, err := b.inNode(ctx, addRaw, c, p)
			if err != nil {
				return nil, err
			}
			dd, err := b.inNode(ctx, delRaw, c, p)
			if err != nil {
				return nil, err
			}
			if err := b.removePod(p); err != nil {
				return nil, err
			}
			l := out[c.name]
			l.add = append(l.add, da)
			l.del = append(l.del, dd)
			l.both = append(l.both, da+dd)
		}
		progress(i + 1)
	}
	return out, nil
}

// batch is n pods set up at once: the wall time of n ADDs (sequential or
// parallel) and of their n DELs (done the same way).
type batch struct {
	add, del time.Duration
}

func (b *cniBench) batch(ctx context.Context, c *contender, n int, parallel bool) (batch, error) {
	var res batch
	pods := make([]*pod, n)
	defer func() {
		for _, p := range pods {
			if p != nil {
				_ = b.removePod(p)
			}
		}
	}()
	for i := range pods {
		p, err := b.newPod(20000 + i)
		if err != nil {
			return res, err
		}
		pods[i] = p
	}
	run := func(o op) (time.Duration, error) {
		if !parallel {
			var d time.Duration
			err := netns.Do(b.nodePath, func() error {
				t0 := time.Now()
				for _, p := range pods {
					if _, err := o(ctx, c, p); err != nil {
						return err
					}
				}
				d = time.Since(t0)
				return nil
			})
			return d, err
		}
		// Every goroutine enters the node namespace first, then all start
		// together; the wall time runs from the start to the last one done.
		var ready, done sync.WaitGroup
		start := make(chan struct{})
		errs := make([]error, n)
		for i, p := range pods {
			ready.Add(1)
			done.Add(1)
			go func() {
				defer done.Done()
				entered := false
				defer func() {
					if !entered {
						ready.Done()
					}
				}()
				errs[i] = netns.Do(b.nodePath, func() error {
					entered = true
					ready.Done()
					<-start
					_, err := o(ctx, c, p)
					return err
				})
			}()
		}
		ready.Wait()
		t0 := time.Now()
		close(start)
		done.Wait()
		return time.Since(t0), errors.Join(errs...)
	}
	var err error
	if res.add, err = run(addRaw); err != nil {
		// DEL whatever was added so the next round starts clean.
		_, _ = run(delRaw)
		return res, err
	}
	if res.del, err = run(delRaw); err != nil {
		return res, err
	}
	return res, nil
}

// newCNIBench creates the node namespace (removed by the cleaner).
func newCNIBench(c *benchutil.Cleaner, runID string) (*cniBench, error) {
	path, err := newNS(c, Prefix+runID+"n")
	if err != nil {
		return nil, err
	}
	return &cniBench{c: c, runID: runID, nodePath: path}, nil
}

func mkdirs(base string, names ...string) (map[string]string, error) {
	out := map[string]string{}
	for _, n := range names {
		d := filepath.Join(base, n)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
		out[n] = d
	}
	return out, nil
}
