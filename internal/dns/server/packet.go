package server

import (
	"context"
	"io"
	"log/slog"
	"net"

	"github.com/miekg/dns"
	pdns "github.com/podnet/podnet/internal/dns"
)

// PacketHandler serves raw UDP packets without sockets: the decode and
// serve path of a Server, for fuzzing and benchmarks.
type PacketHandler struct {
	s *Server
}

// NewPacketHandler loads corefile (nothing is started: plugins that need
// OnStartup hooks are not usable here) and routes as every address of it.
func NewPacketHandler(corefile string) (*PacketHandler, error) {
	inst, err := pdns.Load(pdns.Input{File: "Corefile", Contents: []byte(corefile)}, pdns.LoadOptions{Port: "53", Stdout: io.Discard, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	all := &route{zones: map[string]*pdns.Config{}, server: "dns://:53"}
	for _, t := range tables(inst) {
		for z, c := range t.zones {
			all.zones[z] = c
		}
	}
	s := &Server{log: slog.New(slog.DiscardHandler)}
	s.table.Store(all)
	return &PacketHandler{s: s}, nil
}

// ServePacket decodes b as miekg/dns's server does (header checks, then
// unpack; FORMERR or NOTIMP for rejected ones, nothing for ignored ones),
// serves it, and returns the packed reply or nil.
func (h *PacketHandler) ServePacket(b []byte) []byte {
	w := &packetWriter{}
	var dh dns.Header
	if len(b) < 12 {
		return nil
	}
	dh.Id = uint16(b[0])<<8 | uint16(b[1])
	dh.Bits = uint16(b[2])<<8 | uint16(b[3])
	dh.Qdcount = uint16(b[4])<<8 | uint16(b[5])
	dh.Ancount = uint16(b[6])<<8 | uint16(b[7])
	dh.Nscount = uint16(b[8])<<8 | uint16(b[9])
	dh.Arcount = uint16(b[10])<<8 | uint16(b[11])
	req := new(dns.Msg)
	switch dns.DefaultMsgAcceptFunc(dh) {
	case dns.MsgIgnore:
		return nil
	case dns.MsgReject, dns.MsgRejectNotImplemented:
		return rejectReply(b, dns.DefaultMsgAcceptFunc(dh))
	}
	if err := req.Unpack(b); err != nil {
		return rejectReply(b, dns.MsgReject)
	}
	h.s.serve(context.Background(), w, req)
	return w.out
}

// rejectReply is the header-only reply miekg/dns sends to a rejected query.
func rejectReply(b []byte, a dns.MsgAcceptAction) []byte {
	m := new(dns.Msg)
	m.Id = uint16(b[0])<<8 | uint16(b[1])
	m.Response = true
	m.Opcode = int(b[2]>>3) & 0xf
	m.Rcode = dns.RcodeFormatError
	if a == dns.MsgRejectNotImplemented {
		m.Rcode = dns.RcodeNotImplemented
	}
	out, err := m.Pack()
	if err != nil {
		return nil
	}
	return out
}

type packetWriter struct{ out []byte }

func (w *packetWriter) LocalAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53}
}
func (w *packetWriter) RemoteAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}
func (w *packetWriter) WriteMsg(m *dns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	w.out = b
	return nil
}
func (w *packetWriter) Write(b []byte) (int, error) {
	w.out = append([]byte(nil), b...)
	return len(b), nil
}
func (w *packetWriter) Close() error        { return nil }
func (w *packetWriter) TsigStatus() error   { return nil }
func (w *packetWriter) TsigTimersOnly(bool) {}
func (w *packetWriter) Hijack()             {}
