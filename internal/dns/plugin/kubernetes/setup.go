package kubernetes

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	pdns "github.com/podnet/podnet/internal/dns"
	"github.com/podnet/podnet/internal/informer"
	"github.com/podnet/podnet/internal/store"
	"k8s.io/apimachinery/pkg/labels"
)

func init() { pdns.Register(name, setup) }

// SourceFunc connects to the objects the plugin serves. The default
// dials podnet's store (etcd) at the endpoints of `endpoint`, else
// $PODNET_ETCD_ENDPOINTS, else the local default; tests replace it.
type SourceFunc func(cfg store.ClientConfig) (informer.Source, func(), error)

// NewSource is the SourceFunc every kubernetes block uses.
var NewSource SourceFunc = dialStore

func dialStore(cfg store.ClientConfig) (informer.Source, func(), error) {
	cli, err := store.Connect(cfg)
	if err != nil {
		return nil, nil, err
	}
	return store.New(cli), func() { cli.Close() }, nil
}

type options struct {
	client         store.ClientConfig
	startupTimeout time.Duration
}

func setup(c *pdns.Controller) error {
	k, o, err := parse(c)
	if err != nil {
		return err
	}
	log := c.Log()
	c.OnStartup(func() error {
		src, closer, err := NewSource(o.client)
		if err != nil {
			return pdns.Errorf(name, "connecting to the store %v: %w", o.client.Endpoints, err)
		}
		k.closer = closer
		ctx, cancel := context.WithCancel(context.Background())
		k.cancel = cancel
		k.cache.run(ctx, &k.wg, src, log, !k.noEndpoints, k.podMode == podsVerified)
		// Serve within startup_timeout even if the store is slow: until
		// synced, would-be NXDOMAINs are SERVFAIL.
		deadline := time.Now().Add(o.startupTimeout)
		for !k.cache.HasSynced() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if !k.cache.HasSynced() {
			log.Warn("starting before the store's objects are listed", "endpoints", o.client.Endpoints)
		}
		return nil
	})
	c.OnShutdown(func() error {
		if k.cancel != nil {
			k.cancel()
			k.wg.Wait()
		}
		if k.closer != nil {
			k.closer()
		}
		return nil
	})
	c.AddPlugin(func(next pdns.Handler) pdns.Handler { k.Next = next; return k })
	return nil
}

func parse(c *pdns.Controller) (*Kubernetes, options, error) {
	k := &Kubernetes{ttl: 5, podMode: podsDisabled, cache: newCache()}
	o := options{startupTimeout: 5 * time.Second}
	if e := os.Getenv("PODNET_ETCD_ENDPOINTS"); e != "" {
		o.client.Endpoints = strings.Split(e, ",")
	}
	o.client.CAFile = os.Getenv("PODNET_ETCD_CAFILE")
	o.client.CertFile = os.Getenv("PODNET_ETCD_CERTFILE")
	o.client.KeyFile = os.Getenv("PODNET_ETCD_KEYFILE")
	seen := 0
	for c.Next() {
		if seen++; seen > 1 {
			return nil, o, c.Err("this plugin can only be used once per Server Block")
		}
		zones, err := pdns.OriginsFromArgsOrServerBlock(c.RemainingArgs(), c.Config().Zones)
		if err != nil {
			return nil, o, c.Err(err.Error())
		}
		k.Zones = zones
		for c.NextBlock() {
			switch c.Val() {
			case "endpoint":
				args := c.RemainingArgs()
				if len(args) == 0 {
					return nil, o, c.ArgErr()
				}
				var eps []string
				for _, a := range args {
					eps = append(eps, strings.Split(a, ",")...)
				}
				o.client.Endpoints = eps
			case "tls":
				args := c.RemainingArgs()
				if len(args) != 3 {
					return nil, o, c.ArgErr()
				}
				o.client.CertFile, o.client.KeyFile, o.client.CAFile = args[0], args[1], args[2]
			case "kubeconfig":
				// podnet reads its own store; a kubeconfig is accepted so
				// Corefiles written for CoreDNS load, and ignored.
				if args := c.RemainingArgs(); len(args) < 1 || len(args) > 2 {
					return nil, o, c.ArgErr()
				}
			case "namespaces":
				args := c.RemainingArgs()
				if len(args) == 0 {
					return nil, o, c.ArgErr()
				}
				k.namespaces = map[string]bool{}
				for _, a := range args {
					k.namespaces[a] = true
				}
			case "labels":
				args := c.RemainingArgs()
				if len(args) == 0 {
					return nil, o, c.ArgErr()
				}
				sel, err := labels.Parse(strings.Join(args, " "))
				if err != nil {
					return nil, o, c.Errf("unable to parse label selector value: '%v': %v", strings.Join(args, " "), err)
				}
				k.cache.svcSel = sel
			case "namespace_labels":
				args := c.RemainingArgs()
				if len(args) == 0 {
					return nil, o, c.ArgErr()
				}
				sel, err := labels.Parse(strings.Join(args, " "))
				if err != nil {
					return nil, o, c.Errf("unable to parse namespace_label selector value: '%v': %v", strings.Join(args, " "), err)
				}
				k.cache.nsSel = sel
			case "pods":
				args := c.RemainingArgs()
				if len(args) != 1 {
					return nil, o, c.ArgErr()
				}
				switch args[0] {
				case "disabled":
					k.podMode = podsDisabled
				case "insecure":
					k.podMode = podsInsecure
				case "verified":
					k.podMode = podsVerified
				default:
					return nil, o, c.Errf("wrong value for pods: %s,  must be one of: disabled, verified, insecure", args[0])
				}
			case "endpoint_pod_names":
				if len(c.RemainingArgs()) != 0 {
					return nil, o, c.ArgErr()
				}
				k.endpointPodNames = true
			case "noendpoints":
				if len(c.RemainingArgs()) != 0 {
					return nil, o, c.ArgErr()
				}
				k.noEndpoints = true
			case "ignore":
				args := c.RemainingArgs()
				if len(args) != 1 || args[0] != "empty_service" {
					if len(args) == 1 {
						return nil, o, c.Errf("unable to parse ignore value: '%v'", args[0])
					}
					return nil, o, c.ArgErr()
				}
				k.ignoreEmpty = true
			case "ttl":
				args := c.RemainingArgs()
				if len(args) != 1 {
					return nil, o, c.ArgErr()
				}
				t, err := strconv.Atoi(args[0])
				if err != nil {
					return nil, o, c.Errf("ttl must be an integer: %s", args[0])
				}
				if t < 0 || t > 3600 {
					return nil, o, c.Errf("ttl must be in range [0, 3600]: %d", t)
				}
				k.ttl = uint32(t)
			case "fallthrough":
				if err := k.fall.SetZonesFromArgs(c.RemainingArgs()); err != nil {
					return nil, o, c.Err(err.Error())
				}
			case "startup_timeout":
				args := c.RemainingArgs()
				if len(args) != 1 {
					return nil, o, c.ArgErr()
				}
				d, err := time.ParseDuration(args[0])
				if err != nil {
					return nil, o, c.Errf("unable to parse startup_timeout %q: %v", args[0], err)
				}
				o.startupTimeout = d
			case "multicluster", "apiserver_qps", "apiserver_burst", "apiserver_max_inflight":
				return nil, o, c.Errf("%s is not supported by podnet's kubernetes plugin", c.Val())
			default:
				return nil, o, c.PropertyErr()
			}
		}
	}
	if len(k.Zones) == 0 {
		return nil, o, fmt.Errorf("no zones")
	}
	return k, o, nil
}
