package corefile

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode"

	"github.com/miekg/dns"
)

var transports = map[string]bool{"dns": true, "tls": true, "grpc": true, "https": true, "quic": true, "https3": true}

// ParseKey parses a server block key: [transport://]zone[:port], where zone
// is a domain name ("." for the root) or a CIDR whose reverse zone is
// meant. The zone is lower-cased and made fully qualified.
func ParseKey(s string) (Key, error) {
	k := Key{Transport: "dns"}
	if strings.ContainsFunc(s, unicode.IsSpace) {
		return Key{}, fmt.Errorf("server block key %q: white space is not allowed in a zone", s)
	}
	if i := strings.Index(s, "://"); i >= 0 {
		k.Transport = strings.ToLower(s[:i])
		if !transports[k.Transport] {
			return Key{}, fmt.Errorf("unknown transport %q in server block key %q", s[:i], s)
		}
		s = s[i+3:]
	}
	host := s
	if strings.HasPrefix(s, "[") {
		// [::1]:53 style is not a zone, but accept a bracketed CIDR/zone.
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return Key{}, fmt.Errorf("server block key %q: missing ']'", s)
		}
		host = s[1:end]
		rest := s[end+1:]
		if rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return Key{}, fmt.Errorf("server block key %q: junk after ']'", s)
			}
			k.Port = rest[1:]
		}
	} else if i := strings.LastIndexByte(s, ':'); i >= 0 && strings.Count(s, ":") == 1 {
		host, k.Port = s[:i], s[i+1:]
	}
	if k.Port != "" {
		n, err := strconv.Atoi(k.Port)
		if err != nil || n < 0 || n > 65535 {
			return Key{}, fmt.Errorf("server block key %q: port %q is not a number from 0 to 65535", s, k.Port)
		}
	}
	if host == "" {
		return Key{}, fmt.Errorf("server block key %q: empty zone", s)
	}
	if strings.Contains(host, "/") {
		z, err := reverseZone(host)
		if err != nil {
			return Key{}, fmt.Errorf("server block key %q: %w", s, err)
		}
		k.Zone = z
		return k, nil
	}
	z := dns.Fqdn(strings.ToLower(host))
	if _, ok := dns.IsDomainName(z); !ok {
		return Key{}, fmt.Errorf("server block key %q: %q is not a valid domain name", s, host)
	}
	k.Zone = z
	return k, nil
}

// reverseZone turns a CIDR into the in-addr.arpa or ip6.arpa zone it
// covers. Only prefixes on a label boundary (octets, nibbles) are accepted.
func reverseZone(cidr string) (string, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return "", fmt.Errorf("bad CIDR %q: %w", cidr, err)
	}
	p = p.Masked()
	bits := p.Bits()
	if p.Addr().Is4() {
		if bits%8 != 0 {
			return "", fmt.Errorf("CIDR %q: only /0, /8, /16, /24, /32 map to a reverse zone", cidr)
		}
		b := p.Addr().As4()
		var labels []string
		for i := bits/8 - 1; i >= 0; i-- {
			labels = append(labels, strconv.Itoa(int(b[i])))
		}
		labels = append(labels, "in-addr", "arpa", "")
		return strings.Join(labels, "."), nil
	}
	if bits%4 != 0 {
		return "", fmt.Errorf("CIDR %q: IPv6 prefixes must be a multiple of 4 bits", cidr)
	}
	b := p.Addr().As16()
	var labels []string
	for i := bits/4 - 1; i >= 0; i-- {
		nib := b[i/2]
		if i%2 == 0 {
			nib >>= 4
		}
		labels = append(labels, strconv.FormatInt(int64(nib&0xf), 16))
	}
	labels = append(labels, "ip6", "arpa", "")
	return strings.Join(labels, "."), nil
}
