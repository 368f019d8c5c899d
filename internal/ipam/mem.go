package ipam

import "net/netip"

// MemStore is an in-memory Store for tests.
type MemStore struct {
	IPOwner   map[netip.Addr]string
	PortOwner map[Port]string
	Last      map[string]netip.Addr
}

var _ Store = (*MemStore)(nil)

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore {
	return &MemStore{IPOwner: map[netip.Addr]string{}, PortOwner: map[Port]string{}, Last: map[string]netip.Addr{}}
}

// ReserveIP implements Store.
func (m *MemStore) ReserveIP(key string, ip netip.Addr, rangeID string) (bool, error) {
	if _, ok := m.IPOwner[ip]; ok {
		return false, nil
	}
	m.IPOwner[ip] = key
	m.Last[rangeID] = ip
	return true, nil
}

// ReleaseIPs implements Store.
func (m *MemStore) ReleaseIPs(key string) error {
	for ip, k := range m.IPOwner {
		if k == key {
			delete(m.IPOwner, ip)
		}
	}
	return nil
}

// IPs implements Store.
func (m *MemStore) IPs() (map[netip.Addr]string, error) {
	out := make(map[netip.Addr]string, len(m.IPOwner))
	for k, v := range m.IPOwner {
		out[k] = v
	}
	return out, nil
}

// LastReserved implements Store.
func (m *MemStore) LastReserved(rangeID string) (netip.Addr, bool, error) {
	ip, ok := m.Last[rangeID]
	return ip, ok, nil
}

// ReservePort implements Store.
func (m *MemStore) ReservePort(key string, p Port) (bool, error) {
	if _, ok := m.PortOwner[p]; ok {
		return false, nil
	}
	m.PortOwner[p] = key
	return true, nil
}

// ReleasePorts implements Store.
func (m *MemStore) ReleasePorts(key string) error {
	for p, k := range m.PortOwner {
		if k == key {
			delete(m.PortOwner, p)
		}
	}
	return nil
}

// Ports implements Store.
func (m *MemStore) Ports() (map[Port]string, error) {
	out := make(map[Port]string, len(m.PortOwner))
	for k, v := range m.PortOwner {
		out[k] = v
	}
	return out, nil
}
