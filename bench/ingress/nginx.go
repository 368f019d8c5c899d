package main

import (
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sort"
	"strings"

	"github.com/podnet/podnet/internal/ingress/route"
)

// nginxConf writes an nginx.conf (for `nginx -p DIR -c nginx.conf`) that
// serves the table's routes as the podnet proxy does: one upstream per
// backend with a keep-alive pool, one server block per host on the HTTP
// and HTTPS ports, one location per path, the request headers podnet
// adds (X-Forwarded-*, X-Real-IP, X-Request-ID), HTTP/1.1 upstream; a
// default server answering 404. accessLog "" turns the access log off,
// as for the podnet peer. workers is worker_processes: "auto", or the
// number of CPUs the peer is pinned to (nginx 1.22's auto counts the
// online CPUs, not the affinity mask, while Go's GOMAXPROCS follows it).
func nginxConf(t *route.Table, dir, workers, httpAddr, httpsAddr, certFile, keyFile, accessLog string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `worker_processes %[4]s;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events {
    worker_connections 8192;
}
http {
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    server_names_hash_max_size 8192;
    server_names_hash_bucket_size 64;
    variables_hash_bucket_size 128;
    keepalive_timeout 75s;
    keepalive_requests 10000;
    server_tokens off;
    default_type text/plain;
    proxy_http_version 1.1;
    proxy_buffering off;
    proxy_connect_timeout 5s;
    proxy_next_upstream error timeout;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_certificate %[2]s;
    ssl_certificate_key %[3]s;
`, dir, certFile, keyFile, workers)
	if accessLog == "" {
		b.WriteString("    access_log off;\n")
	} else {
		fmt.Fprintf(&b, "    access_log %s;\n", accessLog)
	}

	// Upstreams, one per backend key, in a stable order.
	ups := map[string]*route.Backend{}
	hosts := map[string][]*route.Route{}
	for _, r := range t.Routes() {
		ups[r.Backend.Key()] = r.Backend
		hosts[r.Host] = append(hosts[r.Host], r)
	}
	keys := make([]string, 0, len(ups))
	for k := range ups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "    upstream %s {\n", k)
		for _, e := range ups[k].Endpoints {
			fmt.Fprintf(&b, "        server %s max_fails=0;\n", e.Addr)
		}
		b.WriteString("        keepalive 320;\n        keepalive_requests 10000;\n        keepalive_timeout 60s;\n    }\n")
	}

	listen := func() {
		fmt.Fprintf(&b, "        listen %s;\n        listen %s ssl;\n", httpAddr, httpsAddr)
	}
	b.WriteString("    server {\n")
	fmt.Fprintf(&b, "        listen %s default_server;\n        listen %s ssl default_server;\n", httpAddr, httpsAddr)
	b.WriteString("        return 404;\n    }\n")
	names := make([]string, 0, len(hosts))
	for h := range hosts {
		names = append(names, h)
	}
	sort.Strings(names)
	for _, h := range names {
		b.WriteString("    server {\n")
		listen()
		fmt.Fprintf(&b, "        server_name %s;\n", h)
		for _, r := range hosts[h] {
			writeLocation(&b, r)
		}
		b.WriteString("    }\n")
	}
	b.WriteString("}\n")
	return b.String()
}

func writeLocation(b *strings.Builder, r *route.Route) {
	body := func(loc string) {
		fmt.Fprintf(b, "        location %s {\n", loc)
		fmt.Fprintf(b, "            proxy_pass http://%s;\n", r.Backend.Key())
		b.WriteString(`            proxy_set_header Host $host;
            proxy_set_header Connection "";
            proxy_set_header X-Request-ID $request_id;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Forwarded-Port $server_port;
            proxy_set_header X-Forwarded-Proto $scheme;
        }
`)
	}
	switch r.PathType {
	case route.Exact:
		body("= " + r.Path)
	case route.Regex:
		body("~* ^" + r.Path)
	default:
		if r.Path == "/" {
			body("/")
			return
		}
		p := strings.TrimSuffix(r.Path, "/")
		body("= " + p)
		body(p + "/")
	}
}

// httputilHandler routes the table's routes with an http.ServeMux (host
// and path patterns) to httputil.ReverseProxy peers with Go's default
// transport (http.DefaultTransport: 2 idle connections per host), one per
// backend, first endpoint only.
func httputilHandler(t *route.Table) (http.Handler, error) {
	mux := http.NewServeMux()
	rps := map[string]*httputil.ReverseProxy{}
	for _, r := range t.Routes() {
		if len(r.Backend.Endpoints) == 0 {
			return nil, fmt.Errorf("backend %s has no endpoints", r.Backend.Key())
		}
		rp := rps[r.Backend.Key()]
		if rp == nil {
			u, err := url.Parse("http://" + r.Backend.Endpoints[0].Addr)
			if err != nil {
				return nil, err
			}
			target := u
			rp = &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(target)
				pr.Out.Host = pr.In.Host
				pr.SetXForwarded()
				pr.Out.Header.Set("X-Real-IP", strings.Split(pr.In.RemoteAddr, ":")[0])
			}}
			rps[r.Backend.Key()] = rp
		}
		p := r.Path
		if r.PathType == route.Exact {
			p += "{$}"
		} else if !strings.HasSuffix(p, "/") {
			mux.Handle(r.Host+p, rp)
			p += "/"
		}
		mux.Handle(r.Host+p, rp)
	}
	return mux, nil
}
