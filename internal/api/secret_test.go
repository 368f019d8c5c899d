package api

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// testPair returns a PEM certificate for host and its PEM private key.
func testPair(t *testing.T, host string) (crt, key []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd})
}

func tlsSecretManifest(crt, key []byte) string {
	return `apiVersion: v1
kind: Secret
metadata: {name: web-tls}
type: kubernetes.io/tls
data:
  tls.crt: ` + base64.StdEncoding.EncodeToString(crt) + `
  tls.key: ` + base64.StdEncoding.EncodeToString(key) + `
`
}

func TestDecodeSecret(t *testing.T) {
	crt, key := testPair(t, "a.example.com")
	docs, err := Decode("s.yaml", "team", strings.NewReader(tlsSecretManifest(crt, key)))
	if err != nil {
		t.Fatal(err)
	}
	s := docs[0].Object.(*corev1.Secret)
	if s.Namespace != "team" || string(s.Data["tls.crt"]) != string(crt) {
		t.Fatalf("%+v", s)
	}
	if w := docs[0].Kind.WarningsFor(s); len(w) != 0 {
		t.Errorf("warnings for a good pair: %v", w)
	}
	c := cells(t, s, false)
	if c["TYPE"] != "kubernetes.io/tls" || c["DATA"] != "2" {
		t.Errorf("cells %v", c)
	}

	// stringData merges into data (and wins); the type defaults to Opaque.
	docs, err = Decode("s.yaml", "", strings.NewReader(`apiVersion: v1
kind: Secret
metadata: {name: creds}
data: {user: YWRtaW4=, pass: b2xk}
stringData: {pass: new}
`))
	if err != nil {
		t.Fatal(err)
	}
	s = docs[0].Object.(*corev1.Secret)
	if s.Type != corev1.SecretTypeOpaque || string(s.Data["user"]) != "admin" || string(s.Data["pass"]) != "new" || s.StringData != nil {
		t.Fatalf("%+v", s)
	}

	// A pair that does not match is stored with a warning.
	_, otherKey := testPair(t, "b.example.com")
	docs, err = Decode("s.yaml", "", strings.NewReader(tlsSecretManifest(crt, otherKey)))
	if err != nil {
		t.Fatal(err)
	}
	w := docs[0].Kind.WarningsFor(docs[0].Object)
	if len(w) != 1 || !strings.HasPrefix(w[0], `secret "web-tls": tls.crt and tls.key are not a usable key pair (tls: private key does not match public key)`) {
		t.Errorf("warnings %q", w)
	}
}

func TestValidateSecret(t *testing.T) {
	crt, key := testPair(t, "a.example.com")
	for _, c := range []struct{ manifest, want string }{
		{"apiVersion: v1\nkind: Secret\nmetadata: {name: t}\ntype: kubernetes.io/tls\ndata: {tls.crt: " + base64.StdEncoding.EncodeToString(crt) + "}\n",
			`Secret "t" is invalid: data[tls.key]: Required value`},
		{"apiVersion: v1\nkind: Secret\nmetadata: {name: t}\ntype: kubernetes.io/tls\n",
			`data[tls.crt]: Required value; data[tls.key]: Required value`},
		{tlsSecretManifest([]byte("not pem"), key), `data[tls.crt]: Invalid value: "<secret contents redacted>": must be PEM-encoded: no CERTIFICATE block found`},
		{tlsSecretManifest(crt, crt), `data[tls.key]: Invalid value: "<secret contents redacted>": must be PEM-encoded: no PRIVATE KEY block found`},
		{"apiVersion: v1\nkind: Secret\nmetadata: {name: t}\ndata: {a/b: eA==}\n", `data[a/b]: Invalid value: "a/b": a valid config key must consist of alphanumeric characters`},
		{"apiVersion: v1\nkind: Secret\nmetadata: {name: t}\ntype: kubernetes.io/dockerconfigjson\ndata: {.dockerconfigjson: eA==}\n", `data[.dockerconfigjson]: Invalid value: "<secret contents redacted>": invalid character`},
		{"apiVersion: v1\nkind: Secret\nmetadata: {name: t}\ntype: kubernetes.io/basic-auth\n", `data[username]: Required value; data[password]: Required value`},
		{"apiVersion: v1\nkind: Secret\nmetadata: {name: t}\ndata: {a: not-base64!}\n", `illegal base64 data`},
		{"apiVersion: v1\nkind: Secret\nmetadata: {name: t}\ndata: {a: " + Redacted(12) + "}\n", `illegal base64 data`},
	} {
		_, err := Decode("s.yaml", "", strings.NewReader(c.manifest))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("error %v\nwant %s", err, c.want)
		}
	}
	// cert-manager's empty placeholders and other types are accepted.
	for _, m := range []string{
		"apiVersion: v1\nkind: Secret\nmetadata: {name: t}\ntype: kubernetes.io/tls\ndata: {tls.crt: '', tls.key: ''}\n",
		"apiVersion: v1\nkind: Secret\nmetadata: {name: t}\ntype: example.com/custom\ndata: {x: eA==}\n",
		"apiVersion: v1\nkind: Secret\nmetadata: {name: t}\ntype: kubernetes.io/basic-auth\nstringData: {username: u}\n",
	} {
		if _, err := Decode("s.yaml", "", strings.NewReader(m)); err != nil {
			t.Errorf("refused: %v\n%s", err, m)
		}
	}
}

func TestSecretUpdateAndRedact(t *testing.T) {
	s := &corev1.Secret{Type: corev1.SecretTypeOpaque, Data: map[string][]byte{"a": []byte("12345")}}
	s.Name, s.Namespace = "s", "default"
	k, _ := KindOf(s)
	n := s.DeepCopy()
	n.Type = corev1.SecretTypeTLS
	if errs := k.ValidateUpdate(s, n); len(errs) != 1 || !strings.Contains(errs.ToAggregate().Error(), "type: Invalid value: \"kubernetes.io/tls\": field is immutable") {
		t.Errorf("type change: %v", errs)
	}
	yes := true
	s.Immutable = &yes
	n = s.DeepCopy()
	n.Data["a"] = []byte("x")
	if errs := k.ValidateUpdate(s, n); len(errs) != 1 || !strings.Contains(errs[0].Error(), "data: Forbidden: field is immutable when `immutable` is set") {
		t.Errorf("immutable data change: %v", errs)
	}
	if errs := k.ValidateUpdate(s, s.DeepCopy()); len(errs) != 0 {
		t.Errorf("no change: %v", errs)
	}

	b, err := json.Marshal(Printable(s))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(b); !strings.Contains(got, `"data":{"a":"(redacted, 5 bytes)"}`) || strings.Contains(got, "MTIzNDU") {
		t.Errorf("printable secret: %s", got)
	}
	if string(s.Data["a"]) != "12345" {
		t.Errorf("Printable changed the object")
	}
	if p := Printable(&corev1.ConfigMap{}); p == nil {
		t.Errorf("a ConfigMap prints as itself")
	} else if _, ok := p.(*corev1.ConfigMap); !ok {
		t.Errorf("a ConfigMap prints as %T", p)
	}
}
