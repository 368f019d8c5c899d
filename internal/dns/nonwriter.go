package dns

import "github.com/miekg/dns"

// NonWriter is a ResponseWriter that keeps the reply instead of sending
// it, for plugins that run the rest of the chain to look at the answer
// (autopath, a plugin resolving a CNAME target through the server).
type NonWriter struct {
	dns.ResponseWriter
	Msg *dns.Msg
}

// NewNonWriter wraps w: addresses come from w, replies stay in Msg.
func NewNonWriter(w dns.ResponseWriter) *NonWriter { return &NonWriter{ResponseWriter: w} }

// WriteMsg keeps m.
func (w *NonWriter) WriteMsg(m *dns.Msg) error { w.Msg = m; return nil }
