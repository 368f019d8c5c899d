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
	all := &route{zones: map[string]*pdns.Config{}, ctxs: map[string]context.Context{}, server: "dns://:53"}
	for _, t := range tables(inst) {
		for z, c := range t.zones {
			all.zones[z] = c
			all.ctxs[z] = queryContext(context.Background(), all.server, z, c)
		}
	}
	s := &Server{log: slog.New(slog.DiscardHandler)}
	s.table.Store(all)
	return &PacketHandler{s: s}, nil
}

// ServePacket decodes b as the UDP server does (header checks, then
// unpack; FORMERR or NOTIMP for rejected ones, nothing for ignored ones),
// serves it, and returns the packed reply or nil.
func (h *PacketHandler) ServePacket(b []byte) []byte {
	if len(b) < 12 {
		return nil
	}
	w := &packetWriter{}
	req, reject := decodeQuery(b)
	switch {
	case req == nil:
		return nil
	case reject != nil:
		w.WriteMsg(reject)
	default:
		h.s.serve(context.Background(), w, req)
	}
	return w.out
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
