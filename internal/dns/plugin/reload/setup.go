// Package reload is the reload plugin: the Corefile's file is checked
// every INTERVAL (plus or minus a random JITTER); when its SHA-512 changes
// the server loads it in place of the running one. A new Corefile that
// fails to load or start is logged with the reason, counted in
// coredns_reload_failed_total, and the old one keeps serving; it is not
// tried again until the file changes once more.
package reload

import (
	"crypto/sha512"
	"encoding/hex"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	pdns "github.com/podnet/podnet/internal/dns"
	"github.com/prometheus/client_golang/prometheus"
)

const name = "reload"

func init() { pdns.Register(name, setup) }

// Defaults and bounds of the arguments, CoreDNS's.
var (
	DefaultInterval = 30 * time.Second
	DefaultJitter   = 15 * time.Second
	minInterval     = 2 * time.Second
	minJitter       = time.Second
)

var (
	failedCount = pdns.RegisterOrExisting(prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: pdns.Namespace, Subsystem: "reload", Name: "failed_total",
		Help: "Counter of the number of failed reload attempts.",
	}))
	versionInfo = pdns.RegisterOrExisting(prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: pdns.Namespace, Subsystem: "reload", Name: "version_info",
		Help: "A metric with a constant '1' value labeled by hash, and value which type of hash generated.",
	}, []string{"hash", "value"}))
)

// Reload is the parsed directive and its watcher.
type Reload struct {
	Interval, Jitter time.Duration

	inst    *pdns.Instance
	sum     string
	stopped chan struct{}
	once    sync.Once
}

func setup(c *pdns.Controller) error {
	r := &Reload{Interval: DefaultInterval, Jitter: DefaultJitter, inst: c.Instance(), stopped: make(chan struct{})}
	n := 0
	for c.Next() {
		if n++; n > 1 {
			return c.Err("reload: only one reload directive per server block")
		}
		args := c.RemainingArgs()
		if len(args) > 2 {
			return c.ArgErr()
		}
		if len(args) > 0 {
			d, err := time.ParseDuration(args[0])
			if err != nil {
				return c.Errf("invalid interval '%s'", args[0])
			}
			if d < minInterval {
				return c.Errf("interval value must be greater or equal to %v", minInterval)
			}
			r.Interval = d
			r.Jitter = d / 2
		}
		if len(args) > 1 {
			d, err := time.ParseDuration(args[1])
			if err != nil {
				return c.Errf("invalid jitter '%s'", args[1])
			}
			if d < minJitter {
				return c.Errf("jitter value must be greater or equal to %v", minJitter)
			}
			r.Jitter = d
		}
		if r.Jitter > r.Interval/2 {
			r.Jitter = r.Interval / 2
		}
		if c.NextBlock() {
			return c.ArgErr()
		}
	}
	c.Config().Set(name, r)
	// One watcher per Corefile, however many blocks ask for it.
	if _, dup := c.Instance().Get(name); dup {
		return nil
	}
	c.Instance().Set(name, r)
	r.sum = checksum(c.Instance().Input.Contents)
	log := c.Log()
	c.OnStartup(func() error {
		versionInfo.Reset()
		versionInfo.WithLabelValues("sha512", r.sum).Set(1)
		go r.watch(log)
		return nil
	})
	c.OnRestart(r.stop)
	c.OnShutdown(r.stop)
	return nil
}

func checksum(b []byte) string {
	s := sha512.Sum512(b)
	return hex.EncodeToString(s[:])
}

func (r *Reload) stop() error {
	r.once.Do(func() { close(r.stopped) })
	return nil
}

// next is the wait before the next check: Interval ± Jitter.
func (r *Reload) next() time.Duration {
	d := r.Interval
	if r.Jitter > 0 {
		d += time.Duration(rand.Int64N(int64(2*r.Jitter))) - r.Jitter
	}
	return d
}

type logger interface {
	Info(string, ...any)
	Warn(string, ...any)
	Error(string, ...any)
}

func (r *Reload) watch(log logger) {
	file := r.inst.Input.File
	failed := ""
	t := time.NewTimer(r.next())
	defer t.Stop()
	for {
		select {
		case <-r.stopped:
			return
		case <-t.C:
		}
		t.Reset(r.next())
		b, err := os.ReadFile(file)
		if err != nil {
			log.Warn("cannot read the Corefile to check for changes", "file", file, "err", err)
			continue
		}
		sum := checksum(b)
		if sum == r.sum || sum == failed {
			continue
		}
		select {
		case <-r.stopped:
			return
		default:
		}
		if r.inst.Restart == nil {
			continue
		}
		if err := r.inst.Restart(pdns.Input{File: file, Contents: b}); err != nil {
			failedCount.Inc()
			failed = sum
			log.Error("reload of the changed Corefile failed; the previous one keeps serving", "file", file, "err", err.Error())
			continue
		}
		log.Info("reloaded the changed Corefile", "file", file, "sha512", sum[:16])
		return
	}
}
