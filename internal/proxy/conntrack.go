package proxy

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Flow selects UDP conntrack entries to delete: those whose original
// destination is Dst:Port (Dst invalid: any local address, a node port)
// and, if Endpoint is valid, whose reply comes from Endpoint (flows DNAT'd
// to an endpoint that went away). With Endpoint invalid it selects the
// entries that were never DNAT'd (a frontend that rejected until now).
type Flow struct {
	Dst      netip.Addr
	Port     uint16
	Endpoint netip.Addr
}

// Conntrack deletes conntrack entries.
type Conntrack interface {
	Delete(flows []Flow) error
}

// staleFlows returns the UDP flows that old → new makes stale: endpoints
// no longer behind a frontend, and frontends that had no endpoint and now
// have some (their entries were never DNAT'd and would keep the traffic
// from reaching the new endpoint).
func staleFlows(old, new *svcState) []Flow {
	var out []Flow
	for f, eps := range old.udp {
		neps, still := new.udp[f]
		if eps == nil {
			if still && neps != nil {
				out = append(out, Flow{Dst: f.addr, Port: f.port})
			}
			continue
		}
		for a := range eps {
			if !still || neps == nil || !neps[a] {
				out = append(out, Flow{Dst: f.addr, Port: f.port, Endpoint: a})
			}
		}
	}
	for f, neps := range new.udp {
		if _, was := old.udp[f]; !was && neps != nil {
			// A new frontend with endpoints: clear entries a client
			// made before it existed.
			out = append(out, Flow{Dst: f.addr, Port: f.port})
		}
	}
	return out
}

// NetlinkConntrack deletes entries over netlink in the handle's namespace.
type NetlinkConntrack struct {
	Handle *netlink.Handle // nil: the current namespace
}

type flowFilter []Flow

func ip4(a net.IP) netip.Addr {
	v, ok := netip.AddrFromSlice(a)
	if !ok {
		return netip.Addr{}
	}
	return v.Unmap()
}

func (ff flowFilter) MatchConntrackFlow(f *netlink.ConntrackFlow) bool {
	if f.Forward.Protocol != unix.IPPROTO_UDP {
		return false
	}
	dst := ip4(f.Forward.DstIP)
	rsrc := ip4(f.Reverse.SrcIP)
	for _, x := range ff {
		if f.Forward.DstPort != x.Port {
			continue
		}
		if x.Dst.IsValid() && dst != x.Dst {
			continue
		}
		if x.Endpoint.IsValid() {
			if rsrc == x.Endpoint {
				return true
			}
			continue
		}
		if rsrc == dst { // never DNAT'd
			return true
		}
	}
	return false
}

// Delete implements Conntrack.
func (c NetlinkConntrack) Delete(flows []Flow) error {
	var err error
	if c.Handle != nil {
		_, err = c.Handle.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, flowFilter(flows))
	} else {
		_, err = netlink.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, flowFilter(flows))
	}
	if err != nil {
		return fmt.Errorf("conntrack: %w", err)
	}
	return nil
}
