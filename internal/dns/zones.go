package dns

import (
	"fmt"
	"strings"

	"github.com/miekg/dns"
	"github.com/podnet/podnet/internal/dns/corefile"
)

// Zones is a list of fully qualified, lower-cased zones.
type Zones []string

// Matches returns the longest zone of z that qname is in, or "".
// qname must be lower-cased (Request.Name).
func (z Zones) Matches(qname string) string {
	best := ""
	for _, zone := range z {
		if dns.IsSubDomain(zone, qname) && len(zone) > len(best) {
			best = zone
		}
	}
	return best
}

// Normalize lower-cases and qualifies every zone of z in place.
func (z Zones) Normalize() {
	for i := range z {
		z[i] = strings.ToLower(dns.Fqdn(z[i]))
	}
}

// NormalizeZone parses a zone argument as a server block key's zone is
// parsed ("example.org", "10.0.0.0/8"), without port or transport.
func NormalizeZone(s string) (string, error) {
	k, err := corefile.ParseKey(s)
	if err != nil {
		return "", err
	}
	if k.Port != "" || k.Transport != "dns" || strings.Contains(s, "://") {
		return "", fmt.Errorf("zone %q: only a name is allowed here, not a transport or port", s)
	}
	return k.Zone, nil
}

// OriginsFromArgsOrServerBlock returns the zones named in args, or the
// server block's zones when args is empty, as a plugin's "ZONES..."
// argument means.
func OriginsFromArgsOrServerBlock(args []string, blockZones []string) ([]string, error) {
	if len(args) == 0 {
		out := make([]string, len(blockZones))
		copy(out, blockZones)
		return out, nil
	}
	out := make([]string, 0, len(args))
	for _, a := range args {
		z, err := NormalizeZone(a)
		if err != nil {
			return nil, err
		}
		out = append(out, z)
	}
	return out, nil
}

// Fallthrough is a plugin's `fallthrough [ZONES...]` option: queries for
// names in these zones go to the next plugin instead of getting NXDOMAIN.
// A nil Fallthrough falls through for nothing; an empty, non-nil one for
// everything.
type Fallthrough struct {
	Zones Zones
	set   bool
}

// Through reports whether qname falls through.
func (f *Fallthrough) Through(qname string) bool {
	if f == nil || !f.set {
		return false
	}
	if len(f.Zones) == 0 {
		return true
	}
	return f.Zones.Matches(strings.ToLower(qname)) != ""
}

// SetZonesFromArgs enables fallthrough for the zones named in args, or for
// all names when there are none.
func (f *Fallthrough) SetZonesFromArgs(args []string) error {
	f.set = true
	f.Zones = nil
	for _, a := range args {
		z, err := NormalizeZone(a)
		if err != nil {
			return fmt.Errorf("fallthrough: %w", err)
		}
		f.Zones = append(f.Zones, z)
	}
	return nil
}
