package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// iperfRun is the throughput of one proxy's ClusterIP against the pod IP
// behind it, in the same topology, rounds interleaved.
type iperfRun struct {
	peer            string
	service, direct []float64 // Gbit/s per round
	err             error
}

// throughput loads 10 Services with one proxy, the first of which has
// one endpoint: an iperf3 server in the server namespace. Then, per
// round, one iperf3 run to the pod IP and one to the ClusterIP (the order
// alternating between rounds).
func (b *bench) throughput(ctx context.Context, peer string) *iperfRun {
	ir := &iperfRun{peer: peer}
	b.seq++
	t, err := b.newTopo(b.seq)
	if err != nil {
		ir.err = fmt.Errorf("topology: %w", err)
		return ir
	}
	defer b.teardown(t)
	pod := netip.AddrPortFrom(serverIP, uint16(iperfPort))
	g := genSpec{services: 10, eps: b.o.eps, targets: 1, targetEPs: []netip.AddrPort{pod}, port: iperfPort}
	file := filepath.Join(b.dir, "objects-iperf.json")
	if err := writeObjects(file, generate(g)); err != nil {
		ir.err = err
		return ir
	}
	fmt.Fprintf(os.Stderr, "svcbench: iperf3 through a ClusterIP of %s …\n", peerLabel[peer])
	if _, err := b.runDriver(ctx, t, peer, file, "iperf-"+peer); err != nil {
		ir.err = err
		return ir
	}
	logf, err := os.Create(filepath.Join(b.dir, "iperf3-server-"+peer+".log"))
	if err != nil {
		ir.err = err
		return ir
	}
	defer logf.Close()
	if _, err := t.start(t.server, logf, "iperf3", "-s", "-p", fmt.Sprint(iperfPort)); err != nil {
		ir.err = fmt.Errorf("iperf3 server: %w", err)
		return ir
	}
	if err := waitListen(ctx, t.server, iperfPort, 5*time.Second); err != nil {
		ir.err = fmt.Errorf("iperf3 server: %w%s", err, tail(logf.Name(), 5))
		return ir
	}
	svc := netip.AddrPortFrom(svcIP(0), uint16(iperfPort))
	for r := 0; r < b.o.iperfRounds; r++ {
		order := []netip.AddrPort{pod, svc}
		if r%2 == 1 {
			order = []netip.AddrPort{svc, pod}
		}
		for _, dst := range order {
			if ctx.Err() != nil {
				ir.err = ctx.Err()
				return ir
			}
			gbps, err := b.iperf3(ctx, t, dst, fmt.Sprintf("iperf3-%s-%d-%s", peer, r, dst.Addr()))
			if err != nil {
				ir.err = err
				return ir
			}
			if dst == svc {
				ir.service = append(ir.service, gbps)
			} else {
				ir.direct = append(ir.direct, gbps)
			}
		}
	}
	return ir
}

// iperf runs one iperf3 client in the client namespace; Gbit/s received.
func (b *bench) iperf3(ctx context.Context, t *topo, dst netip.AddrPort, logName string) (float64, error) {
	out, err := inNS(ctx, t.client, filepath.Join(b.dir, logName+".log"), "iperf3", "-c", dst.Addr().String(),
		"-p", fmt.Sprint(dst.Port()), "-t", fmt.Sprint(b.o.iperfSecs), "-O", "1", "-J")
	if err != nil {
		// iperf3 -J reports its error in the JSON.
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(out, &e) == nil && e.Error != "" {
			return 0, fmt.Errorf("iperf3 to %s: %s", dst, e.Error)
		}
		return 0, err
	}
	var res struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return 0, fmt.Errorf("iperf3 output: %w", err)
	}
	if res.End.SumReceived.BitsPerSecond <= 0 {
		return 0, fmt.Errorf("iperf3 to %s: nothing received", dst)
	}
	return res.End.SumReceived.BitsPerSecond / 1e9, nil
}

// waitListen polls `ss` in namespace ns until something listens on port.
func waitListen(ctx context.Context, ns string, port int32, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		out, _ := inNS(ctx, ns, os.DevNull, "ss", "-Hltn", fmt.Sprintf("sport = :%d", port))
		if strings.TrimSpace(string(out)) != "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on port %d after %s", port, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
