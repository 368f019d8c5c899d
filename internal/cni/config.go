package cni

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/podnet/podnet/internal/ipam"
	"github.com/podnet/podnet/internal/link"
	"github.com/podnet/podnet/internal/nft"
)

// Defaults for optional config keys.
const (
	DefaultBridge  = "podnet0"
	DefaultDataDir = "/var/lib/cni/podnet"
)

// NetConf is the plugin's JSON config, as the runtime passes it on stdin.
// Unknown keys are an error.
type NetConf struct {
	CNIVersion string `json:"cniVersion"`
	Name       string `json:"name"`
	Type       string `json:"type"`

	Bridge      string `json:"bridge,omitempty"`
	MTU         int    `json:"mtu,omitempty"`
	HairpinMode bool   `json:"hairpinMode,omitempty"`
	IPMasq      bool   `json:"ipMasq,omitempty"`
	IsGateway   *bool  `json:"isGateway,omitempty"`

	Subnet     string        `json:"subnet,omitempty"`
	Gateway    string        `json:"gateway,omitempty"`
	RangeStart string        `json:"rangeStart,omitempty"`
	RangeEnd   string        `json:"rangeEnd,omitempty"`
	IPv6Subnet string        `json:"ipv6Subnet,omitempty"`
	Ranges     [][]RangeConf `json:"ranges,omitempty"`

	Routes  []RouteConf `json:"routes,omitempty"`
	DNS     *types.DNS  `json:"dns,omitempty"`
	DataDir string      `json:"dataDir,omitempty"`

	// NonMasqueradeCIDRs are destinations beyond the pod's own subnet that
	// pods reach with their own address, unmasqueraded (the cluster CIDR:
	// pods on other nodes).
	NonMasqueradeCIDRs []string `json:"nonMasqueradeCIDRs,omitempty"`

	// Keys the runtime or libcni adds.
	Capabilities     map[string]bool      `json:"capabilities,omitempty"`
	RuntimeConfig    json.RawMessage      `json:"runtimeConfig,omitempty"`
	Args             json.RawMessage      `json:"args,omitempty"`
	PrevResult       json.RawMessage      `json:"prevResult,omitempty"`
	ValidAttachments []types.GCAttachment `json:"cni.dev/valid-attachments,omitempty"`
	Attachments      []types.GCAttachment `json:"cni.dev/attachments,omitempty"`
}

// RangeConf is one host-local style range.
type RangeConf struct {
	Subnet     string `json:"subnet"`
	RangeStart string `json:"rangeStart,omitempty"`
	RangeEnd   string `json:"rangeEnd,omitempty"`
	Gateway    string `json:"gateway,omitempty"`
}

// RouteConf is a route to install in the pod. An empty gw means the
// gateway of the destination's family.
type RouteConf struct {
	Dst string `json:"dst"`
	GW  string `json:"gw,omitempty"`
}

// RuntimeConfig holds the capabilities the runtime passes. Unknown
// capabilities are ignored (the runtime only sends those the conflist
// declares).
type RuntimeConfig struct {
	PortMappings []PortMappingConf `json:"portMappings,omitempty"`
	IPs          []string          `json:"ips,omitempty"`
	MAC          string            `json:"mac,omitempty"`
}

// PortMappingConf is one entry of the portMappings capability.
type PortMappingConf struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol,omitempty"`
	HostIP        string `json:"hostIP,omitempty"`
}

// Config is a validated NetConf with defaults applied.
type Config struct {
	Raw        NetConf
	CNIVersion string
	Name       string
	Bridge     string
	MTU        int
	Hairpin    bool
	IPMasq     bool
	DataDir    string     // dataDir/<name>
	Families   []RangeSet // at most one IPv4 and one IPv6 set, IPv4 first
	Routes     []link.Route
	DNS        types.DNS
	Ports      []nft.PortMapping
	NonMasq    []netip.Prefix      // nonMasqueradeCIDRs
	Requested  map[bool]netip.Addr // is4 → requested address
	MAC        net.HardwareAddr
}

// RangeSet is the ranges of one address family.
type RangeSet struct {
	Ranges []ipam.Range
}

// Is4 reports whether the set is IPv4.
func (s RangeSet) Is4() bool { return s.Ranges[0].Subnet.Addr().Is4() }

// Gateway is the set's gateway (the first range's).
func (s RangeSet) Gateway() netip.Addr { return s.Ranges[0].Gateway }

