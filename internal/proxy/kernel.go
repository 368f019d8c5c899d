package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	vnetlink "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"sigs.k8s.io/knftables"

	"github.com/podnet/podnet/internal/netns"
	pnft "github.com/podnet/podnet/internal/nft"
)

// snapshot is what restore needs of the table: object names and the
// elements of the proxy's static maps and sets.
type snapshot struct {
	sets, maps, chains []string
	elems              map[string][]*knftables.Element // by map or set name
}

// backend is how the Proxier reads and writes the table: knftables (a
// Fake in unit tests, or any knftables.Interface), or the real kernel
// (netlink reads, one `nft -f` of batched text per sync).
type backend interface {
	read(ctx context.Context) (*snapshot, error)
	// run applies static (the first sync's declaration; may be empty)
	// and d as one transaction.
	run(ctx context.Context, static *knftables.Transaction, d *delta) error
}

// knftBackend is the generic path over knftables.Interface.
type knftBackend struct{ nft knftables.Interface }

func (b knftBackend) newTx() *knftables.Transaction { return b.nft.NewTransaction() }

func (b knftBackend) read(ctx context.Context) (*snapshot, error) {
	s := &snapshot{elems: map[string][]*knftables.Element{}}
	var err error
	for _, x := range []struct {
		typ string
		out *[]string
	}{{"sets", &s.sets}, {"maps", &s.maps}, {"chains", &s.chains}} {
		*x.out, err = b.nft.List(ctx, x.typ)
		if err != nil && !knftables.IsNotFound(err) {
			return nil, fmt.Errorf("proxy: read table: %w", err)
		}
	}
	for _, m := range staticMaps() {
		els, err := b.nft.ListElements(ctx, "map", m.Name)
		if err != nil && !knftables.IsNotFound(err) {
			return nil, fmt.Errorf("proxy: read map %s: %w", m.Name, err)
		}
		s.elems[m.Name] = els
	}
	els, err := b.nft.ListElements(ctx, "set", SetHairpin)
	if err != nil && !knftables.IsNotFound(err) {
		return nil, fmt.Errorf("proxy: read set %s: %w", SetHairpin, err)
	}
	s.elems[SetHairpin] = els
	return s, nil
}

func (b knftBackend) run(ctx context.Context, static *knftables.Transaction, d *delta) error {
	tx := static
	if tx == nil {
		tx = b.nft.NewTransaction()
	}
	d.apply(tx)
	if tx.NumOperations() == 0 {
		return nil
	}
	return b.nft.Run(ctx, tx)
}

// kernelBackend talks to the table in a network namespace ("" = the
// current one). Reading over netlink costs the kernel one dump per map; the
// nft binary instead lists the whole table, elements included, for every
// List call (~3 s of CPU each at 100k elements). Writing goes through one
// `nft -f -` whose element statements are batched per map (one statement
// per map and operation rather than one per element, which knftables
// writes): nft parses and sends them far faster (README.md has numbers).
type kernelBackend struct {
	netns    string
	path     string // nft binary
	textOnly bool   // never the netlink writer (PODNET_PROXY_NFT_TEXT=1)
}

func newKernelBackend(netnsPath string) (*kernelBackend, error) {
	p, err := exec.LookPath("nft")
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	return &kernelBackend{netns: netnsPath, path: p, textOnly: os.Getenv("PODNET_PROXY_NFT_TEXT") != ""}, nil
}

func (k *kernelBackend) do(fn func() error) error {
	if k.netns == "" {
		return fn()
	}
	return netns.Do(k.netns, fn)
}

func (k *kernelBackend) run(ctx context.Context, static *knftables.Transaction, d *delta) error {
	if !k.textOnly {
		msgs, err := netlinkBatch(d)
		if err == nil {
			// The static declaration (first sync only) goes first, in its
			// own small nft transaction: it is idempotent, and the delta
			// needs it.
			if static != nil {
				if err := k.runText(ctx, static.String()); err != nil {
					return err
				}
			}
			if err := k.do(func() error { return sendBatch(msgs) }); err != nil {
				return fmt.Errorf("nf_tables batch of %d messages: %w", len(msgs), err)
			}
			return nil
		}
		if !errors.Is(err, errNoNetlink) {
			return err
		}
	}
	var b strings.Builder
	if static != nil {
		b.WriteString(static.String())
	}
	d.writeText(&b)
	return k.runText(ctx, b.String())
}

