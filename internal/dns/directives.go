package dns

// Directives is the execution order of plugins, as CoreDNS's plugin.cfg:
// a query enters the chain at the first directive the server block uses
// and goes down this list, whatever the order in the Corefile. Directives
// without a registered plugin are unknown to the parser.
var Directives = []string{
	"root",
	"metadata",
	"timeouts",
	"reload",
	"nsid",
	"bufsize",
	"bind",
	"debug",
	"ready",
	"health",
	"pprof",
	"prometheus",
	"errors",
	"log",
	"local",
	"acl",
	"any",
	"chaos",
	"loadbalance",
	"cache",
	"rewrite",
	"header",
	"autopath",
	"minimal",
	"template",
	"hosts",
	"k8s_external",
	"kubernetes",
	"file",
	"auto",
	"loop",
	"forward",
	"erratic",
	"whoami",
}
