// Package prober runs a pod's readiness, liveness and startup probes and
// its lifecycle handlers from the node, as the kubelet does: httpGet and
// tcpSocket dial the pod's IP (the node's for host-network pods) from the
// agent's network namespace, exec runs the command inside the pod's network
// namespace (the way `podnet exec` does).
//
// A Manager holds one Worker goroutine per container probe. The agent feeds
// it what its runtime observed (Update) and reads back each container's
// ready and started state; a Worker applies Kubernetes' timing and
// threshold rules and, for liveness and startup probes, asks the agent to
// restart a container that failed.
package prober

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Result is a probe's outcome.
type Result int

const (
	Unknown Result = iota
	Success
	Failure
)

func (r Result) String() string {
	switch r {
	case Success:
		return "success"
	case Failure:
		return "failure"
	}
	return "unknown"
}

// Target is where a pod's handlers run.
type Target struct {
	// Host is the default host of httpGet and tcpSocket: the pod's IP.
	Host string
	// Exec returns a command running argv in the pod's network namespace.
	Exec func(argv []string) (*exec.Cmd, error)
}

// maxBody is how much of a response or an exec's output is kept, as the
// kubelet's 10 KiB.
const maxBody = 10 << 10

// UserAgent is sent by httpGet probes, as the kubelet sends kube-probe/<v>.
const UserAgent = "kube-probe/podnet"

// Probe runs a probe's handler once, bounded by timeout. The string says
// why it failed (or what it answered).
func Probe(ctx context.Context, p *corev1.ProbeHandler, c *corev1.Container, t Target, timeout time.Duration) (Result, string) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var err error
	switch {
	case p.HTTPGet != nil:
		err = HTTPGet(ctx, p.HTTPGet, c, t.Host)
	case p.TCPSocket != nil:
		err = TCPSocket(ctx, p.TCPSocket, c, t.Host)
	case p.Exec != nil:
		err = Exec(ctx, p.Exec.Command, t)
	default:
		return Failure, "probe has no handler podnet supports"
	}
	if err != nil {
		return Failure, err.Error()
	}
	return Success, ""
}

// ResolvePort returns a port number, or the number of the container's port
// of that name.
func ResolvePort(port intstr.IntOrString, c *corev1.Container) (int, error) {
	if port.Type == intstr.Int {
		if p := port.IntValue(); p > 0 && p < 65536 {
			return p, nil
		}
		return 0, fmt.Errorf("invalid port %d", port.IntValue())
	}
	if c != nil {
		for _, cp := range c.Ports {
			if cp.Name == port.StrVal {
				return int(cp.ContainerPort), nil
			}
		}
	}
	return 0, fmt.Errorf("container has no port named %q", port.StrVal)
}

func hostPort(host string, port intstr.IntOrString, c *corev1.Container, def string) (string, error) {
	p, err := ResolvePort(port, c)
	if err != nil {
		return "", err
	}
	if host == "" {
		host = def
	}
	if host == "" {
		return "", errors.New("pod has no IP to probe")
	}
	return net.JoinHostPort(host, strconv.Itoa(p)), nil
}

// HTTPGet succeeds on a status from 200 to 399. Redirects are followed only
// to the same host; a redirect elsewhere counts as success, as in the
// kubelet. Connections are not kept alive.
func HTTPGet(ctx context.Context, h *corev1.HTTPGetAction, c *corev1.Container, podIP string) error {
	addr, err := hostPort(h.Host, h.Port, c, podIP)
	if err != nil {
		return err
	}
	scheme := "http"
	if h.Scheme == corev1.URISchemeHTTPS {
		scheme = "https"
	}
	path := h.Path
	if path == "" {
		path = "/"
	}
	u, err := url.Parse(scheme + "://" + addr + path)
	if err != nil {
		return fmt.Errorf("probe URL: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", UserAgent)
	req.Header.Set("Accept", "*/*")
	for _, hd := range h.HTTPHeaders {
		if http.CanonicalHeaderKey(hd.Name) == "Host" {
			req.Host = hd.Value
			continue
		}
		req.Header.Add(hd.Name, hd.Value)
	}
	client := &http.Client{
		Transport: &http.Transport{
			DisableKeepAlives: true,
			Proxy:             nil,
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, // as the kubelet: probes check liveness, not identity
		},
		CheckRedirect: func(r *http.Request, via []*http.Request) error {
			if r.URL.Hostname() != u.Hostname() {
				return http.ErrUseLastResponse
			}
			if len(via) >= 10 {
				return errors.New("stopped after 10 redirects")
			}
			return nil
		},
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if resp.StatusCode >= 200 && resp.StatusCode < 400 {
		return nil
	}
	return fmt.Errorf("HTTP probe failed with statuscode: %d: %s", resp.StatusCode, bytes.TrimSpace(body))
}

// TCPSocket succeeds when a connection opens.
func TCPSocket(ctx context.Context, s *corev1.TCPSocketAction, c *corev1.Container, podIP string) error {
	addr, err := hostPort(s.Host, s.Port, c, podIP)
	if err != nil {
		return err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return conn.Close()
}

// Exec runs argv in the pod and succeeds on exit code 0. The command runs
// in a process group of its own, killed whole when ctx ends.
func Exec(ctx context.Context, argv []string, t Target) error {
	if t.Exec == nil {
		return errors.New("exec is not available for this pod")
	}
	cmd, err := t.Exec(argv)
	if err != nil {
		return err
	}
	var out limitedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("exec %q: %w", argv, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return fmt.Errorf("command %q timed out", argv)
	}
	if err != nil {
		return fmt.Errorf("command %q: %w: %s", argv, err, bytes.TrimSpace(out.b.Bytes()))
	}
	return nil
}

type limitedBuffer struct{ b bytes.Buffer }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := maxBody - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// RunHandler runs a lifecycle handler (preStop): exec, httpGet or sleep.
// ctx bounds it (the pod's grace period).
func RunHandler(ctx context.Context, h *corev1.LifecycleHandler, c *corev1.Container, t Target) error {
	switch {
	case h.Exec != nil:
		return Exec(ctx, h.Exec.Command, t)
	case h.HTTPGet != nil:
		return HTTPGet(ctx, h.HTTPGet, c, t.Host)
	case h.Sleep != nil:
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(h.Sleep.Seconds) * time.Second):
			return nil
		}
	}
	return errors.New("lifecycle handler has no action podnet supports")
}