// runText runs nft statements as one `nft -f -` transaction.
func (k *kernelBackend) runText(ctx context.Context, text string) error {
	if text == "" {
		return nil
	}
	return k.do(func() error {
		cmd := exec.CommandContext(ctx, k.path, "-f", "-")
		cmd.Stdin = strings.NewReader(text)
		if out, err := cmd.CombinedOutput(); err != nil {
			msg := strings.TrimSpace(string(out))
			if len(msg) > 2000 {
				msg = msg[:2000] + "…"
			}
			return fmt.Errorf("nft -f: %w: %s", err, msg)
		}
		return nil
	})
}

func (k *kernelBackend) read(ctx context.Context) (*snapshot, error) {
	s := &snapshot{elems: map[string][]*knftables.Element{}}
	err := k.do(func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		table := &nftables.Table{Name: pnft.TableName, Family: nftables.TableFamilyINet}
		chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
		if err != nil {
			return fmt.Errorf("list chains: %w", err)
		}
		for _, ch := range chains {
			if ch.Table != nil && ch.Table.Name == pnft.TableName {
				s.chains = append(s.chains, ch.Name)
			}
		}
		sets, err := c.GetSets(table)
		if err != nil {
			if isNoTable(err) {
				return nil
			}
			return fmt.Errorf("list sets: %w", err)
		}
		want := map[string]bool{SetHairpin: true}
		for _, m := range staticMaps() {
			want[m.Name] = true
		}
		for _, set := range sets {
			if set.IsMap {
				s.maps = append(s.maps, set.Name)
			} else {
				s.sets = append(s.sets, set.Name)
			}
			if !want[set.Name] {
				continue
			}
			els, err := dumpElements(set.Name)
			if err != nil {
				return fmt.Errorf("list %s: %w", set.Name, err)
			}
			out := make([]*knftables.Element, 0, len(els))
			for _, e := range els {
				ke, err := decodeElem(set.Name, e)
				if err != nil {
					return fmt.Errorf("%s: %w", set.Name, err)
				}
				out = append(out, ke)
			}
			s.elems[set.Name] = out
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("proxy: read table over netlink: %w", err)
	}
	return s, nil
}

// dumpBufferSize is the receive buffer of element dumps. The kernel sizes
// each dump message to the reader's largest receive (up to 32 KiB), and a
// hash set's dump re-walks the set from its start for every message, so
// small messages make a large map's dump quadratic: google/nftables'
// exact-size reads took 3.7 s of kernel time for the 100k elements of
// service-eps, 32 KiB messages a fraction of that.
const dumpBufferSize = 1 << 16

// dumpElements lists a set's elements (google/nftables' GetSetElements
// with a large receive buffer).
func dumpElements(set string) ([]nftables.SetElement, error) {
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{MessageBufferSize: dumpBufferSize})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	data, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_SET_TABLE, Data: []byte(pnft.TableName + "\x00")},
		{Type: unix.NFTA_SET_NAME, Data: []byte(set + "\x00")},
	})
	if err != nil {
		return nil, err
	}
	msgs, err := conn.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType((unix.NFNL_SUBSYS_NFTABLES << 8) | unix.NFT_MSG_GETSETELEM),
			Flags: netlink.Request | netlink.Dump,
		},
		Data: append([]byte{unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0}, data...),
	})
	if err != nil {
		return nil, err
	}
	var out []nftables.SetElement
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return nil, err
		}
		ad.ByteOrder = binary.BigEndian
		for ad.Next() {
			if ad.Type() != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
				continue
			}
			ad.Nested(func(list *netlink.AttributeDecoder) error {
				for list.Next() {
					if list.Type() != unix.NFTA_LIST_ELEM {
						continue
					}
					var e nftables.SetElement
					list.Nested(func(el *netlink.AttributeDecoder) error {
						for el.Next() {
							switch el.Type() {
							case unix.NFTA_SET_ELEM_KEY:
								e.Key = innerData(el.Bytes())
							case unix.NFTA_SET_ELEM_DATA:
								e.Val = innerData(el.Bytes())
							case unix.NFTA_SET_ELEM_USERDATA:
								e.Comment, _ = userdata.GetString(el.Bytes(), userdata.NFTNL_UDATA_SET_ELEM_COMMENT)
							}
						}
						return nil
					})
					out = append(out, e)
				}
				return nil
			})
		}
		if err := ad.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// innerData returns the payload of an NFTA_DATA_VALUE, or the nested
