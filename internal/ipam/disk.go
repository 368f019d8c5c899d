package ipam

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// DiskStore keeps a network's IPAM state and attachment records in one
// directory:
//
//	lock                 flock(2) taken by Lock for every change
//	ips/<addr>           one file per reserved address, created O_EXCL, holding the owner key
//	ports/<proto>_<hostIP|any>_<port>   the same for host ports
//	last/<range>         the last address handed out in a range (round robin)
//	attachments/<key>.json   attachment records (temp file + fsync + rename)
//
// A reservation file is created before the attachment record that owns it,
// so a crash leaves at worst a reservation without a record (freed by GC),
// never a record without its reservation, and O_EXCL makes a duplicate
// address impossible whatever state a crash left behind.
type DiskStore struct {
	Dir string
	// NoSync skips fsync (tests and benchmarks on throwaway directories).
	NoSync bool
}

var _ Store = (*DiskStore)(nil)

// NewDiskStore returns the store for dir, creating its layout.
func NewDiskStore(dir string) (*DiskStore, error) {
	for _, d := range []string{"ips", "ports", "last", "attachments"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("ipam: create state directory: %w", err)
		}
	}
	return &DiskStore{Dir: dir}, nil
}

// ErrLockTimeout is returned by Lock when another process holds the lock too long.
var ErrLockTimeout = errors.New("timed out waiting for the network's state lock")

// Lock takes the store's exclusive flock, waiting up to timeout. The
// returned function releases it. The kernel drops the lock if the process
// dies, so a kill -9 never leaves the network locked.
func (s *DiskStore) Lock(timeout time.Duration) (func(), error) {
	f, err := os.OpenFile(filepath.Join(s.Dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("ipam: open lock: %w", err)
	}
	release := func() { _ = unix.Flock(int(f.Fd()), unix.LOCK_UN); _ = f.Close() }
	// Fast path: uncontended.
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err == nil {
		return release, nil
	}
	// Contended: a blocking flock lets the kernel wake us the moment the
	// holder releases, instead of polling and losing the race to newer
	// arrivals. If the timeout fires first, the waiter gives the lock back
	// as soon as it gets it.
	got := make(chan error, 1)
	var abandoned atomic.Bool
	go func() {
		var err error
		for {
			err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
			if !errors.Is(err, unix.EINTR) {
				break
			}
		}
		if err == nil && abandoned.Load() {
			release()
			return
		}
		got <- err
	}()
	select {
	case err := <-got:
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("ipam: flock: %w", err)
		}
		return release, nil
	case <-time.After(timeout):
		abandoned.Store(true)
		select {
		case err := <-got: // acquired just now
			if err == nil {
				return release, nil
			}
			f.Close()
			return nil, fmt.Errorf("ipam: flock: %w", err)
		default:
		}
		return nil, ErrLockTimeout
	}
}

func (s *DiskStore) createExcl(path string, content []byte) (bool, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("ipam: %w", err)
	}
	// No fsync here: a kill -9 loses nothing from the page cache, and the
	// attachment record written next is fsynced; after a power loss every
	// pod of the previous boot is gone and GC reclaims its state.
	_, err = f.Write(content)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return false, fmt.Errorf("ipam: write %s: %w", path, err)
	}
	return true, nil
}

// ReserveIP implements Store.
func (s *DiskStore) ReserveIP(key string, ip netip.Addr, rangeID string) (bool, error) {
	ok, err := s.createExcl(filepath.Join(s.Dir, "ips", ip.String()), []byte(key))
	if !ok || err != nil {
		return ok, err
	}
	// Round robin state is a hint; losing it to a crash is harmless.
	_ = os.WriteFile(filepath.Join(s.Dir, "last", fileSafe(rangeID)), []byte(ip.String()), 0o600)
	return true, nil
}

// ReleaseIPs implements Store.
func (s *DiskStore) ReleaseIPs(key string) error {
	return s.releaseOwned("ips", key)
}

