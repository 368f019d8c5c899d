package store

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/podnet/podnet/internal/netns"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

const (
	// DefaultClientURL is where the embedded etcd serves clients. It is
	// not etcd's usual 2379, so a system etcd on the same host can coexist.
	DefaultClientURL = "http://127.0.0.1:12379"
	// DefaultPeerURL is the embedded etcd's peer URL.
	DefaultPeerURL = "http://127.0.0.1:12380"
	// DefaultDataDir holds the embedded etcd's data.
	DefaultDataDir = "/var/lib/podnet/etcd"
)

// EmbeddedConfig configures the embedded etcd.
type EmbeddedConfig struct {
	DataDir   string // default DefaultDataDir
	Name      string // member name, default "podnet"
	ClientURL string // default DefaultClientURL
	PeerURL   string // default DefaultPeerURL
}

// Embedded is a running embedded etcd.
type Embedded struct {
	etcd     *embed.Etcd
	endpoint string
}

// StartEmbedded starts a single-member etcd and waits until it serves.
func StartEmbedded(ctx context.Context, c EmbeddedConfig) (*Embedded, error) {
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.Name == "" {
		c.Name = "podnet"
	}
	if c.ClientURL == "" {
		c.ClientURL = DefaultClientURL
	}
	if c.PeerURL == "" {
		c.PeerURL = DefaultPeerURL
	}
	curl, err := url.Parse(c.ClientURL)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd: client URL %q: %w", c.ClientURL, err)
	}
	purl, err := url.Parse(c.PeerURL)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd: peer URL %q: %w", c.PeerURL, err)
	}
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded etcd: data dir: %w", err)
	}
	cfg := embed.NewConfig()
	cfg.Name = c.Name
	cfg.Dir = c.DataDir
	cfg.ListenClientUrls = []url.URL{*curl}
	cfg.AdvertiseClientUrls = []url.URL{*curl}
	cfg.ListenPeerUrls = []url.URL{*purl}
	cfg.AdvertisePeerUrls = []url.URL{*purl}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	// etcd's own zap logs are noise to podnet's users (it logs its normal
	// shutdown as errors); failures reach us through StartEtcd and Err().
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.AutoCompactionMode = "periodic"
	cfg.AutoCompactionRetention = "1h"
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd: start (data dir %s, client URL %s): %w", c.DataDir, c.ClientURL, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded etcd: %w", err)
	case <-ctx.Done():
		e.Close()
		return nil, fmt.Errorf("embedded etcd: not ready: %w", ctx.Err())
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, fmt.Errorf("embedded etcd: not ready after 60s")
	}
	return &Embedded{etcd: e, endpoint: curl.String()}, nil
}

// Endpoints returns the client endpoints.
func (e *Embedded) Endpoints() []string { return []string{e.endpoint} }

// Err reports a fatal error of the running etcd.
func (e *Embedded) Err() <-chan error { return e.etcd.Err() }

// Close stops etcd and waits for it.
func (e *Embedded) Close() { e.etcd.Close() }

// ClientConfig says how to reach etcd, embedded or external.
type ClientConfig struct {
	Endpoints []string
	CAFile    string
	CertFile  string
	KeyFile   string
	// NetNS, if set, is a named network namespace the endpoints are
	// reached from: every connection's socket is created by a thread inside
	// it, so the caller itself stays in its own namespace (`podnet cluster`
	// keeps its control plane's etcd inside the control plane's namespace).
	NetNS string
}

// Connect returns an etcd client. TLS is used when any file is given.
func Connect(c ClientConfig) (*clientv3.Client, error) {
	if len(c.Endpoints) == 0 {
		c.Endpoints = []string{DefaultClientURL}
	}
	var tlsCfg *tls.Config
	if c.CAFile != "" || c.CertFile != "" || c.KeyFile != "" {
		info := transport.TLSInfo{TrustedCAFile: c.CAFile, CertFile: c.CertFile, KeyFile: c.KeyFile}
		var err error
		if tlsCfg, err = info.ClientConfig(); err != nil {
			return nil, fmt.Errorf("etcd TLS: %w", err)
		}
	}
	var dialOpts []grpc.DialOption
	if c.NetNS != "" {
		if !netns.Exists(c.NetNS) {
			return nil, fmt.Errorf("etcd %v: network namespace %q to dial from: %w", c.Endpoints, c.NetNS, os.ErrNotExist)
		}
		dialOpts = append(dialOpts, grpc.WithContextDialer(netnsDialer(c.NetNS)))
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            c.Endpoints,
		DialTimeout:          5 * time.Second,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		TLS:                  tlsCfg,
		Logger:               zap.NewNop(),
		DialOptions:          dialOpts,
	})
	if err != nil {
		return nil, fmt.Errorf("etcd %v: %w", c.Endpoints, err)
	}
	return cli, nil
}

// netnsDialer returns a gRPC dialer whose sockets are created inside the
// named namespace. A socket stays in the namespace it was created in, so
// only the connect needs the thread there; the connection is then used
// from any goroutine. Addresses are etcd's host:port (or unix:path, which
// is not namespaced and dialled as is).
func netnsDialer(name string) func(context.Context, string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		network := "tcp"
		if p, ok := strings.CutPrefix(addr, "unix://"); ok {
			network, addr = "unix", p
		} else if p, ok := strings.CutPrefix(addr, "unix:"); ok {
			network, addr = "unix", p
		}
		var conn net.Conn
		err := netns.Do(netns.Path(name), func() error {
			var err error
			// No Happy Eyeballs: its racing dials run on other
			// goroutines, whose threads are not in the namespace. Serial
			// dials create every socket on this locked thread.
			conn, err = (&net.Dialer{FallbackDelay: -1}).DialContext(ctx, network, addr)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("dial %s from netns %s: %w", addr, name, err)
		}
		return conn, nil
	}
}

// CountOnly is the option set of a cheap existence probe.
func CountOnly() []clientv3.OpOption {
	return []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithCountOnly()}
}