// attributes of an NFTA_DATA_VERDICT.
func innerData(b []byte) []byte {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return nil
	}
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_DATA_VALUE, unix.NFTA_DATA_VERDICT:
			return ad.Bytes()
		}
	}
	return nil
}

// ensureRoute routes cidr to lo with source src (idempotent).
func (k *kernelBackend) ensureRoute(cidr netip.Prefix, src netip.Addr) error {
	err := k.do(func() error {
		lo, err := vnetlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return vnetlink.RouteReplace(&vnetlink.Route{
			LinkIndex: lo.Attrs().Index,
			Dst:       &net.IPNet{IP: cidr.Addr().AsSlice(), Mask: net.CIDRMask(cidr.Bits(), cidr.Addr().BitLen())},
			Src:       src.AsSlice(),
			Scope:     vnetlink.SCOPE_LINK,
		})
	})
	if err != nil {
		return fmt.Errorf("proxy: route %s to lo (src %s): %w", cidr, src, err)
	}
	return nil
}

func isNoTable(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "no such file") || strings.Contains(err.Error(), "ENOENT"))
}

// Key and value layouts of the static maps (nft pads each field of a
// concatenation to 4 bytes; marks are host-endian, the rest network order).
var elemLayout = map[string]struct{ key, val []string }{
	MapServiceIPs:       {[]string{"ip", "proto", "port"}, []string{"verdict"}},
	MapNoEndpoints:      {[]string{"ip", "proto", "port"}, []string{"verdict"}},
	MapServiceNodePorts: {[]string{"proto", "port"}, []string{"verdict"}},
	MapNoEndpointPorts:  {[]string{"proto", "port"}, []string{"verdict"}},
	MapEndpoints:        {[]string{"mark"}, []string{"ip", "port"}},
	SetHairpin:          {[]string{"ip", "ip"}, nil},
}

func decodeElem(set string, e nftables.SetElement) (*knftables.Element, error) {
	l, ok := elemLayout[set]
	if !ok {
		return nil, fmt.Errorf("no layout for %s", set)
	}
	key, err := decodeFields(l.key, e.Key)
	if err != nil {
		return nil, fmt.Errorf("key %x: %w", e.Key, err)
	}
	out := &knftables.Element{Key: key}
	if set == SetHairpin {
		out.Set = set
	} else {
		out.Map = set
		if l.val[0] == "verdict" {
			v, err := decodeVerdict(e.Val)
			if err != nil {
				return nil, fmt.Errorf("value %x: %w", e.Val, err)
			}
			out.Value = []string{v}
		} else if out.Value, err = decodeFields(l.val, e.Val); err != nil {
			return nil, fmt.Errorf("value %x: %w", e.Val, err)
		}
	}
	if e.Comment != "" {
		out.Comment = ptr(e.Comment)
	}
	return out, nil
}

