package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// tlsWorld: two hosts with their own certificates.
func tlsWorld(t *testing.T, e *env) {
	a := newBackend(t, "a", nil)
	w := &world{}
	w.service("a", a.addr)
	w.secret(t, "cert-a", "a.example", "a.example")
	w.secret(t, "cert-b", "b.example", "b.example", "*.b.example")
	w.ingress("a", path("a.example", "Prefix / a"), tlsHosts("cert-a", "a.example"))
	w.ingress("b", path("b.example", "Prefix / a"), path("x.b.example", "Prefix / a"), tlsHosts("cert-b", "b.example", "*.b.example"))
	e.load(w)
}

func TestTLSBySNI(t *testing.T) {
	e := newEnv(t)
	tlsWorld(t, e)
	for sni, cn := range map[string]string{"a.example": "a.example", "b.example": "b.example", "x.b.example": "b.example", "other.example": DefaultCertCN, "": DefaultCertCN} {
		c, err := tls.Dial("tcp", e.tlsAddr, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
		if err != nil {
			t.Fatalf("%q: %v", sni, err)
		}
		got := c.ConnectionState().PeerCertificates[0].Subject.CommonName
		c.Close()
		if got != cn {
			t.Errorf("SNI %q: certificate %q, want %q", sni, got, cn)
		}
	}
	// The Host header picks the route, SNI the certificate.
	tr := &http.Transport{TLSClientConfig: &tls.Config{ServerName: "a.example", InsecureSkipVerify: true}}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, CheckRedirect: noRedirect}
	req, _ := http.NewRequest("GET", e.httpsURL+"/", nil)
	req.Host = "b.example"
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.TLS.PeerCertificates[0].Subject.CommonName != "a.example" || res.StatusCode != 200 {
		t.Errorf("SNI a, Host b: %d, cert %s", res.StatusCode, res.TLS.PeerCertificates[0].Subject.CommonName)
	}
}

func TestTLSOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	e := newEnv(t)
	tlsWorld(t, e)
	for sni, cn := range map[string]string{"a.example": "a.example", "x.b.example": "b.example", "nobody.example": DefaultCertCN} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, err := exec.CommandContext(ctx, "openssl", "s_client", "-connect", e.tlsAddr, "-servername", sni, "-alpn", "h2").CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("openssl s_client -servername %s: %v\n%s", sni, err, out)
		}
		if !strings.Contains(string(out), "CN = "+cn) && !strings.Contains(string(out), "CN="+cn) {
			t.Errorf("openssl -servername %s: no CN %q in\n%s", sni, cn, out)
		}
		if !strings.Contains(string(out), "ALPN protocol: h2") {
			t.Errorf("openssl -alpn h2: not negotiated:\n%s", out)
		}
	}
}

func TestHTTP2(t *testing.T) {
	e := newEnv(t)
	tlsWorld(t, e)
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	r := e.doWith(&http.Client{Transport: tr, CheckRedirect: noRedirect}, e.httpsURL, "GET", "a.example", "/h2", nil)
	if r.proto != "HTTP/2.0" || r.code != 200 {
		t.Fatalf("over TLS with ALPN: %s %d", r.proto, r.code)
	}
	if s := r.seen(t); s.Proto != "HTTP/1.1" || s.Host != "a.example" || s.Header.Get("X-Forwarded-Proto") != "https" {
		t.Errorf("backend saw %s Host %s", s.Proto, s.Host)
	}
	// h2c with prior knowledge on the plain listener.
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	h2c := &http.Transport{Protocols: &protos}
	defer h2c.CloseIdleConnections()
	r = e.doWith(&http.Client{Transport: h2c, CheckRedirect: noRedirect}, e.httpURL, "GET", "a.example", "/h2c", nil)
	if r.proto != "HTTP/2.0" || r.code != 308 {
		t.Errorf("h2c: %s %d (want the TLS host's 308)", r.proto, r.code)
	}
}

