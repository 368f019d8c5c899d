package proxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	pnft "github.com/podnet/podnet/internal/nft"
)

// The netlink writer sends a sync's delta as one nf_tables batch from the
// process (no nft exec, no text to parse: nft's parser was most of a full
// sync's cost). google/nftables builds the messages; they are sent here
// without its per-message acknowledgements (250k acks would overflow the
// socket), with an ack asked only for the last message: the kernel
// processes a batch inside sendmsg and reports every failed message, or a
// failed commit, before that ack. Per-Service rules come from a few
// templates (model.go); a delta with a rule outside them (sessionAffinity)
// goes through the text writer instead.

var errNoNetlink = errors.New("not expressible over netlink")

// errCaptured stops google/nftables' Flush after it handed us the batch
// (it wraps os.ErrPermission so Flush returns at the first ack it reads).
var errCaptured = fmt.Errorf("batch captured: %w", os.ErrPermission)

var ruleTemplates = []struct {
	re  *regexp.Regexp
	enc func(m []string) ([]expr.Any, error)
}{
	{regexp.MustCompile(`^meta mark set (0x[0-9a-f]+)$`), func(m []string) ([]expr.Any, error) {
		v, err := parseU32(m[1])
		return []expr.Any{&expr.Immediate{Register: 1, Data: ne32(v)}, setMark()}, err
	}},
	{regexp.MustCompile(`^meta mark set numgen random mod (\d+) offset (0x[0-9a-f]+)$`), func(m []string) ([]expr.Any, error) {
		mod, err1 := parseU32(m[1])
		off, err2 := parseU32(m[2])
		return []expr.Any{&expr.Numgen{Register: 1, Modulus: mod, Type: unix.NFT_NG_RANDOM, Offset: off}, setMark()}, errors.Join(err1, err2)
	}},
	{regexp.MustCompile(`^ip saddr (!= )?(\S+/\d+) meta mark set meta mark \| (0x[0-9a-f]+)$`), func(m []string) ([]expr.Any, error) {
		match, err := saddrIn(m[2], m[1] != "")
		if err != nil {
			return nil, err
		}
		bits, err := parseU32(m[3])
		return append(match, orMark(bits)...), err
	}},
	{regexp.MustCompile(`^meta mark set meta mark \| (0x[0-9a-f]+)$`), func(m []string) ([]expr.Any, error) {
		bits, err := parseU32(m[1])
		return orMark(bits), err
	}},
	{regexp.MustCompile(`^goto (\S+)$`), func(m []string) ([]expr.Any, error) {
		return []expr.Any{&expr.Verdict{Kind: expr.VerdictGoto, Chain: m[1]}}, nil
	}},
	{regexp.MustCompile(`^drop$`), func(m []string) ([]expr.Any, error) {
		return []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}}, nil
	}},
	{regexp.MustCompile(`^ip saddr (\S+/\d+) goto (\S+)$`), func(m []string) ([]expr.Any, error) {
		match, err := saddrIn(m[1], false)
		return append(match, &expr.Verdict{Kind: expr.VerdictGoto, Chain: m[2]}), err
	}},
	{regexp.MustCompile(`^fib saddr type local goto (\S+)$`), func(m []string) ([]expr.Any, error) {
		return []expr.Any{
			&expr.Fib{Register: 1, FlagSADDR: true, ResultADDRTYPE: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ne32(unix.RTN_LOCAL)},
			&expr.Verdict{Kind: expr.VerdictGoto, Chain: m[1]},
		}, nil
	}},
}

// encodeRule returns a rule's expressions, as nft would compile it. ids
// are the batch ids of sets added in the same batch (a rule names a new
// set by id, an existing one by name).
func encodeRule(rule string, ids map[string]uint32) ([]expr.Any, error) {
	if m := affLookup.FindStringSubmatch(rule); m != nil {
		v, err := parseU32(m[2])
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
			&expr.Lookup{SourceRegister: 1, SetName: m[1], SetID: ids[m[1]]},
			&expr.Immediate{Register: 1, Data: ne32(v)},
			setMark(),
		}, err
	}
	if m := affUpdate.FindStringSubmatch(rule); m != nil {
		v, err := parseU32(m[1])
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ne32(v)},
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
			&expr.Dynset{SrcRegKey: 1, SetName: m[2], SetID: ids[m[2]], Operation: unix.NFT_DYNSET_OP_UPDATE},
		}, err
	}
	for _, t := range ruleTemplates {
		if m := t.re.FindStringSubmatch(rule); m != nil {
			return t.enc(m)
		}
	}
	return nil, fmt.Errorf("rule %q: %w", rule, errNoNetlink)
}

