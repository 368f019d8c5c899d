package dns

import (
	"runtime"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Recorder is a ResponseWriter that remembers what was written: the rcode,
// the size, the message, when serving started, and which plugin wrote it.
type Recorder struct {
	dns.ResponseWriter
	Rcode int
	Len   int
	Msg   *dns.Msg
	Start time.Time
	// Plugin is the name of the plugin whose code called WriteMsg, found
	// from the call stack (internal/dns/plugin/<name>/), "" if none.
	Plugin string

	callerSkip string
}

// NewRecorder wraps w; the recording plugin's own name (self) is skipped
// when finding the writing plugin.
func NewRecorder(w dns.ResponseWriter, self string) *Recorder {
	return &Recorder{ResponseWriter: w, Start: time.Now(), callerSkip: self}
}

// WriteMsg records m and writes it.
func (r *Recorder) WriteMsg(m *dns.Msg) error {
	r.Rcode = m.Rcode
	r.Msg = m
	r.Plugin = writingPlugin(r.callerSkip)
	err := r.ResponseWriter.WriteMsg(m)
	r.Len += m.Len()
	return err
}

// Write records the size of a raw reply and writes it.
func (r *Recorder) Write(b []byte) (int, error) {
	n, err := r.ResponseWriter.Write(b)
	if err == nil {
		r.Len += n
	}
	return n, err
}

const pluginPkg = "/internal/dns/plugin/"

// writingPlugin walks up the stack to the first plugin package that is
// not skip and not a writer wrapper.
func writingPlugin(skip string) string {
	var pcs [24]uintptr
	n := runtime.Callers(3, pcs[:])
	frames := runtime.CallersFrames(pcs[:n])
	for {
		f, more := frames.Next()
		if i := strings.Index(f.Function, pluginPkg); i >= 0 {
			rest := f.Function[i+len(pluginPkg):]
			if j := strings.IndexByte(rest, '.'); j >= 0 {
				rest = rest[:j]
			}
			if rest != skip && !strings.Contains(f.Function, "WriteMsg") {
				return rest
			}
		}
		if !more {
			return ""
		}
	}
}
