// Package all imports every plugin of `podnet dns`, so that importing it
// registers them (as CoreDNS's generated zplugin.go does). The execution
// order is internal/dns.Directives, not this list.
package all

import (
	_ "github.com/podnet/podnet/internal/dns/plugin/autopath"
	_ "github.com/podnet/podnet/internal/dns/plugin/bind"
	_ "github.com/podnet/podnet/internal/dns/plugin/cache"
	_ "github.com/podnet/podnet/internal/dns/plugin/debug"
	_ "github.com/podnet/podnet/internal/dns/plugin/errors"
	_ "github.com/podnet/podnet/internal/dns/plugin/file"
	_ "github.com/podnet/podnet/internal/dns/plugin/forward"
	_ "github.com/podnet/podnet/internal/dns/plugin/health"
	_ "github.com/podnet/podnet/internal/dns/plugin/hosts"
	_ "github.com/podnet/podnet/internal/dns/plugin/kubernetes"
	_ "github.com/podnet/podnet/internal/dns/plugin/loadbalance"
	_ "github.com/podnet/podnet/internal/dns/plugin/log"
	_ "github.com/podnet/podnet/internal/dns/plugin/loop"
	_ "github.com/podnet/podnet/internal/dns/plugin/prometheus"
	_ "github.com/podnet/podnet/internal/dns/plugin/ready"
	_ "github.com/podnet/podnet/internal/dns/plugin/reload"
	_ "github.com/podnet/podnet/internal/dns/plugin/rewrite"
	_ "github.com/podnet/podnet/internal/dns/plugin/template"
	_ "github.com/podnet/podnet/internal/dns/plugin/whoami"
)