func (s *DiskStore) releaseOwned(sub, key string) error {
	owners, err := s.readOwners(sub)
	if err != nil {
		return err
	}
	var errs []error
	for name, owner := range owners {
		if owner == key {
			if err := os.Remove(filepath.Join(s.Dir, sub, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("ipam: release %s: %w", name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// readOwners maps file name → owner key for one reservation directory.
// A file left empty by a crash has owner "".
func (s *DiskStore) readOwners(sub string) (map[string]string, error) {
	dir := filepath.Join(s.Dir, sub)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("ipam: list %s: %w", sub, err)
	}
	out := make(map[string]string, len(ents))
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("ipam: read %s: %w", e.Name(), err)
		}
		out[e.Name()] = string(bytes.TrimSpace(b))
	}
	return out, nil
}

// IPs implements Store.
func (s *DiskStore) IPs() (map[netip.Addr]string, error) {
	owners, err := s.readOwners("ips")
	if err != nil {
		return nil, err
	}
	out := make(map[netip.Addr]string, len(owners))
	for name, owner := range owners {
		if ip, err := netip.ParseAddr(name); err == nil {
			out[ip] = owner
		}
	}
	return out, nil
}

// LastReserved implements Store.
func (s *DiskStore) LastReserved(rangeID string) (netip.Addr, bool, error) {
	b, err := os.ReadFile(filepath.Join(s.Dir, "last", fileSafe(rangeID)))
	if errors.Is(err, fs.ErrNotExist) {
		return netip.Addr{}, false, nil
	}
	if err != nil {
		return netip.Addr{}, false, fmt.Errorf("ipam: %w", err)
	}
	ip, err := netip.ParseAddr(strings.TrimSpace(string(b)))
	if err != nil {
		return netip.Addr{}, false, nil // torn hint: start from the beginning
	}
	return ip, true, nil
}

func portFile(p Port) string {
	h := "any"
	if p.HostIP.IsValid() {
		h = p.HostIP.String()
	}
	return fmt.Sprintf("%s_%s_%d", p.Proto, fileSafe(h), p.Port)
}

func parsePortFile(name string) (Port, bool) {
	parts := strings.Split(name, "_")
	if len(parts) != 3 {
		return Port{}, false
	}
	n, err := strconv.ParseUint(parts[2], 10, 16)
	if err != nil {
		return Port{}, false
	}
	p := Port{Proto: parts[0], Port: uint16(n)}
	if parts[1] != "any" {
		ip, err := netip.ParseAddr(strings.ReplaceAll(parts[1], "-", ":"))
		if err != nil {
			return Port{}, false
		}
		p.HostIP = ip
	}
	return p, true
}

// ReservePort implements Store.
func (s *DiskStore) ReservePort(key string, p Port) (bool, error) {
	return s.createExcl(filepath.Join(s.Dir, "ports", portFile(p)), []byte(key))
}

// ReleasePorts implements Store.
func (s *DiskStore) ReleasePorts(key string) error { return s.releaseOwned("ports", key) }

// Ports implements Store.
func (s *DiskStore) Ports() (map[Port]string, error) {
	owners, err := s.readOwners("ports")
	if err != nil {
		return nil, err
	}
	out := make(map[Port]string, len(owners))
	for name, owner := range owners {
		if p, ok := parsePortFile(name); ok {
			out[p] = owner
		}
	}
	return out, nil
}

// Owners returns the set of keys that own any address or port, including
// "" for files a crash left empty.
func (s *DiskStore) Owners() (map[string]bool, error) {
	out := map[string]bool{}
	for _, sub := range []string{"ips", "ports"} {
		o, err := s.readOwners(sub)
		if err != nil {
			return nil, err
		}
		for _, k := range o {
			out[k] = true
		}
	}
	return out, nil
}

func (s *DiskStore) recordPath(key string) string {
	return filepath.Join(s.Dir, "attachments", key+".json")
}

// PutRecord writes key's attachment record crash-safely: a temp file,
// fsync, rename over the final name, fsync of the directory.
func (s *DiskStore) PutRecord(key string, data []byte) error {
	dir := filepath.Join(s.Dir, "attachments")
	tmp, err := os.CreateTemp(dir, ".tmp-"+key+"-")
	if err != nil {
		return fmt.Errorf("ipam: write record: %w", err)
	}
	_, err = tmp.Write(data)
	if err == nil && !s.NoSync {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), s.recordPath(key))
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("ipam: write record %s: %w", key, err)
	}
	if !s.NoSync {
		if d, err := os.Open(dir); err == nil {
			_ = d.Sync()
			d.Close()
		}
	}
	return nil
}

// GetRecord returns key's record, or an error wrapping fs.ErrNotExist.
func (s *DiskStore) GetRecord(key string) ([]byte, error) {
	b, err := os.ReadFile(s.recordPath(key))
	if err != nil {
		return nil, fmt.Errorf("ipam: read record: %w", err)
	}
	return b, nil
}

// DeleteRecord removes key's record; a missing record is not an error.
func (s *DiskStore) DeleteRecord(key string) error {
	if err := os.Remove(s.recordPath(key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("ipam: delete record: %w", err)
	}
	return nil
}

// RecordKeys lists the keys that have a record. Temp files a crash left
// behind are removed.
func (s *DiskStore) RecordKeys() ([]string, error) {
	dir := filepath.Join(s.Dir, "attachments")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("ipam: list records: %w", err)
	}
	var keys []string
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, ".tmp-") {
			_ = os.Remove(filepath.Join(dir, n))
			continue
		}
		if k, ok := strings.CutSuffix(n, ".json"); ok {
			keys = append(keys, k)
		}
	}
	return keys, nil
}

func fileSafe(s string) string {
	return strings.NewReplacer("/", "-", ":", "-").Replace(s)
}