// sessionAffinity rules (model.go's pick).
var (
	affLookup = regexp.MustCompile(`^ip saddr @(\S+) meta mark set (0x[0-9a-f]+)$`)
	affUpdate = regexp.MustCompile(`^meta mark (0x[0-9a-f]+) update @(\S+) \{ ip saddr \}$`)
)

func parseU32(s string) (uint32, error) {
	v, err := strconv.ParseUint(s, 0, 32)
	return uint32(v), err
}

func ne32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

func setMark() expr.Any { return &expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1} }

// orMark is `meta mark set meta mark | bits`.
func orMark(bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: ne32(^bits), Xor: ne32(bits)},
		setMark(),
	}
}

// saddrIn matches `ip saddr [!=] prefix` in an inet table.
func saddrIn(cidr string, negate bool) ([]expr.Any, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil || !p.Addr().Is4() {
		return nil, fmt.Errorf("prefix %q: %w", cidr, errNoNetlink)
	}
	p = p.Masked()
	if p.Bits() == 0 {
		return nil, fmt.Errorf("prefix %q: %w", cidr, errNoNetlink)
	}
	// As nft compiles it (so that `nft list` shows `ip saddr <prefix>`):
	// a byte-aligned prefix loads only its bytes, another loads the
	// address and masks it.
	a := p.Addr().As4()
	n := uint32(p.Bits() / 8)
	if p.Bits()%8 != 0 {
		n = 4
	}
	out := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: n},
	}
	if p.Bits()%8 != 0 {
		m := net.CIDRMask(p.Bits(), 32)
		out = append(out, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte(m), Xor: make([]byte, 4)})
	}
	op := expr.CmpOpEq
	if negate {
		op = expr.CmpOpNeq
	}
	return append(out, &expr.Cmp{Op: op, Register: 1, Data: a[:n]}), nil
}

// encodeFields encodes an element key or value as nft lays it out (each
// field of a concatenation padded to 4 bytes).
func encodeFields(fields []string, s string) ([]byte, error) {
	parts := splitKey(s)
	if len(parts) != len(fields) {
		return nil, fmt.Errorf("%q: want %d fields", s, len(fields))
	}
	out := make([]byte, 0, 4*len(fields))
	for i, f := range fields {
		p := parts[i]
		switch f {
		case "ip":
			a, err := netip.ParseAddr(p)
			if err != nil || !a.Is4() {
				return nil, fmt.Errorf("%q: bad address %q", s, p)
			}
			b := a.As4()
			out = append(out, b[:]...)
		case "proto":
			var v byte
			switch p {
			case "tcp":
				v = unix.IPPROTO_TCP
			case "udp":
				v = unix.IPPROTO_UDP
			case "sctp":
				v = unix.IPPROTO_SCTP
			default:
				return nil, fmt.Errorf("%q: protocol %q", s, p)
			}
			out = append(out, v, 0, 0, 0)
		case "port":
			v, err := strconv.ParseUint(p, 10, 16)
			if err != nil {
				return nil, fmt.Errorf("%q: port %q", s, p)
			}
			out = binary.BigEndian.AppendUint16(out, uint16(v))
			out = append(out, 0, 0)
		case "mark":
			v, err := parseU32(p)
			if err != nil {
				return nil, fmt.Errorf("%q: mark %q", s, p)
			}
			out = binary.NativeEndian.AppendUint32(out, v)
		}
	}
	return out, nil
}

var verdictGoto = func() uint32 { v := int32(unix.NFT_GOTO); return uint32(v) }()

// elemsPerMessage keeps a NEWSETELEM message's element list under the
// 64 KiB a netlink attribute can hold.
const elemsPerMessage = 400