func fieldErr(field, format string, a ...any) *types.Error {
	return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("podnet-cni: config field %q: ", field)+fmt.Sprintf(format, a...), "")
}

// ParseConfig decodes and validates stdin config. Errors are *types.Error
// with code 6 (malformed JSON) or 7 (invalid config) and name the field.
func ParseConfig(data []byte) (*Config, error) {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, fmt.Sprintf("podnet-cni: decode config: %v", err), "")
	}
	var nc NetConf
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&nc); err != nil {
		return nil, decodeErr(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, types.NewError(types.ErrDecodingFailure, "podnet-cni: decode config: trailing data after the JSON object", "")
	}
	c := &Config{Raw: nc, CNIVersion: nc.CNIVersion, Name: nc.Name, Hairpin: nc.HairpinMode, IPMasq: nc.IPMasq}
	if err := c.setNameAndDataDir(nc.Name, nc.DataDir); err != nil {
		return nil, err
	}
	if nc.Type == "" {
		return nil, fieldErr("type", "missing plugin type")
	}
	c.Bridge = nc.Bridge
	if c.Bridge == "" {
		c.Bridge = DefaultBridge
	}
	if len(c.Bridge) > 15 || strings.ContainsAny(c.Bridge, "/: \t\n") || c.Bridge == "." || c.Bridge == ".." {
		return nil, fieldErr("bridge", "invalid interface name %q", c.Bridge)
	}
	if nc.MTU != 0 && (nc.MTU < 68 || nc.MTU > 65535) {
		return nil, fieldErr("mtu", "%d out of range 68-65535", nc.MTU)
	}
	c.MTU = nc.MTU
	if nc.IsGateway != nil && !*nc.IsGateway {
		return nil, fieldErr("isGateway", "must be true: the bridge always holds the gateway address")
	}

	if err := c.parseRanges(&nc); err != nil {
		return nil, err
	}
	if err := c.parseRoutes(&nc); err != nil {
		return nil, err
	}
	if err := c.parseNonMasq(&nc); err != nil {
		return nil, err
	}
	if nc.DNS != nil {
		c.DNS = *nc.DNS
	}
	if len(nc.RuntimeConfig) > 0 {
		if err := c.parseRuntimeConfig(nc.RuntimeConfig); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// setNameAndDataDir validates the network name and the data directory,
// the two keys that locate a network's state on disk.
func (c *Config) setNameAndDataDir(name, dataDir string) error {
	if name == "" {
		return fieldErr("name", "missing network name")
	}
	if strings.ContainsAny(name, "/\\") || name == "." || name == ".." {
		return fieldErr("name", "invalid network name %q", name)
	}
	if dataDir == "" {
		dataDir = DefaultDataDir
	}
	if !filepath.IsAbs(dataDir) {
		return fieldErr("dataDir", "must be an absolute path, got %q", dataDir)
	}
	c.Name = name
	c.DataDir = filepath.Join(filepath.Clean(dataDir), name)
	return nil
}

// ParseTeardownConfig reads only what DEL and GC need: the network name,
// dataDir and (for GC) cni.dev/valid-attachments. Every other key is
// ignored, however wrong, because teardown works from the attachment
// records: a config broken while pods run must not strand them. The
// returned Config has only CNIVersion, Name, DataDir and
// Raw.ValidAttachments set.
func ParseTeardownConfig(data []byte) (*Config, error) {
	var tc struct {
		CNIVersion       string               `json:"cniVersion"`
		Name             string               `json:"name"`
		DataDir          string               `json:"dataDir"`
		ValidAttachments []types.GCAttachment `json:"cni.dev/valid-attachments"`
	}
	if err := json.Unmarshal(data, &tc); err != nil {
		return nil, decodeErr(err)
	}
	c := &Config{CNIVersion: tc.CNIVersion}
	c.Raw.ValidAttachments = tc.ValidAttachments
	if err := c.setNameAndDataDir(tc.Name, tc.DataDir); err != nil {
		return nil, err
	}
	return c, nil
}

func decodeErr(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		f := te.Field
		if f == "" {
			f = "(top level)"
		}
		return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("podnet-cni: config field %q: want %s, got JSON %s", f, jsonKind(te.Type.Kind().String()), te.Value), "")
	}
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("podnet-cni: config field %s: unknown key", rest), "")
	}
	return types.NewError(types.ErrDecodingFailure, fmt.Sprintf("podnet-cni: decode config: %v", err), "")
}

