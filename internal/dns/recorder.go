package dns

import (
	"runtime"
	"strings"
	"sync"
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

// pcInfo is what a program counter says about the writing plugin.
type pcInfo struct {
	plugin string // registered plugin whose package holds the code, or ""
	writer bool   // a WriteMsg wrapper: keep looking up the stack
}

// pcCache maps return PCs to pcInfo, so the stack of a query is
// symbolized once per call site, not once per query.
var pcCache sync.Map

func lookupPC(pc uintptr) pcInfo {
	if v, ok := pcCache.Load(pc); ok {
		return v.(pcInfo)
	}
	var info pcInfo
	// One PC may stand for several frames when calls were inlined: take
	// the innermost one in a registered plugin's package.
	frames := runtime.CallersFrames([]uintptr{pc})
	for {
		f, more := frames.Next()
		if i := strings.Index(f.Function, pluginPkg); i >= 0 {
			rest := f.Function[i+len(pluginPkg):]
			if j := strings.IndexByte(rest, '.'); j >= 0 {
				rest = rest[:j]
			}
			if _, ok := Lookup(rest); ok {
				info.plugin = rest
				info.writer = strings.Contains(f.Function, "WriteMsg")
				break
			}
		}
		if !more {
			break
		}
	}
	pcCache.Store(pc, info)
	return info
}

// writingPlugin walks up the stack to the first registered plugin's code
// that is not skip and not a writer wrapper.
func writingPlugin(skip string) string {
	var pcs [24]uintptr
	n := runtime.Callers(3, pcs[:])
	for _, pc := range pcs[:n] {
		info := lookupPC(pc)
		if info.plugin != "" && info.plugin != skip && !info.writer {
			return info.plugin
		}
	}
	return ""
}