// netlinkBatch builds d as nf_tables messages (without batch begin/end),
// or errNoNetlink.
func netlinkBatch(d *delta) ([]netlink.Message, error) {
	var captured []netlink.Message
	c, err := nftables.New(nftables.WithTestDial(func(req []netlink.Message) ([]netlink.Message, error) {
		if captured == nil {
			captured = req
		}
		return nil, errCaptured
	}))
	if err != nil {
		return nil, err
	}
	table := &nftables.Table{Name: pnft.TableName, Family: nftables.TableFamilyINet}
	ids := map[string]uint32{}
	for _, n := range sortedKeys(d.setAdd) {
		set := &nftables.Set{Name: n, Table: table, KeyType: nftables.TypeIPAddr, Dynamic: true,
			HasTimeout: true, Timeout: d.setAdd[n].timeout}
		if err := c.AddSet(set, nil); err != nil {
			return nil, err
		}
		ids[n] = set.ID
	}
	for _, n := range sortedKeys(d.chainAdd) {
		c.AddChain(&nftables.Chain{Name: n, Table: table})
	}
	rules := map[string][]expr.Any{} // most rules repeat across Services
	for _, n := range sortedKeys(d.chainAdd) {
		ch := &nftables.Chain{Name: n, Table: table}
		for _, r := range d.chainAdd[n] {
			ex, ok := rules[r]
			if !ok {
				var err error
				if ex, err = encodeRule(r, ids); err != nil {
					return nil, err
				}
				rules[r] = ex
			}
			c.AddRule(&nftables.Rule{Table: table, Chain: ch, Exprs: ex})
		}
	}
	d.sortElems()
	var elemMsgs []netlink.Message // after the chains they may name
	for _, x := range []struct {
		els []elem
		add bool
	}{{d.elemDel, false}, {d.elemAdd, true}} {
		for i := 0; i < len(x.els); {
			set := x.els[i].set
			j := i
			for j < len(x.els) && x.els[j].set == set && j-i < elemsPerMessage {
				j++
			}
			m, err := elemMessage(set, x.els[i:j], x.add)
			if err != nil {
				return nil, err
			}
			elemMsgs = append(elemMsgs, m)
			i = j
		}
	}
	// google/nftables holds the chain and rule messages; the element
	// messages (the bulk) are encoded here without its per-attribute
	// allocations, then the deletions of chains and sets follow.
	var tail []netlink.Message
	c2, err := nftables.New(nftables.WithTestDial(func(req []netlink.Message) ([]netlink.Message, error) {
		if tail == nil {
			tail = req
		}
		return nil, errCaptured
	}))
	if err != nil {
		return nil, err
	}
	for _, n := range sortedKeys(d.chainDel) {
		c2.DelChain(&nftables.Chain{Name: n, Table: table})
	}
	for _, n := range sortedKeys(d.setDel) {
		c2.DelSet(&nftables.Set{Name: n, Table: table})
	}
	for _, cc := range []*nftables.Conn{c, c2} {
		if err := cc.Flush(); err != nil && !errors.Is(err, os.ErrPermission) {
			return nil, err
		}
	}
	var out []netlink.Message
	if len(captured) >= 2 {
		out = append(out, captured[1:len(captured)-1]...)
	}
	out = append(out, elemMsgs...)
	if len(tail) >= 2 {
		out = append(out, tail[1:len(tail)-1]...)
	}
	return out, nil
}