func jsonKind(k string) string {
	switch k {
	case "int", "int64", "uint16", "uint32", "float64":
		return "a number"
	case "bool":
		return "a boolean"
	case "string":
		return "a string"
	case "slice":
		return "a list"
	case "struct", "map", "ptr":
		return "an object"
	}
	return k
}

func parsePrefix(field, s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fieldErr(field, "invalid CIDR %q", s)
	}
	return p, nil
}

func parseAddr(field, s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, fieldErr(field, "invalid IP address %q", s)
	}
	return a, nil
}

// buildRange validates one range; field is the JSON path prefix for errors.
func buildRange(field string, rc RangeConf) (ipam.Range, error) {
	sub := field + "subnet"
	if rc.Subnet == "" {
		return ipam.Range{}, fieldErr(sub, "missing")
	}
	p, err := parsePrefix(sub, rc.Subnet)
	if err != nil {
		return ipam.Range{}, err
	}
	p = p.Masked()
	max := 30
	if p.Addr().Is6() {
		max = 126
	}
	if p.Bits() > max {
		return ipam.Range{}, fieldErr(sub, "%s is too small: the prefix length must be at most /%d", p, max)
	}
	start, end := ipam.DefaultBounds(p)
	r := ipam.Range{Subnet: p, Start: start, End: end, Gateway: start}
	if rc.Gateway != "" {
		gw, err := parseAddr(field+"gateway", rc.Gateway)
		if err != nil {
			return r, err
		}
		if !p.Contains(gw) || gw.Compare(start) < 0 || gw.Compare(end) > 0 {
			return r, fieldErr(field+"gateway", "%s is not a host address of subnet %s", gw, p)
		}
		r.Gateway = gw
	}
	if rc.RangeStart != "" {
		a, err := parseAddr(field+"rangeStart", rc.RangeStart)
		if err != nil {
			return r, err
		}
		if !p.Contains(a) || a.Compare(start) < 0 || a.Compare(end) > 0 {
			return r, fieldErr(field+"rangeStart", "%s is not a host address of subnet %s", a, p)
		}
		r.Start = a
	}
	if rc.RangeEnd != "" {
		a, err := parseAddr(field+"rangeEnd", rc.RangeEnd)
		if err != nil {
			return r, err
		}
		if !p.Contains(a) || a.Compare(start) < 0 || a.Compare(end) > 0 {
			return r, fieldErr(field+"rangeEnd", "%s is not a host address of subnet %s", a, p)
		}
		r.End = a
	}
	if r.Start.Compare(r.End) > 0 {
		return r, fieldErr(field+"rangeStart", "%s is after rangeEnd %s", r.Start, r.End)
	}
	if r.Start == r.End && r.Start == r.Gateway {
		return r, fieldErr(field+"rangeStart", "range %s-%s holds only the gateway", r.Start, r.End)
	}
	return r, nil
}

