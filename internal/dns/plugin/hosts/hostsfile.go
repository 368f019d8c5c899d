package hosts

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/netip"
	"strings"

	"github.com/miekg/dns"

	"github.com/podnet/podnet/internal/dns/plugin/plugutil"
)

// maxLine bounds one line of a hosts file; longer lines are skipped whole
// (nothing on them is a usable entry: a name is at most 255 octets).
const maxLine = 64 << 10

// Map is one parsed source of entries (the file, or the Corefile's inline
// lines). Names are lowercased and fully qualified.
type Map struct {
	name4, name6 map[string][]net.IP
	// wild4/wild6 hold "*.parent." owners, matching exactly one label.
	wild4, wild6 map[string][]net.IP
	// addr maps an address to the names it was listed with, for PTR.
	addr map[netip.Addr][]string
	// entries is the number of (address, name) pairs, plus reverse pairs.
	entries int
}

func newMap() *Map {
	return &Map{
		name4: map[string][]net.IP{}, name6: map[string][]net.IP{},
		wild4: map[string][]net.IP{}, wild6: map[string][]net.IP{},
		addr: map[netip.Addr][]string{},
	}
}

// Len is the number of forward plus reverse entries, as coredns_hosts_entries counts.
func (m *Map) Len() int {
	if m == nil {
		return 0
	}
	return m.entries
}

// Parse reads hosts(5) lines: an address, then names; '#' starts a comment.
// Names outside origins are dropped; with reverse set, each (address, name)
// pair also yields a PTR entry (not for wildcard owners). Malformed lines
// are skipped: a hosts file is never rejected as a whole.
func Parse(r io.Reader, origins []string, reverse bool) *Map {
	m := newMap()
	zones := plugutil.Zones(origins)
	br := bufio.NewReaderSize(r, 4096)
	var line []byte
	tooLong := false
	for {
		chunk, isPrefix, err := br.ReadLine()
		if err != nil {
			break
		}
		if !tooLong {
			if len(line)+len(chunk) > maxLine {
				tooLong = true
				line = line[:0]
			} else {
				line = append(line, chunk...)
			}
		}
		if isPrefix {
			continue
		}
		if !tooLong {
			m.addLine(line, zones, reverse)
		}
		line, tooLong = line[:0], false
	}
	return m
}

func (m *Map) addLine(line []byte, zones plugutil.Zones, reverse bool) {
	if i := bytes.IndexByte(line, '#'); i >= 0 {
		line = line[:i]
	}
	fields := strings.Fields(string(line))
	if len(fields) < 2 {
		return
	}
	addrText := fields[0]
	if i := strings.IndexByte(addrText, '%'); i >= 0 {
		addrText = addrText[:i] // an IPv6 zone is meaningless in DNS
	}
	a, err := netip.ParseAddr(addrText)
	if err != nil {
		return
	}
	a = a.Unmap()
	ip := net.IP(a.AsSlice())
	for _, f := range fields[1:] {
		if strings.ContainsRune(f, '\\') {
			continue // hosts files have no escapes; a backslash is never a usable name
		}
		name := plugutil.Normalize(f)
		if _, ok := dns.IsDomainName(name); !ok || !zones.Contains(name) {
			continue
		}
		wild := strings.HasPrefix(name, "*.")
		switch {
		case a.Is4() && wild:
			m.wild4[name] = append(m.wild4[name], ip)
		case a.Is4():
			m.name4[name] = append(m.name4[name], ip)
		case wild:
			m.wild6[name] = append(m.wild6[name], ip)
		default:
			m.name6[name] = append(m.name6[name], ip)
		}
		m.entries++
		if reverse && !wild {
			m.addr[a] = append(m.addr[a], name)
			m.entries++
		}
	}
}

// lookup returns the addresses of name in one family: the exact owner, or
// else the wildcard one label up.
func lookup(exact, wild map[string][]net.IP, name string) []net.IP {
	if ips, ok := exact[name]; ok {
		return ips
	}
	if i := strings.IndexByte(name, '.'); i >= 0 && i+1 < len(name) {
		if ips, ok := wild["*."+name[i+1:]]; ok {
			return ips
		}
	}
	return nil
}