// wsBackend upgrades, then echoes lines prefixed with its name.
func wsBackend(t *testing.T, name string) *backend {
	return newBackend(t, name, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || !strings.Contains(strings.ToLower(r.Header.Get("Connection")), "upgrade") {
			http.Error(w, "no upgrade", 400)
			return
		}
		conn, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n")
		brw.Flush()
		for {
			line, err := brw.ReadString('\n')
			if err != nil {
				return
			}
			brw.WriteString(name + ": " + line)
			brw.Flush()
		}
	}))
}

// wsConn is a client connection upgraded through the proxy.
type wsConn struct {
	c  net.Conn
	br *bufio.Reader
}

func dialWS(t *testing.T, addr, host string) *wsConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// The first message goes in the same segment as the request, to check
	// bytes the proxy read ahead reach the backend.
	fmt.Fprintf(c, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\nearly\n", host)
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 101 || res.Header.Get("Upgrade") != "websocket" {
		t.Fatalf("upgrade: %d %v", res.StatusCode, res.Header)
	}
	ws := &wsConn{c, br}
	if got := ws.roundTrip(t, ""); !strings.HasSuffix(got, ": early\n") {
		t.Fatalf("early data: %q", got)
	}
	return ws
}

// roundTrip sends msg (unless empty) and reads one line.
func (w *wsConn) roundTrip(t *testing.T, msg string) string {
	t.Helper()
	if msg != "" {
		if _, err := io.WriteString(w.c, msg+"\n"); err != nil {
			t.Fatalf("ws write: %v", err)
		}
	}
	w.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := w.br.ReadString('\n')
	if err != nil {
		t.Fatalf("ws read: %v", err)
	}
	return line
}

func TestWebSocket(t *testing.T) {
	e := newEnv(t)
	ws := wsBackend(t, "ws")
	w := &world{}
	w.service("ws", ws.addr)
	w.ingress("ws", path("ws.com", "Prefix / ws"))
	e.load(w)
	c := dialWS(t, e.httpAddr, "ws.com")
	for i := 0; i < 3; i++ {
		if got := c.roundTrip(t, fmt.Sprint("msg", i)); got != fmt.Sprintf("ws: msg%d\n", i) {
			t.Errorf("echo %q", got)
		}
	}
	// Over TLS too.
	tc, err := tls.Dial("tcp", e.tlsAddr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	fmt.Fprintf(tc, "GET /ws HTTP/1.1\r\nHost: ws.com\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\r\n")
	br := bufio.NewReader(tc)
	if res, err := http.ReadResponse(br, nil); err != nil || res.StatusCode != 101 {
		t.Fatalf("TLS upgrade: %v %v", res, err)
	}
	io.WriteString(tc, "tls\n")
	if line, _ := br.ReadString('\n'); line != "ws: tls\n" {
		t.Errorf("TLS echo %q", line)
	}
}

func TestGRPC(t *testing.T) {
	e := newEnv(t)
	start := func(creds credentials.TransportCredentials) (string, *health.Server) {
		var opts []grpc.ServerOption
		if creds != nil {
			opts = append(opts, grpc.Creds(creds))
		}
		gs := grpc.NewServer(opts...)
		hs := health.NewServer()
		healthpb.RegisterHealthServer(gs, hs)
		hs.SetServingStatus("podnet.test", healthpb.HealthCheckResponse_SERVING)
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go gs.Serve(lis)
		t.Cleanup(gs.Stop)
		return lis.Addr().String(), hs
	}
	plainAddr, hs := start(nil)
	cp, kp := certPEM(t, "grpc backend", "grpc.internal")
	cert, err := tls.X509KeyPair(cp, kp)
	if err != nil {
		t.Fatal(err)
	}
	tlsAddr, _ := start(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}}))
	w := &world{}
	w.service("g", plainAddr)
	w.service("gs", tlsAddr)
	w.ingress("g", path("grpc.com", "Prefix / g"), ann("backend-protocol", "GRPC"))
	w.ingress("gs", path("grpcs.com", "Prefix / gs"), ann("backend-protocol", "GRPCS"))
	e.load(w)

	check := func(target, authority string, creds credentials.TransportCredentials) healthpb.HealthClient {
		cc, err := grpc.NewClient("passthrough:///"+target, grpc.WithTransportCredentials(creds), grpc.WithAuthority(authority))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		hc := healthpb.NewHealthClient(cc)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		res, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "podnet.test"})
		if err != nil {
			t.Fatalf("%s via %s: %v", authority, target, err)
		}
		if res.Status != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("%s: %v", authority, res.Status)
		}
		// An error status travels in the trailers.
		_, err = hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "nosuch"})
		if err == nil || !strings.Contains(err.Error(), "NotFound") {
			t.Errorf("%s: unknown service: %v", authority, err)
		}
		return hc
	}
	tlsCreds := credentials.NewTLS(&tls.Config{InsecureSkipVerify: true})
	hc := check(e.httpAddr, "grpc.com", insecure.NewCredentials()) // h2c to the proxy, h2c upstream
	check(e.tlsAddr, "grpc.com", tlsCreds)                         // h2 over TLS to the proxy
	check(e.tlsAddr, "grpcs.com", tlsCreds)                        // TLS upstream

	// A server stream: updates arrive one by one, not at the end.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{Service: "podnet.test"})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := st.Recv(); err != nil || m.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("watch: %v %v", m, err)
	}
	hs.SetServingStatus("podnet.test", healthpb.HealthCheckResponse_NOT_SERVING)
	if m, err := st.Recv(); err != nil || m.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("watch update: %v %v", m, err)
	}
}