func (c *Config) parseRanges(nc *NetConf) error {
	short := nc.Subnet != "" || nc.IPv6Subnet != ""
	if short && len(nc.Ranges) > 0 {
		f := "subnet"
		if nc.Subnet == "" {
			f = "ipv6Subnet"
		}
		return fieldErr(f, "use either subnet/ipv6Subnet or ranges, not both")
	}
	if !short {
		for _, k := range []struct{ f, v string }{{"gateway", nc.Gateway}, {"rangeStart", nc.RangeStart}, {"rangeEnd", nc.RangeEnd}} {
			if k.v != "" {
				return fieldErr(k.f, "only valid with subnet (in ranges, set it per range)")
			}
		}
	}
	var sets [][]RangeConf
	var names []string
	if short {
		if nc.Subnet == "" && (nc.Gateway != "" || nc.RangeStart != "" || nc.RangeEnd != "") {
			return fieldErr("subnet", "missing: gateway, rangeStart and rangeEnd apply to the IPv4 subnet")
		}
		if nc.Subnet != "" {
			if p, err := netip.ParsePrefix(nc.Subnet); err == nil && !p.Addr().Is4() {
				return fieldErr("subnet", "%q is not an IPv4 CIDR (use ipv6Subnet or ranges for IPv6)", nc.Subnet)
			}
			sets = append(sets, []RangeConf{{Subnet: nc.Subnet, Gateway: nc.Gateway, RangeStart: nc.RangeStart, RangeEnd: nc.RangeEnd}})
			names = append(names, "")
		}
		if nc.IPv6Subnet != "" {
			p, err := parsePrefix("ipv6Subnet", nc.IPv6Subnet)
			if err != nil {
				return err
			}
			if !p.Addr().Is6() || p.Addr().Is4In6() {
				return fieldErr("ipv6Subnet", "%q is not an IPv6 CIDR", nc.IPv6Subnet)
			}
			sets = append(sets, []RangeConf{{Subnet: nc.IPv6Subnet}})
			names = append(names, "ipv6")
		}
	} else {
		if len(nc.Ranges) == 0 {
			return fieldErr("subnet", "missing: set subnet (IPv4 CIDR), ipv6Subnet or ranges")
		}
		if len(nc.Ranges) > 2 {
			return fieldErr("ranges", "at most two range sets (one IPv4, one IPv6), got %d", len(nc.Ranges))
		}
		sets = nc.Ranges
		for i := range sets {
			names = append(names, fmt.Sprintf("ranges[%d]", i))
		}
	}
	seen := map[bool]bool{}
	for i, set := range sets {
		if len(set) == 0 {
			return fieldErr(names[i], "empty range set")
		}
		var rs RangeSet
		for j, rc := range set {
			prefix := ""
			if names[i] == "ipv6" {
				prefix = "ipv6"
			} else if names[i] != "" {
				prefix = fmt.Sprintf("%s[%d].", names[i], j)
			}
			var r ipam.Range
			var err error
			if prefix == "ipv6" {
				r, err = buildRange("", rc)
				if err != nil {
					if te, ok := err.(*types.Error); ok {
						te.Msg = strings.Replace(te.Msg, `"subnet"`, `"ipv6Subnet"`, 1)
					}
					return err
				}
			} else if r, err = buildRange(prefix, rc); err != nil {
				return err
			}
			if j > 0 && r.Subnet.Addr().Is4() != rs.Ranges[0].Subnet.Addr().Is4() {
				return fieldErr(prefix+"subnet", "%s mixes address families in one range set", r.Subnet)
			}
			for _, o := range rs.Ranges {
				if r.Start.Compare(o.End) <= 0 && o.Start.Compare(r.End) <= 0 {
					return fieldErr(prefix+"subnet", "range %s-%s overlaps range %s-%s", r.Start, r.End, o.Start, o.End)
				}
			}
			rs.Ranges = append(rs.Ranges, r)
		}
		if seen[rs.Is4()] {
			fam := "IPv6"
			if rs.Is4() {
				fam = "IPv4"
			}
			return fieldErr(names[i], "a second %s range set (at most one per family)", fam)
		}
		seen[rs.Is4()] = true
		c.Families = append(c.Families, rs)
	}
	if len(c.Families) == 2 && !c.Families[0].Is4() {
		c.Families[0], c.Families[1] = c.Families[1], c.Families[0]
	}
	return nil
}

func (c *Config) family(is4 bool) (RangeSet, bool) {
	for _, f := range c.Families {
		if f.Is4() == is4 {
			return f, true
		}
	}
	return RangeSet{}, false
}

func (c *Config) parseRoutes(nc *NetConf) error {
	if nc.Routes == nil {
		for _, f := range c.Families {
			dst := netip.MustParsePrefix("0.0.0.0/0")
			if !f.Is4() {
				dst = netip.MustParsePrefix("::/0")
			}
			c.Routes = append(c.Routes, link.Route{Dst: dst, GW: f.Gateway()})
		}
		return nil
	}
	for i, rc := range nc.Routes {
		field := fmt.Sprintf("routes[%d].dst", i)
		if rc.Dst == "" {
			return fieldErr(field, "missing")
		}
		dst, err := parsePrefix(field, rc.Dst)
		if err != nil {
			return err
		}
		f, ok := c.family(dst.Addr().Is4())
		if !ok {
			return fieldErr(field, "%s: the network has no address of that family", dst)
		}
		r := link.Route{Dst: dst.Masked(), GW: f.Gateway()}
		if rc.GW != "" {
			gw, err := parseAddr(fmt.Sprintf("routes[%d].gw", i), rc.GW)
			if err != nil {
				return err
			}
			if gw.Is4() != dst.Addr().Is4() {
				return fieldErr(fmt.Sprintf("routes[%d].gw", i), "%s is not in the family of dst %s", gw, dst)
			}
			r.GW = gw
		}
		c.Routes = append(c.Routes, r)
	}
	return nil
}