func decodeFields(fields []string, b []byte) ([]string, error) {
	var out []string
	for _, f := range fields {
		if len(b) < 4 {
			return nil, fmt.Errorf("short")
		}
		w := b[:4]
		b = b[4:]
		switch f {
		case "ip":
			out = append(out, netip.AddrFrom4([4]byte(w)).String())
		case "proto":
			switch w[0] {
			case unix.IPPROTO_TCP:
				out = append(out, "tcp")
			case unix.IPPROTO_UDP:
				out = append(out, "udp")
			case unix.IPPROTO_SCTP:
				out = append(out, "sctp")
			default:
				out = append(out, strconv.Itoa(int(w[0])))
			}
		case "port":
			out = append(out, strconv.Itoa(int(binary.BigEndian.Uint16(w))))
		case "mark":
			out = append(out, fmt.Sprintf("0x%08x", binary.NativeEndian.Uint32(w)))
		}
	}
	return out, nil
}

func decodeVerdict(b []byte) (string, error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return "", err
	}
	ad.ByteOrder = binary.BigEndian
	var code int32
	var chain string
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_VERDICT_CODE:
			code = int32(ad.Uint32())
		case unix.NFTA_VERDICT_CHAIN:
			chain = ad.String()
		}
	}
	if err := ad.Err(); err != nil {
		return "", err
	}
	switch code {
	case unix.NFT_GOTO:
		return "goto " + chain, nil
	case unix.NFT_JUMP:
		return "jump " + chain, nil
	case 0: // NF_DROP
		return "drop", nil
	case 1: // NF_ACCEPT
		return "accept", nil
	}
	return "", fmt.Errorf("verdict code %d", code)
}

// writeText writes d as nft statements, in apply's order, one statement
// per map or set and operation.
func (d *delta) writeText(b *strings.Builder) {
	fam := "inet " + pnft.TableName + " "
	for _, n := range sortedKeys(d.setAdd) {
		fmt.Fprintf(b, "add set %s%s { type ipv4_addr ; flags dynamic,timeout ; timeout %s ; }\n", fam, quoteName(n), nftDuration(d.setAdd[n].timeout))
	}
	for _, n := range sortedKeys(d.chainAdd) {
		fmt.Fprintf(b, "add chain %s%s\n", fam, quoteName(n))
	}
	for _, n := range sortedKeys(d.chainAdd) {
		for _, r := range d.chainAdd[n] {
			fmt.Fprintf(b, "add rule %s%s %s\n", fam, quoteName(n), r)
		}
	}
	d.sortElems()
	writeElems(b, "delete element "+fam, d.elemDel, false)
	writeElems(b, "add element "+fam, d.elemAdd, true)
	for _, n := range sortedKeys(d.chainDel) {
		fmt.Fprintf(b, "delete chain %s%s\n", fam, quoteName(n))
	}
	for _, n := range sortedKeys(d.setDel) {
		fmt.Fprintf(b, "delete set %s%s\n", fam, quoteName(n))
	}
}

// elemsPerStatement bounds one statement's size (nft splits a statement
// into netlink messages itself; this only keeps its parser's buffers
// small).
const elemsPerStatement = 20000

func writeElems(b *strings.Builder, verb string, els []elem, full bool) {
	for i := 0; i < len(els); {
		set := els[i].set
		j := i
		for j < len(els) && els[j].set == set && j-i < elemsPerStatement {
			j++
		}
		b.WriteString(verb)
		b.WriteString(set)
		b.WriteString(" { ")
		for k, e := range els[i:j] {
			if k > 0 {
				b.WriteString(", ")
			}
			b.WriteString(e.key)
			if full {
				if e.comment != "" {
					b.WriteString(" comment ")
					b.WriteString(strconv.Quote(e.comment))
				}
				if e.isMap {
					b.WriteString(" : ")
					b.WriteString(e.value)
				}
			}
		}
		b.WriteString(" }\n")
		i = j
	}
}

// quoteName quotes a chain or set name as knftables does: names with "/"
// need no quotes in nft, so this is the identity; kept for clarity.
func quoteName(n string) string { return n }

// nftDuration writes a timeout as nft reads it.
func nftDuration(d interface{ Seconds() float64 }) string {
	return strconv.FormatInt(int64(d.Seconds()), 10) + "s"
}
