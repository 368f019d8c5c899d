// Package annotations parses and validates the ingress-nginx annotations
// (prefix nginx.ingress.kubernetes.io/) of an Ingress into a typed Config,
// with ingress-nginx's value syntax and defaults. Snippet annotations are
// refused: podnet never executes configuration text.
package annotations

import (
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Prefix is the annotation prefix of ingress-nginx.
const Prefix = "nginx.ingress.kubernetes.io/"

// Config is the typed form of an Ingress's annotations.
type Config struct {
	RewriteTarget, AppRoot                string
	UseRegex                              bool
	SSLRedirect                           *bool
	ForceSSLRedirect                      bool
	PermanentRedirect                     string
	PermanentRedirectCode                 int
	TemporalRedirect                      string
	XForwardedPrefix, UpstreamVhost       string
	ServerAlias                           []string
	BackendProtocol                       string
	ProxyBodySize                         int64 // bytes; 0 = unlimited
	ProxyConnectTimeout, ProxyReadTimeout time.Duration
	ProxySendTimeout                      time.Duration
	WhitelistSourceRange                  []netip.Prefix
	LimitRPS, LimitConnections            int
	Canary                                bool
	CanaryByHeader, CanaryByHeaderValue   string
	CanaryByCookie                        string
	CanaryWeight, CanaryWeightTotal       int
	EnableCORS                            bool
	CORSAllowOrigin                       []string
	CORSAllowMethods, CORSAllowHeaders    string
	CORSAllowCredentials                  bool
	CORSExposeHeaders                     string
	CORSMaxAge                            int
	Affinity                              string
	SessionCookieName, SessionCookiePath  string
	SessionCookieMaxAge                   int
	DefaultBackend                        string
	CustomHTTPErrors                      []int
	LoadBalance                           string
}

// Defaults returns the configuration of an Ingress without annotations.
func Defaults() *Config {
	t := true
	return &Config{
		SSLRedirect:           &t,
		PermanentRedirectCode: 301,
		BackendProtocol:       "HTTP",
		ProxyBodySize:         1 << 20,
		ProxyConnectTimeout:   5 * time.Second,
		ProxyReadTimeout:      60 * time.Second,
		ProxySendTimeout:      60 * time.Second,
		CanaryWeightTotal:     100,
		CORSAllowOrigin:       []string{"*"},
		CORSAllowMethods:      "GET, PUT, POST, DELETE, PATCH, OPTIONS",
		CORSAllowHeaders:      "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization",
		CORSAllowCredentials:  true,
		CORSMaxAge:            1728000,
		SessionCookieName:     "INGRESSCOOKIE",
		LoadBalance:           "round_robin",
	}
}

var sizeRE = regexp.MustCompile(`^([0-9]+)([kKmMgG]?)$`)

func parseSize(v string) (int64, error) {
	m := sizeRE.FindStringSubmatch(v)
	if m == nil {
		return 0, fmt.Errorf("must be a size such as 8m, 1g, 512k or 0")
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size out of range")
	}
	mul := map[string]int64{"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[strings.ToLower(m[2])]
	if n > (1<<62)/mul {
		return 0, fmt.Errorf("size out of range")
	}
	return n * mul, nil
}

func parseSeconds(v string) (time.Duration, error) {
	n, err := strconv.Atoi(strings.TrimSuffix(v, "s"))
	if err != nil || n < 0 || n > 1<<31 {
		return 0, fmt.Errorf("must be a non-negative number of seconds")
	}
	return time.Duration(n) * time.Second, nil
}

func parseNonNeg(v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("must be a non-negative integer")
	}
	return n, nil
}

func parseBool(v string) (bool, error) {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf(`must be "true" or "false"`)
	}
	return b, nil
}

