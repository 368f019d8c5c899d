package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/podnet/podnet/internal/netns"
)

// profile is where podnet-cni's ADD time goes, from its own
// PODNET_CNI_TRACE output (cumulative time since the plugin's Go package
// init at each step), plus the cost of the processes both sides exec.
type profile struct {
	n      int
	steps  []string
	deltas map[string][]time.Duration // step → time since the previous step
	at     map[string][]time.Duration // step → time since plugin init
	wall   []time.Duration            // ADD as libcni saw it
	floors []floor
}

type floor struct {
	what string
	d    time.Duration
}

func (b *cniBench) traceProfile(ctx context.Context, pn *contender, cs []*contender, n int) (*profile, error) {
	pr := &profile{n: n, deltas: map[string][]time.Duration{}, at: map[string][]time.Duration{}}
	os.Setenv("PODNET_CNI_TRACE", "1")
	defer os.Unsetenv("PODNET_CNI_TRACE")
	pn.stderr.take()
	for i := 0; i < n; i++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p, err := b.newPod(18080)
		if err != nil {
			return nil, err
		}
		d, err := b.inNode(ctx, addRaw, pn, p)
		if err != nil {
			return nil, err
		}
		trace := pn.stderr.take()
		if _, err := b.inNode(ctx, delRaw, pn, p); err != nil {
			return nil, err
		}
		pn.stderr.take()
		if err := b.removePod(p); err != nil {
			return nil, err
		}
		pr.wall = append(pr.wall, d)
		var prev time.Duration
		for _, line := range strings.Split(trace, "\n") {
			rest, ok := strings.CutPrefix(strings.TrimSpace(line), "podnet-cni trace:")
			if !ok {
				continue
			}
			f := strings.Fields(rest)
			if len(f) != 2 {
				continue
			}
			at, err := time.ParseDuration(f[1])
			if err != nil {
				continue
			}
			step := f[0]
			if _, seen := pr.at[step]; !seen {
				pr.steps = append(pr.steps, step)
			}
			pr.at[step] = append(pr.at[step], at)
			pr.deltas[step] = append(pr.deltas[step], at-prev)
			prev = at
		}
	}

	// Exec floors: the fixed cost of each process an ADD starts.
	type probe struct {
		what string
		argv []string
		env  []string
		in   string
	}
	version := []string{"CNI_COMMAND=VERSION"}
	probes := []probe{
		{"podnet-cni VERSION", []string{filepath.Join(filepath.Dir(pluginPath(pn)), "podnet-cni")}, version, `{"cniVersion":"1.1.0"}`},
	}
	for _, c := range cs {
		if c == pn {
			continue
		}
		dir := filepath.Dir(pluginPath(c))
		for _, p := range []string{"bridge", "host-local", "portmap"} {
			probes = append(probes, probe{p + " VERSION", []string{filepath.Join(dir, p)}, version, `{"cniVersion":"1.1.0"}`})
		}
	}
	probes = append(probes,
		probe{"nft list table inet podnet", []string{"nft", "list", "table", "inet", "podnet"}, nil, ""},
		probe{"iptables -t nat -S", []string{"iptables", "-w", "-t", "nat", "-S"}, nil, ""},
	)
	for _, p := range probes {
		var ds []time.Duration
		for i := 0; i < n; i++ {
			err := netns.Do(b.nodePath, func() error {
				cmd := exec.CommandContext(ctx, p.argv[0], p.argv[1:]...)
				cmd.Env = append(os.Environ(), p.env...)
				cmd.Stdin = strings.NewReader(p.in)
				var out bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &out
				t0 := time.Now()
				err := cmd.Run()
				ds = append(ds, time.Since(t0))
				if err != nil {
					return fmt.Errorf("%s: %w: %s", strings.Join(p.argv, " "), err, out.String())
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
		}
		pr.floors = append(pr.floors, floor{p.what, median(ds)})
	}
	return pr, nil
}

// pluginPath is the path of the contender's first plugin.
func pluginPath(c *contender) string {
	p, err := exec.LookPath(filepath.Join(c.cni.Path[0], c.list.Plugins[0].Network.Type))
	if err != nil {
		return filepath.Join(c.cni.Path[0], c.list.Plugins[0].Network.Type)
	}
	return p
}

func (pr *profile) print(w io.Writer) {
	if len(pr.steps) == 0 {
		fmt.Fprintln(w, "podnet-cni printed no PODNET_CNI_TRACE lines; no breakdown")
		return
	}
	fmt.Fprintf(w, "where podnet-cni's ADD time goes (PODNET_CNI_TRACE, medians of %d traced ADDs)\n", pr.n)
	fmt.Fprintf(w, "%-32s %12s %12s\n", "step (time since previous)", "median", "at (cum.)")
	fmt.Fprintln(w, strings.Repeat("-", 80))
	for _, s := range pr.steps {
		fmt.Fprintf(w, "%-32s %12s %12s\n", s, ms(median(pr.deltas[s])), ms(median(pr.at[s])))
	}
	last := pr.steps[len(pr.steps)-1]
	var outside []time.Duration
	for i := range pr.wall {
		if i < len(pr.at[last]) {
			outside = append(outside, pr.wall[i]-pr.at[last][i])
		}
	}
	fmt.Fprintf(w, "%-32s %12s\n", "ADD as libcni saw it", ms(median(pr.wall)))
	fmt.Fprintf(w, "%-32s %12s\n", "  outside the traced steps", ms(median(outside)))
	fmt.Fprintln(w, "  (fork/exec, Go runtime start, result output, exit, libcni's cache write)")
	fmt.Fprintln(w, strings.Repeat("-", 80))
	fmt.Fprintf(w, "exec floors (median of %d runs, in the node namespace):\n", pr.n)
	for _, f := range pr.floors {
		fmt.Fprintf(w, "  %-30s %12s\n", f.what, ms(f.d))
	}
	fmt.Fprintln(w)
}

func execOut(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}
