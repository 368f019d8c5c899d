package annotations

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func ing(kv ...string) *networkingv1.Ingress {
	a := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		a[Prefix+kv[i]] = kv[i+1]
	}
	return &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: "i", Annotations: a}}
}

func TestDefaults(t *testing.T) {
	c, errs, warns := Parse(ing())
	if len(errs) > 0 || len(warns) > 0 {
		t.Fatal(errs, warns)
	}
	if !*c.SSLRedirect || c.ProxyBodySize != 1<<20 || c.ProxyReadTimeout != 60*time.Second || c.PermanentRedirectCode != 301 || c.CORSMaxAge != 1728000 || c.SessionCookieName != "INGRESSCOOKIE" || c.CanaryWeightTotal != 100 {
		t.Errorf("%+v", c)
	}
}

func TestGood(t *testing.T) {
	cases := []struct {
		k, v  string
		check func(*Config) bool
	}{
		{"rewrite-target", "/$2", func(c *Config) bool { return c.RewriteTarget == "/$2" }},
		{"use-regex", "true", func(c *Config) bool { return c.UseRegex }},
		{"app-root", "/app", func(c *Config) bool { return c.AppRoot == "/app" }},
		{"ssl-redirect", "false", func(c *Config) bool { return !*c.SSLRedirect }},
		{"force-ssl-redirect", "true", func(c *Config) bool { return c.ForceSSLRedirect }},
		{"permanent-redirect", "https://x.example/", func(c *Config) bool { return c.PermanentRedirect == "https://x.example/" }},
		{"permanent-redirect-code", "308", func(c *Config) bool { return c.PermanentRedirectCode == 308 }},
		{"temporal-redirect", "https://y/", func(c *Config) bool { return c.TemporalRedirect == "https://y/" }},
		{"x-forwarded-prefix", "/p", func(c *Config) bool { return c.XForwardedPrefix == "/p" }},
		{"upstream-vhost", "a.b.svc", func(c *Config) bool { return c.UpstreamVhost == "a.b.svc" }},
		{"server-alias", "a.com, *.b.com", func(c *Config) bool { return reflect.DeepEqual(c.ServerAlias, []string{"a.com", "*.b.com"}) }},
		{"backend-protocol", "grpcs", func(c *Config) bool { return c.BackendProtocol == "GRPCS" }},
		{"proxy-body-size", "8m", func(c *Config) bool { return c.ProxyBodySize == 8<<20 }},
		{"proxy-body-size", "1g", func(c *Config) bool { return c.ProxyBodySize == 1<<30 }},
		{"proxy-body-size", "512k", func(c *Config) bool { return c.ProxyBodySize == 512<<10 }},
		{"proxy-body-size", "0", func(c *Config) bool { return c.ProxyBodySize == 0 }},
		{"proxy-connect-timeout", "10", func(c *Config) bool { return c.ProxyConnectTimeout == 10*time.Second }},
		{"proxy-read-timeout", "120s", func(c *Config) bool { return c.ProxyReadTimeout == 120*time.Second }},
		{"proxy-send-timeout", "3", func(c *Config) bool { return c.ProxySendTimeout == 3*time.Second }},
		{"whitelist-source-range", "10.0.0.0/8, 192.168.1.1", func(c *Config) bool {
			return reflect.DeepEqual(c.WhitelistSourceRange, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.1/32")})
		}},
		{"limit-rps", "5", func(c *Config) bool { return c.LimitRPS == 5 }},
		{"limit-connections", "0", func(c *Config) bool { return c.LimitConnections == 0 }},
		{"canary", "true", func(c *Config) bool { return c.Canary }},
		{"canary-by-header", "X-C", func(c *Config) bool { return c.CanaryByHeader == "X-C" }},
		{"canary-by-header-value", "yes", func(c *Config) bool { return c.CanaryByHeaderValue == "yes" }},
		{"canary-by-cookie", "c", func(c *Config) bool { return c.CanaryByCookie == "c" }},
		{"canary-weight", "30", func(c *Config) bool { return c.CanaryWeight == 30 }},
		{"enable-cors", "true", func(c *Config) bool { return c.EnableCORS }},
		{"cors-allow-origin", "https://a, https://b", func(c *Config) bool { return len(c.CORSAllowOrigin) == 2 }},
		{"cors-allow-methods", "GET", func(c *Config) bool { return c.CORSAllowMethods == "GET" }},
		{"cors-allow-headers", "X-A", func(c *Config) bool { return c.CORSAllowHeaders == "X-A" }},
		{"cors-allow-credentials", "false", func(c *Config) bool { return !c.CORSAllowCredentials }},
		{"cors-expose-headers", "X-B", func(c *Config) bool { return c.CORSExposeHeaders == "X-B" }},
		{"cors-max-age", "600", func(c *Config) bool { return c.CORSMaxAge == 600 }},
		{"affinity", "cookie", func(c *Config) bool { return c.Affinity == "cookie" }},
		{"session-cookie-name", "route", func(c *Config) bool { return c.SessionCookieName == "route" }},
		{"session-cookie-max-age", "3600", func(c *Config) bool { return c.SessionCookieMaxAge == 3600 }},
		{"session-cookie-path", "/", func(c *Config) bool { return c.SessionCookiePath == "/" }},
		{"default-backend", "fallback", func(c *Config) bool { return c.DefaultBackend == "fallback" }},
		{"custom-http-errors", "404,503", func(c *Config) bool { return reflect.DeepEqual(c.CustomHTTPErrors, []int{404, 503}) }},
		{"load-balance", "ewma", func(c *Config) bool { return c.LoadBalance == "ewma" }},
	}
	for _, tc := range cases {
		t.Run(tc.k+"="+tc.v, func(t *testing.T) {
			c, errs, warns := Parse(ing(tc.k, tc.v))
			if len(errs) > 0 || len(warns) > 0 || !tc.check(c) {
				t.Fatalf("%v %v %+v", errs, warns, c)
			}
		})
	}
}

func TestBad(t *testing.T) {
	cases := []struct{ k, v, want string }{
		{"use-regex", "yes please", "true"},
		{"app-root", "app", "path"},
		{"ssl-redirect", "maybe", "true"},
		{"permanent-redirect", "a b", "URL"},
		{"permanent-redirect-code", "200", "300-308"},
		{"server-alias", "a b", "host name"},
		{"upstream-vhost", "A_B", "DNS"},
		{"backend-protocol", "FTP", "HTTP, HTTPS"},
		{"proxy-body-size", "abc", "size"},
		{"proxy-body-size", "-1m", "size"},
		{"proxy-body-size", "99999999999999999g", "range"},
		{"proxy-read-timeout", "1m", "seconds"},
		{"whitelist-source-range", "10.0.0.0/33", "CIDR"},
		{"whitelist-source-range", "", "at least one"},
		{"limit-rps", "-1", "non-negative"},
		{"limit-connections", "x", "non-negative"},
		{"canary", "on", "true"},
		{"canary-weight", "101", "canary-weight-total"},
		{"canary-weight-total", "0", "positive"},
		{"cors-max-age", "-5", "non-negative"},
		{"affinity", "ip", "cookie"},
		{"session-cookie-name", "a;b", "cookie name"},
		{"default-backend", "Bad.Name", "Service name"},
		{"custom-http-errors", "404,302", "400-599"},
		{"custom-http-errors", "4040", "400-599"},
		{"load-balance", "least_conn", "round_robin"},
		{"configuration-snippet", "return 200;", "snippet annotations are not supported: podnet never executes configuration text"},
		{"server-snippet", "x", "snippet annotations are not supported"},
		{"auth-snippet", "x", "snippet annotations are not supported"},
		{"stream-snippet", "x", "snippet annotations are not supported"},
	}
	for _, tc := range cases {
		t.Run(tc.k+"="+tc.v, func(t *testing.T) {
			_, errs, _ := Parse(ing(tc.k, tc.v))
			if len(errs) != 1 {
				t.Fatalf("errors %v", errs)
			}
			s := errs[0].Error()
			if !strings.Contains(s, "metadata.annotations["+Prefix+tc.k+"]") || !strings.Contains(s, tc.want) {
				t.Fatalf("error %q, want %q", s, tc.want)
			}
		})
	}
}

func TestUnknownWarns(t *testing.T) {
	i := ing("no-such-thing", "1")
	i.Annotations["other.io/x"] = "y"
	_, errs, warns := Parse(i)
	if len(errs) > 0 || len(warns) != 1 || !strings.Contains(warns[0], Prefix+"no-such-thing") {
		t.Fatal(errs, warns)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("proxy-body-size", "8m")
	f.Add("whitelist-source-range", "10.0.0.0/8,::1")
	f.Add("custom-http-errors", "404,500")
	f.Add("canary-weight", "50")
	f.Add("server-snippet", "x")
	f.Fuzz(func(t *testing.T, k, v string) {
		c, errs, _ := Parse(ing(k, v))
		if c == nil {
			t.Fatal("nil config")
		}
		if len(errs) == 0 && c.ProxyBodySize < 0 {
			t.Fatalf("negative body size from %q", v)
		}
	})
}