// parseNonMasq validates nonMasqueradeCIDRs: canonical CIDRs of a family
// the network has, no duplicates, no /0 (that is ipMasq false).
func (c *Config) parseNonMasq(nc *NetConf) error {
	for i, s := range nc.NonMasqueradeCIDRs {
		field := fmt.Sprintf("nonMasqueradeCIDRs[%d]", i)
		p, err := parsePrefix(field, s)
		if err != nil {
			return err
		}
		if p.Masked() != p {
			return fieldErr(field, "%s has host bits set (did you mean %s?)", s, p.Masked())
		}
		if p.Bits() == 0 {
			return fieldErr(field, "%s would exempt all traffic from masquerade; set ipMasq to false instead", s)
		}
		if _, ok := c.family(p.Addr().Is4()); !ok {
			return fieldErr(field, "%s: the network has no address of that family", s)
		}
		for j, o := range c.NonMasq {
			if o == p {
				return fieldErr(field, "%s repeats nonMasqueradeCIDRs[%d]", s, j)
			}
		}
		c.NonMasq = append(c.NonMasq, p)
	}
	return nil
}

func (c *Config) parseRuntimeConfig(raw json.RawMessage) error {
	var rc RuntimeConfig
	if err := json.Unmarshal(raw, &rc); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("podnet-cni: config field %q: want %s, got JSON %s", "runtimeConfig."+te.Field, jsonKind(te.Type.Kind().String()), te.Value), "")
		}
		return types.NewError(types.ErrDecodingFailure, fmt.Sprintf("podnet-cni: decode config field \"runtimeConfig\": %v", err), "")
	}
	for i, pm := range rc.PortMappings {
		f := fmt.Sprintf("runtimeConfig.portMappings[%d].", i)
		if pm.HostPort < 1 || pm.HostPort > 65535 {
			return fieldErr(f+"hostPort", "%d out of range 1-65535", pm.HostPort)
		}
		if pm.ContainerPort < 1 || pm.ContainerPort > 65535 {
			return fieldErr(f+"containerPort", "%d out of range 1-65535", pm.ContainerPort)
		}
		proto := strings.ToLower(pm.Protocol)
		if proto == "" {
			proto = "tcp"
		}
		if proto != "tcp" && proto != "udp" {
			return fieldErr(f+"protocol", "%q is not tcp or udp", pm.Protocol)
		}
		m := nft.PortMapping{Proto: proto, HostPort: uint16(pm.HostPort), ContainerPort: uint16(pm.ContainerPort)}
		if pm.HostIP != "" {
			ip, err := parseAddr(f+"hostIP", pm.HostIP)
			if err != nil {
				return err
			}
			ip = ip.Unmap()
			if !ip.IsUnspecified() {
				if _, ok := c.family(ip.Is4()); !ok {
					return fieldErr(f+"hostIP", "%s: the network has no address of that family", ip)
				}
				m.HostIP = ip
			}
		}
		c.Ports = append(c.Ports, m)
	}
	for i, s := range rc.IPs {
		f := fmt.Sprintf("runtimeConfig.ips[%d]", i)
		var ip netip.Addr
		if strings.Contains(s, "/") {
			p, err := parsePrefix(f, s)
			if err != nil {
				return err
			}
			ip = p.Addr()
		} else {
			a, err := parseAddr(f, s)
			if err != nil {
				return err
			}
			ip = a
		}
		fam, ok := c.family(ip.Is4())
		if !ok {
			return fieldErr(f, "%s: the network has no address of that family", ip)
		}
		in := false
		for _, r := range fam.Ranges {
			if r.Contains(ip) && ip != r.Gateway {
				in = true
			}
		}
		if !in {
			return fieldErr(f, "%s is not an assignable address of the network's ranges", ip)
		}
		if c.Requested == nil {
			c.Requested = map[bool]netip.Addr{}
		}
		if _, dup := c.Requested[ip.Is4()]; dup {
			return fieldErr(f, "more than one address requested for one family")
		}
		c.Requested[ip.Is4()] = ip
	}
	if rc.MAC != "" {
		mac, err := net.ParseMAC(rc.MAC)
		if err != nil || len(mac) != 6 {
			return fieldErr("runtimeConfig.mac", "invalid MAC address %q", rc.MAC)
		}
		if mac[0]&1 == 1 {
			return fieldErr("runtimeConfig.mac", "%s is a multicast address", mac)
		}
		c.MAC = mac
	}
	return nil
}