func list(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func parsePrefixes(v string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list(v) {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR or IP address", s)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("must list at least one CIDR or IP address")
	}
	return out, nil
}

func parseURL(v string) error {
	if v == "" || strings.ContainsAny(v, " \t\r\n") {
		return fmt.Errorf("must be a URL without spaces")
	}
	return nil
}

func parsePath(v string) error {
	if !strings.HasPrefix(v, "/") && !strings.HasPrefix(v, "http://") && !strings.HasPrefix(v, "https://") {
		return fmt.Errorf("must be a path starting with / or an http(s) URL")
	}
	return parseURL(v)
}

// Parse reads the nginx.ingress.kubernetes.io/* annotations of ing. It
// returns the configuration (defaults for what is not set), the invalid
// annotations and a warning for each unknown annotation.
func Parse(ing *networkingv1.Ingress) (*Config, field.ErrorList, []string) {
	c := Defaults()
	var errs field.ErrorList
	var warns []string
	keys := make([]string, 0, len(ing.Annotations))
	for k := range ing.Annotations {
		if strings.HasPrefix(k, Prefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	base := field.NewPath("metadata", "annotations")
	for _, full := range keys {
		v := ing.Annotations[full]
		name := strings.TrimPrefix(full, Prefix)
		var err error
		str := func(dst *string, check func(string) error) {
			if check != nil {
				err = check(v)
			}
			*dst = v
		}
		boolean := func(dst *bool) { *dst, err = parseBool(v) }
		nonNeg := func(dst *int) { *dst, err = parseNonNeg(v) }
		secs := func(dst *time.Duration) { *dst, err = parseSeconds(v) }
		nonEmpty := func(s string) error {
			if strings.TrimSpace(s) == "" {
				return fmt.Errorf("must not be empty")
			}
			return nil
		}
		switch {
		case strings.HasSuffix(name, "-snippet"):
			err = fmt.Errorf("snippet annotations are not supported: podnet never executes configuration text")
		case name == "rewrite-target":
			str(&c.RewriteTarget, nonEmpty)
		case name == "use-regex":
			boolean(&c.UseRegex)
		case name == "app-root":
			str(&c.AppRoot, parsePath)
		case name == "ssl-redirect":
			var b bool
			boolean(&b)
			c.SSLRedirect = &b
		case name == "force-ssl-redirect":
			boolean(&c.ForceSSLRedirect)
		case name == "permanent-redirect":
			str(&c.PermanentRedirect, parseURL)
		case name == "permanent-redirect-code":
			c.PermanentRedirectCode, err = strconv.Atoi(v)
			if err != nil || c.PermanentRedirectCode < 300 || c.PermanentRedirectCode > 308 {
				err = fmt.Errorf("must be a redirect status code 300-308")
			}
		case name == "temporal-redirect":
			str(&c.TemporalRedirect, parseURL)
		case name == "x-forwarded-prefix":
			str(&c.XForwardedPrefix, nonEmpty)
		case name == "upstream-vhost":
			str(&c.UpstreamVhost, func(s string) error {
				if len(validation.IsDNS1123Subdomain(strings.ToLower(s))) > 0 {
					return fmt.Errorf("must be a DNS name")
				}
				return nil
			})
		case name == "server-alias":
			c.ServerAlias = list(v)
			for _, h := range c.ServerAlias {
				if len(validation.IsDNS1123Subdomain(strings.TrimPrefix(strings.ToLower(h), "*."))) > 0 {
					err = fmt.Errorf("%q is not a valid host name", h)
				}
			}
		case name == "backend-protocol":
			c.BackendProtocol = strings.ToUpper(v)
			switch c.BackendProtocol {
			case "HTTP", "HTTPS", "GRPC", "GRPCS":
			default:
				err = fmt.Errorf("must be one of HTTP, HTTPS, GRPC, GRPCS")
			}
		case name == "proxy-body-size":
			c.ProxyBodySize, err = parseSize(v)
		case name == "proxy-connect-timeout":
			secs(&c.ProxyConnectTimeout)
		case name == "proxy-read-timeout":
			secs(&c.ProxyReadTimeout)
		case name == "proxy-send-timeout":
			secs(&c.ProxySendTimeout)
		case name == "whitelist-source-range":
			c.WhitelistSourceRange, err = parsePrefixes(v)
		case name == "limit-rps":
			nonNeg(&c.LimitRPS)
		case name == "limit-connections":
			nonNeg(&c.LimitConnections)
		case name == "canary":
			boolean(&c.Canary)
		case name == "canary-by-header":
			str(&c.CanaryByHeader, nonEmpty)
		case name == "canary-by-header-value":
			str(&c.CanaryByHeaderValue, nil)
		case name == "canary-by-cookie":
			str(&c.CanaryByCookie, nonEmpty)
		case name == "canary-weight":
			nonNeg(&c.CanaryWeight)
		case name == "canary-weight-total":
			nonNeg(&c.CanaryWeightTotal)
			if err == nil && c.CanaryWeightTotal == 0 {
				err = fmt.Errorf("must be positive")
			}
		case name == "enable-cors":
			boolean(&c.EnableCORS)
		case name == "cors-allow-origin":
			c.CORSAllowOrigin = list(v)
			if len(c.CORSAllowOrigin) == 0 {
				err = fmt.Errorf("must list at least one origin")
			}
		case name == "cors-allow-methods":
			str(&c.CORSAllowMethods, nonEmpty)
		case name == "cors-allow-headers":
			str(&c.CORSAllowHeaders, nonEmpty)
		case name == "cors-allow-credentials":
			boolean(&c.CORSAllowCredentials)
		case name == "cors-expose-headers":
			str(&c.CORSExposeHeaders, nil)
		case name == "cors-max-age":
			nonNeg(&c.CORSMaxAge)
		case name == "affinity":
			str(&c.Affinity, func(s string) error {
				if s != "cookie" {
					return fmt.Errorf(`must be "cookie"`)
				}
				return nil
			})
		case name == "session-cookie-name":
			str(&c.SessionCookieName, func(s string) error {
				if s == "" || strings.ContainsAny(s, " \t\r\n;,=\"") {
					return fmt.Errorf("must be a cookie name")
				}
				return nil
			})
		case name == "session-cookie-max-age":
			nonNeg(&c.SessionCookieMaxAge)
		case name == "session-cookie-path":
			str(&c.SessionCookiePath, parsePath)
		case name == "default-backend":
			str(&c.DefaultBackend, func(s string) error {
				if len(validation.IsDNS1035Label(s)) > 0 {
					return fmt.Errorf("must be a Service name in the Ingress's namespace")
				}
				return nil
			})
		case name == "custom-http-errors":
			c.CustomHTTPErrors = nil
			for _, s := range list(v) {
				n, e := strconv.Atoi(s)
				if e != nil || len(s) != 3 || n < 400 || n > 599 {
					err = fmt.Errorf("%q is not an HTTP error code 400-599", s)
					break
				}
				c.CustomHTTPErrors = append(c.CustomHTTPErrors, n)
			}
		case name == "load-balance":
			str(&c.LoadBalance, func(s string) error {
				if s != "round_robin" && s != "ewma" {
					return fmt.Errorf("must be round_robin or ewma")
				}
				return nil
			})
		default:
			warns = append(warns, fmt.Sprintf("annotation %s is not supported by podnet and is ignored", full))
		}
		if err != nil {
			errs = append(errs, field.Invalid(base.Key(full), v, err.Error()))
		}
	}
	if c.CanaryWeight > c.CanaryWeightTotal {
		errs = append(errs, field.Invalid(base.Key(Prefix+"canary-weight"), c.CanaryWeight, fmt.Sprintf("must be at most canary-weight-total (%d)", c.CanaryWeightTotal)))
	}
	return c, errs, warns
}