// elemMessage encodes a NEWSETELEM (add) or DELSETELEM message for els,
// all of one set, as google/nftables' SetAddElements would.
func elemMessage(set string, els []elem, add bool) (netlink.Message, error) {
	l, ok := elemLayout[set]
	if !ok {
		return netlink.Message{}, fmt.Errorf("set %s: %w", set, errNoNetlink)
	}
	b := make([]byte, 0, 64+len(els)*96)
	b = append(b, unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0)
	b = putAttr(b, unix.NFTA_SET_ELEM_LIST_TABLE, append([]byte(pnft.TableName), 0))
	b = putAttr(b, unix.NFTA_SET_ELEM_LIST_SET, append([]byte(set), 0))
	list := beginNested(&b, unix.NFTA_SET_ELEM_LIST_ELEMENTS)
	for _, e := range els {
		k, err := encodeFields(l.key, e.key)
		if err != nil {
			return netlink.Message{}, err
		}
		el := beginNested(&b, unix.NFTA_LIST_ELEM)
		key := beginNested(&b, unix.NFTA_SET_ELEM_KEY)
		b = putAttr(b, unix.NFTA_DATA_VALUE, k)
		endNested(b, key)
		if add && e.isMap {
			data := beginNested(&b, unix.NFTA_SET_ELEM_DATA)
			if l.val[0] == "verdict" {
				chain, ok := strings.CutPrefix(e.value, "goto ")
				if !ok {
					return netlink.Message{}, fmt.Errorf("verdict %q: %w", e.value, errNoNetlink)
				}
				v := beginNested(&b, unix.NFTA_DATA_VERDICT)
				b = putAttr(b, unix.NFTA_VERDICT_CODE, binary.BigEndian.AppendUint32(nil, verdictGoto))
				b = putAttr(b, unix.NFTA_VERDICT_CHAIN, append([]byte(chain), 0))
				endNested(b, v)
			} else {
				val, err := encodeFields(l.val, e.value)
				if err != nil {
					return netlink.Message{}, err
				}
				b = putAttr(b, unix.NFTA_DATA_VALUE, val)
			}
			endNested(b, data)
		}
		if add && e.comment != "" {
			b = putAttr(b, unix.NFTA_SET_ELEM_USERDATA, userdata.AppendString(nil, userdata.NFTNL_UDATA_SET_ELEM_COMMENT, e.comment))
		}
		endNested(b, el)
	}
	endNested(b, list)
	typ, flags := unix.NFT_MSG_DELSETELEM, netlink.Request
	if add {
		typ, flags = unix.NFT_MSG_NEWSETELEM, netlink.Request|netlink.Create
	}
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | typ), Flags: flags},
		Data:   b,
	}, nil
}

// Netlink attributes: host-endian length and type, payload padded to 4.
func putAttr(b []byte, typ uint16, payload []byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(4+len(payload)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, payload...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func beginNested(b *[]byte, typ uint16) int {
	at := len(*b)
	*b = binary.NativeEndian.AppendUint16(*b, 0)
	*b = binary.NativeEndian.AppendUint16(*b, typ|unix.NLA_F_NESTED)
	return at
}

func endNested(b []byte, at int) {
	binary.NativeEndian.PutUint16(b[at:], uint16(len(b)-at))
}

// sendBatch sends msgs as one batch in the current namespace and waits
// for the kernel's verdict.
func sendBatch(msgs []netlink.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return err
	}
	defer conn.Close()
	size := 0
	for i := range msgs {
		// Captured from google/nftables' test connection: let this
		// connection number them.
		msgs[i].Header.Length, msgs[i].Header.Sequence, msgs[i].Header.PID = 0, 0, 0
		// No acks and no echoes (google/nftables asks rules back): the
		// kernel would queue one reply per message.
		msgs[i].Header.Flags &^= netlink.Acknowledge | netlink.Echo
		size += 16 + len(msgs[i].Data) + 4
	}
	msgs[len(msgs)-1].Header.Flags |= netlink.Acknowledge
	batch := make([]netlink.Message, 0, len(msgs)+2)
	batch = append(batch, netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_BEGIN), Flags: netlink.Request},
		Data:   []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, unix.NFNL_SUBSYS_NFTABLES},
	})
	batch = append(batch, msgs...)
	batch = append(batch, netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_END), Flags: netlink.Request},
		Data:   []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, unix.NFNL_SUBSYS_NFTABLES},
	})
	// The whole batch goes in one sendmsg, as nft sends it.
	if err := setSockBuf(conn, unix.SO_SNDBUFFORCE, size+(1<<16)); err != nil {
		return fmt.Errorf("netlink send buffer: %w", err)
	}
	sent, err := conn.SendMessages(batch)
	if err != nil {
		return fmt.Errorf("send batch: %w", err)
	}
	last := sent[len(sent)-2].Header.Sequence
	for {
		replies, err := conn.Receive()
		if err != nil {
			return err // the first failed message, or the commit
		}
		for _, r := range replies {
			if r.Header.Type == netlink.Error && r.Header.Sequence == last {
				return nil
			}
		}
	}
}

func setSockBuf(conn *netlink.Conn, opt, size int) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt, size)
	}); err != nil {
		return err
	}
	return serr
}