func TestSSE(t *testing.T) {
	e := newEnv(t)
	release := make(chan struct{})
	var once sync.Once
	defer once.Do(func() { close(release) })
	a := newBackend(t, "sse", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "data: two\n\n")
	}))
	w := &world{}
	w.service("sse", a.addr)
	w.ingress("sse", path("sse.com", "Prefix / sse"))
	e.load(w)
	for _, c := range []struct {
		client *http.Client
		base   string
	}{{e.client, e.httpURL}, {e.tlsc, e.httpsURL}} {
		req, _ := http.NewRequest("GET", c.base+"/events", nil)
		req.Host = "sse.com"
		res, err := c.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(res.Body)
		got := make(chan string, 1)
		go func() {
			line, _ := br.ReadString('\n')
			got <- line
		}()
		select {
		case line := <-got:
			if line != "data: one\n" {
				t.Errorf("first event %q", line)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("first event not delivered while the handler runs: buffered")
		}
		res.Body.Close()
	}
	once.Do(func() { close(release) })
}

func TestSwapUnderLoad(t *testing.T) {
	e := newEnv(t)
	bs := []*backend{newBackend(t, "a", nil), newBackend(t, "b", nil), newBackend(t, "c", nil)}
	ws := wsBackend(t, "ws")
	mk := func(i int) *world {
		w := &world{}
		// Endpoints change: two of three, rotating.
		w.service("s", bs[i%3].addr, bs[(i+1)%3].addr)
		w.service("ws", ws.addr)
		w.ingress("web", path("foo.com", "Prefix / s"))
		w.ingress("ws", path("ws.com", "Prefix / ws"))
		w.ingress("fb", path("fb.com", "Exact /only s"), defaultBackend("s")) // a host fallback route
		// Ingresses come and go.
		for j := 0; j < i%5; j++ {
			w.ingress(fmt.Sprint("extra", j), path(fmt.Sprintf("x%d.com", j), "Prefix / s"))
		}
		return w
	}
	e.load(mk(0))
	c := dialWS(t, e.httpAddr, "ws.com")

	var ok, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("GET", e.httpURL+"/x", nil)
				req.Host = "foo.com"
				if g%2 == 1 {
					req.Host = "fb.com"
				}
				res, err := e.client.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode == 200 {
					ok.Add(1)
				} else {
					failed.Add(1)
				}
			}
		}()
	}
	for i := 1; i <= 100; i++ {
		tab := e.load(mk(i))
		_ = tab
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if failed.Load() != 0 || ok.Load() < 100 {
		t.Errorf("%d ok, %d failed during 100 swaps", ok.Load(), failed.Load())
	}
	t.Logf("%d requests during 100 swaps", ok.Load())
	if got := c.roundTrip(t, "still there"); got != "ws: still there\n" {
		t.Errorf("WebSocket after the swaps: %q", got)
	}
}
